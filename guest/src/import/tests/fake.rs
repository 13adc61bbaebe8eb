//! An in-process TAXII server for the paging tests: a collection served
//! from memory over TAXII 2.1 (envelopes, `limit`/`next`) or 2.0 (bundles,
//! `Range`), recording every request.

use serde_json::{Value, json};
use url::Url;

use crate::http::{Request, Response, Transport, TransportError};
use crate::taxii::range::RangeSpelling;
use crate::taxii::{STIX_20, TAXII_20, TAXII_21};

/// The versions the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaks {
    V21,
    V20,
}

/// A collection served from memory.
pub struct FakeServer {
    /// (date_added, object), in date_added order.
    pub objects: Vec<(String, Value)>,
    pub can_read: bool,
    pub speaks: Speaks,
    pub requests: Vec<Request>,
    /// Answer this status to the objects request with this index.
    pub fail_at: Option<(usize, u16)>,
    /// Leave out `next` (servers that expect `added_after` paging).
    pub no_next: bool,
    /// `added_after` includes objects added at that very time.
    pub inclusive: bool,
    /// Always answer the first page, with `more: true` and the same `next`.
    pub stuck: bool,
    /// `next` is a server-side session that moves on each time it is
    /// used, as medallion's does; otherwise it is the offset to go on from.
    pub consuming: bool,
    /// Position of each consuming session, by token.
    pub sessions: Vec<usize>,
    /// The one Range spelling a 2.0 server accepts (None: both).
    pub range_spelling: Option<RangeSpelling>,
    /// Whether 2.0 answers say how many items there are.
    pub total_known: bool,
}

pub fn indicator(n: usize, modified: &str) -> Value {
    json!({
        "type": "indicator",
        "spec_version": "2.1",
        "id": format!("indicator--00000000-0000-4000-8000-{n:012}"),
        "created": "2024-01-01T00:00:00.000Z",
        "modified": modified,
        "pattern": "[ipv4-addr:value = '203.0.113.1']",
        "pattern_type": "stix",
        "valid_from": "2024-01-01T00:00:00Z"
    })
}

pub fn date_added(n: usize) -> String {
    format!("2024-03-01T00:00:{:02}.{:06}Z", n / 1000, n % 1000)
}

impl FakeServer {
    pub fn with_indicators(count: usize) -> Self {
        let objects = (0..count)
            .map(|n| (date_added(n), indicator(n, "2024-01-01T00:00:00.000Z")))
            .collect();
        Self {
            objects,
            can_read: true,
            speaks: Speaks::V21,
            requests: Vec::new(),
            fail_at: None,
            no_next: false,
            inclusive: false,
            stuck: false,
            consuming: false,
            sessions: Vec::new(),
            range_spelling: None,
            total_known: true,
        }
    }

    pub fn add(&mut self, object: Value) {
        let n = self.objects.len();
        self.objects.push((date_added(n), object));
    }

    /// Adds an object with the same `date_added` as the last one.
    pub fn add_at_last_date(&mut self, object: Value) {
        let last = self
            .objects
            .last()
            .map(|(d, _)| d.clone())
            .unwrap_or_default();
        self.objects.push((last, object));
    }

    pub fn objects_requests(&self) -> Vec<&Request> {
        self.requests
            .iter()
            .filter(|r| r.url.path().ends_with("/objects/"))
            .collect()
    }

    fn matching(&self, url: &Url) -> Vec<(String, Value)> {
        let after = param(url, "added_after");
        self.objects
            .iter()
            .filter(|(added, _)| match &after {
                Some(a) if self.inclusive => added >= a,
                Some(a) => added > a,
                None => true,
            })
            .cloned()
            .collect()
    }

