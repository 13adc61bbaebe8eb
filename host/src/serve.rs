//! `serve-taxii`: the host's stores as a read-only TAXII 2.1 server.
//!
//! - `/taxii2/` is discovery; it lists one API root per tenant, at
//!   `/{tenant}/`.
//! - Each store of a tenant is a collection of its API root. Its `id` is
//!   a UUID derived from the tenant and store names (stable across
//!   restarts), its `alias` the store's name; URLs take either.
//! - Get Objects, Get an Object, Get Object Versions and Get Manifest take
//!   `limit`, `next`, `added_after` and `match[id|type|version|spec_version]`
//!   as their endpoint allows; `date_added` is when the host committed the
//!   version, and paging is exact (see [`page`]).
//! - Every request needs HTTP Basic credentials: one user, whose password
//!   is read at start from an environment variable or a file. The server
//!   listens on 127.0.0.1 unless told otherwise.
//!
//! Revoked and expired objects are served like the others: a TAXII server
//! hands out what the collection holds.

mod objects;
mod page;
mod routes;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::db::{Database, Location};
use crate::secret::Secret;

pub use self::routes::collection_id;

/// The TAXII 2.1 media type of every answer.
pub const TAXII_MEDIA_TYPE: &str = "application/taxii+json;version=2.1";
/// The media type of the objects of every collection.
pub const STIX_MEDIA_TYPE: &str = "application/stix+json;version=2.1";
/// Where the server listens by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9470";
/// The largest page served by default, whatever `limit` a client asks.
pub const DEFAULT_MAX_PAGE_SIZE: usize = 1000;

/// How the server runs.
#[derive(Debug)]
pub struct ServeConfig {
    /// Where the stores are.
    pub location: Location,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The user clients authenticate as.
    pub user: String,
    /// That user's password.
    pub password: Secret,
    /// The tenants whose API roots are served; empty means every tenant
    /// that has stores.
    pub tenants: Vec<String>,
    /// The largest page served.
    pub max_page_size: usize,
}

/// What every request handler may read.
struct Server {
    location: Location,
    credentials: [u8; 32],
    tenants: Vec<String>,
    max_page_size: usize,
}

impl Server {
    fn db(&self) -> Result<Database> {
        self.location.open()
    }

    /// The tenants served, in order.
    fn tenants(&self, db: &Database) -> Result<Vec<String>> {
        if !self.tenants.is_empty() {
            return Ok(self.tenants.clone());
        }
        Ok(db
            .tenants()?
            .into_iter()
            .filter(|t| t != "taxii2")
            .collect())
    }

    /// Whether the `Authorization` header holds the server's credentials.
    fn authorized(&self, header: Option<&HeaderValue>) -> bool {
        let Some(value) = header.and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some((scheme, encoded)) = value.split_once(' ') else {
            return false;
        };
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim());
        // Digests are compared, not the secret, so the time a comparison
        // takes says nothing about the password.
        scheme.eq_ignore_ascii_case("basic")
            && decoded.is_ok_and(|pair| Sha256::digest(pair).as_slice() == self.credentials)
    }
}

/// An answer, before it becomes an HTTP response.
#[derive(Debug)]
pub(crate) struct Reply {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Reply {
    /// A TAXII resource.
    fn taxii(body: Vec<u8>) -> Self {
        Self {
            status: StatusCode::OK,
            headers: vec![("content-type", TAXII_MEDIA_TYPE.into())],
            body,
        }
    }

    /// A TAXII resource from JSON.
    fn json(value: &serde_json::Value) -> Self {
        Self::taxii(value.to_string().into_bytes())
    }

    /// A TAXII error message.
    fn error(status: StatusCode, title: &str, description: &str) -> Self {
        let body = serde_json::json!({
            "title": title,
            "description": description,
            "http_status": status.as_u16().to_string(),
        });
        Self {
            status,
            ..Self::json(&body)
        }
    }

    fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(self.body)));
        *response.status_mut() = self.status;
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().append(name, value);
            }
        }
        response
    }
}

/// Binds the listener; `announce` is told the address and the URLs
/// served before the first request is taken. Runs until Ctrl-C or
/// SIGTERM.
pub async fn serve(config: ServeConfig, announce: impl FnOnce(&[String])) -> Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    if !address.ip().is_loopback() {
        // TODO(#5): TLS for serve-taxii; until then Basic credentials
        // cross the network in the clear.
        tracing::warn!(%address, "serving beyond this machine over plain HTTP");
    }
    let pair = format!("{}:{}", config.user, config.password.expose());
    let server = Arc::new(Server {
        location: config.location,
        credentials: Sha256::digest(pair.as_bytes()).into(),
        tenants: config.tenants,
        max_page_size: config.max_page_size,
    });
    let base = format!("http://{address}");
    let urls = {
        let server = server.clone();
        let base = base.clone();
        tokio::task::spawn_blocking(move || routes::announced_urls(&server, &base)).await??
    };
    announce(&urls);
    tracing::info!(%address, "serving TAXII 2.1");
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted.context("cannot accept a connection")?,
            () = &mut shutdown => break,
        };
        let server = server.clone();
        let host = base.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                handle(server.clone(), host.clone(), request)
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended");
            }
        });
    }
    tracing::info!("serve-taxii stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => tokio::select! {
                _ = interrupt => {},
                _ = terminate.recv() => {},
            },
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

