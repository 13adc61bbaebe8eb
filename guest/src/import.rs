//! One import run: find the TAXII version the server speaks, page through
//! the collection's objects from the stored cursor on, and commit the pages
//! in batches, each with the cursor after it (see [`commit`]).
//!
//! After a transient failure (a 5xx, a dropped connection, a page token the
//! server no longer knows) the run resumes from the last committed cursor
//! with a fresh request, never by sending a `next` token again: servers
//! such as medallion consume a token each time they answer it, so resending
//! one after a lost answer would skip a page.

use std::collections::HashSet;
use std::time::Duration;

use url::Url;

use crate::config::FeedConfig;
use crate::http::Transport;
use crate::report::{ImportError, ImportFailure, NoteLevel, RunReport};
use crate::store::{CURSOR_KEY, EventStore, StoreError};
use crate::taxii::{self, ObjectsQuery, TaxiiVersion};

mod commit;
mod fetch;
mod walk20;
mod walk21;

/// Pages in a row that bring nothing new before the run calls it a loop.
pub const MAX_STALLED_PAGES: u32 = 3;

/// Times a run resumes from its cursor after transient failures.
pub const MAX_RESUMES: u32 = 3;

/// The wait before the first resume; doubled before each further one.
const RESUME_PAUSE: Duration = Duration::from_millis(250);

/// Runs one import of `config`'s collection into `store`.
///
/// Pages are written in batches (see [`commit`]): each batch's new objects
/// and the cursor after its last page in one `set_many`, so a failure at
/// any point leaves the store at the end of a complete page. The failure
/// carries the report of what was committed.
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
            taxii_version: TaxiiVersion::V21.as_str().into(),
            ..RunReport::default()
        },
        noted: HashSet::new(),
        version: TaxiiVersion::V21,
        sent_token: false,
        pending: commit::Pending::default(),
        last_fetch: Duration::ZERO,
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
    /// The TAXII version the server speaks, once negotiated.
    version: TaxiiVersion,
    /// Whether the last objects request carried a `next` token.
    sent_token: bool,
    /// Pages fetched and checked, not yet written.
    pending: commit::Pending,
    /// How long the last request took to answer.
    last_fetch: Duration,
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
        self.report.cursor = cursor;
        let collection = self.negotiate(&collection)?;
        let mut resumes = 0;
        loop {
            let walked = match self.version {
                TaxiiVersion::V21 => self.walk_21(&collection),
                TaxiiVersion::V20 => self.walk_20(&collection),
            };
            // Whatever ended the walk, the pages it fetched are kept.
            let error = match (walked, self.flush()) {
                (Ok(()), Ok(())) => return Ok(()),
                (Ok(()), Err(store)) => return Err(store),
                (Err(error), Ok(())) => error,
                (Err(error), Err(store)) => {
                    let message = format!("the walk had failed before the store did: {error}");
                    self.report.note(NoteLevel::Warn, message);
                    return Err(store);
                }
            };
            let Some(why) = self.resumable(&error).filter(|_| resumes < MAX_RESUMES) else {
                return Err(error);
            };
            resumes += 1;
            let from = self.report.cursor.as_deref().unwrap_or("the start");
            let message = format!(
                "{why} ({error}); resumed from the last committed cursor ({from}) with a new \
                 request instead of resending the page token (resume {resumes} of {MAX_RESUMES})"
            );
            self.report.note(NoteLevel::Warn, message);
            self.http.pause(RESUME_PAUSE * 2u32.pow(resumes - 1));
        }
    }

    /// Why a failed walk may resume from the cursor, if it may.
    fn resumable(&self, error: &ImportError) -> Option<&'static str> {
        match error {
            ImportError::Unavailable(_) => Some("the server failed or could not be reached"),
            ImportError::Other(_) | ImportError::NotFound(_) if self.sent_token => {
                Some("the server refused the page token; it may have expired")
            }
            _ => None,
        }
    }

    /// The filters a walk starts with: from the committed cursor, else
    /// from the configured start.
    fn start_query(&self) -> ObjectsQuery {
        ObjectsQuery {
            added_after: self
                .report
                .cursor
                .clone()
                .or_else(|| self.config.added_after.clone()),
            types: self.config.object_types.clone(),
        }
    }

    /// True (and the report says so) when the run has fetched as many
    /// pages as it may.
    fn page_limit_reached(&mut self) -> bool {
        let reached = self
            .config
            .max_pages
            .is_some_and(|max| self.report.pages + self.pending.pages() >= max);
        if reached {
            self.report.complete = false;
            let message = "stopped at the page limit; the next run continues from the cursor";
            self.report.note(NoteLevel::Info, message);
        }
        reached
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

    fn note_once(&mut self, what: &'static str, level: NoteLevel, message: impl Into<String>) {
        if self.noted.insert(what) {
            self.report.note(level, message);
        }
    }
}

fn store_error(error: StoreError) -> ImportError {
    ImportError::Store(error.0)
}

fn malformed(url: &Url, problem: impl std::fmt::Display) -> ImportError {
    ImportError::MalformedResponse(format!("{}: {problem}", taxii::redact_query(url)))
}

#[cfg(test)]
mod tests;
