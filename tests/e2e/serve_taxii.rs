//! `serve-taxii`: the stores served back as a read-only TAXII 2.1 server,
//! read by the OASIS client (taxii2-client), by plain HTTP, and by the
//! product's own plugin.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::{Value, json};
use taxii_feed_tests::host::{Host, bundle_objects, versions_of};
use taxii_feed_tests::medallion::Medallion;
use taxii_feed_tests::python::{generated_bundle, run_script};
use taxii_feed_tests::serve::{TAXII_21, TaxiiServer, get};
use taxii_feed_tests::store::{Commit, commits_of, seed_store, seed_tenant_store, store_entries};

/// Versions per commit of the seeded store: pages of 40 cut commits.
const COMMIT: usize = 50;

fn main_batch() -> PathBuf {
    generated_bundle(600, 42, None)
}

/// A host whose store `intel` holds every version of the main batch,
/// committed 50 at a time.
fn seeded_host() -> (Host, Vec<Value>, Vec<Commit>) {
    let objects = bundle_objects(&main_batch()).unwrap();
    let commits = commits_of(&objects, COMMIT);
    let host = Host::new();
    seed_store(&host, "intel", &commits);
    (host, objects, commits)
}

/// What `taxii_client_read.py` prints for the `intel` collection.
fn client_read(server: &TaxiiServer, args: &[&str]) -> Value {
    let password_file = server.password_file.display().to_string();
    let mut all = vec![
        "--discovery",
        &server.discovery_url,
        "--collection",
        "intel",
        "--user",
        &server.user,
        "--password-file",
        &password_file,
    ];
    all.extend(args);
    let printed = run_script("taxii_client_read.py", &all).unwrap();
    serde_json::from_str(&printed).unwrap()
}

