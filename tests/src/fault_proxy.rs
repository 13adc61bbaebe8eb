//! A fault-injecting HTTP proxy on 127.0.0.1, in front of any TAXII server
//! (medallion or a stub): it forwards requests unchanged, except those a
//! [`Rule`] picks, which it answers with a status (429 or 503 with
//! `Retry-After` in seconds or as an HTTP date, 500, ...), delays, leaves
//! hanging, or drops. It records every request it saw and what it did.
//!
//! One request per connection: the proxy closes the connection after each
//! answer, as the host's HTTP client opens one per request anyway.
//!
//! It can also stand for a gateway that holds the server's credentials
//! ([`FaultProxy::authorize`]): a client with no secrets of its own (the
//! plugin under a runtime that adds none) then reads a server that wants
//! them.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a hanging answer hangs at most, and how long the server may
/// take to answer, so that no test can wait for ever on the proxy.
const LONGEST_HANG: Duration = Duration::from_secs(120);
/// Largest request head read.
const MAX_HEAD: usize = 64 * 1024;

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (a TAXII error body), and `Retry-After` if
    /// given; the server never sees the request.
    Status(u16, Option<RetryAfter>),
    /// Read the request and never answer (until the client gives up).
    Hang,
    /// Close the connection without answering.
    Drop,
    /// Wait this long, then forward.
    Delay(Duration),
}

/// A `Retry-After` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: N`.
    Seconds(u64),
    /// `Retry-After: <HTTP date>`, this long after the request, rounded up
    /// to a whole second (HTTP dates have no fractions).
    Date(Duration),
}

/// Which requests get a fault: those whose path and query contain `when`
/// (or equal it, for [`Rule::exact`]), from the `skip + 1`-th on, every
/// `every`-th, `times` times at most.
#[derive(Debug, Clone)]
pub struct Rule {
    when: String,
    exact: bool,
    skip: u32,
    every: u32,
    times: Option<u32>,
    fault: Fault,
    matched: u32,
    applied: u32,
}

impl Rule {
    /// Every request whose path and query contain `when` gets `fault`.
    pub fn new(when: &str, fault: Fault) -> Self {
        Self {
            when: when.to_string(),
            exact: false,
            skip: 0,
            every: 1,
            times: None,
            fault,
            matched: 0,
            applied: 0,
        }
    }

    /// Every request whose path and query are exactly `target` gets `fault`.
    pub fn exact(target: &str, fault: Fault) -> Self {
        Self {
            exact: true,
            ..Self::new(target, fault)
        }
    }

    /// Lets the first `n` matching requests through.
    pub fn skip(mut self, n: u32) -> Self {
        self.skip = n;
        self
    }

    /// Applies to every `n`-th matching request only.
    pub fn every(mut self, n: u32) -> Self {
        self.every = n.max(1);
        self
    }

    /// Applies at most `n` times.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    fn pick(&mut self, target: &str) -> Option<Fault> {
        let matches = if self.exact {
            target == self.when
        } else {
            target.contains(&self.when)
        };
        if !matches {
            return None;
        }
        self.matched += 1;
        let exhausted = self.times.is_some_and(|t| self.applied >= t);
        let n = self.matched.checked_sub(self.skip + 1)?;
        if exhausted || n % self.every != 0 {
            return None;
        }
        self.applied += 1;
        Some(self.fault.clone())
    }
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When its head had been read.
    pub at: SystemTime,
    /// When the proxy began to write its answer: the client cannot have
    /// had any of it before.
    pub answered: Option<SystemTime>,
    /// When the answer had been written (or the connection given up); a
    /// busy machine may note this a little after the client had it all.
    pub done: SystemTime,
    /// Path and query.
    pub target: String,
    /// The fault applied, if any.
    pub fault: Option<Fault>,
    /// The status answered (`None`: no answer).
    pub status: Option<u16>,
    /// The `Retry-After` sent, and the moment it names.
    pub retry_after: Option<(String, SystemTime)>,
}

