//! Committing pages: checking their objects, keeping aside the bad ones,
//! and writing the new ones with the cursor after them in one atomic batch.
//!
//! A page is staged, then written together with the pages staged before
//! it: one `set-many` for up to [`BATCH_PAGES`] pages or [`BATCH_BYTES`] of
//! entries, whichever comes first, at once after a page that took
//! [`SLOW_PAGE`] or more to arrive, and always before the run ends or
//! handles a failure. A store commits 8,000 entries in one transaction far
//! faster than in eight (the keys are random, so each transaction rewrites
//! most of the key index's pages), while a crash costs at most one batch of
//! pages, which the next run fetches again from the cursor committed before
//! it: nothing is lost and nothing is stored twice.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::value::RawValue;

use super::{Run, store_error};
use crate::http::{Response, Transport};
use crate::report::{ImportError, NoteLevel, RejectedObject};
use crate::store::{self, CURSOR_KEY, EventStore, ORIGINAL_PREFIX, QUARANTINE_PREFIX};
use crate::taxii::page::Page;
use crate::{stix, taxii};

/// Pages staged at most before they are written.
pub const BATCH_PAGES: u32 = 8;

/// Bytes of staged entries at most before they are written.
pub const BATCH_BYTES: usize = 8 << 20;

/// A page that took this long or longer to arrive is committed at once:
/// when the server is what limits the run, a batch saves nothing and would
/// only hold back what the operator sees. A batch of fast pages spans at
/// most [`BATCH_PAGES`] times this.
pub const SLOW_PAGE: Duration = Duration::from_millis(100);

/// What a staged page changes once written.
pub(super) struct PageOutcome {
    /// Object versions new to the store.
    pub stored: u64,
    /// Whether the page moved the cursor.
    pub cursor_moved: bool,
}

/// Pages checked and staged, not yet written, and what they add to the
/// run's report once they are.
#[derive(Default)]
pub(super) struct Pending {
    entries: Vec<(String, Vec<u8>)>,
    /// The keys of `entries`: a later page's copy of one is a duplicate.
    keys: HashSet<String>,
    bytes: usize,
    pages: u32,
    received: u64,
    stored: u64,
    duplicates: u64,
    rejections: Vec<RejectedObject>,
    /// The cursor after the last staged page that had one.
    cursor: Option<String>,
}

impl Pending {
    /// Pages staged.
    pub(super) fn pages(&self) -> u32 {
        self.pages
    }

    /// The cursor the staged pages end at, if any of them gave one.
    pub(super) fn cursor(&self) -> Option<&String> {
        self.cursor.as_ref()
    }

    fn full(&self) -> bool {
        self.pages >= BATCH_PAGES || self.bytes >= BATCH_BYTES
    }

    /// Adds an entry to the batch.
    fn push(&mut self, key: String, value: Vec<u8>) {
        self.bytes += key.len() + value.len();
        self.entries.push((key, value));
    }
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

    /// Checks the page's objects and stages the new ones, the rejected
    /// ones and the cursor; writes the batch when it is full.
    pub(super) fn commit_page(
        &mut self,
        page: &Page<'_>,
        cursor: Option<String>,
    ) -> Result<PageOutcome, ImportError> {
        let outcome = self.stage_page(page, cursor)?;
        if self.pending.full() || self.last_fetch >= SLOW_PAGE {
            self.flush()?;
        }
        Ok(outcome)
    }

    /// Writes the staged pages and their cursor in one `set_many`, and adds
    /// them to the report. If the write fails, none of them is stored or
    /// reported.
    pub(super) fn flush(&mut self) -> Result<(), ImportError> {
        let pending = std::mem::take(&mut self.pending);
        if pending.pages == 0 {
            return Ok(());
        }
        let mut entries = pending.entries;
        let cursor_moved = pending.cursor.is_some() && pending.cursor != self.report.cursor;
        if let Some(cursor) = pending.cursor.as_ref().filter(|_| cursor_moved) {
            entries.push((CURSOR_KEY.to_string(), cursor.clone().into_bytes()));
        }
        if !entries.is_empty() {
            self.store.set_many(entries).map_err(store_error)?;
        }
        self.report.pages += pending.pages;
        self.report.received += pending.received;
        self.report.stored += pending.stored;
        self.report.duplicates += pending.duplicates;
        pending
            .rejections
            .into_iter()
            .for_each(|r| self.report.reject(r));
        if cursor_moved {
            self.report.cursor = pending.cursor;
        }
        Ok(())
    }

    /// The cursor after everything fetched so far: staged, else committed.
    pub(super) fn latest_cursor(&self) -> Option<&String> {
        self.pending.cursor().or(self.report.cursor.as_ref())
    }

    fn stage_page(
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
        // The store is asked once about each key neither this page nor a
        // staged one holds already.
        let mut asked = HashSet::with_capacity(candidates.len());
        let unique: Vec<String> = candidates
            .iter()
            .map(|(key, _)| key)
            .filter(|key| !self.pending.keys.contains(*key) && asked.insert(key.as_str()))
            .cloned()
            .collect();
        let present = self.store.exists_many(&unique).map_err(store_error)?;
        if present.len() != unique.len() {
            return Err(ImportError::Store(format!(
                "the store answered {} of {} keys",
                present.len(),
                unique.len()
            )));
        }
        let stored_already: HashSet<String> = unique
            .into_iter()
            .zip(present)
            .filter_map(|(key, present)| present.then_some(key))
            .collect();
        let pending = &mut self.pending;
        let (mut stored, mut duplicates) = (0, 0);
        for (key, candidate) in candidates {
            // Already stored, staged, or earlier in this page.
            if stored_already.contains(&key) || !pending.keys.insert(key.clone()) {
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
                        pending.push(original_key, original);
                    }
                    pending.push(key, object.json);
                    stored += 1;
                }
                Candidate::Rejected(entry) => pending.push(key, entry),
            }
        }
        let cursor_moved = cursor.is_some() && cursor.as_ref() != self.latest_cursor();
        let pending = &mut self.pending;
        if cursor_moved {
            pending.cursor = cursor;
        }
        pending.pages += 1;
        pending.received += objects.len() as u64;
        pending.stored += stored;
        pending.duplicates += duplicates;
        pending.rejections.extend(rejections);
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
