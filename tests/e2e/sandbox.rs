//! Hostile plugins (tests/fixtures/hostile-plugin) against the host's
//! sandbox: each is stopped or refused with the right error, nothing of
//! another feed or tenant is reached, and a well-behaved feed imports
//! correctly in the same host process at the same time.

use serde_json::Value;
use taxii_feed_tests::canned::{Answer, Canned, indicators, taxii_collection};
use taxii_feed_tests::fixtures::hostile_plugin;
use taxii_feed_tests::host::Host;

const COLLECTION: &str = "/api/collections/c1/";

/// A well-behaved TAXII collection of three indicators.
fn good_server() -> Canned {
    Canned::http(taxii_collection(indicators(3)))
}

/// Adds a feed; `extra` are further `config add` options.
fn add(host: &Host, name: &str, url: &str, extra: &[&str]) {
    let mut args = vec!["config", "add", name, "--collection-url", url];
    args.extend(extra);
    host.ok(args);
}

fn add_hostile(host: &Host, name: &str, url: &str, extra: &[&str]) {
    let plugin = hostile_plugin().display().to_string();
    let mut args = vec!["--plugin", plugin.as_str(), "--allow-private"];
    args.extend(extra);
    add(host, name, url, &args);
}

/// Imports several feeds in one host process; returns their outcomes.
fn import_together(host: &Host, limits: &[&str], names: &[&str]) -> Vec<Value> {
    let mut args: Vec<&str> = limits.to_vec();
    args.extend(["import", "--format", "json"]);
    args.extend(names);
    let run = host.run(args);
    let parsed: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}):\n{}\n{}", run.stdout, run.stderr));
    match parsed {
        Value::Array(all) => all,
        one => vec![one],
    }
}