fn objects_of(read: &Value) -> Vec<Value> {
    read["result"]["objects"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn taxii2_client_reads_exactly_the_store_page_by_page() {
    let (host, objects, _) = seeded_host();
    let server = TaxiiServer::start(&host, &[]).unwrap();
    let read = client_read(&server, &["--version", "all", "--per-request", "40"]);

    let base = server.discovery_url.trim_end_matches("taxii2/");
    assert_eq!(read["api_roots"], json!([format!("{base}default/")]));
    let collection = &read["collections"][0];
    assert_eq!(
        (
            &collection["alias"],
            &collection["can_read"],
            &collection["can_write"]
        ),
        (&json!("intel"), &json!(true), &json!(false))
    );
    assert_eq!(read["collection_url"], server.collection("intel"));

    assert_eq!(objects_of(&read), objects, "every version, in commit order");
    let pages: Vec<u64> = read["result"]["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert!(pages.len() > objects.len() / 40, "{pages:?}");
    assert!(pages.iter().all(|n| (1..=40).contains(n)), "{pages:?}");
    assert_eq!(pages.iter().sum::<u64>(), objects.len() as u64);
}

#[test]
fn taxii2_client_filters_match_the_store() {
    let (host, objects, commits) = seeded_host();
    let server = TaxiiServer::start(&host, &[]).unwrap();
    let store = |args: &[&str]| {
        let mut all = vec!["retrieve", "query", "intel", "--include", "all"];
        all.extend(args);
        all.extend(["--format", "jsonl"]);
        let out = host.ok(all);
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect::<Vec<Value>>()
    };
    let set = |objects: &[Value]| versions_of(objects);

    let last = client_read(&server, &["--per-request", "100"]);
    assert_eq!(set(&objects_of(&last)), set(&store(&[])));
    let first = client_read(&server, &["--version", "first"]);
    assert_eq!(
        set(&objects_of(&first)),
        set(&store(&["--versions", "first"]))
    );
    assert_ne!(set(&objects_of(&first)), set(&objects_of(&last)));

    let indicators = client_read(
        &server,
        &["--version", "all", "--type", "indicator,malware"],
    );
    let wanted: Vec<Value> = objects
        .iter()
        .filter(|o| o["type"] == "indicator" || o["type"] == "malware")
        .cloned()
        .collect();
    assert!(!wanted.is_empty());
    assert_eq!(objects_of(&indicators), wanted);

    let after = &commits[4].0;
    let later = client_read(&server, &["--version", "all", "--added-after", after]);
    assert_eq!(objects_of(&later), objects[5 * COMMIT..].to_vec());

    let id = multi_version_id(&objects);
    let versions: Vec<&Value> = objects.iter().filter(|o| o["id"] == id.as_str()).collect();
    let one = client_read(&server, &["--version", "all", "--id", &id]);
    assert_eq!(objects_of(&one).iter().collect::<Vec<_>>(), versions);

    let spec = client_read(&server, &["--version", "all", "--spec-version", "2.0"]);
    assert!(
        objects_of(&spec).is_empty(),
        "every stored object is STIX 2.1"
    );
}

/// An id with more than one version.
fn multi_version_id(objects: &[Value]) -> String {
    let mut seen = BTreeSet::new();
    objects
        .iter()
        .filter_map(|o| o["id"].as_str())
        .find(|id| !seen.insert(*id))
        .map(String::from)
        .expect("the data has multi-version objects")
}

#[test]
fn taxii2_client_reads_the_manifest_an_object_and_its_versions() {
    let (host, objects, commits) = seeded_host();
    let server = TaxiiServer::start(&host, &[]).unwrap();

    let manifest = client_read(&server, &["--read", "manifest", "--version", "all"]);
    let records = objects_of(&manifest);
    assert_eq!(records.len(), objects.len());
    for (i, (record, object)) in records.iter().zip(&objects).enumerate() {
        let version = object.get("modified").or(object.get("created"));
        assert_eq!(record["id"], object["id"]);
        assert_eq!(
            record["date_added"].as_str(),
            Some(commits[i / COMMIT].0.as_str())
        );
        if let Some(version) = version {
            assert_eq!(&record["version"], version);
        }
        assert_eq!(record["media_type"], "application/stix+json;version=2.1");
    }

    let id = multi_version_id(&objects);
    let versions: Vec<&Value> = objects.iter().filter(|o| o["id"] == id.as_str()).collect();
    let object = client_read(&server, &["--read", "object", "--object-id", &id]);
    assert_eq!(
        object["result"]["objects"],
        json!([versions.last().unwrap()])
    );
    let listed = client_read(&server, &["--read", "versions", "--object-id", &id]);
    let modified: Vec<&Value> = versions.iter().map(|o| &o["modified"]).collect();
    assert_eq!(listed["result"]["versions"], json!(modified));
}

#[test]
fn serve_taxii_answers_with_taxii_errors_media_types_and_date_headers() {
    let (host, _, commits) = seeded_host();
    let server = TaxiiServer::start(&host, &[]).unwrap();
    let objects_url = format!("{}objects/", server.collection("intel"));

    let anonymous = get(&server.discovery_url, None, TAXII_21).unwrap();
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.headers["www-authenticate"].starts_with("Basic"));
    assert_eq!(anonymous.json()["http_status"], "401");
    let wrong = get(
        &server.discovery_url,
        Some("Basic cmVhZGVyOndyb25n"),
        TAXII_21,
    )
    .unwrap();
    assert_eq!(wrong.status, 401);

    let old = "application/vnd.oasis.taxii+json; version=2.0";
    let refused = get(&objects_url, Some(&server.authorization()), old).unwrap();
    assert_eq!(refused.status, 406);

    for (url, status, says) in [
        (format!("{objects_url}?limit=0"), 400, "limit"),
        (
            format!("{objects_url}?match[color]=red"),
            400,
            "unknown parameter",
        ),
        (
            format!("{objects_url}?added_after=yesterday"),
            400,
            "not a timestamp",
        ),
        (
            server.discovery_url.replace("taxii2/", "nobody/"),
            404,
            "no API root",
        ),
        (
            server
                .discovery_url
                .replace("taxii2/", "default/collections/nothing/"),
            404,
            "no collection nothing",
        ),
        (
            format!("{objects_url}indicator--00000000-0000-4000-8000-000000000000/"),
            404,
            "no object",
        ),
    ] {
        let answer = server.get(&url).unwrap();
        assert_eq!(answer.status, status, "{url}: {}", answer.body);
        assert_eq!(answer.headers["content-type"], TAXII_21);
        let message = answer.json();
        assert_eq!(message["http_status"], status.to_string());
        assert!(
            message["description"].as_str().unwrap().contains(says),
            "{message}"
        );
    }

    let page = server
        .get(&format!("{objects_url}?limit=10&match[version]=all"))
        .unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["content-type"], TAXII_21);
    assert_eq!(page.headers["x-taxii-date-added-first"], commits[0].0);
    assert_eq!(page.headers["x-taxii-date-added-last"], commits[0].0);
    assert_eq!(page.json()["more"], true);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let posted = agent
        .post(&objects_url)
        .header("Authorization", &server.authorization())
        .header("Content-Type", TAXII_21)
        .send(r#"{"objects":[]}"#)
        .unwrap();
    assert_eq!(posted.status().as_u16(), 403, "read-only");
    let deleted = agent
        .delete(&objects_url)
        .header("Authorization", &server.authorization())
        .call()
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 405);
    assert_eq!(deleted.headers()["allow"], "GET");

    let by_alias = format!(
        "{}collections/intel/",
        server.discovery_url.replace("taxii2/", "default/")
    );
    assert_eq!(server.get(&by_alias).unwrap().json()["alias"], "intel");
}

#[test]
fn each_tenant_is_an_api_root_with_its_own_collections() {
    let (host, objects, commits) = seeded_host();
    seed_tenant_store(&host, "acme", "acme-intel", &commits[..1]);
    let server = TaxiiServer::start(&host, &[]).unwrap();
    let base = server.discovery_url.trim_end_matches("taxii2/").to_string();
    let discovery = server.get(&server.discovery_url).unwrap().json();
    assert_eq!(
        discovery["api_roots"],
        json!([format!("{base}acme/"), format!("{base}default/")])
    );
    assert_eq!(discovery["default"], format!("{base}default/"));
    let root = server.get(&format!("{base}acme/")).unwrap().json();
    assert_eq!(root["versions"], json!([TAXII_21]));
    let titles = |tenant: &str| {
        let listed = server
            .get(&format!("{base}{tenant}/collections/"))
            .unwrap()
            .json();
        let collections = listed["collections"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        collections
            .iter()
            .map(|c| c["title"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(titles("acme"), [json!("acme-intel")]);
    assert_eq!(titles("default"), [json!("intel")]);
    let acme_objects = server
        .get(&format!(
            "{}objects/?match[version]=all",
            server.collections["acme/acme-intel"]
        ))
        .unwrap()
        .json();
    assert_eq!(acme_objects["objects"], json!(objects[..COMMIT]));
    let crossed = server
        .get(&format!("{base}acme/collections/intel/"))
        .unwrap();
    assert_eq!(crossed.status, 404, "a tenant sees only its own stores");
    drop(server);

    let only = TaxiiServer::start(&host, &["--api-root", "acme"]).unwrap();
    let discovery = only.get(&only.discovery_url).unwrap().json();
    assert_eq!(
        discovery["api_roots"],
        json!([format!(
            "{}acme/",
            only.discovery_url.trim_end_matches("taxii2/")
        )])
    );
    let hidden = only
        .get(&only.discovery_url.replace("taxii2/", "default/"))
        .unwrap();
    assert_eq!(hidden.status, 404);
}

#[test]
fn a_client_resuming_from_date_added_last_misses_nothing() {
    let (host, objects, _) = seeded_host();
    let server = TaxiiServer::start(&host, &[]).unwrap();
    let objects_url = format!(
        "{}objects/?limit=60&match[version]=all",
        server.collection("intel")
    );
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..objects.len() {
        let url = match &after {
            Some(t) => format!("{objects_url}&added_after={t}"),
            None => objects_url.clone(),
        };
        let answer = server.get(&url).unwrap();
        let page = answer.json();
        let Some(got) = page["objects"].as_array().filter(|g| !g.is_empty()) else {
            break;
        };
        assert!(got.len() <= 60);
        seen.extend(got.iter().cloned());
        after = Some(answer.headers["x-taxii-date-added-last"].clone());
    }
    assert_eq!(seen, objects, "each version once, in order");
}

#[test]
fn medallion_data_served_back_and_imported_again_is_identical() {
    let medallion = Medallion::start(&main_batch()).unwrap();
    let first = Host::new();
    first.add_feed(
        "feed",
        medallion.collection("intel"),
        &medallion.user,
        &medallion.password_file(),
    );
    first.import_ok("feed");
    let served = TaxiiServer::start(&first, &[]).unwrap();

    let second = Host::new();
    second.ok([
        "config",
        "add",
        "copy",
        "--collection-url",
        served.collection("feed"),
        "--username",
        &served.user,
        "--password-file",
        &served.password_file.display().to_string(),
        "--page-size",
        "37",
        "--allow-private",
    ]);
    let report = second.import_ok("copy");
    let original = store_entries(&first, "feed");
    let copy = store_entries(&second, "copy");
    assert_eq!(report["stored"], original.len(), "{report:#}");
    assert!(report["pages"].as_u64().unwrap() > 1, "{report:#}");
    assert_eq!(copy, original, "the same keys and the same bytes");
    let expected = versions_of(&bundle_objects(&main_batch()).unwrap());
    assert_eq!(second.versions("copy"), expected);

    let again = second.import_ok("copy");
    assert_eq!(
        (again["received"].as_u64(), again["stored"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn the_server_password_is_never_taken_from_the_command_line() {
    let host = Host::new();
    let run = host.run([
        "serve-taxii",
        "--listen",
        "127.0.0.1:0",
        "--user",
        "reader",
        "--password",
        "hunter2",
    ]);
    assert_eq!(run.code, Some(2), "the command line was wrong: {run:?}");
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("--password-env VAR or --password-file PATH"),
        "{}",
        run.stderr
    );
    let help = host.ok(["serve-taxii", "--help"]);
    assert!(help.contains("[default: 127.0.0.1:"), "{help}");
}