#[derive(Debug, Default)]
struct Shared {
    rules: Mutex<Vec<Rule>>,
    /// `Authorization` sent upstream in place of the client's.
    authorization: Mutex<Option<String>>,
    seen: Mutex<Vec<Seen>>,
    stop: AtomicBool,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl FaultProxy {
    /// A proxy for the server at `upstream` (`http://127.0.0.1:PORT...`).
    pub fn start(upstream: &str) -> std::io::Result<Self> {
        let upstream = upstream_address(upstream)?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if state.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let state = state.clone();
                    std::thread::spawn(move || handle(stream, upstream, &state));
                }
            })?;
        Ok(Self {
            address,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// `url` (of the upstream server) rewritten to go through the proxy.
    pub fn url(&self, url: &str) -> String {
        let rest = url
            .strip_prefix("http://")
            .and_then(|r| r.find('/').map(|i| &r[i..]))
            .unwrap_or("/");
        format!("http://{}{rest}", self.address)
    }

    /// Adds a rule; the first rule that picks a request applies.
    pub fn add(&self, rule: Rule) {
        lock(&self.shared.rules).push(rule);
    }

    /// Sends `authorization` as the `Authorization` header of every
    /// forwarded request, in place of whatever the client sent.
    pub fn authorize(&self, authorization: &str) {
        *lock(&self.shared.authorization) = Some(authorization.to_string());
    }

    /// Removes every rule: from now on everything is forwarded.
    pub fn clear(&self) {
        lock(&self.shared.rules).clear();
    }

    /// Every request seen so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        let mut seen = lock(&self.shared.seen).clone();
        seen.sort_by_key(|s| s.at);
        seen
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.address);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn upstream_address(url: &str) -> std::io::Result<SocketAddr> {
    let authority = url
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .ok_or_else(|| std::io::Error::other(format!("not an http:// URL: {url}")))?;
    authority
        .parse()
        .map_err(|_| std::io::Error::other(format!("not 127.0.0.1:PORT: {authority}")))
}

fn handle(mut client: TcpStream, upstream: SocketAddr, shared: &Shared) {
    let Some(head) = read_head(&mut client) else {
        return;
    };
    let at = SystemTime::now();
    let target = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string();
    let fault = lock(&shared.rules)
        .iter_mut()
        .find_map(|rule| rule.pick(&target));
    let mut retry_after = None;
    let answer = match &fault {
        Some(Fault::Status(status, after)) => {
            retry_after = after.map(|a| retry_after_value(a, at));
            let header = retry_after.as_ref().map(|(v, _)| v.as_str());
            Some(status_answer(*status, header))
        }
        Some(Fault::Hang) => {
            hang(&mut client, shared);
            None
        }
        Some(Fault::Drop) => None,
        Some(Fault::Delay(delay)) => {
            std::thread::sleep(*delay);
            fetch(&head, upstream, shared)
        }
        None => fetch(&head, upstream, shared),
    };
    let mut answered = None;
    let mut status = None;
    if let Some(answer) = answer {
        answered = Some(SystemTime::now());
        if client.write_all(&answer).is_ok() {
            status = status_of(&answer);
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    lock(&shared.seen).push(Seen {
        at,
        answered,
        done: SystemTime::now(),
        target,
        fault,
        status,
        retry_after,
    });
}

/// Reads a request head (GETs have no body).
fn read_head(client: &mut TcpStream) -> Option<String> {
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let mut head = Vec::new();
    let mut buffer = [0; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = client.read(&mut buffer).ok().filter(|n| *n > 0)?;
        head.extend_from_slice(&buffer[..n]);
        if head.len() > MAX_HEAD {
            return None;
        }
    }
    String::from_utf8(head).ok()
}

/// The head with `Connection: close` (and the gateway's `Authorization`,
/// if it has one), sent upstream; returns the whole answer (read until the
/// server closes).
fn fetch(head: &str, upstream: SocketAddr, shared: &Shared) -> Option<Vec<u8>> {
    let authorization = lock(&shared.authorization)
        .as_ref()
        .map(|value| format!("Authorization: {value}"));
    let replaced = |line: &str| {
        let name = line.to_ascii_lowercase();
        name.starts_with("connection:")
            || (authorization.is_some() && name.starts_with("authorization:"))
    };
    let mut lines: Vec<&str> = head.trim_end().lines().filter(|l| !replaced(l)).collect();
    lines.extend(authorization.as_deref());
    lines.push("Connection: close");
    let request = format!("{}\r\n\r\n", lines.join("\r\n"));
    let mut server = TcpStream::connect(upstream).ok()?;
    server.set_read_timeout(Some(LONGEST_HANG)).ok()?;
    server.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer).ok()?;
    Some(answer)
}

/// The status of an HTTP answer.
fn status_of(answer: &[u8]) -> Option<u16> {
    let status_line = answer.split(|b| *b == b'\n').next()?;
    String::from_utf8_lossy(status_line)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn status_answer(status: u16, retry_after: Option<&str>) -> Vec<u8> {
    let body =
        format!(r#"{{"title":"fault injected by the test proxy","http_status":"{status}"}}"#);
    let mut head = format!(
        "HTTP/1.1 {status} Fault\r\nContent-Type: application/taxii+json;version=2.1\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(value) = retry_after {
        head.push_str(&format!("Retry-After: {value}\r\n"));
    }
    format!("{head}\r\n{body}").into_bytes()
}

/// Holds the connection open without answering until the client closes
/// it, the proxy stops, or [`LONGEST_HANG`] passes.
fn hang(client: &mut TcpStream, shared: &Shared) {
    let _ = client.set_read_timeout(Some(Duration::from_millis(50)));
    let started = std::time::Instant::now();
    let mut buffer = [0; 512];
    while !shared.stop.load(Ordering::SeqCst) && started.elapsed() < LONGEST_HANG {
        match client.read(&mut buffer) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

fn retry_after_value(after: RetryAfter, at: SystemTime) -> (String, SystemTime) {
    match after {
        RetryAfter::Seconds(s) => (s.to_string(), at + Duration::from_secs(s)),
        RetryAfter::Date(delay) => {
            let since_epoch = (at + delay).duration_since(UNIX_EPOCH).unwrap_or_default();
            let whole = since_epoch.as_secs() + u64::from(since_epoch.subsec_nanos() > 0);
            let when = UNIX_EPOCH + Duration::from_secs(whole);
            (httpdate::fmt_http_date(when), when)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_skip_repeat_and_run_out() {
        let mut rule = Rule::new("/objects/", Fault::Drop)
            .skip(1)
            .every(2)
            .times(2);
        let picks: Vec<bool> = (0..8)
            .map(|_| rule.pick("/c/objects/?limit=5").is_some())
            .collect();
        assert_eq!(
            picks,
            [false, true, false, true, false, false, false, false]
        );
        assert!(rule.pick("/c/").is_none());
    }

    #[test]
    fn an_http_date_retry_after_is_rounded_up_to_a_whole_second() {
        let at = UNIX_EPOCH + Duration::from_millis(1_000_400);
        let (value, when) = retry_after_value(RetryAfter::Date(Duration::from_secs(2)), at);
        assert_eq!(when, UNIX_EPOCH + Duration::from_secs(1003));
        assert_eq!(httpdate::parse_http_date(&value).unwrap(), when);
        let (value, when) = retry_after_value(RetryAfter::Seconds(3), at);
        assert_eq!((value.as_str(), when), ("3", at + Duration::from_secs(3)));
    }

    #[test]
    fn forwards_what_no_rule_picks_and_records_it() {
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = upstream.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in upstream.incoming().take(1) {
                let mut stream = stream.unwrap();
                read_head(&mut stream).unwrap();
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                    .unwrap();
            }
        });
        let proxy = FaultProxy::start(&format!("http://127.0.0.1:{port}/")).unwrap();
        proxy.add(Rule::new(
            "/limited",
            Fault::Status(429, Some(RetryAfter::Seconds(7))),
        ));
        let get = |path: &str| {
            let mut stream = TcpStream::connect(proxy.address).unwrap();
            write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
        };
        assert!(get("/limited").contains("Retry-After: 7"));
        assert!(get("/free").ends_with("{}"));
        let seen = proxy.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].status, Some(429));
        assert_eq!(
            (seen[1].target.as_str(), seen[1].status),
            ("/free", Some(200))
        );
        assert_eq!(
            proxy.url("http://127.0.0.1:1/api/c/"),
            format!("http://{}/api/c/", proxy.address)
        );
    }
}
