use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::limits::RunWatch;
use crate::outgoing::Timeouts;

/// A sender to servers on this machine, with default TLS and limits.
fn sender() -> Arc<Sender> {
    Arc::new(Sender {
        tls: crate::tls::client_config(&crate::tls::TlsOptions::default()).unwrap(),
        allow_private: true,
        response_bytes: 1 << 20,
        timeouts: Timeouts::default(),
        watch: Arc::new(RunWatch::default()),
    })
}

#[test]
fn retry_after_reads_seconds_and_http_dates() {
    let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
    assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
    assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
    assert_eq!(
        retry_after("Sun, 06 Nov 1994 08:49:40 GMT", now),
        Some(Duration::from_secs(3))
    );
    assert_eq!(
        retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
        Some(Duration::ZERO),
        "a date in the past means now"
    );
    assert_eq!(retry_after("soon", now), None);
    assert_eq!(retry_after("-5", now), None);
}

#[test]
fn rates_read_and_print_in_the_units_people_write() {
    for (text, printed, per_second) in [
        ("5/min", "5/min", 5.0 / 60.0),
        ("1/s", "1/s", 1.0),
        ("100/h", "100/h", 100.0 / 3600.0),
        ("3/10s", "3/10s", 0.3),
    ] {
        let rate: Rate = text.parse().unwrap();
        assert_eq!(rate.to_string(), printed);
        assert!((rate.per_second() - per_second).abs() < 1e-9, "{text}");
    }
    for bad in ["5", "0/min", "five/min", "5/fortnight", "5/0s"] {
        assert!(bad.parse::<Rate>().is_err(), "{bad}");
    }
}

#[test]
fn only_requests_with_a_next_token_are_unsafe_to_resend() {
    let uri = |s: &str| s.parse::<Uri>().unwrap();
    assert!(carries_next_token(&uri(
        "http://h/c/objects/?limit=5&next=abc"
    )));
    assert!(carries_next_token(&uri("http://h/c/objects/?next=abc")));
    assert!(!carries_next_token(&uri(
        "http://h/c/objects/?limit=5&added_after=x"
    )));
    assert!(!carries_next_token(&uri("http://h/c/objects/?nextish=1")));
    assert!(!carries_next_token(&uri("http://h/c/")));
}

#[test]
fn the_token_bucket_allows_a_burst_then_the_rate() {
    let limits = OriginLimits {
        rate: Some("60/min".parse().unwrap()),
        burst: 2,
        ..OriginLimits::default()
    };
    let politeness = Politeness::default();
    let progress = Arc::new(RunProgress::new("f", false));
    let client = politeness.client("http://h:1", limits, sender(), progress, Shutdown::new());
    let hour = Duration::from_secs(3600);
    assert_eq!(client.gate.reserve(&limits, hour), Ok(Duration::ZERO));
    assert_eq!(client.gate.reserve(&limits, hour), Ok(Duration::ZERO));
    let third = client.gate.reserve(&limits, hour).unwrap();
    assert!(
        third > Duration::from_millis(900) && third <= Duration::from_secs(1),
        "{third:?}"
    );
    let fourth = client.gate.reserve(&limits, hour).unwrap();
    assert!(fourth > Duration::from_millis(1900), "{fourth:?}");
}

#[test]
fn no_rate_means_no_wait_and_a_deferral_applies_to_everyone() {
    let politeness = Politeness::default();
    let progress = Arc::new(RunProgress::new("f", false));
    let limits = OriginLimits::default();
    let a = politeness.client(
        "http://h:1",
        limits,
        sender(),
        progress.clone(),
        Shutdown::new(),
    );
    let b = politeness.client("http://h:1", limits, sender(), progress, Shutdown::new());
    let hour = Duration::from_secs(3600);
    assert_eq!(b.gate.reserve(&limits, hour), Ok(Duration::ZERO));
    a.gate.defer(Instant::now() + Duration::from_secs(30));
    assert!(b.gate.reserve(&limits, hour).unwrap() > Duration::from_secs(29));
    let too_long = b
        .gate
        .reserve(&limits, Duration::from_secs(10))
        .unwrap_err();
    assert!(too_long > Duration::from_secs(29), "{too_long:?}");
}

#[test]
fn the_strictest_rate_and_burst_of_an_origin_apply() {
    let mine = OriginLimits {
        rate: Some("30/min".parse().unwrap()),
        burst: 5,
        ..OriginLimits::default()
    };
    let other = OriginLimits {
        rate: Some("6/min".parse().unwrap()),
        burst: 2,
        connect_timeout: Duration::from_secs(1),
        ..OriginLimits::default()
    };
    let unlimited = OriginLimits::default();
    let merged = mine.strictest([&other, &unlimited]);
    assert_eq!(merged.rate.unwrap().to_string(), "6/min");
    assert_eq!(merged.burst, 1);
    assert_eq!(merged.connect_timeout, mine.connect_timeout);
    assert_eq!(unlimited.strictest([&other]).rate, other.rate);
}

