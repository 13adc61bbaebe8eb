//! The plugin's import code (`taxii_feed_guest::import_any_intel`) compiled
//! natively: the same paging, parsing, object checks and key building as
//! the component, with a [`Transport`] over hyper (the HTTP/1.1 client the
//! host itself uses, one connection per request as the host opens them)
//! and either the host's SQLite event store or a store that only counts.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use taxii_feed_guest::{
    EventStore, FeedConfig, Request, Response, StoreError, Transport, TransportError,
};
use taxii_host::db::Database;
use taxii_host::store::StoreRef;

/// GETs over hyper on a current-thread runtime, a new connection each
/// time (as the host's sender does).
pub struct HyperTransport {
    runtime: tokio::runtime::Runtime,
}

impl HyperTransport {
    /// A transport with a runtime of its own.
    pub fn new() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self { runtime })
    }
}

impl Transport for HyperTransport {
    fn get(&mut self, request: &Request) -> Result<Response, TransportError> {
        let url = request.url.clone();
        let headers = request.headers.clone();
        self.runtime
            .block_on(async move {
                let host = url
                    .host_str()
                    .ok_or_else(|| anyhow!("no host"))?
                    .to_string();
                let port = url.port_or_known_default().unwrap_or(80);
                let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                stream.set_nodelay(true)?;
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(connection);
                let target = match url.query() {
                    Some(q) => format!("{}?{q}", url.path()),
                    None => url.path().to_string(),
                };
                let mut builder =
                    hyper::Request::get(target).header("host", format!("{host}:{port}"));
                for (name, value) in &headers {
                    builder = builder.header(name.as_str(), value.as_str());
                }
                let response = sender
                    .send_request(builder.body(Empty::<Bytes>::new())?)
                    .await?;
                let status = response.status().as_u16();
                let headers = response
                    .headers()
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                let body = response.into_body().collect().await?.to_bytes().to_vec();
                anyhow::Ok(Response {
                    status,
                    headers,
                    body,
                    redirected_to: None,
                })
            })
            .map_err(|e| TransportError::Unreachable(format!("{e:#}")))
    }
}

/// Keeps nothing: every object is new; counts what would be written.
#[derive(Default)]
pub struct CountingStore {
    /// Entries written.
    pub entries: u64,
    /// Bytes of values written.
    pub bytes: u64,
}

impl EventStore for CountingStore {
    fn get(&mut self, _key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }

    fn exists(&mut self, _key: &str) -> Result<bool, StoreError> {
        Ok(false)
    }

    fn set_many(&mut self, entries: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        self.entries += entries.len() as u64;
        self.bytes += entries.iter().map(|(_, v)| v.len() as u64).sum::<u64>();
        Ok(())
    }
}

/// The host's event store (the same SQLite file, schema and statements
/// its `wasi:keyvalue` implementation uses), called directly.
pub struct SqliteStore {
    db: Database,
    store: StoreRef,
}

impl SqliteStore {
    /// The store `name` of the default tenant in `data_dir`.
    pub fn open(data_dir: &Path, name: &str) -> Result<Self> {
        let db = Database::open(data_dir)?;
        let store = db.ensure_store("default", name, "taxii-feed (native)")?;
        Ok(Self { db, store })
    }
}

fn store_error(error: anyhow::Error) -> StoreError {
    StoreError(format!("{error:#}"))
}

impl EventStore for SqliteStore {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_entry(self.store.id, key).map_err(store_error)
    }

    fn exists(&mut self, key: &str) -> Result<bool, StoreError> {
        self.db
            .entry_exists(self.store.id, key)
            .map_err(store_error)
    }

    /// As the host's `get-many` answers the plugin: one read per page.
    fn exists_many(&mut self, keys: &[String]) -> Result<Vec<bool>, StoreError> {
        let values = self
            .db
            .get_entries(self.store.id, keys)
            .map_err(store_error)?;
        Ok(values.iter().map(Option::is_some).collect())
    }

    fn set_many(&mut self, entries: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        self.db
            .set_entries(self.store.id, &entries)
            .map_err(store_error)
    }
}

/// Runs one native import of `url` and prints one JSON line:
/// `{"stored", "pages", "seconds"}`.
pub fn run(url: &str, data_dir: Option<&Path>) -> Result<()> {
    let config = FeedConfig {
        name: "native".into(),
        collection_url: url.into(),
        page_size: Some(crate::data::PAGE_SIZE as u32),
        ..FeedConfig::default()
    };
    let transport = HyperTransport::new()?;
    let start = Instant::now();
    let report = match data_dir {
        Some(dir) => {
            let store = SqliteStore::open(dir, "native")?;
            taxii_feed_guest::import_any_intel(&config, transport, store)
        }
        None => taxii_feed_guest::import_any_intel(&config, transport, CountingStore::default()),
    }
    .map_err(|f| anyhow!("native import failed: {:?}", f.error))
    .context("native import")?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "stored": report.stored,
            "pages": report.pages,
            "rejected": report.rejected.len(),
            "complete": report.complete,
            "seconds": seconds,
        })
    );
    Ok(())
}
