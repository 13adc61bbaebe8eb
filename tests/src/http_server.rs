//! A small HTTP/1 server on 127.0.0.1 for the test servers of this crate
//! (the fake TAXII server, the flaky proxy): its own thread and tokio
//! runtime, a handler that answers or drops each request, and a stop when
//! dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

/// A request as a handler sees it.
#[derive(Debug, Clone)]
pub struct Received {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, percent-encoded as sent.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Received {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a handler does with a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answer it.
    Respond {
        /// The status.
        status: u16,
        /// Headers.
        headers: Vec<(String, String)>,
        /// The body.
        body: Vec<u8>,
    },
    /// Close the connection without an answer.
    Drop,
}

/// The future a handler returns.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// Answers requests.
pub type Handler = Arc<dyn Fn(Received) -> ReplyFuture + Send + Sync>;

/// A running server; stops when dropped.
pub struct LocalServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl LocalServer {
    /// Starts serving on a free port of 127.0.0.1.
    pub fn start(handler: Handler) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("cannot bind 127.0.0.1");
        listener
            .set_nonblocking(true)
            .expect("cannot make the listener non-blocking");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (shutdown, stop) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("test-server-{}", addr.port()))
            .spawn(move || serve(listener, handler, stop))
            .expect("cannot start the server thread");
        Self {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: std::net::TcpListener, handler: Handler, mut stop: oneshot::Receiver<()>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot build the server runtime");
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::from_std(listener).expect("cannot adopt the listener");
        loop {
            let stream = tokio::select! {
                _ = &mut stop => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| answer(handler.clone(), request));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    // Dropping the runtime cancels the connections still open.
}

/// Hyper closes the connection when a service fails: that is [`Reply::Drop`].
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

async fn answer(
    handler: Handler,
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Dropped> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let received = Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(String::from),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect(),
        body,
    };
    match handler(received).await {
        Reply::Drop => Err(Dropped),
        Reply::Respond {
            status,
            headers,
            body,
        } => {
            let mut response = hyper::Response::builder().status(status);
            for (name, value) in headers {
                response = response.header(name, value);
            }
            Ok(response
                .body(Full::new(Bytes::from(body)))
                .expect("test servers build valid responses"))
        }
    }
}
