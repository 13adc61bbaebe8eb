//! The host: runs TAXII feed plugins in wasmtime and keeps their event
//! stores.
//!
//! - [`engine`] compiles and caches plugins and links their imports;
//! - [`state`] and [`policy`] are what one run of a plugin may touch: its own
//!   bucket, and HTTP to its feed's origin with the credentials added there;
//! - [`db`], [`feeds`], [`store`] and [`runs`] keep configurations, event
//!   stores and run history in one SQLite file;
//! - [`politeness`] keeps each run within its server's limits (one request
//!   in flight, a rate, `Retry-After`, backoff, timeouts);
//! - [`runner`] runs one import, [`progress`] counts what it does, and
//!   [`schedule`] runs every feed on its interval until [`shutdown`];
//! - [`directive`], [`query`] and [`filter`] are the query language,
//!   [`retrieve`] and [`output`] read stores back as STIX, and [`serve`]
//!   serves them as a read-only TAXII 2.1 server; [`cli`] is the command line.

pub mod bindings;
pub mod cli;
pub mod db;
pub mod directive;
pub mod discover;
pub mod engine;
pub mod feeds;
pub mod filter;
pub mod keyvalue;
pub mod lease;
pub mod limits;
pub mod lock;
pub mod outgoing;
pub mod output;
pub mod policy;
pub mod politeness;
pub mod progress;
pub mod query;
pub mod retrieve;
pub mod runner;
pub mod runs;
pub mod schedule;
pub mod secret;
pub mod serve;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod timestamp;
pub mod tls;

/// The current time as RFC 3339 with microseconds, as stored everywhere.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}
