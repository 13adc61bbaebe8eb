//! What a run shows: while it runs, a progress bar (pages, objects, rate)
//! on a terminal or one plain line per committed page otherwise; after it,
//! its record in the run history.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use taxii_feed_tests::fault_proxy::{Fault, RetryAfter, Rule};
use taxii_feed_tests::host::host_binary;
use taxii_feed_tests::proxied::ProxiedServer;

/// 40 objects in pages of 10, each request slowed down so that a bar has
/// time to be drawn.
fn slow_server() -> ProxiedServer {
    let setup = ProxiedServer::start(40, 45);
    setup
        .proxy
        .add(Rule::new("/", Fault::Delay(Duration::from_millis(300))));
    setup.add_feed("feed", &["--page-size", "10"]);
    setup
}

#[test]
fn import_not_on_a_terminal_logs_one_plain_line_per_page() {
    let setup = slow_server();
    let run = setup.host.run(["import", "feed"]);
    assert!(run.success, "{run:?}");
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains(" committed: "))
        .collect();
    let versions = setup.manifest.len();
    assert_eq!(lines.len(), versions.div_ceil(10), "{}", run.stderr);
    assert!(lines[0].contains("page 1 committed: 10 new objects, 10 in this run"));
    let last = format!("page {} committed: ", lines.len());
    assert!(lines.last().unwrap().contains(&last), "{lines:?}");
    assert!(
        lines
            .last()
            .unwrap()
            .contains(&format!(", {versions} in this run"))
    );
    assert!(
        !run.stderr.contains('\u{1b}'),
        "no terminal codes: {:?}",
        run.stderr
    );
    assert!(
        run.stdout.contains(&format!("stored {versions}")),
        "{}",
        run.stdout
    );
}

#[test]
fn import_on_a_terminal_shows_a_progress_bar() {
    if Command::new("script").arg("--version").output().is_err() {
        println!("skipped: `script` (util-linux) is not installed to give import a terminal");
        return;
    }
    let setup = slow_server();
    let command = setup.host.command(["import", "feed"]);
    let env: Vec<String> = command
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_str()?, v?.to_str()?)))
        .collect();
    let line = format!(
        "env -u RUST_LOG {} {} import feed",
        env.join(" "),
        host_binary().display()
    );
    // `script` runs the command on a pseudo-terminal and copies what it
    // writes there (stdout and stderr both) to our stdout.
    let output = Command::new("script")
        .args(["-qefc", &line, "/dev/null"])
        .env("TERM", "xterm")
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{screen}");
    assert!(
        screen.contains("objects/s"),
        "a bar with the rate: {screen:?}"
    );
    assert!(screen.contains("pages "), "{screen:?}");
    assert!(screen.contains("HTTP 200×"), "{screen:?}");
    assert!(
        !screen.contains(" committed: "),
        "no per-page lines: {screen:?}"
    );
    let stored = format!("stored {}", setup.manifest.len());
    assert!(screen.contains(&stored), "then the report: {screen:?}");
    assert!(
        screen.contains("\u{1b}[2Kfeed feed → store feed: ok"),
        "the bar is cleared before the report: {screen:?}"
    );
    // What stays on screen of each line: the text after its last return.
    for line in screen.split('\n') {
        let shown = line.split('\r').rfind(|s| !s.is_empty()).unwrap_or("");
        let log = shown.contains("import started") || shown.contains("import finished");
        assert!(
            !(log && shown.contains("objects/s")),
            "a log line inside the bar: {shown:?}"
        );
    }
}

#[test]
fn the_run_history_keeps_counts_quarantine_statuses_and_waits() {
    let setup = ProxiedServer::start(40, 45);
    setup.add_feed("feed", &["--page-size", "100"]);
    let invalid = json!({
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "name": "an indicator without a pattern",
        "valid_from": "2026-01-01T00:00:00Z"
    });
    let collection = setup.server.collection("intel");
    setup.server.add_objects(collection, &[invalid]).unwrap();
    let limited = Fault::Status(503, Some(RetryAfter::Seconds(1)));
    setup.proxy.add(Rule::new("/objects/", limited).times(1));

    let outcome = setup.import("feed", &["--backoff", "100ms"]);
    assert_eq!(outcome["status"], "ok", "{outcome:#}");
    let run: Value = setup.runs("feed").pop().unwrap();
    assert_eq!(run["id"], outcome["run_id"]);
    assert_eq!(run["trigger"], "manual");
    assert_eq!(run["status"], "ok");
    assert!(
        run["finished_at"].is_string() && run["pid"].is_u64(),
        "{run:#}"
    );
    assert_eq!(run["pages"], 1);
    assert_eq!(run["received"], setup.manifest.len() + 1);
    assert_eq!(run["stored"], setup.manifest.len());
    assert_eq!(
        (run["rejected"].as_u64(), run["quarantined"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(run["http_statuses"], json!({"200": 2, "503": 1}), "{run:#}");
    assert_eq!(
        (run["requests"].as_u64(), run["retries"].as_u64()),
        (Some(3), Some(1))
    );
    // Retry-After: 1, counted from the answer: the wait itself is less.
    assert!(run["waited_ms"].as_u64().unwrap() > 500, "{run:#}");
    let quarantine = setup.host.ok([
        "retrieve",
        "query",
        "feed",
        "--quarantine",
        "--format",
        "jsonl",
    ]);
    assert!(quarantine.contains("indicator--8e2e2d2b"), "{quarantine}");

    let table = setup.host.ok(["runs", "feed"]);
    let header = table.lines().next().unwrap();
    for column in [
        "STARTED",
        "TOOK",
        "STATUS",
        "STORED",
        "DUPS",
        "QUARANTINED",
        "HTTP",
    ] {
        assert!(header.contains(column), "{header}");
    }
    assert!(table.contains("200×2 503×1"), "{table}");
    let listed: Value =
        serde_json::from_str(&setup.host.ok(["retrieve", "list", "--format", "json"])).unwrap();
    assert_eq!(listed[0]["last_status"], "ok");
}

#[test]
fn a_feed_named_twice_is_imported_once_and_reported_once() {
    let setup = ProxiedServer::start(40, 45);
    setup.add_feed("feed", &["--page-size", "10"]);
    let run = setup
        .host
        .run(["import", "feed", "feed", "--format", "json"]);
    assert!(run.success, "{run:?}");
    // One run, so one report (an object, not a list of two).
    let outcome: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(outcome["status"], "ok", "{outcome:#}");
    assert_eq!(
        outcome["report"]["stored"],
        setup.manifest.len(),
        "{outcome:#}"
    );
    let runs = setup.host.run(["runs", "feed", "--format", "json"]);
    let runs: Vec<Value> = serde_json::from_str(&runs.stdout).unwrap();
    assert_eq!(runs.len(), 1, "{runs:#?}");
}
