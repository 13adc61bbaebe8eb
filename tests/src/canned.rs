//! A canned HTTP or HTTPS server on 127.0.0.1: fixed answers by path,
//! every request recorded. For tests that need a server to say one thing
//! (a redirect, a page over TLS), not a TAXII implementation.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// One canned answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Answer {
    /// A TAXII 2.1 JSON answer.
    pub fn taxii(body: serde_json::Value) -> Self {
        Self {
            status: 200,
            headers: vec![(
                "Content-Type".into(),
                "application/taxii+json;version=2.1".into(),
            )],
            body: body.to_string().into_bytes(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// A redirect.
    pub fn redirect(status: u16, location: &str) -> Self {
        Self {
            status,
            headers: vec![("Location".into(), location.into())],
            body: Vec::new(),
        }
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Path and query.
    pub target: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
}

/// A running canned server; stops when dropped.
pub struct Canned {
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    handshake_failures: Arc<Mutex<u32>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Canned {
    /// Serves `answers` (by path; any query) over plain HTTP.
    pub fn http(answers: HashMap<String, Answer>) -> Self {
        Self::start(answers, None)
    }

    /// Serves `answers` over TLS with this server configuration.
    pub fn https(answers: HashMap<String, Answer>, tls: Arc<rustls::ServerConfig>) -> Self {
        Self::start(answers, Some(tls))
    }

    fn start(answers: HashMap<String, Answer>, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the canned server");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("a local address").port();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handshake_failures = Arc::new(Mutex::new(0));
        let answers = Arc::new(answers);
        let (seen_in, failures_in) = (seen.clone(), handshake_failures.clone());
        runtime.spawn(async move {
            let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (answers, seen) = (answers.clone(), seen_in.clone());
                let (acceptor, failures) = (acceptor.clone(), failures_in.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let answer = answer(&answers, &seen, &request);
                        async move { Ok::<_, Infallible>(answer) }
                    });
                    let builder = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(acceptor) => match acceptor.accept(tcp).await {
                            Ok(stream) => {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                            Err(_) => *failures.lock().unwrap() += 1,
                        },
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        Self {
            base: format!("{scheme}://127.0.0.1:{port}"),
            seen,
            handshake_failures,
            runtime: Some(runtime),
        }
    }

    /// The requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// TLS handshakes that failed.
    pub fn handshake_failures(&self) -> u32 {
        *self.handshake_failures.lock().unwrap()
    }
}

impl Drop for Canned {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn answer(
    answers: &HashMap<String, Answer>,
    seen: &Mutex<Vec<Seen>>,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let target = request
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let headers = request
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    seen.lock().unwrap().push(Seen { target, headers });
    let found = answers
        .get(request.uri().path())
        .cloned()
        .unwrap_or(Answer {
            status: 404,
            headers: vec![],
            body: b"no such path".to_vec(),
        });
    let mut response = Response::builder().status(found.status);
    for (name, value) in &found.headers {
        response = response.header(name, value);
    }
    response
        .body(Full::new(Bytes::from(found.body)))
        .expect("a canned response is valid")
}

/// Answers that make `{base}/api/collections/c1/` a readable TAXII 2.1
/// collection holding `objects` in one page.
pub fn taxii_collection(objects: Vec<serde_json::Value>) -> HashMap<String, Answer> {
    let collection = serde_json::json!({"id": "c1", "title": "Canned", "can_read": true});
    let envelope = serde_json::json!({"more": false, "objects": objects});
    HashMap::from([
        (
            "/api/collections/c1/".to_string(),
            Answer::taxii(collection),
        ),
        (
            "/api/collections/c1/objects/".to_string(),
            Answer::taxii(envelope)
                .with_header("X-TAXII-Date-Added-Last", "2024-06-01T00:00:00.000001Z"),
        ),
    ])
}

/// `count` valid STIX 2.1 indicators.
pub fn indicators(count: usize) -> Vec<serde_json::Value> {
    (0..count)
        .map(|n| {
            serde_json::json!({
                "type": "indicator",
                "spec_version": "2.1",
                "id": format!("indicator--00000000-0000-4000-8000-{n:012}"),
                "created": "2024-01-01T00:00:00.000Z",
                "modified": "2024-01-01T00:00:00.000Z",
                "pattern": "[ipv4-addr:value = '203.0.113.1']",
                "pattern_type": "stix",
                "valid_from": "2024-01-01T00:00:00Z"
            })
        })
        .collect()
}
