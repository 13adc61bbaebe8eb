//! Politeness towards TAXII servers, per origin (scheme, host and port),
//! applied in the `wasi:http` hook to every request of every run:
//!
//! - one request in flight per origin: the next waits until the answer's
//!   body has been read;
//! - a token bucket: at most `rate` requests per minute on average, `burst`
//!   at once, for servers that allow only a few requests a minute;
//! - 429 and 503 are sent again after `Retry-After` (seconds or an HTTP
//!   date), and every run to that origin waits as long;
//! - refused or failed connections, timeouts and other 5xx are sent again
//!   after an exponential backoff with a cap;
//! - connect and response timeouts (first byte, and between bytes).
//!
//! A request is sent again only if the server cannot have acted on it, or
//! if acting on it twice is harmless. TAXII `next` tokens may be consumed
//! when used (medallion does so), so a request carrying one is resent only
//! after a 429, a 503 or a failed connection; otherwise the failure goes to
//! the plugin, the run fails after its committed pages, and the next run
//! resumes from the stored cursor.
//!
//! The state is shared by every run of the process, so feeds on one server
//! share its limits.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use crate::outgoing::{ConnectionFuture as ResponseFuture, Sender};
use crate::progress::RunProgress;
use crate::shutdown::Shutdown;

/// A request rate: `requests` per `per`, written `5/min`, `1/s`, `100/h`
/// or `3/10s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed...
    pub requests: u32,
    /// ...per this time.
    pub per: Duration,
}

impl Rate {
    /// Requests per second.
    pub fn per_second(&self) -> f64 {
        f64::from(self.requests) / self.per.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?} is not a rate: write requests/time, e.g. 5/min, 1/s, 100/h, 3/10s");
        let (requests, per) = s.trim().split_once('/').ok_or_else(bad)?;
        let requests: u32 = requests.trim().parse().map_err(|_| bad())?;
        let per = match per.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => humantime::parse_duration(other).map_err(|_| bad())?,
        };
        if requests == 0 || per.is_zero() {
            return Err(format!(
                "{s:?}: a rate needs at least 1 request per a non-zero time"
            ));
        }
        Ok(Self { requests, per })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.per.as_secs() {
            1 if self.per.subsec_nanos() == 0 => write!(f, "{}/s", self.requests),
            60 if self.per.subsec_nanos() == 0 => write!(f, "{}/min", self.requests),
            3600 if self.per.subsec_nanos() == 0 => write!(f, "{}/h", self.requests),
            _ => write!(
                f,
                "{}/{}",
                self.requests,
                humantime::format_duration(self.per)
            ),
        }
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Limits for one origin, set per feed (the strictest of the feeds that
/// share an origin applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OriginLimits {
    /// The average request rate; `None` means no token bucket.
    pub rate: Option<Rate>,
    /// Requests that may go at once after a quiet spell (the bucket size).
    pub burst: u32,
    /// Longest wait for a connection.
    #[serde(serialize_with = "as_humantime")]
    pub connect_timeout: Duration,
    /// Longest wait for the first byte of an answer, and between bytes.
    #[serde(serialize_with = "as_humantime")]
    pub response_timeout: Duration,
}

/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default response timeout. Generous: some servers compute a whole query
/// before the first page.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);

impl Default for OriginLimits {
    fn default() -> Self {
        Self {
            rate: None,
            burst: 1,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        }
    }
}

impl OriginLimits {
    /// The strictest rate and burst of several feeds on one origin; the
    /// timeouts stay this feed's own.
    pub fn strictest<'a>(&self, others: impl IntoIterator<Item = &'a OriginLimits>) -> Self {
        others.into_iter().fold(*self, |mut acc, other| {
            acc.rate = match (acc.rate, other.rate) {
                (Some(a), Some(b)) if b.per_second() < a.per_second() => Some(b),
                (a, b) => a.or(b),
            };
            acc.burst = acc.burst.min(other.burst).max(1);
            acc
        })
    }
}

