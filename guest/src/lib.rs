//! The TAXII feed plugin.
//!
//! Everything that knows TAXII and STIX lives here as plain Rust that builds
//! and is tested natively: [`taxii`] (media types, URLs, envelopes and
//! bundles, item ranges, status codes), [`stix`] (object checks and
//! normalization to STIX 2.1), [`import`] (version negotiation and the
//! paging loops of TAXII 2.1 and 2.0) and [`discovery`] (what a URL points
//! at, and the collections behind it). They reach the network and the
//! event store only through the [`Transport`] and [`EventStore`] traits.
//!
//! On `wasm32-wasip2` the `component` module implements those traits with
//! `wasi:http` and `wasi:keyvalue` and exports the `taxii:feed/importer`
//! interface. Nothing in this crate knows which host runs it.

pub mod config;
pub mod discovery;
pub mod http;
pub mod import;
pub mod report;
pub mod stix;
pub mod store;
pub mod taxii;

#[cfg(target_family = "wasm")]
mod component;

pub use config::{ConfigProblem, FeedConfig};
pub use discovery::discover;
pub use http::{Request, Response, Transport, TransportError};
pub use import::import_any_intel;
pub use report::{ImportError, ImportFailure, Note, NoteLevel, RejectedObject, RunReport};
pub use store::{EventStore, StoreError};

/// The plugin's name: unnamed feeds get a store of this name.
pub const PLUGIN_NAME: &str = "taxii-feed";

/// The plugin's version.
pub const PLUGIN_VERSION: &str = env!("CARGO_PKG_VERSION");
