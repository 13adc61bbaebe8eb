//! What a run may send over HTTP, enforced in the `wasi:http` hook.
//!
//! - A run may reach only its feed's origin: the scheme, host and port of
//!   the feed's Collection URL. Anything else is refused with
//!   `HttpRequestDenied`, which the plugin reports as `denied`.
//! - The host adds the feed's credentials (HTTP Basic) to requests for that
//!   origin. The plugin never sees them, and may not set `Authorization`
//!   itself: the header is forbidden to it.
//! - GET and HEAD go out with an empty body whatever the plugin wrote to
//!   it: hyper announces such requests as bodyless and closes the body
//!   stream early, which some clients see as a reset.
//!   See: https://github.com/bytecodealliance/wasmtime/issues/9653

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE, HeaderName, HeaderValue, PROXY_AUTHORIZATION};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Empty};
use url::Url;
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, Error, ForbiddenHeaderFilter, RequestOptions, WasiBody,
    WasiHttpHooks,
};

use crate::politeness::PoliteClient;
use crate::secret::Secret;

/// A scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of a URL.
    pub fn of_url(url: &Url) -> Option<Self> {
        Some(Self {
            scheme: url.scheme().to_ascii_lowercase(),
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default()?,
        })
    }

    /// The origin of a request URI.
    fn of_uri(uri: &Uri) -> Option<Self> {
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let port = uri.port_u16().or(match scheme.as_str() {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        })?;
        let host = uri.host()?.trim_matches(['[', ']']).to_ascii_lowercase();
        Some(Self { scheme, host, port })
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// A username and password for HTTP Basic authentication.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The username.
    pub username: String,
    /// The password.
    pub password: Secret,
}

impl Credentials {
    fn header(&self) -> Option<HeaderValue> {
        let pair = format!("{}:{}", self.username, self.password.expose());
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// The policy of one run.
#[derive(Debug)]
pub struct OutgoingPolicy {
    origin: Option<Origin>,
    credentials: Option<Credentials>,
    denied: Arc<AtomicU64>,
    politeness: Option<PoliteClient>,
}

impl OutgoingPolicy {
    /// Requests may go to `origin` only; `credentials` are added to them.
    pub fn new(origin: Origin, credentials: Option<Credentials>) -> Self {
        Self {
            origin: Some(origin),
            credentials,
            denied: Arc::default(),
            politeness: None,
        }
    }

    /// Sends allowed requests through `client`, which applies the origin's
    /// limits, timeouts and retries (see [`crate::politeness`]).
    pub fn with_politeness(mut self, client: PoliteClient) -> Self {
        self.politeness = Some(client);
        self
    }

    /// A policy that refuses every request (for `describe` and
    /// `validate-config`, which need no network).
    pub fn deny_all() -> Self {
        Self {
            origin: None,
            credentials: None,
            denied: Arc::default(),
            politeness: None,
        }
    }

    /// Counts the requests refused so far.
    pub fn denied_counter(&self) -> Arc<AtomicU64> {
        self.denied.clone()
    }

    fn allows(&self, uri: &Uri) -> bool {
        Origin::of_uri(uri).is_some_and(|o| Some(o) == self.origin)
    }
}

fn forbidden_to_plugins(name: &HeaderName) -> bool {
    name == AUTHORIZATION
        || name == PROXY_AUTHORIZATION
        || name == COOKIE
        || DEFAULT_FORBIDDEN_HEADERS.contains(name)
}

/// Reads and drops a request body in the background, so that the plugin's
/// writes to it complete instead of failing.
fn drain(body: WasiBody) {
    tokio::spawn(async move {
        let _ = body.collect().await;
    });
}

type ResponseFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendResult = wasmtime_wasi_http::Result<(http::Response<WasiBody>, ResponseFuture)>;

impl WasiHttpHooks for OutgoingPolicy {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        Arc::new(forbidden_to_plugins)
    }

    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: ResponseFuture,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let (mut parts, body) = request.into_parts();
        if !self.allows(&parts.uri) {
            self.denied.fetch_add(1, Ordering::Relaxed);
            let target = Origin::of_uri(&parts.uri)
                .map_or_else(|| "an unparsable URI".to_string(), |o| o.to_string());
            let allowed = self.origin.as_ref().map(Origin::to_string);
            tracing::warn!(%target, ?allowed, "request denied by the egress policy");
            drain(body);
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        if let Some(value) = self.credentials.as_ref().and_then(Credentials::header) {
            parts.headers.insert(AUTHORIZATION, value);
        }
        let body = if parts.method == Method::GET || parts.method == Method::HEAD {
            drain(body);
            Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed_unsync()
        } else {
            body
        };
        let request = Request::from_parts(parts, body);
        if let Some(client) = self.politeness.clone() {
            return Box::new(client.send(request, options));
        }
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as ResponseFuture,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(url: &str) -> Origin {
        Origin::of_url(&Url::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let policy = OutgoingPolicy::new(origin("http://Feed.example:80/api/"), None);
        let allowed = |uri: &str| policy.allows(&uri.parse().unwrap());
        assert!(allowed("http://feed.example/api/collections/x/objects/"));
        assert!(allowed("http://feed.example:80/other"));
        assert!(!allowed("https://feed.example/api/"));
        assert!(!allowed("http://feed.example:8080/api/"));
        assert!(!allowed("http://evil.example/api/"));
        assert!(!allowed("/relative"));
    }

    #[test]
    fn credentials_become_a_sensitive_basic_header() {
        let credentials = Credentials {
            username: "alice".into(),
            password: Secret::new("pw".into()),
        };
        let value = credentials.header().unwrap();
        assert_eq!(value, "Basic YWxpY2U6cHc=");
        assert!(value.is_sensitive());
    }

    #[test]
    fn plugins_may_not_set_credentials_headers() {
        assert!(forbidden_to_plugins(&AUTHORIZATION));
        assert!(forbidden_to_plugins(&COOKIE));
        assert!(!forbidden_to_plugins(&http::header::ACCEPT));
    }
}
