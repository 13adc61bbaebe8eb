//! The scheduler (`serve`) against medallion behind the fault proxy, on
//! intervals of seconds: `TAXII_HOST_TEST_MIN_EVERY` lowers the minimum
//! interval (1 minute for users) for these tests only.
//!
//! Everything is asserted from the run history (when each run was meant
//! to start, when it started and ended) and from what the proxy and the
//! store saw, never from how long the test took.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use taxii_feed_tests::fault_proxy::{Fault, Rule};
use taxii_feed_tests::proxied::ProxiedServer;
use taxii_feed_tests::python::generated_bundle;
use taxii_feed_tests::serving::{Serving, wait_until};
use taxii_feed_tests::snapshot::instant;

const EVERY: Duration = Duration::from_secs(2);
/// Rounding of the recorded timestamps (microseconds).
const MICRO: Duration = Duration::from_micros(1);
/// Longest wait for anything the tests wait for; none should come close.
const PATIENCE: Duration = Duration::from_secs(60);

/// A server of 40 objects and a host allowed short intervals.
fn setup() -> ProxiedServer {
    let mut setup = ProxiedServer::start(40, 45);
    setup
        .host
        .env
        .push(("TAXII_HOST_TEST_MIN_EVERY".into(), "100ms".into()));
    setup
}

fn serve(setup: &ProxiedServer, max_concurrent: &str, grace: &str) -> Serving {
    let args = [
        "--max-concurrent",
        max_concurrent,
        "--reload-every",
        "200ms",
        "--shutdown-grace",
        grace,
        "--backoff",
        "100ms",
    ];
    Serving::start(&setup.host, &args)
}

fn time(run: &Value, field: &str) -> SystemTime {
    let value = run[field]
        .as_str()
        .unwrap_or_else(|| panic!("run without {field}: {run:#}"));
    instant(value).unwrap()
}

fn gap(from: SystemTime, to: SystemTime) -> Duration {
    to.duration_since(from)
        .unwrap_or_else(|e| panic!("{to:?} is {:?} before {from:?}", e.duration()))
}

/// Stops `serve` with a signal (`TERM`, `INT`) and checks it exits 0,
/// saying so.
fn stop(serving: Serving, signal: &str) -> String {
    serving.signal(signal);
    stopped(serving)
}

/// Waits for `serve` to exit after a signal, and checks it exits 0.
fn stopped(mut serving: Serving) -> String {
    let status = serving
        .wait(PATIENCE)
        .expect("serve did not stop on the signal");
    let log = serving.log();
    assert!(status.success(), "serve exited with {status}:\n{log}");
    assert!(log.contains("stopped: "), "{log}");
    log
}

#[test]
fn serve_keeps_intervals_jitter_the_concurrency_bound_reloads_and_stops_cleanly() {
    let setup = setup();
    // Every request takes 100 ms more, so that runs overlap.
    setup
        .proxy
        .add(Rule::new("/", Fault::Delay(Duration::from_millis(100))));
    let every = ["--every", "2s"];
    for name in ["a", "b", "c", "d"] {
        setup.add_feed(name, &every);
    }
    let serving = serve(&setup, "2", "10s");

    let runs_of = |name: &str| setup.runs(name);
    assert!(
        wait_until(PATIENCE, || ["a", "b", "c", "d"]
            .iter()
            .all(|f| runs_of(f).len() >= 2)),
        "every feed ran twice"
    );
    setup.add_feed("e", &every);
    setup.host.ok(["config", "remove", "d"]);
    std::thread::sleep(Duration::from_secs(1));
    let runs_of_d = runs_of("d").len();
    assert!(
        wait_until(PATIENCE, || ["a", "b", "c", "e"]
            .iter()
            .all(|f| runs_of(f).len() >= 4)),
        "the others ran on, and the feed added while serving ran"
    );
    assert_eq!(runs_of("d").len(), runs_of_d, "a removed feed runs no more");
    let log = stop(serving, "TERM");

    let history: BTreeMap<&str, Vec<Value>> = ["a", "b", "c", "d", "e"]
        .into_iter()
        .map(|f| (f, runs_of(f)))
        .collect();
    let mut offsets = Vec::new();
    for (feed, runs) in &history {
        for run in runs {
            assert_eq!(run["trigger"], "schedule", "{run:#}");
            assert!(
                matches!(run["status"].as_str(), Some("ok" | "interrupted")),
                "{feed}: {run:#}\n{log}"
            );
            assert!(run["finished_at"].is_string(), "ended: {run:#}");
            let (scheduled, started) = (time(run, "scheduled_at"), time(run, "started_at"));
            assert!(
                started + MICRO >= scheduled,
                "{feed} started early: {run:#}"
            );
        }
        for pair in runs.windows(2) {
            let previous_end = time(&pair[0], "finished_at");
            let started = time(&pair[1], "started_at");
            assert!(previous_end <= started + MICRO, "{feed}: two runs at once");
            let interval = gap(time(&pair[0], "started_at"), time(&pair[1], "scheduled_at"));
            assert!(interval + MICRO >= EVERY, "{feed}: {interval:?} apart");
            let jitter = interval.saturating_sub(EVERY);
            assert!(jitter <= EVERY / 10 + MICRO, "{feed}: jitter {jitter:?}");
            offsets.push(jitter.as_millis());
        }
        setup
            .snapshot(feed)
            .check_complete(&setup.manifest)
            .unwrap();
    }
    offsets.sort();
    offsets.dedup();
    assert!(offsets.len() > 3, "the jitter varies: {offsets:?}");

    let all: Vec<&Value> = history.values().flatten().collect();
    let most = most_at_once(&all);
    assert_eq!(
        most, 2,
        "at most --max-concurrent runs at once, and that many"
    );

    // Each request came after the proxy began to answer the one before.
    let seen = setup.proxy.seen();
    for pair in seen.windows(2) {
        let answered = pair[0].answered.expect("every request was answered");
        assert!(
            pair[1].at >= answered,
            "two requests to one server at once: {pair:#?}"
        );
    }
}

