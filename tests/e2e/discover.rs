//! `discover` against fake TAXII servers: what a discovery, API root or
//! collection URL (or a bare origin) leads to, the Collection URLs it
//! prints, and what it may reach.

use serde_json::Value;
use taxii_feed_tests::fake_taxii::{COLLECTION_ID, Collection, FakeTaxii, Script, Speaks};
use taxii_feed_tests::host::Host;
use taxii_feed_tests::scenario::{ids_of, indicators, malware_20};
use taxii_feed_tests::write_private;

const USER: &str = "analyst";

/// A server requiring a password, with two collections in `api1`, whose
/// discovery also lists an API root on `other`'s origin.
fn servers() -> (FakeTaxii, FakeTaxii, String) {
    let other = FakeTaxii::start(Script::new(indicators(2)));
    let password = taxii_feed_tests::random_password();
    let mut script = Script::new(indicators(5));
    script.credentials = Some((USER.into(), password.clone()));
    script
        .collections
        .push(Collection::new("second", indicators(1)));
    script.discovery_roots = Some(vec!["/api1/".into(), other.api_root_url()]);
    (FakeTaxii::start(script), other, password)
}

fn password_file(host: &Host, password: &str) -> String {
    let path = host.data_dir.path().join("password");
    write_private(&path, password);
    path.display().to_string()
}

/// The Collection URL on the line of the collection titled `title`.
fn printed_url(out: &str, title: &str) -> String {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with(title))
        .unwrap_or_else(|| panic!("no line for {title} in:\n{out}"));
    line.split_whitespace()
        .find(|w| w.starts_with("http"))
        .unwrap()
        .to_string()
}

#[test]
fn discovery_prints_collection_urls_that_configure_a_feed() {
    let (server, other, password) = servers();
    let host = Host::new();
    let file = password_file(&host, &password);
    let discovery = format!("{}/taxii2/", server.base_url());
    let out = host.ok([
        "discover",
        &discovery,
        "--username",
        USER,
        "--password-file",
        &file,
        "--allow-private",
    ]);

    let url = printed_url(&out, &format!("Collection {COLLECTION_ID}"));
    assert_eq!(url, server.collection_url());
    assert_eq!(
        printed_url(&out, "Collection second"),
        server.collection_url_of("second")
    );
    assert!(
        out.contains(&format!("API root {}", server.api_root_url())),
        "{out}"
    );
    assert!(
        out.contains(&other.api_root_url()),
        "the other root is listed:\n{out}"
    );
    assert!(out.contains("--follow-other-origins"), "{out}");
    assert!(
        other.requests().is_empty(),
        "another origin is not followed unasked"
    );
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.header("authorization").is_some())
    );

    host.ok([
        "config",
        "add",
        "feed",
        "--collection-url",
        &url,
        "--username",
        USER,
        "--password-file",
        &file,
        "--allow-private",
    ]);
    assert_eq!(host.import_ok("feed")["stored"], 5);
    assert_eq!(ids_of(&host.objects("feed")), ids_of(&indicators(5)));
}

#[test]
fn other_origins_are_read_when_asked_and_without_credentials() {
    let (server, other, password) = servers();
    let host = Host::new();
    let file = password_file(&host, &password);
    let out = host.ok([
        "discover",
        &format!("{}/taxii2/", server.base_url()),
        "--username",
        USER,
        "--password-file",
        &file,
        "--allow-private",
        "--follow-other-origins",
        "--format",
        "json",
    ]);
    let found: Value = serde_json::from_str(&out).unwrap();
    let roots = found["api_roots"].as_array().unwrap();
    assert_eq!(roots.len(), 2);
    assert_eq!(roots[1]["followed"], true, "{found:#}");
    assert_eq!(
        roots[1]["collections"][0]["collection_url"],
        other.collection_url()
    );
    assert!(!other.requests().is_empty());
    assert!(
        other
            .requests()
            .iter()
            .all(|r| r.header("authorization").is_none()),
        "credentials go to the origin typed only"
    );
}

#[test]
fn an_api_root_or_a_collection_url_shows_what_it_holds() {
    let (server, _other, password) = servers();
    let host = Host::new();
    let file = password_file(&host, &password);
    let discover = |url: &str| -> Value {
        let out = host.ok([
            "discover",
            url,
            "--username",
            USER,
            "--password-file",
            &file,
            "--allow-private",
            "--format",
            "json",
        ]);
        serde_json::from_str(&out).unwrap()
    };
    let root = discover(&server.api_root_url());
    assert_eq!(root["kind"], "ApiRoot");
    assert_eq!(
        root["api_roots"][0]["collections"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let without_slash = server.collection_url().trim_end_matches('/').to_string();
    let collection = discover(&without_slash);
    assert_eq!(collection["kind"], "Collection");
    assert_eq!(collection["api_roots"][0]["url"], server.api_root_url());
    let only = &collection["api_roots"][0]["collections"];
    assert_eq!(only.as_array().unwrap().len(), 1);
    assert_eq!(only[0]["collection_url"], server.collection_url());
    assert_eq!(only[0]["can_read"], true);
}

#[test]
fn a_bare_origin_finds_a_taxii_20_discovery() {
    let server = FakeTaxii::start(Script::v20((0..3).map(malware_20).collect()));
    let host = Host::new();
    let out = host.ok([
        "discover",
        &server.base_url(),
        "--allow-private",
        "--format",
        "json",
    ]);
    let found: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(found["url"], format!("{}/taxii/", server.base_url()));
    assert_eq!(
        (found["kind"].as_str(), found["taxii_version"].as_str()),
        (Some("Discovery"), Some("2.0"))
    );
    assert_eq!(found["api_roots"][0]["versions"][0], "taxii-2.0");
    assert_eq!(
        found["api_roots"][0]["collections"][0]["collection_url"],
        server.collection_url()
    );
    let paths: Vec<_> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths[0], "/taxii2/", "2.1's discovery path is tried first");
}

#[test]
fn failures_name_the_fix() {
    let (server, _other, _password) = servers();
    let host = Host::new();
    let discovery = format!("{}/taxii2/", server.base_url());
    let run = host.run(["discover", &discovery, "--allow-private"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("401") && run.stderr.contains("--username"),
        "{}",
        run.stderr
    );

    let run = host.run(["discover", &discovery]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("--allow-private"), "{}", run.stderr);

    let both = FakeTaxii::start(Script {
        speaks: Speaks::Both,
        ..Script::new(Vec::new())
    });
    let not_taxii = format!("{}/nothing/", both.base_url());
    let run = host.run(["discover", &not_taxii, "--allow-private"]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("404"), "{}", run.stderr);
}
