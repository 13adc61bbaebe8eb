//! A small HTTP proxy for tests, between a client and a real server
//! (medallion): it forwards every request and, when told, loses the answer
//! to one objects request after the server gave it, as a failing load
//! balancer does. The server has then moved on (medallion's `next` session
//! served that page), while the client sees a 502.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::http_server::{Handler, LocalServer, Received, Reply};

/// Response headers passed back to the client.
const PASSED_HEADERS: [&str; 4] = [
    "content-type",
    "content-range",
    "x-taxii-date-added-first",
    "x-taxii-date-added-last",
];

/// A request the proxy saw and what it did with it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Path and query, as sent.
    pub target: String,
    /// The query parameters, decoded.
    pub params: Vec<(String, String)>,
    /// The upstream's status.
    pub upstream_status: u16,
    /// The status the client got.
    pub status: u16,
}

impl Seen {
    /// A query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether it asked for objects.
    pub fn is_objects(&self) -> bool {
        self.target
            .split('?')
            .next()
            .unwrap_or_default()
            .ends_with("/objects/")
    }
}

#[derive(Default)]
struct State {
    lose: Vec<usize>,
    objects_requests: usize,
    seen: Vec<Seen>,
}

/// A running proxy; stops when dropped.
pub struct FlakyProxy {
    server: LocalServer,
    upstream: String,
    state: Arc<Mutex<State>>,
}

impl FlakyProxy {
    /// A proxy to `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let base = upstream.trim_end_matches('/').to_string();
        let target = base.clone();
        let handler: Handler = Arc::new(move |request| {
            let shared = shared.clone();
            let target = target.clone();
            Box::pin(async move {
                tokio::task::spawn_blocking(move || forward(&target, &shared, &request))
                    .await
                    .unwrap_or(Reply::Drop)
            })
        });
        Self {
            server: LocalServer::start(handler),
            upstream: base,
            state,
        }
    }

    /// The same URL through the proxy.
    pub fn url_for(&self, upstream_url: &str) -> String {
        upstream_url.replacen(&self.upstream, &self.server.base_url(), 1)
    }

    /// Loses the answer to the objects request with this index (from 0).
    pub fn lose_objects_answer(&self, index: usize) {
        lock(&self.state).lose.push(index);
    }

    /// What the proxy saw so far.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.state).seen.clone()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn forward(upstream: &str, state: &Mutex<State>, request: &Received) -> Reply {
    let target = match &request.query {
        Some(query) => format!("{}?{query}", request.path),
        None => request.path.clone(),
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut call = agent.get(&format!("{upstream}{target}"));
    for name in ["accept", "authorization", "range"] {
        if let Some(value) = request.header(name) {
            call = call.header(name, value);
        }
    }
    let Ok(mut response) = call.call() else {
        return Reply::Drop;
    };
    let upstream_status = response.status().as_u16();
    let headers: Vec<(String, String)> = PASSED_HEADERS
        .iter()
        .filter_map(|name| {
            let value = response.headers().get(*name)?.to_str().ok()?;
            Some((name.to_string(), value.to_string()))
        })
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(512 * 1024 * 1024)
        .read_to_vec()
        .unwrap_or_default();
    let mut seen = Seen {
        params: url::form_urlencoded::parse(
            request.query.as_deref().unwrap_or_default().as_bytes(),
        )
        .into_owned()
        .collect(),
        target,
        upstream_status,
        status: upstream_status,
    };
    let mut state = lock(state);
    if seen.is_objects() {
        let index = state.objects_requests;
        state.objects_requests += 1;
        if state.lose.contains(&index) {
            seen.status = 502;
            state.seen.push(seen);
            return Reply::Respond {
                status: 502,
                headers: vec![("content-type".into(), "text/html".into())],
                body: b"<html><body>502 Bad Gateway</body></html>".to_vec(),
            };
        }
    }
    state.seen.push(seen);
    Reply::Respond {
        status: upstream_status,
        headers,
        body,
    }
}
