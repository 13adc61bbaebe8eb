//! A scriptable fake TAXII server: TAXII 2.1 and 2.0 served from memory on
//! 127.0.0.1, on a thread and runtime of its own, recording every request.
//!
//! A [`Script`] says what it holds and how it behaves: which versions it
//! speaks, which of the two paging designs it uses for TAXII 2.1
//! (medallion's consuming `next` session, or a stateless keyset token, or
//! no `next` at all), how it answers TAXII 2.0 ranges, and each way a real
//! server misbehaves ([`Quirks`], [`Fault`]). Tests change the script while
//! the server runs with [`FakeTaxii::edit`], and assert on
//! [`FakeTaxii::requests`].
//!
//! Routes: discovery at `/taxii2/` (2.1) and `/taxii/` (2.0), the API root
//! `/{api_root}/`, `/{api_root}/collections/`, a collection, and its
//! `objects/`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};

use crate::http_server::{Handler, LocalServer, Received, Reply};

mod objects;
mod script;

pub use script::{
    COLLECTION_ID, Collection, DateHeader, Entry, Fault, FaultKind, Paging, Quirks, RangeSpellings,
    Ranges, Script, Speaks, date_added,
};

/// The TAXII 2.1 media type.
pub const TAXII_21: &str = "application/taxii+json;version=2.1";
/// The TAXII 2.0 media type of resources.
pub const TAXII_20: &str = "application/vnd.oasis.taxii+json; version=2.0";
/// The STIX 2.0 media type of TAXII 2.0 objects answers.
pub const STIX_20: &str = "application/vnd.oasis.stix+json; version=2.0";

/// A request the server got, and the status it answered (`None`: the
/// connection was dropped).
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The path.
    pub path: String,
    /// The query parameters, decoded, in order.
    pub params: Vec<(String, String)>,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The status answered.
    pub status: Option<u16>,
}

impl Recorded {
    /// A query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether it asked for objects.
    pub fn is_objects(&self) -> bool {
        self.path.ends_with("/objects/")
    }
}

/// A TAXII version of a request or an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// TAXII 2.1.
    V21,
    /// TAXII 2.0.
    V20,
}

/// A running fake server; stops when dropped.
pub struct FakeTaxii {
    server: LocalServer,
    state: Arc<Mutex<State>>,
}

struct State {
    script: Script,
    base_url: String,
    requests: Vec<Recorded>,
    objects_requests: usize,
    sessions: objects::Sessions,
}