#[test]
fn the_feed_s_timeouts_cap_the_plugin_s() {
    let limits = OriginLimits {
        connect_timeout: Duration::from_secs(3),
        response_timeout: Duration::from_secs(7),
        ..OriginLimits::default()
    };
    let progress = Arc::new(RunProgress::new("f", false));
    let client =
        Politeness::default().client("http://h:1", limits, sender(), progress, Shutdown::new());
    let asked = RequestOptions {
        connect_timeout: Some(Duration::from_secs(30)),
        first_byte_timeout: Some(Duration::from_secs(2)),
        between_bytes_timeout: None,
    };
    let options = client.options(Some(asked));
    assert_eq!(options.connect_timeout, Some(Duration::from_secs(3)));
    assert_eq!(
        options.first_byte_timeout,
        Some(Duration::from_secs(2)),
        "a shorter one stays"
    );
    assert_eq!(options.between_bytes_timeout, Some(Duration::from_secs(7)));
    assert_eq!(
        client.options(None).connect_timeout,
        Some(Duration::from_secs(3))
    );
}

#[test]
fn backoff_doubles_up_to_its_cap() {
    let policy = RetryPolicy {
        backoff: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(350),
        ..RetryPolicy::default()
    };
    let within = |attempt, base: u64| {
        let wait = policy.backoff_after(attempt);
        let base = Duration::from_millis(base);
        assert!(
            wait >= base && wait <= base.mul_f64(1.1),
            "{attempt}: {wait:?}"
        );
    };
    within(1, 100);
    within(2, 200);
    within(3, 350);
    within(30, 350);
}

/// A server that answers each connection with the next canned response
/// (the last one repeats), and counts connections.
async fn canned_server(responses: Vec<&'static str>) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let response = responses[n.min(responses.len() - 1)];
            let mut buffer = vec![0; 4096];
            let _ = stream.read(&mut buffer).await;
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    (address, seen)
}

fn get(url: &str) -> Request<WasiBody> {
    let mut request = Request::new(empty_body());
    *request.uri_mut() = url.parse().unwrap();
    request
}

const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
const UNAVAILABLE: &str =
    "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
const FAILED: &str =
    "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

fn quick_retries() -> Politeness {
    Politeness::new(RetryPolicy {
        attempts: 3,
        backoff: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(20),
        max_wait: Duration::from_secs(5),
    })
}

#[tokio::test]
async fn a_503_is_tried_again_and_counted() {
    let (address, seen) = canned_server(vec![UNAVAILABLE, OK]).await;
    let progress = Arc::new(RunProgress::new("f", false));
    let politeness = quick_retries();
    let client = politeness.client(
        &address,
        OriginLimits::default(),
        sender(),
        progress.clone(),
        Shutdown::new(),
    );
    let url = format!("{address}/c/objects/?next=token");
    let (response, _io) = client.send(get(&url), None).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    let s = progress.snapshot();
    assert_eq!((s.requests, s.retries, s.pages), (2, 1, 1));
    assert_eq!(crate::progress::format_statuses(&s.statuses), "200×1 503×1");
}

#[tokio::test]
async fn a_500_is_not_resent_with_a_next_token_but_is_without_one() {
    let (address, seen) = canned_server(vec![FAILED, OK]).await;
    let progress = Arc::new(RunProgress::new("f", false));
    let politeness = quick_retries();
    let client = politeness.client(
        &address,
        OriginLimits::default(),
        sender(),
        progress,
        Shutdown::new(),
    );
    let with_token = format!("{address}/c/objects/?next=token");
    let (response, _io) = client.clone().send(get(&with_token), None).await.unwrap();
    assert_eq!(
        response.status(),
        500,
        "delivered as is: the token may be spent"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    drop(response);

    let (address, seen) = canned_server(vec![FAILED, FAILED, FAILED, OK]).await;
    let progress = Arc::new(RunProgress::new("f", false));
    let client = politeness.client(
        &address,
        OriginLimits::default(),
        sender(),
        progress,
        Shutdown::new(),
    );
    let (response, _io) = client
        .send(get(&format!("{address}/c/")), None)
        .await
        .unwrap();
    assert_eq!(response.status(), 500, "three tries, then the last answer");
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_stopping_host_refuses_the_next_request() {
    let (address, seen) = canned_server(vec![OK]).await;
    let progress = Arc::new(RunProgress::new("f", false));
    let shutdown = Shutdown::new();
    let politeness = quick_retries();
    let client = politeness.client(
        &address,
        OriginLimits::default(),
        sender(),
        progress.clone(),
        shutdown.clone(),
    );
    shutdown.finish();
    let refused = client.send(get(&format!("{address}/c/")), None).await;
    assert!(matches!(refused, Err(Error::HttpRequestDenied)));
    assert!(progress.was_stopped());
    assert_eq!(seen.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_wait_longer_than_the_longest_is_answered_by_the_host_as_a_429() {
    let (address, seen) = canned_server(vec![OK]).await;
    let progress = Arc::new(RunProgress::new("f", false));
    let politeness = quick_retries();
    let client = politeness.client(
        &address,
        OriginLimits::default(),
        sender(),
        progress.clone(),
        Shutdown::new(),
    );
    client
        .gate
        .defer(Instant::now() + Duration::from_millis(90_500));
    let (response, _io) = client
        .send(get(&format!("{address}/c/")), None)
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()[http::header::RETRY_AFTER], "91");
    assert_eq!(seen.load(Ordering::SeqCst), 0, "the server was not asked");
    assert_eq!(
        crate::progress::format_statuses(&progress.snapshot().statuses),
        "held-429×1"
    );
}