fn notes(outcome: &Value) -> Vec<String> {
    outcome["report"]["notes"]
        .as_array()
        .map(|notes| {
            notes
                .iter()
                .map(|n| n["message"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn assert_good_feed_imported(host: &Host, outcome: &Value) {
    assert_eq!(outcome["status"], "ok", "{outcome:#}");
    assert_eq!(outcome["report"]["stored"], 3, "{outcome:#}");
    assert_eq!(host.objects("good").len(), 3);
}

#[test]
fn a_spinning_plugin_is_stopped_at_the_cpu_limit_while_a_good_feed_imports() {
    let server = good_server();
    let url = format!("{}{COLLECTION}", server.base);
    let host = Host::new();
    add(&host, "good", &url, &["--allow-private"]);
    add_hostile(&host, "loop-forever", &url, &[]);

    let outcomes = import_together(&host, &["--max-cpu", "2s"], &["loop-forever", "good"]);
    let spinner = &outcomes[0];
    assert_eq!(spinner["status"], "failed", "{spinner:#}");
    assert_eq!(spinner["error"]["kind"], "limit", "{spinner:#}");
    let message = spinner["error"]["message"].as_str().unwrap();
    assert!(message.contains("CPU limit (2s)"), "{message}");
    assert!(
        spinner["error"]["fix"]
            .as_str()
            .unwrap()
            .contains("--max-cpu")
    );
    assert_good_feed_imported(&host, &outcomes[1]);
}

#[test]
fn a_hoarding_plugin_is_stopped_at_the_memory_limit_while_a_good_feed_imports() {
    let server = good_server();
    let url = format!("{}{COLLECTION}", server.base);
    let host = Host::new();
    add(&host, "good", &url, &["--allow-private"]);
    add_hostile(&host, "alloc-all", &url, &[]);

    let outcomes = import_together(&host, &["--max-memory", "64MiB"], &["alloc-all", "good"]);
    let hoarder = &outcomes[0];
    assert_eq!(hoarder["error"]["kind"], "limit", "{hoarder:#}");
    let message = hoarder["error"]["message"].as_str().unwrap();
    assert!(message.contains("memory limit (64 MiB)"), "{message}");
    assert_good_feed_imported(&host, &outcomes[1]);
}

#[test]
fn requests_to_other_origins_are_denied_directly_via_redirects_and_via_discovery() {
    let bystander = Canned::http(taxii_collection(indicators(1)));
    let elsewhere = format!("{}{COLLECTION}", bystander.base);
    let mut answers = taxii_collection(indicators(3));
    answers.insert("/redirecting/".into(), Answer::redirect(302, &elsewhere));
    answers.insert(
        "/discovery/".into(),
        Answer::taxii(serde_json::json!({"title": "d", "api_roots": [elsewhere]})),
    );
    let server = Canned::http(answers);
    let host = Host::new();
    add(
        &host,
        "good",
        &format!("{}{COLLECTION}", server.base),
        &["--allow-private"],
    );
    add_hostile(
        &host,
        "egress-direct",
        &server.base,
        &["--type", &elsewhere],
    );
    add_hostile(
        &host,
        "redirect-follow",
        &format!("{}/redirecting/", server.base),
        &[],
    );
    add_hostile(
        &host,
        "discovery-follow",
        &format!("{}/discovery/", server.base),
        &[],
    );

    let outcomes = import_together(
        &host,
        &[],
        &[
            "egress-direct",
            "redirect-follow",
            "discovery-follow",
            "good",
        ],
    );
    for outcome in &outcomes[..3] {
        assert_eq!(outcome["denied"], 1, "{outcome:#}");
        let denied = format!("denied {elsewhere}");
        assert!(notes(outcome).contains(&denied), "{:?}", notes(outcome));
    }
    assert!(notes(&outcomes[1]).iter().any(|n| n.starts_with("reached")));
    assert!(bystander.seen().is_empty(), "the other origin was reached");
    assert_good_feed_imported(&host, &outcomes[3]);
    assert_eq!(
        recorded_denials(&host, "egress-direct"),
        1,
        "the run record counts denials"
    );
}

fn database(host: &Host) -> rusqlite::Connection {
    rusqlite::Connection::open(host.data_dir.path().join("taxii-host.db")).unwrap()
}

fn recorded_denials(host: &Host, store: &str) -> i64 {
    database(host)
        .query_row(
            "SELECT denied FROM runs JOIN stores ON stores.id = store_id WHERE name = ?1",
            [store],
            |row| row.get(0),
        )
        .unwrap()
}

#[test]
fn an_origin_the_operator_allows_is_reached_without_the_feeds_credentials() {
    let bystander = Canned::http(taxii_collection(indicators(1)));
    let elsewhere = format!("{}{COLLECTION}", bystander.base);
    let server = good_server();
    let mut host = Host::new();
    host.env
        .push(("FEED_TOKEN".into(), "token-that-must-stay-home".into()));
    let origin = bystander.base.clone();
    add_hostile(
        &host,
        "egress-allowed",
        &server.base,
        &[
            "--type",
            &elsewhere,
            "--allow-origin",
            &origin,
            "--token-env",
            "FEED_TOKEN",
        ],
    );
    let outcome = &import_together(&host, &[], &["egress-allowed"])[0];
    assert_eq!(outcome["denied"], 0, "{outcome:#}");
    assert!(notes(outcome).contains(&format!("reached {elsewhere}")));
    let seen = bystander.seen();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0]
            .headers
            .iter()
            .all(|(name, _)| name != "authorization")
    );
}

#[test]
fn private_addresses_need_the_operators_permission() {
    let server = good_server();
    let host = Host::new();
    add(&host, "local", &format!("{}{COLLECTION}", server.base), &[]);
    let outcome = &import_together(&host, &[], &["local"])[0];
    assert_eq!(outcome["error"]["kind"], "denied", "{outcome:#}");
    assert_eq!(
        outcome["denied"], 1,
        "a refusal is not tried again: {outcome:#}"
    );
    assert!(
        outcome["error"]["fix"]
            .as_str()
            .unwrap()
            .contains("--allow-private")
    );
    assert!(server.seen().is_empty());
}

#[test]
fn buckets_by_any_name_stay_the_plugins_own() {
    let server = good_server();
    let url = format!("{}{COLLECTION}", server.base);
    let host = Host::new();
    add(&host, "victim", &url, &["--allow-private"]);
    host.ok([
        "--tenant",
        "other",
        "config",
        "add",
        "victim",
        "--collection-url",
        &url,
        "--allow-private",
    ]);
    host.ok(["import", "victim"]);
    host.ok(["--tenant", "other", "import", "victim"]);
    add_hostile(&host, "buckets-raid", &url, &[]);

    let outcome = &import_together(&host, &[], &["buckets-raid"])[0];
    assert_eq!(outcome["status"], "ok", "{outcome:#}");
    let seen = notes(outcome);
    for name in ["", "victim", "default"] {
        let read = format!("bucket {name:?}: 0 keys, cursor None");
        assert!(seen.contains(&read), "{name:?} read something: {seen:?}");
    }
    for name in ["../victim", "default/victim", "victim:x", "other/victim"] {
        let refused = format!("bucket {name:?}: refused Error::AccessDenied");
        assert!(
            seen.contains(&refused),
            "{name:?} was not refused: {seen:?}"
        );
    }

    assert_eq!(host.objects("victim").len(), 3);
    let db = database(&host);
    let mut marked = db
        .prepare(
            "SELECT stores.tenant, stores.name FROM entries JOIN stores ON stores.id = store_id
             WHERE key = 'hostile-marker' ORDER BY 2",
        )
        .unwrap();
    let owners: Vec<(String, String)> = marked
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!owners.is_empty());
    for (tenant, name) in &owners {
        assert_eq!(tenant, "default");
        assert!(
            name.starts_with("buckets-raid"),
            "the plugin wrote into {name}"
        );
    }
    let listed = host.ok(["retrieve", "list", "--format", "json"]);
    assert!(
        !listed.contains("buckets-raid:"),
        "internal buckets are listed: {listed}"
    );
}

#[test]
fn a_response_over_the_size_limit_ends_the_run_naming_the_limit() {
    let big = Canned::http(taxii_collection(indicators(2000)));
    let host = Host::new();
    add(
        &host,
        "big",
        &format!("{}{COLLECTION}", big.base),
        &["--allow-private"],
    );
    let outcome = &import_together(&host, &["--max-response-size", "64KiB"], &["big"])[0];
    assert_eq!(outcome["error"]["kind"], "limit", "{outcome:#}");
    let message = outcome["error"]["message"].as_str().unwrap();
    assert!(message.contains("response size limit"), "{message}");
    assert!(host.objects("big").is_empty());
}

#[test]
fn a_run_waiting_on_a_silent_server_ends_at_the_run_time_limit() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}{COLLECTION}", silent.local_addr().unwrap());
    let host = Host::new();
    add(&host, "silent", &url, &["--allow-private"]);
    let outcome = &import_together(&host, &["--max-run-time", "2s"], &["silent"])[0];
    assert_eq!(outcome["error"]["kind"], "limit", "{outcome:#}");
    let message = outcome["error"]["message"].as_str().unwrap();
    assert!(message.contains("run time limit (2s)"), "{message}");
    drop(silent);
}

