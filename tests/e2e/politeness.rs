//! Politeness against a server that rate-limits, fails and hangs: medallion
//! behind the fault-injecting proxy. Each test checks what the proxy saw
//! (which requests came, when, and whether one was sent again), what the
//! run history recorded, and that the store ends equal to the server's
//! collection with nothing stored twice and the cursor never ahead.

use std::time::{Duration, SystemTime};

use serde_json::Value;
use taxii_feed_tests::fault_proxy::{Fault, RetryAfter, Rule, Seen};
use taxii_feed_tests::proxied::ProxiedServer;

/// A small collection (40 objects, 4-5 pages of 10): quick on medallion.
fn server() -> ProxiedServer {
    let setup = ProxiedServer::start(40, 45);
    setup.add_feed("feed", &["--page-size", "10"]);
    setup
}

/// Quick retries, so that the tests wait little.
const QUICK: [&str; 4] = ["--backoff", "200ms", "--backoff-cap", "2s"];

fn statuses(outcome: &Value) -> Value {
    outcome["http"]["http_statuses"].clone()
}

/// The request the proxy saw right after the one at `index`.
fn after(seen: &[Seen], index: usize) -> &Seen {
    seen.get(index + 1)
        .unwrap_or_else(|| panic!("no request after #{index}: {seen:#?}"))
}

fn faulted(seen: &[Seen]) -> Vec<usize> {
    (0..seen.len())
        .filter(|i| seen[*i].fault.is_some())
        .collect()
}

fn assert_complete(setup: &ProxiedServer) {
    setup
        .snapshot("feed")
        .check_complete(&setup.manifest)
        .unwrap();
}

fn retry_after_is_honoured(status: u16, retry_after: RetryAfter) {
    let setup = server();
    let rule = Rule::new("/objects/", Fault::Status(status, Some(retry_after)));
    setup.proxy.add(rule.skip(1).times(1));

    let outcome = setup.import("feed", &QUICK);
    assert_eq!(outcome["status"], "ok", "{outcome:#}");
    assert_eq!(statuses(&outcome)[status.to_string()], 1, "{outcome:#}");
    assert_eq!(outcome["http"]["retries"], 1);
    assert!(outcome["http"]["waited_ms"].as_u64().unwrap() >= 1000);
    assert_complete(&setup);

    let seen = setup.proxy.seen();
    let [limited] = faulted(&seen)[..] else {
        panic!("one request was limited: {seen:#?}")
    };
    let (value, until) = seen[limited].retry_after.clone().unwrap();
    let next = after(&seen, limited);
    assert_eq!(next.target, seen[limited].target, "the same request again");
    assert!(
        next.at >= until,
        "asked again {:?} before the Retry-After {value:?}",
        until.duration_since(next.at).unwrap_or_default()
    );
    let runs = setup.runs("feed");
    assert_eq!(runs.last().unwrap()["http_statuses"], statuses(&outcome));
}

#[test]
fn a_429_with_retry_after_in_seconds_is_waited_out() {
    retry_after_is_honoured(429, RetryAfter::Seconds(2));
}

#[test]
fn a_503_with_retry_after_as_an_http_date_is_waited_out() {
    retry_after_is_honoured(503, RetryAfter::Date(Duration::from_secs(2)));
}

#[test]
fn a_retry_after_beyond_the_longest_wait_ends_the_run_with_its_fix() {
    let setup = server();
    let rule = Rule::new(
        "/objects/",
        Fault::Status(429, Some(RetryAfter::Seconds(120))),
    );
    setup.proxy.add(rule.skip(1).times(1));

    let mut args = QUICK.to_vec();
    args.extend(["--max-retry-wait", "1s"]);
    let outcome = setup.import("feed", &args);
    assert_eq!(outcome["status"], "failed", "{outcome:#}");
    assert_eq!(outcome["error"]["kind"], "rate-limited");
    assert_eq!(outcome["error"]["retry_after_seconds"], 120);
    let fix = outcome["error"]["fix"].as_str().unwrap();
    assert!(fix.contains("wait 120 s"), "{fix}");
    let snapshot = setup.snapshot("feed");
    snapshot.check_consistent(&setup.manifest).unwrap();
    assert_eq!(
        snapshot.versions.len(),
        10,
        "the first page stays committed"
    );
    assert_eq!(
        setup.proxy.seen().len(),
        3,
        "collection, page 1, the 429: no retry"
    );

    let table = setup.host.ok(["runs", "feed"]);
    assert!(table.contains("429×1"), "{table}");
    assert!(table.contains("failed (rate-limited)"), "{table}");
    assert!(
        table.contains("fix: the server asks to wait 120 s"),
        "{table}"
    );

    assert_eq!(setup.import("feed", &QUICK)["status"], "ok");
    assert_complete(&setup);
}

