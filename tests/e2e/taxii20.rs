//! TAXII 2.0 servers, through the host binary and the fake TAXII server:
//! version negotiation from a Collection URL alone, paging by item range in
//! each form servers answer it, and STIX 2.0 objects stored as STIX 2.1
//! with their originals kept.

use serde_json::Value;
use taxii_feed_tests::fake_taxii::{RangeSpellings, STIX_20, Script, Speaks, TAXII_20, TAXII_21};
use taxii_feed_tests::scenario::{FEED, Scenario, ids_of, malware_20};

fn objects(count: usize) -> Vec<Value> {
    (0..count).map(malware_20).collect()
}

fn ranges(scenario: &Scenario) -> Vec<String> {
    scenario
        .objects_requests()
        .iter()
        .map(|r| r.header("range").unwrap_or("-").to_string())
        .collect()
}

#[test]
fn a_collection_url_alone_finds_taxii_20_and_later_runs_ask_in_20_first() {
    let scenario = Scenario::new(Script::v20(objects(25)), &["--page-size", "10"]);
    let report = scenario.import_ok();

    assert_eq!(report["taxii_version"], "2.0");
    assert_eq!(
        (report["stored"].as_u64(), report["pages"].as_u64()),
        (Some(25), Some(3))
    );
    let requests = scenario.server.requests();
    let asked: Vec<_> = requests[..2]
        .iter()
        .map(|r| (r.header("accept").unwrap(), r.status))
        .collect();
    assert_eq!(asked, [(TAXII_21, Some(406)), (TAXII_20, Some(200))]);
    assert_eq!(
        ranges(&scenario),
        ["items 0-9", "items 10-19", "items 20-29"]
    );
    assert!(
        scenario.objects_requests().iter().all(
            |r| r.header("accept") == Some(STIX_20) && r.param("match[version]") == Some("all")
        )
    );
    let stored = scenario.stored();
    assert_eq!(ids_of(&stored), ids_of(&objects(25)));
    for object in &stored {
        assert_eq!(object["spec_version"], "2.1");
        assert_eq!(object["is_family"], true);
        assert_eq!(object["malware_types"][0], "remote-access-trojan");
    }
    let listed: Value =
        serde_json::from_str(&scenario.host.ok(["config", "list", "--format", "json"])).unwrap();
    assert_eq!(listed[0]["taxii_version"], "2.0");

    scenario.server.clear_requests();
    let again = scenario.import_ok();
    assert_eq!(again["stored"], 0);
    let first = &scenario.server.requests()[0];
    assert_eq!(
        first.header("accept"),
        Some(TAXII_20),
        "the recorded version is asked first"
    );
    assert!(
        scenario
            .server
            .requests()
            .iter()
            .all(|r| r.status != Some(406))
    );
}

#[test]
fn a_415_also_means_asking_in_the_other_version() {
    let mut script = Script::v20(objects(3));
    script.quirks.refusal_status = 415;
    let scenario = Scenario::new(script, &[]);
    let report = scenario.import_ok();
    assert_eq!(
        (report["taxii_version"].as_str(), report["stored"].as_u64()),
        (Some("2.0"), Some(3))
    );
    let statuses: Vec<_> = scenario
        .server
        .requests()
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses[..2], [Some(415), Some(200)]);
}

#[test]
fn the_originals_of_converted_objects_are_retrievable() {
    let scenario = Scenario::new(Script::v20(objects(3)), &[]);
    scenario.import_ok();
    let originals = scenario.originals();
    assert_eq!(originals, objects(3), "byte for byte as served");
    let bundle: Value =
        serde_json::from_str(&scenario.host.ok(["retrieve", "query", FEED, "--original"])).unwrap();
    assert_eq!(bundle["spec_version"], "2.0");
    assert_eq!(bundle["objects"].as_array().unwrap().len(), 3);
}