async fn handle(
    server: Arc<Server>,
    base: String,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let reply = if !server.authorized(request.headers().get(header::AUTHORIZATION)) {
        Reply::error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "this server needs HTTP Basic credentials: give the user and password of serve-taxii",
        )
        .with_header("www-authenticate", r#"Basic realm="taxii-host""#.into())
    } else if !accepts_taxii(request.headers().get(header::ACCEPT)) {
        Reply::error(
            StatusCode::NOT_ACCEPTABLE,
            "Not Acceptable",
            &format!("this server answers only {TAXII_MEDIA_TYPE}: send it in Accept"),
        )
    } else {
        let base = host_base(request.headers().get(header::HOST)).unwrap_or(base);
        let query = request.uri().query().unwrap_or_default().to_string();
        let (method, path) = (method.clone(), path.clone());
        let answer = tokio::task::spawn_blocking(move || {
            routes::route(&server, &base, &method, &path, &query)
        })
        .await;
        answer.unwrap_or_else(|e| {
            tracing::error!(error = %e, "a request handler failed");
            Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Error",
                "see the log",
            )
        })
    };
    tracing::debug!(%method, %path, status = reply.status.as_u16(), "request");
    Ok(reply.into_response())
}

/// `http://{Host}` when the client's `Host` header is a plain host and
/// port, so that the URLs handed out are the ones the client used.
fn host_base(host: Option<&HeaderValue>) -> Option<String> {
    let host = host?.to_str().ok()?;
    let plain = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    plain.then(|| format!("http://{host}"))
}

/// Whether an `Accept` header allows the TAXII 2.1 media type. Media types
/// are compared by their parts, and a missing header accepts anything.
pub fn accepts_taxii(accept: Option<&HeaderValue>) -> bool {
    let Some(accept) = accept.and_then(|a| a.to_str().ok()) else {
        return accept.is_none();
    };
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let essence = parts.next().unwrap_or_default().to_ascii_lowercase();
        let version = parts
            .filter_map(|p| p.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("version"))
            .map(|(_, v)| v.trim().trim_matches('"').to_string());
        match essence.as_str() {
            "*/*" | "application/*" => true,
            "application/taxii+json" => version.is_none_or(|v| v == "2.1"),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str) -> HeaderValue {
        HeaderValue::from_str(value).unwrap()
    }

    #[test]
    fn accepts_the_taxii_media_type_by_its_parts() {
        for ok in [
            "application/taxii+json;version=2.1",
            "application/taxii+json; version=\"2.1\"",
            "Application/TAXII+json",
            "text/html, application/taxii+json;version=2.1;q=0.9",
            "*/*",
        ] {
            assert!(accepts_taxii(Some(&header(ok))), "{ok}");
        }
        assert!(accepts_taxii(None));
        for refused in [
            "application/taxii+json;version=2.0",
            "application/vnd.oasis.taxii+json; version=2.0",
            "application/json",
            "text/html",
        ] {
            assert!(!accepts_taxii(Some(&header(refused))), "{refused}");
        }
    }

    #[test]
    fn checks_basic_credentials_by_digest() {
        let server = Server {
            location: Location::sqlite(std::path::PathBuf::new()),
            credentials: Sha256::digest(b"reader:s3cret").into(),
            tenants: Vec::new(),
            max_page_size: 10,
        };
        let basic = |pair: &str| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            header(&format!("Basic {encoded}"))
        };
        assert!(server.authorized(Some(&basic("reader:s3cret"))));
        assert!(!server.authorized(Some(&basic("reader:s3cret "))));
        assert!(!server.authorized(Some(&basic("other:s3cret"))));
        assert!(!server.authorized(Some(&header("Bearer cmVhZGVyOnMzY3JldA=="))));
        assert!(!server.authorized(Some(&header("Basic !!!"))));
        assert!(!server.authorized(None));
    }

    #[test]
    fn listens_on_the_loopback_address_by_default() {
        let address: SocketAddr = DEFAULT_LISTEN.parse().unwrap();
        assert!(address.ip().is_loopback());
    }

    #[test]
    fn hands_out_urls_for_a_plain_host_header_only() {
        assert_eq!(
            host_base(Some(&header("localhost:9470"))).as_deref(),
            Some("http://localhost:9470")
        );
        assert_eq!(
            host_base(Some(&header("[::1]:80"))).as_deref(),
            Some("http://[::1]:80")
        );
        assert_eq!(host_base(Some(&header("evil.example/x?y"))), None);
        assert_eq!(host_base(None), None);
    }
}