/// A duration as people write it: `10s`, `2m`.
fn as_humantime<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

/// How failed requests are sent again; one policy per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per request, the first included (at least 1).
    pub attempts: u32,
    /// The first backoff; each next one doubles.
    pub backoff: Duration,
    /// The longest backoff.
    pub backoff_cap: Duration,
    /// The longest `Retry-After` waited for within a run; a longer one ends
    /// the run as `rate-limited` (the scheduler then waits it out).
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            backoff: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            max_wait: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait before try `attempt + 1` after `attempt` failed tries:
    /// `backoff × 2^(attempt-1)`, capped, plus up to 10 % of jitter.
    pub fn backoff_after(&self, attempt: u32) -> Duration {
        let doubling = 2u32.saturating_pow(attempt.saturating_sub(1));
        let wait = self.backoff.saturating_mul(doubling).min(self.backoff_cap);
        wait + wait.mul_f64(fastrand::f64() * 0.1)
    }
}

/// The politeness state of a process: one gate per origin.
#[derive(Debug, Default)]
pub struct Politeness {
    retry: RetryPolicy,
    origins: Mutex<HashMap<String, Arc<OriginGate>>>,
}

#[derive(Debug)]
struct OriginGate {
    in_flight: Arc<Semaphore>,
    state: Mutex<GateState>,
}

#[derive(Debug)]
struct GateState {
    tokens: f64,
    refilled: Instant,
    not_before: Option<Instant>,
}

impl Politeness {
    /// Politeness with this retry policy.
    pub fn new(retry: RetryPolicy) -> Self {
        Self {
            retry,
            origins: Mutex::default(),
        }
    }

    /// The retry policy.
    pub fn retry(&self) -> RetryPolicy {
        self.retry
    }

    /// The client one run uses to reach `origin`.
    pub fn client(
        &self,
        origin: &str,
        limits: OriginLimits,
        sender: Arc<Sender>,
        progress: Arc<RunProgress>,
        shutdown: Shutdown,
    ) -> PoliteClient {
        let mut origins = self.origins.lock().unwrap_or_else(|e| e.into_inner());
        let gate = origins
            .entry(origin.to_string())
            .or_insert_with(|| {
                Arc::new(OriginGate {
                    in_flight: Arc::new(Semaphore::new(1)),
                    state: Mutex::new(GateState {
                        tokens: f64::from(limits.burst.max(1)),
                        refilled: Instant::now(),
                        not_before: None,
                    }),
                })
            })
            .clone();
        PoliteClient {
            gate,
            sender,
            origin: origin.to_string(),
            retry: self.retry,
            limits,
            progress,
            shutdown,
        }
    }
}

impl OriginGate {
    /// Takes a token and says how long to wait before sending; or, when
    /// the origin asked to wait longer than `longest`, takes nothing and
    /// says how long that is (`Err`).
    fn reserve(&self, limits: &OriginLimits, longest: Duration) -> Result<Duration, Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut wait = state
            .not_before
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
        if wait > longest {
            return Err(wait);
        }
        if let Some(rate) = limits.rate {
            let per_second = rate.per_second();
            let refill = now.duration_since(state.refilled).as_secs_f64() * per_second;
            state.tokens = (state.tokens + refill).min(f64::from(limits.burst.max(1)));
            state.refilled = now;
            state.tokens -= 1.0;
            if state.tokens < 0.0 {
                wait = wait.max(Duration::from_secs_f64(-state.tokens / per_second));
            }
        }
        Ok(wait)
    }

    /// Makes every request to this origin wait until `until`.
    fn defer(&self, until: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.not_before = Some(state.not_before.map_or(until, |t| t.max(until)));
    }
}

type Answer = Result<(Response<WasiBody>, ResponseFuture), Error>;

/// One run's way to one origin.
#[derive(Clone)]
pub struct PoliteClient {
    gate: Arc<OriginGate>,
    /// What actually sends: address checks, TLS, the response size cap.
    sender: Arc<Sender>,
    origin: String,
    retry: RetryPolicy,
    limits: OriginLimits,
    progress: Arc<RunProgress>,
    shutdown: Shutdown,
}