#[test]
fn intermittent_failures_are_retried_with_a_growing_backoff() {
    let setup = server();
    let collection = setup.collection_path();
    setup
        .proxy
        .add(Rule::exact(&collection, Fault::Status(503, None)).times(3));
    setup
        .proxy
        .add(Rule::new("/objects/", Fault::Drop).times(1));
    setup.proxy.add(
        Rule::new("next=", Fault::Status(503, None))
            .every(2)
            .times(2),
    );

    let outcome = setup.import("feed", &QUICK);
    assert_eq!(outcome["status"], "ok", "{outcome:#}");
    let statuses = statuses(&outcome);
    assert_eq!(statuses["503"], 5, "{statuses}");
    assert_eq!(statuses["connection-error"], 1, "{statuses}");
    assert_eq!(outcome["http"]["retries"], 6);
    assert_complete(&setup);

    // The collection failed three times in a row: the waits double.
    let seen = setup.proxy.seen();
    let tries: Vec<&Seen> = seen.iter().filter(|s| s.target == collection).collect();
    assert_eq!(tries.len(), 4, "{tries:#?}");
    for (i, pair) in tries.windows(2).enumerate() {
        let answered = pair[0].answered.unwrap();
        let gap = pair[1].at.duration_since(answered).unwrap_or_default();
        let least = Duration::from_millis(200 << i);
        assert!(gap >= least, "wait {i} was {gap:?}, less than {least:?}");
    }
}

/// The plugin resumes from its committed cursor after a failed page;
/// with medallion's consuming tokens, sending the token again would skip
/// a page.
fn assert_resumed_from_the_cursor(seen: &[Seen], failed: usize) {
    let next = after(seen, failed);
    assert!(
        !next.target.contains("next="),
        "the token of the failed page was sent again: {next:#?}"
    );
    assert!(next.target.contains("added_after="), "{next:#?}");
}

#[test]
fn a_failed_page_with_a_next_token_is_not_sent_again_and_the_run_resumes() {
    let setup = server();
    setup.proxy.add(
        Rule::new("next=", Fault::Status(500, None))
            .skip(1)
            .times(1),
    );

    let outcome = setup.import("feed", &QUICK);
    assert_eq!(outcome["status"], "ok", "{outcome:#}");
    assert_eq!(statuses(&outcome)["500"], 1, "{outcome:#}");
    assert_eq!(outcome["http"]["retries"], 0, "the host does not resend it");
    let seen = setup.proxy.seen();
    let [failed] = faulted(&seen)[..] else {
        panic!("{seen:#?}")
    };
    assert_resumed_from_the_cursor(&seen, failed);
    assert_eq!(outcome["report"]["duplicates"], 0, "{outcome:#}");
    assert_complete(&setup);
}

#[test]
fn a_hanging_server_hits_the_response_timeout() {
    let setup = ProxiedServer::start(40, 45);
    setup.add_feed("feed", &["--page-size", "10", "--response-timeout", "1s"]);
    let collection = setup.collection_path();
    setup
        .proxy
        .add(Rule::exact(&collection, Fault::Hang).times(1));
    setup.proxy.add(Rule::new("next=", Fault::Hang).times(1));

    let started = SystemTime::now();
    let outcome = setup.import("feed", &QUICK);
    assert_eq!(outcome["status"], "ok", "{outcome:#}");
    assert_eq!(statuses(&outcome)["timeout"], 2, "{outcome:#}");
    assert_eq!(
        outcome["http"]["retries"], 1,
        "the host asks the collection again, not the page with a token"
    );
    assert!(started.elapsed().unwrap() >= Duration::from_secs(2));

    let seen = setup.proxy.seen();
    let hangs = faulted(&seen);
    assert_eq!(hangs.len(), 2, "{seen:#?}");
    assert_eq!(after(&seen, hangs[0]).target, collection, "asked again");
    assert_resumed_from_the_cursor(&seen, hangs[1]);
    assert_eq!(outcome["report"]["duplicates"], 0, "{outcome:#}");
    assert_complete(&setup);
}

#[test]
fn a_rate_spaces_the_requests_to_a_server() {
    let setup = ProxiedServer::start(40, 45);
    setup.add_feed("feed", &["--page-size", "10", "--rate", "4/s"]);
    let outcome = setup.import("feed", &QUICK);
    assert_eq!(outcome["status"], "ok", "{outcome:#}");
    assert!(outcome["http"]["waited_ms"].as_u64().unwrap() > 0);
    let seen = setup.proxy.seen();
    assert!(seen.len() >= 5, "{seen:#?}");
    // At 4 a second, the n-th request goes at least (n-1)/4 s after the
    // first. Measured over all of them, so that one late reading of the
    // proxy's clock cannot blur it.
    let (first, last) = (seen[0].at, seen[seen.len() - 1].at);
    let spread = last.duration_since(first).unwrap();
    let least = Duration::from_millis(250) * (seen.len() as u32 - 1);
    assert!(
        spread + Duration::from_millis(100) >= least,
        "{} requests in {spread:?}",
        seen.len()
    );
    assert_complete(&setup);
}

#[test]
fn a_refused_connection_is_tried_again_then_reported() {
    let host = taxii_feed_tests::host::Host::new();
    let port = taxii_feed_tests::free_port();
    let url = format!("http://127.0.0.1:{port}/api/collections/c/");
    host.ok([
        "config",
        "add",
        "feed",
        "--collection-url",
        &url,
        "--allow-private",
    ]);
    let run = host.run([
        "import",
        "feed",
        "--format",
        "json",
        "--attempts",
        "3",
        "--backoff",
        "100ms",
    ]);
    let outcome: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(outcome["status"], "failed", "{outcome:#}");
    assert_eq!(outcome["error"]["kind"], "unavailable");
    assert_eq!(statuses(&outcome)["connection-refused"], 3, "{outcome:#}");
    assert_eq!(outcome["http"]["retries"], 2);
    let message = outcome["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("the connection was refused: check the port"),
        "{outcome:#}"
    );
    assert!(
        run.stderr.contains("fix: check that the server is up"),
        "{}",
        run.stderr
    );
}
