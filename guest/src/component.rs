//! The component: exports `taxii:feed/importer` and implements the plugin's
//! [`Transport`] and [`EventStore`] over `wasi:http` and `wasi:keyvalue`.
//! This is the only module that touches the generated bindings.

use std::time::Duration;

use crate::config::FeedConfig;
use crate::discovery::{self, ResourceKind};
use crate::http::{self, FollowRedirects, Transport, TransportError};
use crate::report::{self, ImportError, NoteLevel};
use crate::store::{EventStore, StoreError};
use crate::{PLUGIN_NAME, PLUGIN_VERSION};

mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "taxii:feed/feed-plugin",
        generate_all,
    });
}

use bindings::exports::taxii::feed::importer::Guest;
use bindings::taxii::feed::types as wit;
use bindings::wasi::http::outgoing_handler;
use bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use bindings::wasi::io::streams::StreamError;
use bindings::wasi::keyvalue::{batch, store};

/// Largest response body the plugin reads; a host may set a lower limit.
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;
/// Bytes asked for per read of a response body.
const READ_CHUNK: u64 = 256 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Generous: some servers compute a whole query before the first page.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(300);
const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(60);

struct Plugin;

bindings::export!(Plugin with_types_in bindings);

impl Guest for Plugin {
    fn describe() -> wit::PluginInfo {
        wit::PluginInfo {
            name: PLUGIN_NAME.into(),
            version: PLUGIN_VERSION.into(),
            taxii_versions: vec!["2.1".into(), "2.0".into()],
            stix_versions: vec!["2.0".into(), "2.1".into()],
            features: [
                "match-version-all",
                "cursor",
                "quarantine",
                "stix20-to-21",
                "version-negotiation",
                "range-paging",
                "resume-from-cursor",
                "discover",
            ]
            .map(String::from)
            .into(),
        }
    }

    fn validate_config(config: wit::FeedConfig) -> Result<(), Vec<wit::ConfigProblem>> {
        FeedConfig::from(config)
            .validate()
            .map(drop)
            .map_err(|problems| {
                problems
                    .into_iter()
                    .map(|p| wit::ConfigProblem {
                        field: p.field.into(),
                        message: p.message,
                    })
                    .collect()
            })
    }

    fn import_any_intel(config: wit::FeedConfig) -> Result<wit::RunReport, wit::ImportFailure> {
        let config = FeedConfig::from(config);
        let bucket = match store::open("") {
            Ok(bucket) => bucket,
            Err(e) => {
                return Err(wit::ImportFailure {
                    error: wit::ImportError::Store(format!("cannot open the event store: {e:?}")),
                    progress: report::RunReport::default().into(),
                });
            }
        };
        crate::import_any_intel(&config, FollowRedirects(WasiHttp), KeyValue(bucket))
            .map(Into::into)
            .map_err(|failure| wit::ImportFailure {
                error: failure.error.into(),
                progress: failure.progress.into(),
            })
    }

    fn discover(
        url: String,
        follow_other_origins: bool,
    ) -> Result<wit::Discovery, wit::ImportError> {
        crate::discover(&url, follow_other_origins, FollowRedirects(WasiHttp))
            .map(Into::into)
            .map_err(Into::into)
    }
}

/// HTTP over `wasi:http/outgoing-handler`.
struct WasiHttp;