#[test]
fn an_unknown_total_pages_until_416_and_an_empty_collection_is_complete() {
    let mut script = Script::v20(objects(20));
    script.ranges.total = false;
    let scenario = Scenario::new(script, &["--page-size", "10"]);
    let report = scenario.import_ok();
    assert_eq!(report["stored"], 20);
    assert_eq!(
        ranges(&scenario),
        ["items 0-9", "items 10-19", "items 20-29"]
    );
    let statuses: Vec<_> = scenario
        .objects_requests()
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [Some(206), Some(206), Some(416)]);

    let empty = Scenario::new(Script::v20(Vec::new()), &["--page-size", "10"]);
    let report = empty.import_ok();
    assert_eq!(
        (report["stored"].as_u64(), report["complete"].as_bool()),
        (Some(0), Some(true))
    );
    assert_eq!(ranges(&empty), ["items 0-9", "items=0-9"]);
}

#[test]
fn a_200_without_content_range_is_everything() {
    let mut script = Script::v20(objects(12));
    script.ranges.ignore = true;
    let scenario = Scenario::new(script, &["--page-size", "5"]);
    let report = scenario.import_ok();
    assert_eq!(report["stored"], 12);
    assert_eq!(
        ranges(&scenario),
        ["items 0-4"],
        "one request: it answered everything"
    );
    assert_eq!(scenario.objects_requests()[0].status, Some(200));
}

#[test]
fn smaller_pages_than_asked_are_followed_by_their_content_range() {
    let mut script = Script::v20(objects(10));
    script.max_page_size = 4;
    let scenario = Scenario::new(script, &["--page-size", "10"]);
    assert_eq!(scenario.import_ok()["stored"], 10);
    assert_eq!(ranges(&scenario), ["items 0-9", "items 4-13", "items 8-17"]);
}

#[test]
fn a_refused_range_spelling_is_tried_the_other_way_once() {
    for refuse_status in [400, 416] {
        let mut script = Script::v20(objects(15));
        script.ranges.accepts = RangeSpellings::Equals;
        script.ranges.refuse_status = refuse_status;
        let scenario = Scenario::new(script, &["--page-size", "10"]);
        assert_eq!(
            scenario.import_ok()["stored"],
            15,
            "refused with {refuse_status}"
        );
        assert_eq!(ranges(&scenario), ["items 0-9", "items=0-9", "items=10-19"]);
    }
    let mut script = Script::v20(objects(3));
    script.ranges.accepts = RangeSpellings::Space;
    let scenario = Scenario::new(script, &["--page-size", "10"]);
    assert_eq!(scenario.import_ok()["stored"], 3);
    assert_eq!(
        ranges(&scenario),
        ["items 0-9"],
        "the specification's spelling comes first"
    );
}

#[test]
fn a_range_that_does_not_advance_ends_the_run_after_storing_what_came() {
    let mut script = Script::v20(objects(30));
    script.ranges.stuck = true;
    let scenario = Scenario::new(script, &["--page-size", "10"]);
    let outcome = scenario.import();
    assert_eq!(outcome["status"], "failed", "{outcome:#}");
    assert_eq!(outcome["error"]["kind"], "malformed-response");
    let message = outcome["error"]["message"].as_str().unwrap();
    assert!(message.contains("does not advance"), "{message}");
    assert_eq!(outcome["report"]["stored"], 10);
    assert_eq!(scenario.stored().len(), 10);
    assert_eq!(ranges(&scenario), ["items 0-9", "items 10-19"]);
}

#[test]
fn a_21_request_answered_in_20_media_types_switches_to_20() {
    let mut script = Script::v20(objects(4));
    script.speaks = Speaks::Both;
    script.quirks.answer_21_as_20 = true;
    let scenario = Scenario::new(script, &[]);
    let report = scenario.import_ok();
    assert_eq!(
        (report["taxii_version"].as_str(), report["stored"].as_u64()),
        (Some("2.0"), Some(4))
    );
    let requests = scenario.server.requests();
    assert_eq!(requests[0].header("accept"), Some(TAXII_21));
    assert_eq!(requests[0].status, Some(200));
    assert_eq!(requests[1].header("accept"), Some(STIX_20));
    assert!(requests[1].header("range").is_some());
}
