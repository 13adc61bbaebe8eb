//! One import run: read the collection, page through its objects from the
//! stored cursor on, and commit each page with its cursor.

use std::collections::HashSet;
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::value::RawValue;
use url::Url;

use crate::config::FeedConfig;
use crate::http::{Request, Response, Transport, TransportError};
use crate::report::{ImportError, ImportFailure, NoteLevel, RejectedObject, RunReport};
use crate::store::{self, CURSOR_KEY, EventStore, ORIGINAL_PREFIX, QUARANTINE_PREFIX};
use crate::taxii::{self, ContentType, Envelope, ObjectsQuery, TAXII_21};
use crate::{PLUGIN_NAME, PLUGIN_VERSION, stix};

/// Pages in a row that bring nothing new before the run calls it a loop.
const MAX_STALLED_PAGES: u32 = 3;

/// Runs one import of `config`'s collection into `store`.
///
/// Each page's new objects and its cursor are written in one `set_many`
/// before the next page is asked for, so a failure at any point leaves the
/// store at the end of a complete page. The failure carries the report of
/// what was committed.
#[expect(
    clippy::result_large_err,
    reason = "returned once per run; the failure carries the whole report on purpose"
)]
pub fn import_any_intel(
    config: &FeedConfig,
    http: impl Transport,
    store: impl EventStore,
) -> Result<RunReport, ImportFailure> {
    let mut run = Run {
        config,
        http,
        store,
        report: RunReport {
            taxii_version: "2.1".into(),
            ..RunReport::default()
        },
        noted: HashSet::new(),
    };
    match run.execute() {
        Ok(()) => Ok(run.report),
        Err(error) => Err(ImportFailure {
            error,
            progress: run.report,
        }),
    }
}

struct Run<'c, T, S> {
    config: &'c FeedConfig,
    http: T,
    store: S,
    report: RunReport,
    /// Notes already made, so that a per-page remark is made once.
    noted: HashSet<&'static str>,
}

/// What a committed page changed.
struct PageOutcome {
    /// Object versions newly stored.
    stored: u64,
    /// Whether the page moved the cursor.
    cursor_moved: bool,
}

