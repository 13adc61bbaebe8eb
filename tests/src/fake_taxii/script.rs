//! What a fake TAXII server serves and how it misbehaves: every knob a
//! test can turn, with the well-behaved default.

use std::time::Duration;

use serde_json::Value;

/// The TAXII versions the server speaks; a request in another one is
/// answered 406.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaks {
    /// TAXII 2.1 only (discovery at `/taxii2/`).
    V21,
    /// TAXII 2.0 only (discovery at `/taxii/`).
    V20,
    /// Both.
    Both,
}

/// How a TAXII 2.1 Get Objects pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// medallion's design: `next` names a server-side session. The same
    /// token is answered with the following page each time it is sent, and
    /// it expires `ttl` after it was made or when the last page was served.
    ConsumingNext {
        /// How long a session lives.
        ttl: Duration,
    },
    /// A stateless token: the (date_added, position) of the page's last
    /// object; the next page is what comes after it.
    Keyset,
    /// `more: true` without `next`: the client must continue with
    /// `added_after`.
    NoNext,
}

/// Which spellings of the `Range` header a TAXII 2.0 server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpellings {
    /// `items 0-9` only, as the specification writes it.
    Space,
    /// `items=0-9` only.
    Equals,
    /// Either.
    Both,
}

/// How a TAXII 2.0 server answers ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranges {
    /// The spellings accepted; another is answered `refuse_status`.
    pub accepts: RangeSpellings,
    /// The status for a range spelled otherwise (400, or 416).
    pub refuse_status: u16,
    /// Whether `Content-Range` says the total (`a-b/N`) or not (`a-b/*`).
    pub total: bool,
    /// Answer every request with everything: 200, no `Content-Range`.
    pub ignore: bool,
    /// Answer every request with the first items, whatever was asked.
    pub stuck: bool,
}

/// What `X-TAXII-Date-Added-Last` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateHeader {
    /// The `date_added` of the page's last object.
    Last,
    /// Nothing.
    Missing,
    /// This value on every page.
    Fixed(String),
}

/// How an objects request fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer this status (with a TAXII error body). A consuming session
    /// has already moved past the page, as when a proxy loses the answer.
    Status(u16),
    /// Close the connection without answering (the session moved on).
    Drop,
}

/// A failure of one objects request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The index of the objects request that fails, from 0.
    pub at: usize,
    /// How.
    pub kind: FaultKind,
}

/// Deviations from TAXII seen in the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quirks {
    /// `Content-Type` of every TAXII answer instead of the right one.
    pub content_type: Option<String>,
    /// What `X-TAXII-Date-Added-Last` says.
    pub date_added_last: DateHeader,
    /// The key the objects are put under instead of `objects`.
    pub objects_key: String,
    /// Leave `more` (and `next`) out of the envelope.
    pub omit_more: bool,
    /// Answer 2.1 objects requests with 206 instead of 200.
    pub status_206: bool,
    /// Answer every 2.1 objects request with the first page, `more: true`
    /// and the same `next`.
    pub repeat_first_page: bool,
    /// After the last object, keep answering `more: true` with no objects
    /// and a new `next` each time.
    pub endless_empty_pages: bool,
    /// Answer 400 when a request with a session's `next` does not repeat
    /// the session's filters (medallion does).
    pub strict_filters: bool,
    /// Answer requests in TAXII 2.1 with TAXII 2.0 media types (and the
    /// 2.0 shapes).
    pub answer_21_as_20: bool,
    /// The status for a media type (TAXII version) not served: 406 or 415.
    pub refusal_status: u16,
}

impl Default for Quirks {
    fn default() -> Self {
        Self {
            content_type: None,
            date_added_last: DateHeader::Last,
            objects_key: "objects".into(),
            omit_more: false,
            status_206: false,
            repeat_first_page: false,
            endless_empty_pages: false,
            strict_filters: true,
            answer_21_as_20: false,
            refusal_status: 406,
        }
    }
}

/// One object version in a collection, with when it was added.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `date_added`, RFC 3339 with microseconds.
    pub date_added: String,
    /// The object.
    pub object: Value,
}

