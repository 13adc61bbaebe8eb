//! medallion end to end from `discover`, with real ATT&CK objects (STIX 2.0
//! served by a TAXII 2.1 server): discover, configure from the printed
//! Collection URL, import, import again; a page lost between medallion and
//! the client (by a proxy, after medallion's `next` session moved on) loses
//! nothing; and, when the shared data is there, a slice of ATT&CK
//! Enterprise gives the same store through medallion as through the fake
//! server over TAXII 2.0.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use taxii_feed_tests::attack::{self, validate_21};
use taxii_feed_tests::fake_taxii::Script;
use taxii_feed_tests::flaky_proxy::FlakyProxy;
use taxii_feed_tests::host::Host;
use taxii_feed_tests::medallion::Medallion;
use taxii_feed_tests::repo_root;
use taxii_feed_tests::scenario::{FEED, Scenario};

fn sample_bundle() -> PathBuf {
    repo_root().join("tests/fixtures/attack-enterprise-2.0-sample.json")
}

fn by_id(objects: Vec<Value>) -> BTreeMap<String, Value> {
    objects
        .into_iter()
        .map(|o| (o["id"].as_str().unwrap_or_default().to_string(), o))
        .collect()
}

/// A host with feed `feed` on `url`, medallion's credentials, `page_size`.
fn host_for(server: &Medallion, url: &str, page_size: &str) -> Host {
    let host = Host::new();
    let password = server.password_file().display().to_string();
    host.ok([
        "config",
        "add",
        FEED,
        "--collection-url",
        url,
        "--username",
        &server.user,
        "--password-file",
        &password,
        "--allow-private",
        "--page-size",
        page_size,
    ]);
    host
}

#[test]
fn discover_then_configure_from_the_printed_url_then_import_twice() {
    let server = Medallion::start(&sample_bundle()).unwrap();
    let host = Host::new();
    let password = server.password_file().display().to_string();
    let out = host.ok([
        "discover",
        &server.urls.discovery_url,
        "--username",
        &server.user,
        "--password-file",
        &password,
        "--allow-private",
    ]);
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("Intel"))
        .unwrap_or_else(|| panic!("no Intel collection in:\n{out}"));
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http"))
        .unwrap();
    assert_eq!(url, server.collection("intel"));
    assert!(
        out.contains("discovery") && out.contains("TAXII 2.1"),
        "{out}"
    );

    host.ok([
        "config",
        "add",
        FEED,
        "--collection-url",
        url,
        "--username",
        &server.user,
        "--password-file",
        &password,
        "--allow-private",
    ]);
    let report = host.import_ok(FEED);
    let sample = attack::sample();
    assert_eq!(report["stored"], sample.len(), "{report:#}");
    assert_eq!(report["taxii_version"], "2.1");
    let stored = host.objects(FEED);
    assert!(stored.iter().all(|o| o["spec_version"] == "2.1"));
    let ids: Vec<_> = by_id(stored).into_keys().collect();
    assert_eq!(ids, by_id(sample).into_keys().collect::<Vec<_>>());

    let again = host.import_ok(FEED);
    assert_eq!(
        (again["received"].as_u64(), again["stored"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn a_page_lost_between_medallion_and_the_client_loses_nothing() {
    let server = Medallion::start(&sample_bundle()).unwrap();
    let proxy = FlakyProxy::start(&server.urls.base_url);
    proxy.lose_objects_answer(2);
    let through_proxy = host_for(&server, &proxy.url_for(server.collection("intel")), "7");
    let report = through_proxy.import_ok(FEED);
    assert!(
        report["notes"].to_string().contains("resumed"),
        "{report:#}"
    );

    let direct = host_for(&server, server.collection("intel"), "7");
    direct.import_ok(FEED);
    let stored = through_proxy.objects(FEED);
    assert_eq!(stored.len(), attack::sample().len());
    assert!(
        by_id(stored) == by_id(direct.objects(FEED)),
        "the same store as without the fault"
    );

    let objects: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.is_objects())
        .collect();
    let lost = &objects[2];
    assert_eq!(
        (lost.upstream_status, lost.status),
        (200, 502),
        "medallion served it"
    );
    let token = lost
        .param("next")
        .expect("the lost page was asked with the session token");
    assert_eq!(objects[3].param("next"), None, "a new request follows");
    assert!(
        objects[3].param("added_after").is_some(),
        "from the committed cursor"
    );
    assert!(
        objects[3..].iter().all(|s| s.param("next") != Some(token)),
        "the consumed token is never sent again"
    );
}

#[test]
fn a_slice_of_attack_enterprise_through_medallion_matches_taxii_20() {
    let Some(objects) = attack::enterprise_attack() else {
        return;
    };
    let slice = slice_of(&objects, 20);
    let dir = tempfile::tempdir().unwrap();
    let bundle = write_bundle(dir.path(), &slice);
    let server = Medallion::start(&bundle).unwrap();
    let through_medallion = host_for(&server, server.collection("intel"), "100");
    assert_eq!(through_medallion.import_ok(FEED)["stored"], slice.len());

    let over_20 = Scenario::new(Script::v20(slice.clone()), &["--page-size", "100"]);
    over_20.import_ok();
    let stored = through_medallion.objects(FEED);
    assert!(
        by_id(stored.clone()) == by_id(over_20.stored()),
        "the same store both ways"
    );
    validate_21(&stored, dir.path()).unwrap();
}

/// The first `per_type` objects of each type, by id.
fn slice_of(objects: &[Value], per_type: usize) -> Vec<Value> {
    let mut sorted: Vec<&Value> = objects.iter().collect();
    sorted.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    let mut taken: BTreeMap<&str, usize> = BTreeMap::new();
    sorted
        .into_iter()
        .filter(|o| {
            let count = taken
                .entry(o["type"].as_str().unwrap_or_default())
                .or_default();
            *count += 1;
            *count <= per_type
        })
        .cloned()
        .collect()
}

fn write_bundle(dir: &Path, objects: &[Value]) -> PathBuf {
    let path = dir.join("slice.json");
    let bundle = json!({"type": "bundle", "id": "bundle--1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b",
                        "spec_version": "2.0", "objects": objects});
    std::fs::write(&path, bundle.to_string()).unwrap();
    path
}
