//! Committing a page: checking its objects, keeping aside the bad ones,
//! and writing the new ones with the page's cursor in one atomic batch.

use std::collections::HashSet;

use serde_json::value::RawValue;

use super::{Run, store_error};
use crate::http::{Response, Transport};
use crate::report::{ImportError, NoteLevel, RejectedObject};
use crate::store::{self, CURSOR_KEY, EventStore, ORIGINAL_PREFIX, QUARANTINE_PREFIX};
use crate::taxii::page::Page;
use crate::{stix, taxii};

/// What a committed page changed.
pub(super) struct PageOutcome {
    /// Object versions newly stored.
    pub stored: u64,
    /// Whether the page moved the cursor.
    pub cursor_moved: bool,
}

impl<T: Transport, S: EventStore> Run<'_, T, S> {
    /// The page's `X-TAXII-Date-Added-Last`, verbatim, if usable. A missing
    /// or malformed one keeps the previous cursor, and the report says so.
    /// A page without objects never moves the cursor, whatever its header
    /// says: objects the plugin did not see must not be skipped.
    pub(super) fn page_cursor(&mut self, response: &Response, has_objects: bool) -> Option<String> {
        if !has_objects {
            return None;
        }
        match response.header(taxii::DATE_ADDED_LAST) {
            Some(value) if taxii::is_rfc3339(value.trim()) => Some(value.trim().to_string()),
            Some(value) => {
                let message = format!(
                    "X-TAXII-Date-Added-Last {value:?} is not an RFC 3339 timestamp; \
                     kept the previous cursor"
                );
                self.note_once("bad-cursor", NoteLevel::Warn, message);
                None
            }
            None => {
                let message = "a page came without X-TAXII-Date-Added-Last; kept the \
                               previous cursor, so the next run may fetch these objects again";
                self.note_once("no-cursor", NoteLevel::Warn, message);
                None
            }
        }
    }

    /// Checks the page's objects and writes the new ones, the rejected ones
    /// and the cursor in one atomic batch.
    pub(super) fn commit_page(
        &mut self,
        page: &Page<'_>,
        cursor: Option<String>,
    ) -> Result<PageOutcome, ImportError> {
        let objects = &page.objects;
        // First the checks, then one look-up of the whole page's keys, then
        // the batch: a store answers 1,000 keys at once far faster than
        // 1,000 times one key.
        let mut candidates = Vec::with_capacity(objects.len());
        let mut rejections = Vec::new();
        for raw in objects {
            match stix::normalize_from(raw, page.bundle_spec_version.as_deref()) {
                Ok(object) => {
                    let key = store::object_key(&object.id, &object.version);
                    candidates.push((key, Candidate::Object(object)));
                }
                Err(rejection) => {
                    let key = format!(
                        "{QUARANTINE_PREFIX}{:016x}",
                        stix::fnv1a64(raw.get().as_bytes())
                    );
                    let entry = quarantine_entry(&rejection.reason, raw);
                    candidates.push((key, Candidate::Rejected(entry)));
                    rejections.push(RejectedObject {
                        id: rejection.id,
                        object_type: rejection.object_type,
                        reason: rejection.reason,
                    });
                }
            }
        }
        // A key the page repeats is looked up once; its later copies are
        // duplicates of the first.
        let mut first = HashSet::with_capacity(candidates.len());
        let unique: Vec<String> = candidates
            .iter()
            .filter(|(key, _)| first.insert(key.as_str()))
            .map(|(key, _)| key.clone())
            .collect();
        let present = self.store.exists_many(&unique).map_err(store_error)?;
        if present.len() != unique.len() {
            return Err(ImportError::Store(format!(
                "the store answered {} of {} keys",
                present.len(),
                unique.len()
            )));
        }
        let mut known: HashSet<String> = unique
            .into_iter()
            .zip(present)
            .filter_map(|(key, present)| present.then_some(key))
            .collect();
        let mut entries = Vec::with_capacity(candidates.len() + 1);
        let (mut stored, mut duplicates) = (0, 0);
        for (key, candidate) in candidates {
            // Already stored, or earlier in this page.
            if !known.insert(key.clone()) {
                if let Candidate::Object(_) = candidate {
                    duplicates += 1;
                }
                continue;
            }
            match candidate {
                Candidate::Object(object) => {
                    if let Some(original) = object.original {
                        let original_key =
                            format!("{ORIGINAL_PREFIX}{}/{}", object.id, object.version);
                        entries.push((original_key, original));
                    }
                    entries.push((key, object.json));
                    stored += 1;
                }
                Candidate::Rejected(entry) => entries.push((key, entry)),
            }
        }
        let cursor_moved = cursor.is_some() && cursor != self.report.cursor;
        if let Some(cursor) = cursor.as_ref().filter(|_| cursor_moved) {
            entries.push((CURSOR_KEY.to_string(), cursor.clone().into_bytes()));
        }
        if !entries.is_empty() {
            self.store.set_many(entries).map_err(store_error)?;
        }
        self.report.pages += 1;
        self.report.received += objects.len() as u64;
        self.report.stored += stored;
        self.report.duplicates += duplicates;
        rejections.into_iter().for_each(|r| self.report.reject(r));
        if cursor_moved {
            self.report.cursor = cursor;
        }
        Ok(PageOutcome {
            stored,
            cursor_moved,
        })
    }

    /// Reports keys a page should not have. A page without objects whose
    /// other keys hold STIX-like objects is a warning: the feed would
    /// otherwise look empty.
    pub(super) fn note_page_shape(&mut self, page: &Page<'_>) {
        if page.is_bundle && self.version == taxii::TaxiiVersion::V21 {
            let message = "the server answered a TAXII 2.1 request with a STIX bundle instead \
                           of an envelope; read its objects";
            self.note_once("bundle-in-21", NoteLevel::Info, message);
        }
        if page.unexpected.is_empty() {
            return;
        }
        let hidden: Vec<String> = page
            .unexpected
            .iter()
            .filter(|k| k.stix_like > 0)
            .map(|k| format!("`{}` ({} STIX-like objects)", k.name, k.stix_like))
            .collect();
        let names: Vec<&str> = page.unexpected.iter().map(|k| k.name.as_str()).collect();
        let (what, level, message) = if !hidden.is_empty() && page.objects.is_empty() {
            (
                "hidden-objects",
                NoteLevel::Warn,
                format!(
                    "the server sent no `objects` but put objects under {}; they were not \
                     imported: the server does not follow TAXII, report it to its operator",
                    hidden.join(", ")
                ),
            )
        } else {
            (
                "unexpected-keys",
                NoteLevel::Info,
                format!(
                    "the server's answer has keys TAXII does not define: {}; ignored",
                    names.join(", ")
                ),
            )
        };
        self.note_once(what, level, message);
    }
}

/// An entry a page's object would add, before the store is asked whether
/// its key is new.
enum Candidate {
    /// A valid object, normalized.
    Object(stix::Normalized),
    /// A rejected object's quarantine entry.
    Rejected(Vec<u8>),
}

/// `{"reason": …, "object": …}` for the quarantine.
fn quarantine_entry(reason: &str, raw: &RawValue) -> Vec<u8> {
    let reason = serde_json::to_string(reason).unwrap_or_else(|_| "\"\"".into());
    format!(r#"{{"reason":{reason},"object":{}}}"#, raw.get()).into_bytes()
}
