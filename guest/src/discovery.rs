//! Discovery: what a URL given by a user points at (a discovery resource,
//! an API root, a list of collections or one collection) and the
//! collections behind it, each with the Collection URL to configure.
//!
//! Relative API root URLs are resolved against the URL that listed them.
//! An API root on another origin than the URL given is listed but not read
//! unless following other origins was asked for.

use std::time::SystemTime;

use serde_json::{Map, Value};
use url::Url;

use crate::http::{Request, Response, Transport, TransportError};
use crate::report::{ImportError, Note, NoteLevel};
use crate::taxii::{self, ContentType, TaxiiVersion};
use crate::{PLUGIN_NAME, PLUGIN_VERSION};

mod model;

pub use model::{ApiRoot, CollectionInfo, Discovery, ResourceKind};

/// Where discovery lives on TAXII 2.1 and TAXII 2.0 servers, tried in
/// this order when only an origin is given.
pub const DISCOVERY_PATHS: [&str; 2] = ["/taxii2/", "/taxii/"];

/// Reads `input` and what lies behind it. See the module documentation.
pub fn discover(
    input: &str,
    follow_other_origins: bool,
    http: impl Transport,
) -> Result<Discovery, ImportError> {
    let url = taxii::server_url(input).map_err(ImportError::InvalidConfig)?;
    let mut explorer = Explorer {
        http,
        version: None,
        origin: origin(&url),
        follow_other_origins,
        notes: Vec::new(),
    };
    let (url, body) = explorer.read_start(url)?;
    let kind = model::classify(&url, &body).ok_or_else(|| {
        ImportError::MalformedResponse(format!(
            "{url} is not a TAXII discovery, API root, collections or collection resource: \
             give one of those URLs"
        ))
    })?;
    let api_roots = match kind {
        ResourceKind::Discovery => explorer.read_listed_roots(&url, &body),
        ResourceKind::ApiRoot => vec![explorer.api_root_with(&url, &body)],
        ResourceKind::Collections => {
            let root = model::api_root_of(&url);
            vec![ApiRoot {
                collections: model::collections(&root, &body),
                ..ApiRoot::unread(root)
            }]
        }
        ResourceKind::Collection => {
            let root = model::api_root_of(&url);
            vec![ApiRoot {
                collections: model::collection(&root, &body).into_iter().collect(),
                ..ApiRoot::unread(root)
            }]
        }
    };
    let is_discovery = kind == ResourceKind::Discovery;
    Ok(Discovery {
        url: url.to_string(),
        kind,
        taxii_version: explorer.version.unwrap_or(TaxiiVersion::V21),
        title: model::text(&body, "title").filter(|_| is_discovery),
        description: model::text(&body, "description").filter(|_| is_discovery),
        api_roots,
        notes: explorer.notes,
    })
}

struct Explorer<T> {
    http: T,
    /// The version the server answered in, once known.
    version: Option<TaxiiVersion>,
    origin: String,
    follow_other_origins: bool,
    notes: Vec<Note>,
}

impl<T: Transport> Explorer<T> {
    /// Reads the URL given; for a bare origin, the discovery paths under it.
    fn read_start(&mut self, url: Url) -> Result<(Url, Map<String, Value>), ImportError> {
        if url.path() != "/" {
            let mut url = url;
            taxii::with_trailing_slash(&mut url);
            let body = self.get_json(&url)?;
            return Ok((url, body));
        }
        let mut last = None;
        for path in DISCOVERY_PATHS {
            let candidate = url.join(path).unwrap_or_else(|_| url.clone());
            match self.get_json(&candidate) {
                Ok(body) => return Ok((candidate, body)),
                Err(ImportError::NotFound(message)) => last = Some(message),
                Err(other) => return Err(other),
            }
        }
        Err(ImportError::NotFound(format!(
            "{url} has no TAXII discovery at {}: give the discovery, API root or collection \
             URL ({})",
            DISCOVERY_PATHS.join(" or "),
            last.unwrap_or_default()
        )))
    }