impl Transport for WasiHttp {
    fn get(&mut self, request: &http::Request) -> Result<http::Response, TransportError> {
        let url = &request.url;
        let headers: Vec<(String, Vec<u8>)> = request
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), v.clone().into_bytes()))
            .collect();
        let fields = Fields::from_list(&headers)
            .map_err(|e| TransportError::Other(format!("bad request header: {e:?}")))?;
        let outgoing = OutgoingRequest::new(fields);
        let scheme = if url.scheme() == "https" {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        };
        let set = outgoing.set_method(&Method::Get).is_ok()
            && outgoing.set_scheme(Some(&scheme)).is_ok()
            && outgoing.set_authority(Some(&authority)).is_ok()
            && outgoing.set_path_with_query(Some(&path)).is_ok();
        if !set {
            return Err(TransportError::Other(format!(
                "cannot build a request for {url}"
            )));
        }
        // Finish the (empty) body before handing the request over, so that
        // no runtime sees a GET whose body is still open.
        // See: https://github.com/bytecodealliance/wasmtime/issues/9653
        let body = outgoing
            .body()
            .map_err(|()| TransportError::Other("request body already taken".into()))?;
        OutgoingBody::finish(body, None)
            .map_err(|e| TransportError::Other(format!("cannot finish the request: {e:?}")))?;

        let future =
            outgoing_handler::handle(outgoing, Some(request_options())).map_err(error_code)?;
        future.subscribe().block();
        let response = future
            .get()
            .ok_or_else(|| TransportError::Other("response not ready after waiting".into()))?
            .map_err(|()| TransportError::Other("response already taken".into()))?
            .map_err(error_code)?;

        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let body = response
            .consume()
            .map_err(|()| TransportError::Other("response body already taken".into()))?;
        let bytes = read_body(&body)?;
        drop(IncomingBody::finish(body));
        Ok(http::Response {
            status,
            headers,
            body: bytes,
            redirected_to: None,
        })
    }

    fn pause(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

fn request_options() -> RequestOptions {
    let options = RequestOptions::new();
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    // A runtime that does not support a timeout refuses it; the defaults
    // of that runtime then apply.
    let _ = options.set_connect_timeout(Some(nanos(CONNECT_TIMEOUT)));
    let _ = options.set_first_byte_timeout(Some(nanos(FIRST_BYTE_TIMEOUT)));
    let _ = options.set_between_bytes_timeout(Some(nanos(BETWEEN_BYTES_TIMEOUT)));
    options
}

fn read_body(body: &IncomingBody) -> Result<Vec<u8>, TransportError> {
    let stream = body
        .stream()
        .map_err(|()| TransportError::Other("response stream already taken".into()))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => {
                if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(TransportError::TooLarge(format!(
                        "the body is over {} MiB",
                        MAX_BODY_BYTES / (1024 * 1024)
                    )));
                }
                bytes.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => return Ok(bytes),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(TransportError::Unreachable(format!(
                    "reading the response failed: {}",
                    e.to_debug_string()
                )));
            }
        }
    }
}

fn error_code(code: ErrorCode) -> TransportError {
    match code {
        ErrorCode::HttpRequestDenied => {
            TransportError::Denied("the host's egress policy does not allow it".into())
        }
        ErrorCode::DestinationIpProhibited => {
            TransportError::Denied("the host does not let this feed reach that address".into())
        }
        ErrorCode::DnsTimeout
        | ErrorCode::DnsError(_)
        | ErrorCode::DestinationNotFound
        | ErrorCode::DestinationUnavailable
        | ErrorCode::DestinationIpUnroutable
        | ErrorCode::ConnectionRefused
        | ErrorCode::ConnectionTerminated
        | ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::ConnectionLimitReached
        | ErrorCode::HttpResponseTimeout => {
            TransportError::Unreachable(format!("{} ({code:?})", unreachable_reason(&code)))
        }
        ErrorCode::HttpResponseBodySize(_) | ErrorCode::HttpResponseContentCoding(_) => {
            TransportError::TooLarge(format!("{code:?}"))
        }
        other => TransportError::Other(format!("{other:?}")),
    }
}

/// What a failure to reach the server means, in a reader's words; the
/// code itself follows in the message for whoever needs it.
fn unreachable_reason(code: &ErrorCode) -> &'static str {
    match code {
        ErrorCode::DnsTimeout | ErrorCode::DnsError(_) | ErrorCode::DestinationNotFound => {
            "the server's name could not be resolved: check the host name in the URL"
        }
        ErrorCode::ConnectionRefused => {
            "the connection was refused: check the port, and that the server is running"
        }
        ErrorCode::ConnectionTimeout => "connecting to the server timed out",
        ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => {
            "the server stopped answering within the response timeout"
        }
        ErrorCode::ConnectionTerminated => "the server closed the connection before answering",
        _ => "the server could not be reached",
    }
}

/// The event store over the `wasi:keyvalue` bucket the host opened for us.
struct KeyValue(store::Bucket);

fn kv_error(e: store::Error) -> StoreError {
    StoreError(match e {
        store::Error::NoSuchStore => "no such store".into(),
        store::Error::AccessDenied => "access denied".into(),
        store::Error::Other(m) => m,
    })
}