/// The most runs in progress at one instant.
fn most_at_once(runs: &[&Value]) -> usize {
    let mut events: Vec<(SystemTime, i32)> = Vec::new();
    for run in runs {
        events.push((time(run, "started_at"), 1));
        events.push((time(run, "finished_at"), -1));
    }
    // At equal instants, ends come before starts.
    events.sort();
    let (mut now, mut most) = (0, 0);
    for (_, change) in events {
        now += change;
        most = most.max(now);
    }
    most as usize
}

#[test]
fn sigterm_lets_runs_commit_their_page_then_exits_and_loses_nothing() {
    let setup = setup();
    setup
        .proxy
        .add(Rule::new("/", Fault::Delay(Duration::from_millis(150))));
    for name in ["a", "b"] {
        setup.add_feed(name, &["--every", "2s", "--page-size", "2"]);
    }
    let mut serving = serve(&setup, "2", "30s");
    let started_both = wait_until(PATIENCE, || {
        ["a", "b"]
            .iter()
            .all(|f| setup.snapshot(f).versions.len() >= 4)
    });
    assert!(
        started_both,
        "both feeds committed pages:\n{}",
        serving.log()
    );

    let mut second = Serving::start(&setup.host, &[]);
    let status = second.wait(PATIENCE).unwrap();
    assert_eq!(status.code(), Some(1), "a second serve refuses to start");
    assert!(
        second.log().contains("another `taxii-host serve`"),
        "{}",
        second.log()
    );
    let manual = setup.host.run(["import", "a"]);
    assert_eq!(manual.code, Some(1), "{manual:?}");
    assert!(
        manual
            .stderr
            .contains("feed a is being imported by another taxii-host process"),
        "a feed never runs twice at once: {}",
        manual.stderr
    );

    assert!(serving.running());
    serving.signal("TERM");
    // Answers already under way may still come: one per server at most,
    // and one that started as the signal was sent.
    let requests_before = setup.proxy.seen().len();
    stopped(serving);
    let requests_after = setup.proxy.seen().len();
    assert!(
        requests_after - requests_before <= 2,
        "only the request in flight finishes: {} more",
        requests_after - requests_before
    );
    for feed in ["a", "b"] {
        let runs = setup.runs(feed);
        let last = runs.last().unwrap();
        assert_eq!(last["status"], "interrupted", "{last:#}");
        assert_eq!(last["error_kind"], "interrupted");
        let error = last["error"].as_str().unwrap();
        assert!(
            error.contains("ended after its last committed page"),
            "{error}"
        );
        assert!(last["pages"].as_u64().unwrap() >= 2, "{last:#}");
        let snapshot = setup.snapshot(feed);
        snapshot.check_consistent(&setup.manifest).unwrap();
        assert!(
            snapshot.versions.len() < setup.manifest.len(),
            "stopped midway"
        );

        let outcome = setup.import(feed, &[]);
        assert_eq!(outcome["report"]["duplicates"], 0, "{outcome:#}");
        setup
            .snapshot(feed)
            .check_complete(&setup.manifest)
            .unwrap();
    }
}