impl<T: Transport, S: EventStore> Run<'_, T, S> {
    fn execute(&mut self) -> Result<(), ImportError> {
        let collection = self.config.validate().map_err(|problems| {
            let messages: Vec<_> = problems
                .iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect();
            ImportError::InvalidConfig(messages.join("; "))
        })?;
        let cursor = self.stored_cursor()?;
        self.report.previous_cursor.clone_from(&cursor);
        self.report.cursor.clone_from(&cursor);
        self.check_collection(&collection)?;

        let mut query = ObjectsQuery {
            limit: self.config.page_size(),
            added_after: cursor.or_else(|| self.config.added_after.clone()),
            types: self.config.object_types.clone(),
            next: None,
        };
        let mut stalled = 0;
        loop {
            if self
                .config
                .max_pages
                .is_some_and(|max| self.report.pages >= max)
            {
                self.report.complete = false;
                let message = "stopped at the page limit; the next run continues from the cursor";
                self.report.note(NoteLevel::Info, message);
                return Ok(());
            }
            let url = query.url(&collection);
            let response = self.fetch(&url)?;
            let envelope = taxii::parse_envelope(&response.body).map_err(|e| {
                ImportError::MalformedResponse(format!("{}: {e}", taxii::redact_query(&url)))
            })?;
            self.note_unexpected_keys(&envelope);
            let page_cursor = self.page_cursor(&response, !envelope.objects.is_empty());
            let outcome = self.commit_page(&envelope.objects, page_cursor)?;
            if !envelope.more {
                break;
            }
            let repeated = envelope.next.is_some() && envelope.next == query.next;
            let progressed = outcome.stored > 0 || outcome.cursor_moved || !repeated;
            if envelope.objects.is_empty() || !progressed {
                stalled += 1;
            } else {
                stalled = 0;
            }
            if stalled >= MAX_STALLED_PAGES {
                return Err(ImportError::MalformedResponse(format!(
                    "{}: the server keeps answering `more: true` with nothing new \
                     ({stalled} pages in a row); stopped to avoid a paging loop",
                    taxii::redact_query(&url)
                )));
            }
            match envelope.next {
                Some(next) => query.next = Some(next),
                None if outcome.cursor_moved => {
                    self.note_once(
                        "no-next",
                        NoteLevel::Debug,
                        "the server set `more` without `next`; continuing with `added_after`",
                    );
                    query.added_after.clone_from(&self.report.cursor);
                    query.next = None;
                }
                None => {
                    return Err(ImportError::MalformedResponse(format!(
                        "{}: the server says there is more but gives neither `next` nor \
                         an X-TAXII-Date-Added-Last to continue from",
                        taxii::redact_query(&url)
                    )));
                }
            }
        }
        self.report.complete = true;
        Ok(())
    }

    fn stored_cursor(&mut self) -> Result<Option<String>, ImportError> {
        let value = self.store.get(CURSOR_KEY).map_err(store_error)?;
        value
            .map(|bytes| {
                String::from_utf8(bytes)
                    .map_err(|_| ImportError::Store(format!("{CURSOR_KEY} is not UTF-8")))
            })
            .transpose()
    }

    /// Reads the collection resource and refuses `can_read: false`.
    fn check_collection(&mut self, url: &Url) -> Result<(), ImportError> {
        #[derive(Deserialize)]
        struct Collection {
            id: Option<String>,
            title: Option<String>,
            can_read: Option<bool>,
        }
        let response = self.fetch(url)?;
        let collection: Collection = serde_json::from_slice(&response.body).map_err(|e| {
            ImportError::MalformedResponse(format!("{url} is not a TAXII collection ({e})"))
        })?;
        let name = match (&collection.title, &collection.id) {
            (Some(title), Some(id)) => format!("{title:?} ({id})"),
            (Some(title), None) => format!("{title:?}"),
            (None, Some(id)) => id.clone(),
            (None, None) => url.to_string(),
        };
        match collection.can_read {
            Some(false) => Err(ImportError::Forbidden(format!(
                "the collection {name} at {url} says can_read: false, so these credentials \
                 may not read its objects; use a collection you may read, or ask the \
                 server's operator for read access"
            ))),
            Some(true) => Ok(()),
            None => {
                let message = format!("the collection {name} does not say can_read; trying anyway");
                self.report.note(NoteLevel::Warn, message);
                Ok(())
            }
        }
    }

    /// Sends a GET and checks status and media type.
    fn fetch(&mut self, url: &Url) -> Result<Response, ImportError> {
        let request = Request {
            url: url.clone(),
            headers: vec![
                ("accept".into(), TAXII_21.into()),
                (
                    "user-agent".into(),
                    format!("{PLUGIN_NAME}/{PLUGIN_VERSION}"),
                ),
            ],
        };
        let response = self
            .http
            .get(&request)
            .map_err(|e| transport_error(e, url))?;
        if !matches!(response.status, 200 | 206) {
            return Err(taxii::error_for_status(
                response.status,
                response.header("retry-after"),
                &response.body,
                url,
                SystemTime::now(),
            ));
        }
        let at = taxii::redact_query(url);
        match taxii::classify_content_type(response.header("content-type")) {
            ContentType::Taxii21 => {}
            ContentType::Json(media) => self.note_once(
                "lenient-media-type",
                NoteLevel::Debug,
                format!("{at} answered with Content-Type {media}; read it as TAXII 2.1"),
            ),
            ContentType::Taxii20(media) => {
                return Err(ImportError::UnsupportedVersion(format!(
                    "{at} answered with Content-Type {media}, which is TAXII 2.0"
                )));
            }
            ContentType::Other(media) => {
                return Err(ImportError::MalformedResponse(format!(
                    "{at} answered with {media}, not TAXII JSON"
                )));
            }
        }
        Ok(response)
    }

    /// The page's `X-TAXII-Date-Added-Last`, verbatim, if usable.
    fn page_cursor(&mut self, response: &Response, has_objects: bool) -> Option<String> {
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
            None if has_objects => {
                let message = "a page came without X-TAXII-Date-Added-Last; kept the \
                               previous cursor, so the next run may fetch these objects again";
                self.note_once("no-cursor", NoteLevel::Warn, message);
                None
            }
            None => None,
        }
    }

    /// Checks the page's objects and writes the new ones, the rejected ones
    /// and the cursor in one atomic batch.
    fn commit_page(
        &mut self,
        objects: &[&RawValue],
        cursor: Option<String>,
    ) -> Result<PageOutcome, ImportError> {
        let mut entries = Vec::with_capacity(objects.len() + 1);
        let mut keys = HashSet::with_capacity(objects.len());
        let mut rejections = Vec::new();
        let (mut stored, mut duplicates) = (0, 0);
        for raw in objects {
            match stix::normalize(raw) {
                Ok(object) => {
                    let key = store::object_key(&object.id, &object.version);
                    if keys.contains(&key) || self.store.exists(&key).map_err(store_error)? {
                        duplicates += 1;
                        continue;
                    }
                    if let Some(original) = object.original {
                        let original_key =
                            format!("{ORIGINAL_PREFIX}{}/{}", object.id, object.version);
                        entries.push((original_key, original));
                    }
                    keys.insert(key.clone());
                    entries.push((key, object.json));
                    stored += 1;
                }
                Err(rejection) => {
                    let key = format!(
                        "{QUARANTINE_PREFIX}{:016x}",
                        stix::fnv1a64(raw.get().as_bytes())
                    );
                    if !keys.contains(&key) && !self.store.exists(&key).map_err(store_error)? {
                        entries.push((key.clone(), quarantine_entry(&rejection.reason, raw)));
                        keys.insert(key);
                    }
                    rejections.push(RejectedObject {
                        id: rejection.id,
                        object_type: rejection.object_type,
                        reason: rejection.reason,
                    });
                }
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

    fn note_unexpected_keys(&mut self, envelope: &Envelope<'_>) {
        if envelope.unexpected_keys.is_empty() {
            return;
        }
        let level = if envelope.objects.is_empty() {
            NoteLevel::Warn
        } else {
            NoteLevel::Info
        };
        let message = format!(
            "the envelope has keys a TAXII envelope does not have: {}{}",
            envelope.unexpected_keys.join(", "),
            if envelope.objects.is_empty() {
                "; it has no `objects`, so if the server puts its objects under one of \
                 those keys this feed will look empty"
            } else {
                ""
            }
        );
        self.note_once("unexpected-keys", level, message);
    }

    fn note_once(&mut self, what: &'static str, level: NoteLevel, message: impl Into<String>) {
        if self.noted.insert(what) {
            self.report.note(level, message);
        }
    }
}

/// `{"reason": …, "object": …}` for the quarantine.
fn quarantine_entry(reason: &str, raw: &RawValue) -> Vec<u8> {
    let reason = serde_json::to_string(reason).unwrap_or_else(|_| "\"\"".into());
    format!(r#"{{"reason":{reason},"object":{}}}"#, raw.get()).into_bytes()
}

fn store_error(error: store::StoreError) -> ImportError {
    ImportError::Store(error.0)
}

fn transport_error(error: TransportError, url: &Url) -> ImportError {
    let at = taxii::redact_query(url);
    match error {
        TransportError::Denied(m) => ImportError::Denied(format!("{at}: {m}")),
        TransportError::Unreachable(m) => ImportError::Unavailable(format!("{at}: {m}")),
        TransportError::TooLarge(m) => ImportError::MalformedResponse(format!("{at}: {m}")),
        TransportError::Other(m) => ImportError::Other(format!("{at}: {m}")),
    }
}

#[cfg(test)]
mod tests;