    fn objects_21(&mut self, url: &Url) -> Response {
        let limit: usize = param(url, "limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(100);
        let matching = self.matching(url);
        let token = param(url, "next");
        let start = match (&token, self.consuming) {
            _ if self.stuck => 0,
            (None, _) => 0,
            (Some(t), false) => t.parse().unwrap_or(0),
            (Some(t), true) => self.sessions[t.parse::<usize>().unwrap_or(0)],
        };
        let page: Vec<_> = matching.iter().skip(start).take(limit).collect();
        let end = start + page.len();
        let more = self.stuck || end < matching.len();
        let mut body = json!({
            "more": more,
            "objects": page.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>(),
        });
        if more && !self.no_next {
            body["next"] = json!(match (token, self.consuming) {
                _ if self.stuck => "0".to_string(),
                (Some(t), true) => {
                    self.sessions[t.parse::<usize>().unwrap_or(0)] = end;
                    t
                }
                (None, true) => {
                    self.sessions.push(end);
                    (self.sessions.len() - 1).to_string()
                }
                (_, false) => end.to_string(),
            });
        }
        let mut headers = vec![("Content-Type".into(), TAXII_21.into())];
        if let Some((last, _)) = page.last() {
            headers.push(("X-TAXII-Date-Added-Last".into(), last.clone()));
        }
        response(200, headers, body)
    }

    fn objects_20(&mut self, request: &Request) -> Response {
        let range = header(request, "range").unwrap_or_default();
        let spelled = |s: RangeSpelling| {
            let prefix = if s == RangeSpelling::Space {
                "items "
            } else {
                "items="
            };
            range.strip_prefix(prefix)
        };
        let span = match self.range_spelling {
            Some(only) => spelled(only),
            None => spelled(RangeSpelling::Space).or_else(|| spelled(RangeSpelling::Equals)),
        };
        let Some((first, last)) = span.and_then(|s| s.split_once('-')) else {
            return response(400, Vec::new(), json!({"title": "bad range"}));
        };
        let (first, last): (usize, usize) = (first.parse().unwrap(), last.parse().unwrap());
        let matching = self.matching(&request.url);
        if first >= matching.len() {
            return response(416, Vec::new(), json!({"title": "range not satisfiable"}));
        }
        let page: Vec<_> = matching.iter().skip(first).take(last - first + 1).collect();
        let total = if self.total_known {
            matching.len().to_string()
        } else {
            "*".into()
        };
        let mut headers = vec![
            ("Content-Type".into(), STIX_20.into()),
            (
                "Content-Range".into(),
                format!("items {first}-{}/{total}", first + page.len() - 1),
            ),
        ];
        if let Some((last, _)) = page.last() {
            headers.push(("X-TAXII-Date-Added-Last".into(), last.clone()));
        }
        let body = json!({
            "type": "bundle",
            "id": "bundle--00000000-0000-4000-8000-000000000000",
            "spec_version": "2.0",
            "objects": page.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>(),
        });
        response(206, headers, body)
    }

    fn version_of(&self, request: &Request) -> Option<&'static str> {
        let accept = header(request, "accept").unwrap_or_default();
        let v21 = accept == TAXII_21;
        let v20 = accept == TAXII_20 || accept == STIX_20;
        match self.speaks {
            Speaks::V21 if v21 => Some("2.1"),
            Speaks::V20 if v20 => Some("2.0"),
            _ => None,
        }
    }
}

impl Transport for FakeServer {
    fn get(&mut self, request: &Request) -> Result<Response, TransportError> {
        self.requests.push(request.clone());
        let Some(version) = self.version_of(request) else {
            return Ok(response(
                406,
                Vec::new(),
                json!({"title": "not acceptable"}),
            ));
        };
        if !request.url.path().ends_with("/objects/") {
            let body = json!({"id": "c1", "title": "Intel", "can_read": self.can_read});
            let media = if version == "2.1" { TAXII_21 } else { TAXII_20 };
            return Ok(response(
                200,
                vec![("content-type".into(), media.into())],
                body,
            ));
        }
        let index = self.objects_requests().len() - 1;
        if let Some((at, status)) = self.fail_at
            && at == index
        {
            let headers = vec![("Retry-After".into(), "30".into())];
            return Ok(response(status, headers, json!({"title": "try later"})));
        }
        Ok(match version {
            "2.1" => self.objects_21(&request.url),
            _ => self.objects_20(request),
        })
    }
}

pub fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub fn header<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn response(status: u16, headers: Vec<(String, String)>, body: Value) -> Response {
    Response {
        status,
        headers,
        body: body.to_string().into_bytes(),
        redirected_to: None,
    }
}