impl FakeTaxii {
    /// Starts a server following `script`.
    pub fn start(script: Script) -> Self {
        let state = Arc::new(Mutex::new(State {
            script,
            base_url: String::new(),
            requests: Vec::new(),
            objects_requests: 0,
            sessions: objects::Sessions::default(),
        }));
        let shared = state.clone();
        let handler: Handler = Arc::new(move |request| {
            let (reply, delay) = lock(&shared).answer(&request);
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                reply
            })
        });
        let server = LocalServer::start(handler);
        lock(&state).base_url = server.base_url();
        Self { server, state }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The API root URL.
    pub fn api_root_url(&self) -> String {
        let api_root = lock(&self.state).script.api_root.clone();
        format!("{}/{api_root}/", self.base_url())
    }

    /// The Collection URL of [`COLLECTION_ID`].
    pub fn collection_url(&self) -> String {
        self.collection_url_of(COLLECTION_ID)
    }

    /// The Collection URL of a collection.
    pub fn collection_url_of(&self, id: &str) -> String {
        format!("{}collections/{id}/", self.api_root_url())
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    /// The objects requests so far.
    pub fn objects_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(Recorded::is_objects)
            .collect()
    }

    /// Changes the script (or the data) of the running server.
    pub fn edit<R>(&self, change: impl FnOnce(&mut Script) -> R) -> R {
        change(&mut lock(&self.state).script)
    }

    /// Forgets the requests recorded so far (the fault counter included).
    pub fn clear_requests(&self) {
        let mut state = lock(&self.state);
        state.requests.clear();
        state.objects_requests = 0;
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    fn answer(&mut self, request: &Received) -> (Reply, Duration) {
        let params: Vec<(String, String)> =
            url::form_urlencoded::parse(request.query.as_deref().unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        let mut recorded = Recorded {
            path: request.path.clone(),
            params,
            headers: request.headers.clone(),
            status: None,
        };
        let (reply, delay) = self.route(&recorded);
        if let Reply::Respond { status, .. } = &reply {
            recorded.status = Some(*status);
        }
        self.requests.push(recorded);
        (reply, delay)
    }

    fn route(&mut self, request: &Recorded) -> (Reply, Duration) {
        if let Some(denied) = self.check_auth(request) {
            return (denied, Duration::ZERO);
        }
        let Some(version) = self.version_of(request) else {
            let status = self.script.quirks.refusal_status;
            let refusal = error(status, "Not Acceptable", "this media type is not served");
            return (refusal, Duration::ZERO);
        };
        let path = request.path.clone();
        let root = format!("/{}/", self.script.api_root);
        let reply = match path.as_str() {
            "/taxii2/" if self.script.speaks != Speaks::V20 => self.discovery(version),
            "/taxii/" if self.script.speaks != Speaks::V21 => self.discovery(version),
            p if p == root => resource(version, self.api_root_info(version)),
            p if p == format!("{root}collections/") => {
                let list: Vec<Value> = self
                    .script
                    .collections
                    .iter()
                    .map(collection_info)
                    .collect();
                resource(version, json!({ "collections": list }))
            }
            p => match p.strip_prefix(&format!("{root}collections/")) {
                Some(rest) => return self.collection_route(rest, request, version),
                None => error(404, "Not Found", "no such resource"),
            },
        };
        (self.with_quirks(reply), Duration::ZERO)
    }

    fn collection_route(
        &mut self,
        rest: &str,
        request: &Recorded,
        version: Version,
    ) -> (Reply, Duration) {
        let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let Some(index) = self.script.collections.iter().position(|c| c.id == id) else {
            return (
                error(404, "Not Found", "no such collection"),
                Duration::ZERO,
            );
        };
        let collection = &self.script.collections[index];
        match tail {
            "" => (
                self.with_quirks(resource(version, collection_info(collection))),
                Duration::ZERO,
            ),
            "objects/" if !collection.can_read => (
                error(403, "Forbidden", "the collection cannot be read"),
                Duration::ZERO,
            ),
            "objects/" => {
                let at = self.objects_requests;
                self.objects_requests += 1;
                let reply = match version {
                    Version::V21 => {
                        objects::page_21(&self.script, &mut self.sessions, index, request)
                    }
                    Version::V20 => objects::page_20(&self.script, index, request),
                };
                (
                    self.with_fault(at, self.with_quirks(reply)),
                    self.script.delay,
                )
            }
            _ => (error(404, "Not Found", "no such resource"), Duration::ZERO),
        }
    }

    fn check_auth(&self, request: &Recorded) -> Option<Reply> {
        use base64::Engine as _;
        let (user, password) = self.script.credentials.as_ref()?;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        if request.header("authorization") == Some(expected.as_str()) {
            return None;
        }
        Some(Reply::Respond {
            status: 401,
            headers: vec![("content-type".into(), "text/html".into())],
            body: b"<html><body>Unauthorized Access</body></html>".to_vec(),
        })
    }

    /// The version a request asks for, if this server answers it.
    fn version_of(&self, request: &Recorded) -> Option<Version> {
        let accept = request.header("accept")?.to_ascii_lowercase();
        let essence = accept
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let asked = match essence.as_str() {
            "application/taxii+json" if accept.contains("2.0") => Version::V20,
            "application/taxii+json" => Version::V21,
            "application/vnd.oasis.taxii+json" | "application/vnd.oasis.stix+json" => Version::V20,
            _ => return None,
        };
        let speaks = matches!(
            (self.script.speaks, asked),
            (Speaks::Both, _) | (Speaks::V21, Version::V21) | (Speaks::V20, Version::V20)
        );
        match asked {
            _ if !speaks => None,
            Version::V21 if self.script.quirks.answer_21_as_20 => Some(Version::V20),
            version => Some(version),
        }
    }

    fn discovery(&self, version: Version) -> Reply {
        let own = format!("{}/{}/", self.base_url, self.script.api_root);
        let roots = self
            .script
            .discovery_roots
            .clone()
            .unwrap_or_else(|| vec![own.clone()]);
        resource(
            version,
            json!({
                "title": "Fake TAXII server",
                "description": "tests/src/fake_taxii.rs",
                "default": roots.first().cloned().unwrap_or(own),
                "api_roots": roots,
            }),
        )
    }

    fn api_root_info(&self, version: Version) -> Value {
        let versions = match version {
            Version::V21 => json!([TAXII_21]),
            Version::V20 => json!(["taxii-2.0"]),
        };
        json!({"title": "Fake API root", "versions": versions, "max_content_length": 104_857_600})
    }

    fn with_quirks(&self, reply: Reply) -> Reply {
        let Some(media) = &self.script.quirks.content_type else {
            return reply;
        };
        match reply {
            Reply::Respond {
                status,
                mut headers,
                body,
            } if status < 300 => {
                headers.retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
                headers.push(("content-type".into(), media.clone()));
                Reply::Respond {
                    status,
                    headers,
                    body,
                }
            }
            other => other,
        }
    }

    fn with_fault(&self, index: usize, reply: Reply) -> Reply {
        match self.script.faults.iter().find(|f| f.at == index) {
            Some(Fault {
                kind: FaultKind::Status(status),
                ..
            }) => error(
                *status,
                "Fault injected",
                "the test server failed on purpose",
            ),
            Some(Fault {
                kind: FaultKind::Drop,
                ..
            }) => Reply::Drop,
            None => reply,
        }
    }
}

fn collection_info(collection: &Collection) -> Value {
    json!({
        "id": collection.id,
        "title": collection.title,
        "can_read": collection.can_read,
        "can_write": collection.can_write,
        "media_types": ["application/stix+json;version=2.1"],
    })
}

/// A TAXII resource in `version`'s media type.
fn resource(version: Version, body: Value) -> Reply {
    let media = match version {
        Version::V21 => TAXII_21,
        Version::V20 => TAXII_20,
    };
    json_reply(200, media, &body, Vec::new())
}

fn json_reply(status: u16, media: &str, body: &Value, mut headers: Vec<(String, String)>) -> Reply {
    headers.insert(0, ("content-type".into(), media.into()));
    Reply::Respond {
        status,
        headers,
        body: body.to_string().into_bytes(),
    }
}

/// A TAXII error message.
fn error(status: u16, title: &str, description: &str) -> Reply {
    let body =
        json!({"title": title, "description": description, "http_status": status.to_string()});
    json_reply(status, TAXII_21, &body, Vec::new())
}
