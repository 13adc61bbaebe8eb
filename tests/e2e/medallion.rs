//! The product against the reference TAXII 2.1 server: medallion on
//! 127.0.0.1 with generated STIX 2.1 data (600 objects of some 38 types,
//! several with more than one version).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use taxii_feed_tests::host::{Host, bundle_objects, files_containing, versions_of};
use taxii_feed_tests::medallion::Medallion;
use taxii_feed_tests::python::{generated_bundle, run_script, validate_stix};

/// The main data set: 600 objects, every version.
fn main_batch() -> PathBuf {
    generated_bundle(600, 42, None)
}

/// Objects added to the server later, all newer than the main batch.
fn later_batch() -> PathBuf {
    generated_bundle(60, 43, Some(&main_batch()))
}

fn expected_versions(bundle: &Path) -> BTreeSet<(String, Option<String>)> {
    versions_of(&bundle_objects(bundle).unwrap())
}

/// A host with the medallion `intel` collection configured as `feed`.
fn host_for(server: &Medallion, collection: &str) -> Host {
    let host = Host::new();
    host.add_feed(
        "feed",
        server.collection(collection),
        &server.user,
        &server.password_file(),
    );
    host
}

#[test]
fn imports_every_version_and_a_second_run_stores_nothing_new() {
    let server = Medallion::start(&main_batch()).unwrap();
    let host = host_for(&server, "intel");

    let report = host.import_ok("feed");
    let expected = expected_versions(&main_batch());
    assert_eq!(report["stored"], expected.len(), "{report:#}");
    assert_eq!(report["rejected_count"], 0, "{report:#}");
    assert_eq!(host.versions("feed"), expected);
    let distinct_ids: BTreeSet<_> = expected.iter().map(|(id, _)| id).collect();
    assert!(
        expected.len() > distinct_ids.len(),
        "the data has multi-version objects"
    );

    let again = host.import_ok("feed");
    assert_eq!(
        (again["received"].as_u64(), again["stored"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(again["previous_cursor"], report["cursor"]);
    assert_eq!(host.versions("feed"), expected);
}

#[test]
fn objects_added_to_the_server_are_imported_and_nothing_else() {
    let server = Medallion::start(&main_batch()).unwrap();
    let host = host_for(&server, "intel");
    host.import_ok("feed");

    let added = bundle_objects(&later_batch()).unwrap();
    let status = server
        .add_objects(server.collection("intel"), &added)
        .unwrap();
    assert_eq!(status["success_count"], added.len(), "{status:#}");

    let report = host.import_ok("feed");
    assert_eq!(report["stored"], added.len(), "{report:#}");
    assert_eq!(report["duplicates"], 0, "{report:#}");
    let mut expected = expected_versions(&main_batch());
    expected.extend(versions_of(&added));
    assert_eq!(host.versions("feed"), expected);
}

#[test]
fn a_page_size_of_7_gives_the_same_store_as_100() {
    let server = Medallion::start(&main_batch()).unwrap();
    let small = Host::new();
    let large = Host::new();
    for (host, size) in [(&small, "7"), (&large, "100")] {
        host.ok([
            "config",
            "add",
            "feed",
            "--collection-url",
            server.collection("intel"),
            "--username",
            &server.user,
            "--password-file",
            &server.password_file().display().to_string(),
            "--page-size",
            size,
            "--allow-private",
        ]);
        host.import_ok("feed");
    }
    let small_objects = small.objects("feed");
    assert_eq!(small_objects, large.objects("feed"));
    assert_eq!(small_objects.len(), expected_versions(&main_batch()).len());
}

#[test]
fn a_wrong_password_is_unauthorized_and_stores_nothing() {
    let server = Medallion::start(&main_batch()).unwrap();
    let host = Host::new();
    let wrong = host.data_dir.path().join("wrong-password");
    taxii_feed_tests::write_private(&wrong, "not-the-password");
    host.add_feed("feed", server.collection("intel"), &server.user, &wrong);

    let run = host.run(["import", "feed"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("unauthorized"), "{}", run.stderr);
    assert!(
        run.stderr.contains("fix: check the username"),
        "{}",
        run.stderr
    );
    let outcome = host.import("feed").unwrap();
    assert_eq!(outcome["error"]["kind"], "unauthorized");
    assert_eq!(outcome["report"]["stored"], 0);
    assert!(host.objects("feed").is_empty());
}

#[test]
fn a_collection_that_cannot_be_read_gives_its_own_error() {
    let server = Medallion::start(&main_batch()).unwrap();
    let host = host_for(&server, "locked");
    let outcome = host.import("feed").unwrap();
    assert_eq!(outcome["status"], "failed");
    assert_eq!(outcome["error"]["kind"], "forbidden");
    let message = outcome["error"]["message"].as_str().unwrap();
    assert!(message.contains("can_read: false"), "{message}");
    assert!(host.objects("feed").is_empty());
}

#[test]
fn taxii2_client_reads_the_same_versions_as_the_store() {
    let server = Medallion::start(&main_batch()).unwrap();
    let host = host_for(&server, "intel");
    host.import_ok("feed");

    let printed = run_script(
        "taxii_client_versions.py",
        &[
            "--url",
            server.collection("intel"),
            "--user",
            &server.user,
            "--password-file",
            &server.password_file().display().to_string(),
        ],
    )
    .unwrap();
    let client: BTreeSet<(String, Option<String>)> = printed
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            (
                v["id"].as_str().unwrap().into(),
                v["modified"].as_str().map(String::from),
            )
        })
        .collect();
    assert_eq!(client, host.versions("feed"));
}

#[test]
fn retrieved_bundles_pass_stix2_validator() {
    let server = Medallion::start(&main_batch()).unwrap();
    let host = host_for(&server, "intel");
    host.import_ok("feed");
    for versions in ["last", "all"] {
        let bundle = host.ok(["query", "_retrieve query feed", "--versions", versions]);
        let path = host.data_dir.path().join(format!("bundle-{versions}.json"));
        std::fs::write(&path, &bundle).unwrap();
        let parsed: Value = serde_json::from_str(&bundle).unwrap();
        assert!(!parsed["objects"].as_array().unwrap().is_empty());
        validate_stix(&path).unwrap();
    }
}

#[test]
fn the_password_appears_in_no_output_log_or_store() {
    let server = Medallion::start(&main_batch()).unwrap();
    let host = host_for(&server, "intel");
    let mut seen = String::new();
    for args in [
        vec!["-vv", "import", "feed"],
        vec!["-vv", "import", "feed", "--format", "json"],
        vec!["config", "list", "--format", "json"],
        vec!["config", "list"],
        vec!["retrieve", "list", "--format", "json"],
    ] {
        let mut command = host.command(&args);
        command.env("RUST_LOG", "trace");
        let output = command.output().unwrap();
        seen.push_str(&String::from_utf8_lossy(&output.stdout));
        seen.push_str(&String::from_utf8_lossy(&output.stderr));
    }
    assert!(seen.contains("import finished"), "the runs logged: {seen}");
    let encoded = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", server.user, server.password))
    };
    for secret in [server.password.as_str(), encoded.as_str()] {
        assert!(
            !seen.contains(secret),
            "the password leaked into the output"
        );
        let leaked = files_containing(host.data_dir.path(), secret, &[]);
        assert!(leaked.is_empty(), "the password leaked into {leaked:?}");
    }
}
