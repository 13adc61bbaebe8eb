//! What a run reports (mirrors the `taxii:feed/types` records).

/// At most this many rejected objects are listed in a report.
pub const MAX_LISTED_REJECTIONS: usize = 100;

/// How much a note matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteLevel {
    /// A decision worth knowing when debugging.
    Debug,
    /// Worth knowing.
    Info,
    /// Worth looking at.
    Warn,
}

/// A remark about a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// How much it matters.
    pub level: NoteLevel,
    /// What happened.
    pub message: String,
}

/// An object that was not stored, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedObject {
    /// Its `id`, if usable.
    pub id: Option<String>,
    /// Its `type`, if any.
    pub object_type: Option<String>,
    /// The failed check.
    pub reason: String,
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunReport {
    /// `2.1` or `2.0`.
    pub taxii_version: String,
    /// Pages committed.
    pub pages: u32,
    /// Objects received.
    pub received: u64,
    /// Object versions newly stored.
    pub stored: u64,
    /// Object versions already in the store.
    pub duplicates: u64,
    /// Objects rejected.
    pub rejected_count: u64,
    /// The first [`MAX_LISTED_REJECTIONS`] rejections.
    pub rejected: Vec<RejectedObject>,
    /// The cursor the run started from.
    pub previous_cursor: Option<String>,
    /// The cursor stored at the end.
    pub cursor: Option<String>,
    /// False when the run stopped early with more left.
    pub complete: bool,
    /// Remarks.
    pub notes: Vec<Note>,
}

impl RunReport {
    /// Adds a note.
    pub fn note(&mut self, level: NoteLevel, message: impl Into<String>) {
        self.notes.push(Note {
            level,
            message: message.into(),
        });
    }

    /// Counts a rejection, listing it while the list has room.
    pub fn reject(&mut self, rejected: RejectedObject) {
        self.rejected_count += 1;
        if self.rejected.len() < MAX_LISTED_REJECTIONS {
            self.rejected.push(rejected);
        }
    }
}

/// Why a run failed (mirrors `taxii:feed/types.import-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportError {
    /// The configuration cannot work.
    InvalidConfig(String),
    /// 401.
    Unauthorized(String),
    /// 403 or `can_read: false`.
    Forbidden(String),
    /// 404.
    NotFound(String),
    /// 429, or 503 with `Retry-After`.
    RateLimited {
        /// Seconds to wait, if the server said.
        retry_after_seconds: Option<u64>,
        /// What the server said.
        message: String,
    },
    /// Unreachable or 5xx.
    Unavailable(String),
    /// Not TAXII.
    MalformedResponse(String),
    /// No TAXII version in common.
    UnsupportedVersion(String),
    /// The host refused a request.
    Denied(String),
    /// The event store failed.
    Store(String),
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidConfig(m) => write!(f, "invalid configuration: {m}"),
            Self::Unauthorized(m) => write!(f, "unauthorized: {m}"),
            Self::Forbidden(m) => write!(f, "forbidden: {m}"),
            Self::NotFound(m) => write!(f, "not found: {m}"),
            Self::RateLimited {
                retry_after_seconds: Some(s),
                message,
            } => write!(f, "rate limited (retry after {s} s): {message}"),
            Self::RateLimited { message, .. } => write!(f, "rate limited: {message}"),
            Self::Unavailable(m) => write!(f, "server unavailable: {m}"),
            Self::MalformedResponse(m) => write!(f, "malformed response: {m}"),
            Self::UnsupportedVersion(m) => write!(f, "unsupported TAXII version: {m}"),
            Self::Denied(m) => write!(f, "request denied by the host: {m}"),
            Self::Store(m) => write!(f, "event store error: {m}"),
            Self::Other(m) => f.write_str(m),
        }
    }
}

/// A failed run with the progress it made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportFailure {
    /// Why it failed.
    pub error: ImportError,
    /// What it committed before failing.
    pub progress: RunReport,
}