    fn read_listed_roots(&mut self, url: &Url, body: &Map<String, Value>) -> Vec<ApiRoot> {
        let mut roots = Vec::new();
        for listed in model::listed_roots(body) {
            let Ok(mut root) = url.join(&listed) else {
                let message = format!("the API root {listed:?} listed at {url} is not a URL");
                self.note(NoteLevel::Warn, message);
                continue;
            };
            taxii::with_trailing_slash(&mut root);
            if roots.iter().any(|r: &ApiRoot| r.url == root.as_str()) {
                continue;
            }
            roots.push(self.read_api_root(root));
        }
        roots
    }

    fn read_api_root(&mut self, url: Url) -> ApiRoot {
        let here = origin(&url);
        if here != self.origin && !self.follow_other_origins {
            return ApiRoot {
                problem: Some(format!(
                    "on another origin ({here}) than the URL given ({}): not read unless \
                     other origins are followed",
                    self.origin
                )),
                ..ApiRoot::unread(url)
            };
        }
        match self.get_json(&url) {
            Ok(body) => self.api_root_with(&url, &body),
            Err(error) => ApiRoot {
                followed: true,
                problem: Some(error.to_string()),
                ..ApiRoot::unread(url)
            },
        }
    }

    /// An API root whose information is `body`, with its collections read.
    fn api_root_with(&mut self, url: &Url, body: &Map<String, Value>) -> ApiRoot {
        let mut root = model::api_root_info(url, body);
        let Ok(list) = url.join("collections/") else {
            return root;
        };
        match self.get_json(&list) {
            Ok(collections) => root.collections = model::collections(url, &collections),
            Err(error) => root.problem = Some(format!("its collections: {error}")),
        }
        root
    }

    /// GETs a TAXII resource in the version the server speaks: 2.1 first,
    /// 2.0 after a 406 or 415.
    fn get_json(&mut self, url: &Url) -> Result<Map<String, Value>, ImportError> {
        let first = self.version.unwrap_or(TaxiiVersion::V21);
        let mut response = self.get(url, first)?;
        let mut asked = first;
        if matches!(response.status, 406 | 415) {
            asked = first.other();
            response = self.get(url, asked)?;
        }
        if !matches!(response.status, 200 | 206) {
            return Err(taxii::error_for_status(
                response.status,
                response.header("retry-after"),
                &response.body,
                url,
                SystemTime::now(),
            ));
        }
        let spoken = match taxii::classify_content_type(response.header("content-type")) {
            ContentType::Taxii21 => TaxiiVersion::V21,
            ContentType::Taxii20(_) => TaxiiVersion::V20,
            ContentType::Json(media) => {
                let message = format!("{url} answered with Content-Type {media}; read it");
                self.note(NoteLevel::Debug, message);
                asked
            }
            ContentType::Other(media) => {
                return Err(ImportError::MalformedResponse(format!(
                    "{url} answered with {media}, not TAXII JSON"
                )));
            }
        };
        self.version.get_or_insert(spoken);
        if response.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        serde_json::from_slice(&response.body).map_err(|e| {
            ImportError::MalformedResponse(format!("{url} is not a JSON object ({e})"))
        })
    }

    fn get(&mut self, url: &Url, version: TaxiiVersion) -> Result<Response, ImportError> {
        let request = Request {
            url: url.clone(),
            headers: vec![
                ("accept".into(), version.resource_accept().into()),
                (
                    "user-agent".into(),
                    format!("{PLUGIN_NAME}/{PLUGIN_VERSION}"),
                ),
            ],
        };
        self.http.get(&request).map_err(|e| match e {
            TransportError::Denied(m) => ImportError::Denied(format!("{url}: {m}")),
            TransportError::Unreachable(m) => ImportError::Unavailable(format!("{url}: {m}")),
            TransportError::TooLarge(m) => ImportError::MalformedResponse(format!("{url}: {m}")),
            TransportError::Other(m) => ImportError::Other(format!("{url}: {m}")),
        })
    }

    fn note(&mut self, level: NoteLevel, message: String) {
        self.notes.push(Note { level, message });
    }
}

/// `scheme://host:port`, the unit of trust for following URLs.
fn origin(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests;