/// What to do after a try.
enum Next {
    /// Give the answer (or the failure) to the plugin.
    Deliver(Answer),
    /// Wait this long, then try again.
    Retry(Duration, String),
}

impl PoliteClient {
    /// Sends `request` within the origin's limits, trying again when that
    /// is safe (see the module's documentation).
    pub async fn send(self, request: Request<WasiBody>, options: Option<RequestOptions>) -> Answer {
        let options = self.options(options);
        let (parts, body) = request.into_parts();
        let resendable = parts.method == Method::GET || parts.method == Method::HEAD;
        let mut body = Some(body);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let permit = match self.wait_for_turn().await? {
                Ok(permit) => permit,
                Err(deferred) => return Ok(self.still_limited(deferred)),
            };
            let body = match body.take() {
                Some(body) => body,
                None => empty_body(),
            };
            let request = rebuild(
                &parts.method,
                &parts.uri,
                parts.version,
                &parts.headers,
                body,
            );
            self.progress.request_sent();
            let result = self.sender.send(request, Some(options)).await;
            let last = attempt >= self.retry.attempts || !resendable;
            match self.judge(result, attempt, last, &parts.uri) {
                Next::Deliver(answer) => return answer.map(|(r, io)| (hold(r, permit), io)),
                Next::Retry(wait, why) => {
                    tracing::info!(
                        origin = %self.origin,
                        "{why}; trying again in {} (try {} of {})",
                        humantime::format_duration(round_ms(wait)),
                        attempt + 1,
                        self.retry.attempts
                    );
                    self.progress.retrying();
                    self.gate.defer(Instant::now() + wait);
                    drop(permit);
                }
            }
        }
    }

    /// The answer for a request the origin asked (in an earlier answer) to
    /// hold longer than the longest wait: a 429 with the time left, made by
    /// the host without asking the server, so that the run ends as
    /// rate-limited and the scheduler comes back when the wait is over.
    fn still_limited(&self, deferred: Duration) -> (Response<WasiBody>, ResponseFuture) {
        let seconds = deferred.as_secs() + u64::from(deferred.subsec_nanos() > 0);
        tracing::info!(origin = %self.origin, seconds, "the server asked to wait longer than \
            the longest wait; not asking it now");
        self.progress.failed("held-429");
        let mut response = Response::new(empty_body());
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, seconds.into());
        (response, Box::new(async { Ok(()) }))
    }

    /// The plugin's timeouts, capped by this feed's.
    fn options(&self, asked: Option<RequestOptions>) -> RequestOptions {
        let asked = asked.unwrap_or_default();
        let cap =
            |asked: Option<Duration>, limit: Duration| Some(asked.map_or(limit, |a| a.min(limit)));
        RequestOptions {
            connect_timeout: cap(asked.connect_timeout, self.limits.connect_timeout),
            first_byte_timeout: cap(asked.first_byte_timeout, self.limits.response_timeout),
            between_bytes_timeout: cap(asked.between_bytes_timeout, self.limits.response_timeout),
        }
    }

    /// Waits for the origin to be free and for the rate, unless stopping.
    /// `Ok(Err(wait))` when the origin asked to wait longer than the
    /// longest wait.
    async fn wait_for_turn(&self) -> Result<Result<OwnedSemaphorePermit, Duration>, Error> {
        let refused = || {
            self.progress.refused_on_stop();
            Error::HttpRequestDenied
        };
        if self.shutdown.is_finishing() {
            return Err(refused());
        }
        let permit = tokio::select! {
            permit = self.gate.in_flight.clone().acquire_owned() => {
                permit.map_err(|_| Error::InternalError(Some("origin gate closed".into())))?
            }
            () = self.shutdown.finishing() => return Err(refused()),
        };
        let wait = match self.gate.reserve(&self.limits, self.retry.max_wait) {
            Ok(wait) => wait,
            Err(deferred) => return Ok(Err(deferred)),
        };
        if !wait.is_zero() {
            tracing::debug!(origin = %self.origin, ?wait, "waiting for the origin's limits");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.shutdown.finishing() => return Err(refused()),
            }
            self.progress.waited(wait);
        }
        Ok(Ok(permit))
    }

    /// Decides what a try's result means.
    fn judge(&self, result: Answer, attempt: u32, last: bool, uri: &Uri) -> Next {
        let resend_safe = !carries_next_token(uri);
        let (response, io) = match result {
            Ok(answer) => answer,
            Err(error) => {
                self.progress.failed(failure_label(&error));
                if !last && !is_refusal(&error) && (before_request(&error) || resend_safe) {
                    let why = format!("the request failed ({error})");
                    return Next::Retry(self.retry.backoff_after(attempt), why);
                }
                return Next::Deliver(Err(error));
            }
        };
        let status = response.status();
        self.progress.answered(status.as_u16(), uri.path());
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            let asked = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, SystemTime::now()));
            let wait = asked.unwrap_or_else(|| self.retry.backoff_after(attempt));
            if !last && wait <= self.retry.max_wait {
                let why = match asked {
                    Some(_) => format!("the server answered {status} with Retry-After"),
                    None => format!("the server answered {status}"),
                };
                return Next::Retry(wait, why);
            }
            // The plugin reports it; the origin still waits.
            self.gate.defer(Instant::now() + wait);
        } else if status.is_server_error() && resend_safe && !last {
            let why = format!("the server answered {status}");
            return Next::Retry(self.retry.backoff_after(attempt), why);
        }
        Next::Deliver(Ok((response, io)))
    }
}