impl EventStore for KeyValue {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(key).map_err(kv_error)
    }

    fn exists(&mut self, key: &str) -> Result<bool, StoreError> {
        self.0.exists(key).map_err(kv_error)
    }

    /// One `get-many` per page instead of an `exists` per object: the
    /// host answers the page's keys in one read. Keys already stored come
    /// back with their values, which are dropped here; on a first import
    /// (the common case) none do.
    fn exists_many(&mut self, keys: &[String]) -> Result<Vec<bool>, StoreError> {
        // The import checks that every key was answered, whatever the store.
        let found = batch::get_many(&self.0, keys).map_err(kv_error)?;
        Ok(found.iter().map(Option::is_some).collect())
    }

    fn set_many(&mut self, entries: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        batch::set_many(&self.0, &entries).map_err(kv_error)
    }
}

impl From<wit::FeedConfig> for FeedConfig {
    fn from(c: wit::FeedConfig) -> Self {
        Self {
            name: c.name,
            collection_url: c.collection_url,
            page_size: c.page_size,
            object_types: c.object_types,
            added_after: c.added_after,
            max_pages: c.max_pages,
        }
    }
}

impl From<report::RunReport> for wit::RunReport {
    fn from(r: report::RunReport) -> Self {
        Self {
            taxii_version: r.taxii_version,
            pages: r.pages,
            received: r.received,
            stored: r.stored,
            duplicates: r.duplicates,
            rejected_count: r.rejected_count,
            rejected: r
                .rejected
                .into_iter()
                .map(|o| wit::RejectedObject {
                    id: o.id,
                    object_type: o.object_type,
                    reason: o.reason,
                })
                .collect(),
            previous_cursor: r.previous_cursor,
            cursor: r.cursor,
            complete: r.complete,
            notes: r.notes.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<report::Note> for wit::Note {
    fn from(n: report::Note) -> Self {
        Self {
            level: match n.level {
                NoteLevel::Debug => wit::NoteLevel::Debug,
                NoteLevel::Info => wit::NoteLevel::Info,
                NoteLevel::Warn => wit::NoteLevel::Warn,
            },
            message: n.message,
        }
    }
}

impl From<discovery::Discovery> for wit::Discovery {
    fn from(d: discovery::Discovery) -> Self {
        Self {
            url: d.url,
            kind: match d.kind {
                ResourceKind::Discovery => wit::ResourceKind::Discovery,
                ResourceKind::ApiRoot => wit::ResourceKind::ApiRoot,
                ResourceKind::Collections => wit::ResourceKind::Collections,
                ResourceKind::Collection => wit::ResourceKind::Collection,
            },
            taxii_version: d.taxii_version.as_str().into(),
            title: d.title,
            description: d.description,
            api_roots: d.api_roots.into_iter().map(Into::into).collect(),
            notes: d.notes.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<discovery::ApiRoot> for wit::ApiRootInfo {
    fn from(r: discovery::ApiRoot) -> Self {
        Self {
            url: r.url,
            title: r.title,
            description: r.description,
            versions: r.versions,
            followed: r.followed,
            problem: r.problem,
            collections: r
                .collections
                .into_iter()
                .map(|c| wit::CollectionInfo {
                    id: c.id,
                    title: c.title,
                    description: c.description,
                    can_read: c.can_read,
                    can_write: c.can_write,
                    media_types: c.media_types,
                    collection_url: c.collection_url,
                })
                .collect(),
        }
    }
}

impl From<ImportError> for wit::ImportError {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::InvalidConfig(m) => Self::InvalidConfig(m),
            ImportError::Unauthorized(m) => Self::Unauthorized(m),
            ImportError::Forbidden(m) => Self::Forbidden(m),
            ImportError::NotFound(m) => Self::NotFound(m),
            ImportError::RateLimited {
                retry_after_seconds,
                message,
            } => Self::RateLimited(wit::RateLimit {
                retry_after_seconds,
                message,
            }),
            ImportError::Unavailable(m) => Self::Unavailable(m),
            ImportError::MalformedResponse(m) => Self::MalformedResponse(m),
            ImportError::UnsupportedVersion(m) => Self::UnsupportedVersion(m),
            ImportError::Denied(m) => Self::Denied(m),
            ImportError::Store(m) => Self::Store(m),
            ImportError::Other(m) => Self::Other(m),
        }
    }
}