#[test]
fn the_plugin_follows_redirects_only_where_the_policy_allows() {
    let target = Canned::http(taxii_collection(indicators(3)));
    let elsewhere = format!("{}{COLLECTION}", target.base);
    let mut answers = taxii_collection(indicators(2));
    answers.insert(
        "/api/collections/c1".into(),
        Answer::redirect(301, COLLECTION),
    );
    answers.insert("/moved/".into(), Answer::redirect(308, &elsewhere));
    let server = Canned::http(answers);
    let host = Host::new();
    let no_slash = format!("{}/api/collections/c1", server.base);
    add(&host, "same-origin", &no_slash, &["--allow-private"]);
    let moved = format!("{}/moved/", server.base);
    add(&host, "moved", &moved, &["--allow-private"]);
    add(
        &host,
        "moved-allowed",
        &moved,
        &["--allow-private", "--allow-origin", &target.base],
    );

    let outcomes = import_together(&host, &[], &["same-origin", "moved", "moved-allowed"]);
    assert_eq!(outcomes[0]["status"], "ok", "{:#}", outcomes[0]);
    assert_eq!(host.objects("same-origin").len(), 2);

    let refused = &outcomes[1];
    assert_eq!(refused["error"]["kind"], "denied", "{refused:#}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("redirected to {elsewhere}")),
        "{message}"
    );
    let fix = refused["error"]["fix"].as_str().unwrap();
    assert!(fix.contains("--allow-origin URL"), "{fix}");
    assert_eq!(refused["denied"], 1);

    assert_eq!(outcomes[2]["status"], "ok", "{:#}", outcomes[2]);
    assert_eq!(host.objects("moved-allowed").len(), 3);
    assert!(
        target
            .seen()
            .iter()
            .all(|r| r.target.starts_with(COLLECTION)),
        "only the allowed feed reached the other origin"
    );
}