#[test]
fn a_run_hanging_at_sigint_is_abandoned_after_the_grace_period() {
    let setup = setup();
    setup.add_feed("feed", &["--every", "2s", "--page-size", "5"]);
    setup.proxy.add(Rule::new("next=", Fault::Hang).skip(1));
    // Pages slower than 100 ms are committed one by one, so the two before
    // the hang are in the store when it starts (fast pages would wait in a
    // batch, and be fetched again by the next run).
    let slow = Duration::from_millis(150);
    setup.proxy.add(Rule::new("/objects/", Fault::Delay(slow)));
    let serving = serve(&setup, "1", "1s");
    let hanging = wait_until(PATIENCE, || {
        setup.snapshot("feed").versions.len() >= 10 && setup.proxy.seen().len() >= 3
    });
    assert!(hanging, "the run reached the hanging page");
    let log = stop(serving, "INT");
    assert!(log.contains("abandoning"), "{log}");

    let last = setup.runs("feed").pop().unwrap();
    assert_eq!(last["status"], "interrupted", "{last:#}");
    let error = last["error"].as_str().unwrap();
    assert!(error.contains("abandoned the run"), "{error}");
    assert_eq!(last["stored"], 10, "counted by the host: {last:#}");
    setup
        .snapshot("feed")
        .check_consistent(&setup.manifest)
        .unwrap();

    setup.proxy.clear();
    assert_eq!(setup.import("feed", &[])["status"], "ok");
    setup
        .snapshot("feed")
        .check_complete(&setup.manifest)
        .unwrap();
}

#[test]
fn a_failing_feed_is_tried_again_with_backoff_before_its_interval() {
    let setup = setup();
    setup.add_feed("feed", &["--every", "4s", "--page-size", "10"]);
    // The host tries the collection 4 times within a run (its default
    // --attempts), so 8 failures make two failed runs. (A failed page is
    // resumed by the plugin within its run, so it would not fail the run.)
    let collection = setup.collection_path();
    setup
        .proxy
        .add(Rule::exact(&collection, Fault::Status(500, None)).times(8));
    let serving = serve(&setup, "1", "10s");
    assert!(wait_until(PATIENCE, || {
        setup.runs("feed").iter().any(|r| r["status"] == "ok")
    }));
    stop(serving, "TERM");
    let runs = setup.runs("feed");
    let first_ok = runs.iter().position(|r| r["status"] == "ok").unwrap();
    assert_eq!(
        first_ok, 2,
        "two failed runs, then one that completes: {runs:#?}"
    );
    for pair in runs[..=first_ok].windows(2) {
        assert_eq!(pair[0]["error_kind"], "unavailable");
        let wait = gap(
            time(&pair[0], "finished_at"),
            time(&pair[1], "scheduled_at"),
        );
        assert!(
            wait < Duration::from_secs(4),
            "retried before the interval: {wait:?}"
        );
        assert!(wait >= Duration::from_secs(1), "after a backoff: {wait:?}");
    }
    setup
        .snapshot("feed")
        .check_complete(&setup.manifest)
        .unwrap();
}

#[test]
fn the_first_run_reads_back_only_the_initial_lookback() {
    let setup = setup();
    let old = generated_bundle(40, 45, None);
    let recent =
        taxii_feed_tests::host::bundle_objects(&generated_bundle(8, 46, Some(&old))).unwrap();
    let collection = setup.server.collection("intel");
    setup.server.add_objects(collection, &recent).unwrap();
    setup.add_feed("recent", &["--initial-lookback", "30d"]);
    setup.add_feed("everything", &["--initial-lookback", "all"]);
    for feed in ["recent", "everything"] {
        assert_eq!(setup.import(feed, &[])["status"], "ok");
    }
    let recent_versions = taxii_feed_tests::host::versions_of(&recent);
    assert_eq!(
        setup.host.versions("recent"),
        recent_versions,
        "objects added to the server in the last 30 days, and only those"
    );
    assert_eq!(
        setup.host.versions("everything").len(),
        setup.manifest.len() + recent_versions.len()
    );
    let listed = setup.host.ok(["config", "list", "--format", "json"]);
    assert!(
        listed.contains(r#""initial_lookback": "30days""#),
        "{listed}"
    );
    assert!(
        listed.contains(r#""every": "1h""#),
        "the default interval: {listed}"
    );
}

#[test]
fn intervals_below_the_minimum_are_refused_with_the_minimum() {
    let host = taxii_feed_tests::host::Host::new();
    let run = host.run([
        "config",
        "add",
        "feed",
        "--collection-url",
        "http://127.0.0.1:9/api/collections/x/",
        "--every",
        "30s",
    ]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains("the shortest interval is 1m"),
        "{}",
        run.stderr
    );
}