/// Seconds to wait from a `Retry-After` value: delay-seconds or an
/// HTTP date. A date in the past means no wait.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Whether the request carries a TAXII `next` token in its query.
fn carries_next_token(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some("next"))
    })
}

/// Whether the failure happened before the request reached the server.
/// A refusal by the host's own policy, or a TLS failure: asking again
/// would be refused again.
fn is_refusal(error: &Error) -> bool {
    matches!(
        error,
        Error::HttpRequestDenied
            | Error::DestinationIpProhibited
            | Error::HttpResponseBodySize(_)
            | Error::Tls(_)
            | Error::TlsCertificateError
            | Error::TlsAlertReceived { .. }
    )
}

fn before_request(error: &Error) -> bool {
    matches!(
        error,
        Error::Connect(_)
            | Error::ConnectionRefused
            | Error::ConnectionTimeout
            | Error::DnsTimeout
            | Error::DnsError { .. }
            | Error::DestinationNotFound
            | Error::DestinationUnavailable
    )
}

/// A short name for a failure without an HTTP status, for the run history.
fn failure_label(error: &Error) -> &'static str {
    match error {
        Error::ConnectionTimeout => "connect-timeout",
        Error::ConnectionReadTimeout | Error::HttpResponseTimeout => "timeout",
        Error::Connect(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection-refused"
        }
        Error::ConnectionRefused => "connection-refused",
        Error::DnsTimeout | Error::DnsError { .. } | Error::DestinationNotFound => "dns-error",
        Error::Tls(_) | Error::TlsProtocolError | Error::TlsCertificateError => "tls-error",
        _ => "connection-error",
    }
}

fn empty_body() -> WasiBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn rebuild(
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
    body: WasiBody,
) -> Request<WasiBody> {
    let mut request = Request::new(body);
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri.clone();
    *request.version_mut() = version;
    *request.headers_mut() = headers.clone();
    request
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Keeps the origin's in-flight permit until the answer's body is read.
fn hold(response: Response<WasiBody>, permit: OwnedSemaphorePermit) -> Response<WasiBody> {
    response.map(|inner| {
        PermitBody {
            inner,
            permit: Some(permit),
        }
        .boxed_unsync()
    })
}

struct PermitBody {
    inner: WasiBody,
    permit: Option<OwnedSemaphorePermit>,
}

impl http_body::Body for PermitBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.permit = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
