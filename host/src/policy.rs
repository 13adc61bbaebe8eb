//! What a run may send over HTTP, enforced in the `wasi:http` hook.
//!
//! - A run may reach its feed's origin (the scheme, host and port of the
//!   Collection URL) and the origins its operator added to the feed; any
//!   other request is refused with `HttpRequestDenied`, logged, and counted.
//!   Redirects are requests like any other: a plugin that follows one asks
//!   again, and the same rule applies.
//! - Addresses are checked after resolution (see [`crate::outgoing`]):
//!   private, loopback and link-local ones only for feeds allowed them.
//! - The host adds the feed's credentials to requests for the feed's own
//!   origin only. Plugins never see them and may not set `Authorization`,
//!   `Proxy-Authorization` or `Cookie` themselves.
//! - A run sends at most [`RunLimits::requests`] requests.
//! - GET and HEAD go out with an empty body whatever the plugin wrote to
//!   it: hyper announces such requests as bodyless and closes the body
//!   stream early, which some clients see as a reset.
//!   See: https://github.com/bytecodealliance/wasmtime/issues/9653
//!
//! [`RunLimits::requests`]: crate::limits::RunLimits::requests

use std::sync::Arc;

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

use crate::limits::{LimitHit, RunWatch};
use crate::outgoing::{ConnectionFuture, Sender};
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
            host: url
                .host_str()?
                .trim_matches(['[', ']'])
                .to_ascii_lowercase(),
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

/// A credentials header the host adds for the feed's origin.
#[derive(Debug, Clone)]
pub struct Credential {
    name: HeaderName,
    value: Secret,
}

impl Credential {
    /// HTTP Basic.
    pub fn basic(username: &str, password: &Secret) -> Self {
        let pair = format!("{username}:{}", password.expose());
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        Self {
            name: AUTHORIZATION,
            value: Secret::new(format!("Basic {encoded}")),
        }
    }

    /// `Authorization: Bearer`.
    pub fn bearer(token: &Secret) -> Self {
        Self {
            name: AUTHORIZATION,
            value: Secret::new(format!("Bearer {}", token.expose())),
        }
    }

    /// A header of the server's choosing.
    pub fn header(name: &str, value: Secret) -> anyhow::Result<Self> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| anyhow::anyhow!("{name:?} is not a header name"))?;
        Ok(Self { name, value })
    }

    fn header_value(&self) -> Option<HeaderValue> {
        let mut value = HeaderValue::from_str(self.value.expose()).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// The policy of one run.
pub struct OutgoingPolicy {
    /// The feed's origin first, then the operator's additions.
    allowed: Vec<Origin>,
    credential: Option<Credential>,
    sender: Option<Arc<Sender>>,
    watch: Arc<RunWatch>,
    request_limit: u64,
    politeness: Option<PoliteClient>,
}

impl OutgoingPolicy {
    /// Requests may go to `allowed` (the feed's origin first) through
    /// `sender`; `credential` is added for the feed's origin.
    pub fn new(
        allowed: Vec<Origin>,
        credential: Option<Credential>,
        sender: Arc<Sender>,
        request_limit: u64,
    ) -> Self {
        Self {
            allowed,
            credential,
            watch: sender.watch.clone(),
            sender: Some(sender),
            request_limit,
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
            allowed: Vec::new(),
            credential: None,
            sender: None,
            watch: Arc::default(),
            request_limit: 0,
            politeness: None,
        }
    }

    fn allows(&self, origin: Option<&Origin>) -> bool {
        origin.is_some_and(|o| self.allowed.contains(o))
    }

    fn deny(&self, body: WasiBody) -> Box<dyn Future<Output = SendResult> + Send> {
        drain(body);
        Box::new(async { Err(Error::HttpRequestDenied) })
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

type SendResult = wasmtime_wasi_http::Result<(http::Response<WasiBody>, ConnectionFuture)>;

impl WasiHttpHooks for OutgoingPolicy {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        Arc::new(forbidden_to_plugins)
    }

    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: ConnectionFuture,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let (mut parts, body) = request.into_parts();
        let origin = Origin::of_uri(&parts.uri);
        let (Some(sender), true) = (&self.sender, self.allows(origin.as_ref())) else {
            self.watch.deny();
            let target = origin.map_or_else(|| "an unparsable URI".into(), |o| o.to_string());
            let allowed: Vec<String> = self.allowed.iter().map(Origin::to_string).collect();
            tracing::warn!(%target, ?allowed, "request denied: not an origin this feed may reach");
            return self.deny(body);
        };
        if self.watch.count_request() > self.request_limit {
            self.watch.hit(LimitHit::Requests(self.request_limit));
            tracing::warn!(
                limit = self.request_limit,
                "request denied: the run's request limit"
            );
            return self.deny(body);
        }
        let sender = sender.clone();
        let feed_origin = origin.as_ref() == self.allowed.first();
        if let Some(credential) = self.credential.as_ref().filter(|_| feed_origin)
            && let Some(value) = credential.header_value()
        {
            parts.headers.insert(credential.name.clone(), value);
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
        Box::new(async move { sender.send(request, options).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(url: &str) -> Origin {
        Origin::of_url(&Url::parse(url).unwrap()).unwrap()
    }

    fn allowed(policy: &OutgoingPolicy, uri: &str) -> bool {
        policy.allows(Origin::of_uri(&uri.parse().unwrap()).as_ref())
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let mut policy = OutgoingPolicy::deny_all();
        policy.allowed = vec![
            origin("http://Feed.example:80/api/"),
            origin("https://mirror.example"),
        ];
        assert!(allowed(
            &policy,
            "http://feed.example/api/collections/x/objects/"
        ));
        assert!(allowed(&policy, "http://feed.example:80/other"));
        assert!(allowed(&policy, "https://mirror.example:443/x"));
        assert!(!allowed(&policy, "https://feed.example/api/"));
        assert!(!allowed(&policy, "http://feed.example:8080/api/"));
        assert!(!allowed(&policy, "http://evil.example/api/"));
        assert!(!allowed(&policy, "/relative"));
        assert!(!allowed(
            &OutgoingPolicy::deny_all(),
            "http://feed.example/"
        ));
    }

    #[test]
    fn credentials_become_sensitive_headers() {
        let basic = Credential::basic("alice", &Secret::new("pw".into()));
        let value = basic.header_value().unwrap();
        assert_eq!(value, "Basic YWxpY2U6cHc=");
        assert!(value.is_sensitive());
        let bearer = Credential::bearer(&Secret::new("tok".into()));
        assert_eq!(bearer.header_value().unwrap(), "Bearer tok");
        let key = Credential::header("X-API-Key", Secret::new("k".into())).unwrap();
        assert_eq!(key.name, "x-api-key");
        assert!(format!("{key:?}").contains("redacted"));
    }

    #[test]
    fn plugins_may_not_set_credentials_headers() {
        assert!(forbidden_to_plugins(&AUTHORIZATION));
        assert!(forbidden_to_plugins(&COOKIE));
        assert!(!forbidden_to_plugins(&http::header::ACCEPT));
    }
}