/// A collection served from memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Collection {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// `can_read`.
    pub can_read: bool,
    /// `can_write`.
    pub can_write: bool,
    /// Its object versions, in `date_added` order.
    pub entries: Vec<Entry>,
}

/// The `date_added` of the `n`th object: 2024-05-01T00:00:00.000001Z and
/// up, one millisecond and one microsecond apart.
pub fn date_added(n: usize) -> String {
    let micros = 1 + n as u64 * 1001;
    let (seconds, micros) = (micros / 1_000_000, micros % 1_000_000);
    let (minutes, seconds) = (seconds / 60, seconds % 60);
    let (hours, minutes) = (minutes / 60, minutes % 60);
    format!("2024-05-01T{hours:02}:{minutes:02}:{seconds:02}.{micros:06}Z")
}

impl Collection {
    /// A readable collection of `objects`, added one after the other.
    pub fn new(id: &str, objects: Vec<Value>) -> Self {
        let entries = objects
            .into_iter()
            .enumerate()
            .map(|(n, object)| Entry {
                date_added: date_added(n),
                object,
            })
            .collect();
        Self {
            id: id.into(),
            title: format!("Collection {id}"),
            can_read: true,
            can_write: false,
            entries,
        }
    }

    /// Gives the objects from `first` to `last` (inclusive) the
    /// `date_added` of `first`, as when they were added in one request.
    pub fn share_date_added(mut self, first: usize, last: usize) -> Self {
        let date = self.entries[first].date_added.clone();
        for entry in &mut self.entries[first..=last] {
            entry.date_added.clone_from(&date);
        }
        self
    }

    /// Adds objects after the others.
    pub fn push(&mut self, objects: Vec<Value>) {
        let start = self.entries.len();
        for (n, object) in objects.into_iter().enumerate() {
            self.entries.push(Entry {
                date_added: date_added(start + n),
                object,
            });
        }
    }
}

/// Everything about a fake server.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    /// The versions it speaks.
    pub speaks: Speaks,
    /// The API root's name (`/{api_root}/`).
    pub api_root: String,
    /// Its collections.
    pub collections: Vec<Collection>,
    /// The API roots its discovery lists, as written there (relative URLs
    /// allowed); `None` lists its own API root's absolute URL.
    pub discovery_roots: Option<Vec<String>>,
    /// HTTP Basic credentials it requires, if any.
    pub credentials: Option<(String, String)>,
    /// How TAXII 2.1 pages.
    pub paging: Paging,
    /// Whether `added_after` includes objects added at that very time.
    pub inclusive_added_after: bool,
    /// The largest page it serves, whatever was asked.
    pub max_page_size: usize,
    /// How TAXII 2.0 ranges are answered.
    pub ranges: Ranges,
    /// Failures of objects requests.
    pub faults: Vec<Fault>,
    /// Deviations from TAXII.
    pub quirks: Quirks,
    /// How long each objects request takes.
    pub delay: Duration,
}

impl Script {
    /// A well-behaved TAXII 2.1 server (medallion's paging) holding one
    /// collection, `c1`.
    pub fn new(objects: Vec<Value>) -> Self {
        Self {
            speaks: Speaks::V21,
            api_root: "api1".into(),
            collections: vec![Collection::new(COLLECTION_ID, objects)],
            discovery_roots: None,
            credentials: None,
            paging: Paging::ConsumingNext {
                ttl: Duration::from_secs(300),
            },
            inclusive_added_after: false,
            max_page_size: 10_000,
            ranges: Ranges {
                accepts: RangeSpellings::Both,
                refuse_status: 400,
                total: true,
                ignore: false,
                stuck: false,
            },
            faults: Vec::new(),
            quirks: Quirks::default(),
            delay: Duration::ZERO,
        }
    }

    /// A well-behaved TAXII 2.0 server holding one collection, `c1`.
    pub fn v20(objects: Vec<Value>) -> Self {
        Self {
            speaks: Speaks::V20,
            ..Self::new(objects)
        }
    }
}

/// The id of the collection [`Script::new`] makes.
pub const COLLECTION_ID: &str = "91a7b528-80eb-42ed-a74d-c6fbd5a26116";
