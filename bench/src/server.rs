//! A static TAXII 2.1 server on 127.0.0.1: one runtime thread, pages
//! rendered ahead (see [`crate::data`]), nothing computed per request but a
//! copy and a few writes.
//!
//! Routes, for each collection `{id}`: `/taxii2/` (discovery), `/api/`,
//! `/api/collections/`, `/api/collections/{id}/` and
//! `/api/collections/{id}/objects/?limit=1000[&next=N]`. `next` is the page
//! index. Each page carries `X-TAXII-Date-Added-First` and `-Last`: page `p`
//! was "added" at 2026-01-01T00:00:00Z plus `p` seconds. Filters other than
//! `match[version]` are refused with 400 so that a client that sends one is
//! noticed, not silently served the wrong objects.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::data::{PAGE_SIZE, Pages};

/// The TAXII 2.1 media type.
pub const TAXII_21: &str = "application/taxii+json;version=2.1";

/// What the server served: for MB/s.
#[derive(Default)]
pub struct Served {
    /// Body bytes of objects pages.
    pub page_bytes: AtomicU64,
    /// Objects pages answered.
    pub pages: AtomicU64,
    /// Requests answered (any route).
    pub requests: AtomicU64,
}

/// A running server; the process ends it.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Counters.
    pub served: Arc<Served>,
}

impl Server {
    /// The Collection URL of `id`.
    pub fn collection_url(&self, id: &str) -> String {
        format!("{}/api/collections/{id}/", self.base)
    }
}

/// Starts serving `collections` (id to pages) on a thread of its own.
pub fn start(collections: HashMap<String, Pages>) -> Result<Server> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let base = format!("http://{}", listener.local_addr()?);
    let served = Arc::new(Served::default());
    let state = Arc::new(State {
        collections,
        served: served.clone(),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("bench-taxii-server".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let state = state.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |request| {
                            let state = state.clone();
                            async move { Ok::<_, Infallible>(state.answer(&request)) }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })?;
    Ok(Server { base, served })
}

struct State {
    collections: HashMap<String, Pages>,
    served: Arc<Served>,
}

type Reply = Response<Full<Bytes>>;

impl State {
    fn answer(&self, request: &Request<Incoming>) -> Reply {
        self.served.requests.fetch_add(1, Ordering::Relaxed);
        let path = request.uri().path();
        let query = request.uri().query().unwrap_or("");
        match path {
            "/taxii2/" => resource(discovery().to_string()),
            "/api/" => resource(api_root().to_string()),
            "/api/collections/" => {
                let list: Vec<_> = self.collections.keys().map(|id| info(id)).collect();
                resource(serde_json::json!({ "collections": list }).to_string())
            }
            _ => {
                let Some(rest) = path.strip_prefix("/api/collections/") else {
                    return error(StatusCode::NOT_FOUND, "no such resource");
                };
                let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
                let Some(pages) = self.collections.get(id) else {
                    return error(StatusCode::NOT_FOUND, "no such collection");
                };
                match tail {
                    "" => resource(info(id).to_string()),
                    "objects/" => self.objects(pages, query),
                    _ => error(StatusCode::NOT_FOUND, "no such resource"),
                }
            }
        }
    }

    fn objects(&self, pages: &Pages, query: &str) -> Reply {
        let mut index = 0;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "limit" if value.parse::<usize>().ok() == Some(PAGE_SIZE) => {}
                "limit" => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "this benchmark server serves pages of 1000 objects only: send limit=1000",
                    );
                }
                "next" => match value.parse::<usize>() {
                    Ok(n) => index = n,
                    Err(_) => return error(StatusCode::BAD_REQUEST, "next is a page index"),
                },
                "match%5Bversion%5D" | "match[version]" => {}
                other => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("this benchmark server does not filter by {other}"),
                    );
                }
            }
        }
        let Some(body) = pages.page(index) else {
            return error(StatusCode::NOT_FOUND, "no such page");
        };
        self.served
            .page_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        self.served.pages.fetch_add(1, Ordering::Relaxed);
        let added = date_added(index);
        Response::builder()
            .header("content-type", TAXII_21)
            .header("x-taxii-date-added-first", &added)
            .header("x-taxii-date-added-last", &added)
            .body(Full::new(body))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    }
}

/// When page `index` was added: 2026-01-01T00:00:00Z plus `index` seconds.
pub fn date_added(index: usize) -> String {
    let (h, m, s) = (index / 3600, (index / 60) % 60, index % 60);
    let (day, h) = (1 + h / 24, h % 24);
    format!("2026-01-{day:02}T{h:02}:{m:02}:{s:02}.000000Z")
}

/// The discovery resource: one API root, `/api/`.
pub fn discovery() -> serde_json::Value {
    serde_json::json!({
        "title": "taxii-feed benchmark server",
        "default": "/api/",
        "api_roots": ["/api/"],
    })
}

/// The API root resource.
pub fn api_root() -> serde_json::Value {
    serde_json::json!({
        "title": "bench",
        "versions": [TAXII_21],
        "max_content_length": 104_857_600,
    })
}

/// The collection resource of `id`.
pub fn info(id: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "title": format!("bench {id}"),
        "can_read": true,
        "can_write": false,
        "media_types": ["application/stix+json;version=2.1"],
    })
}

fn resource(body: String) -> Reply {
    Response::builder()
        .header("content-type", TAXII_21)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn error(status: StatusCode, description: &str) -> Reply {
    let body = serde_json::json!({
        "title": status.canonical_reason().unwrap_or("error"),
        "description": description,
        "http_status": status.as_str(),
    });
    Response::builder()
        .status(status)
        .header("content-type", TAXII_21)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_dates_increase_and_stay_valid() {
        assert_eq!(date_added(0), "2026-01-01T00:00:00.000000Z");
        assert_eq!(date_added(3661), "2026-01-01T01:01:01.000000Z");
        assert_eq!(date_added(86_400 + 59), "2026-01-02T00:00:59.000000Z");
        assert!(date_added(999) < date_added(1000));
    }
}
