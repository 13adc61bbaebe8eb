//! How the product copes with TAXII 2.1 servers as they are in the field
//! (`../shared/taxii-notes.md`, "What goes wrong in the field"), through the
//! host binary and the fake TAXII server: one test per behaviour, each
//! asserting what was stored and what was requested.

use serde_json::{Value, json};
use taxii_feed_tests::fake_taxii::{
    Collection, DateHeader, Fault, FaultKind, Paging, Script, date_added,
};
use taxii_feed_tests::scenario::{FEED, Scenario, ids_of, indicator, indicators};

fn no_next(script: Script) -> Script {
    Script {
        paging: Paging::NoNext,
        ..script
    }
}

fn notes(report: &Value) -> String {
    report["notes"].to_string()
}

#[test]
fn more_without_next_on_an_inclusive_server_loses_and_doubles_nothing() {
    let mut script = no_next(Script::new(indicators(25)));
    script.inclusive_added_after = true;
    script.collections[0] = script.collections[0].clone().share_date_added(8, 12);
    let scenario = Scenario::new(script, &["--page-size", "10"]);
    let report = scenario.import_ok();

    assert_eq!(
        scenario.stored_ids(),
        ids_of(&indicators(25)),
        "each exactly once"
    );
    assert_eq!(report["stored"], 25);
    assert!(
        report["duplicates"].as_u64().unwrap() > 0,
        "the boundary came again: {report:#}"
    );
    let afters: Vec<_> = scenario
        .objects_requests()
        .iter()
        .map(|r| r.param("added_after").map(String::from))
        .collect();
    assert_eq!(
        afters[..2],
        [None, Some(date_added(8))],
        "continued from the boundary"
    );
    assert!(
        scenario
            .objects_requests()
            .iter()
            .all(|r| r.param("next").is_none())
    );
}

#[test]
fn a_full_page_sharing_one_date_added_makes_the_page_grow() {
    let mut script = no_next(Script::new(indicators(20)));
    script.inclusive_added_after = true;
    script.collections[0] = script.collections[0].clone().share_date_added(0, 14);
    let scenario = Scenario::new(script, &["--page-size", "5"]);
    let report = scenario.import_ok();
    assert_eq!(scenario.stored_ids(), ids_of(&indicators(20)));
    let limits: Vec<_> = scenario
        .objects_requests()
        .iter()
        .map(|r| r.param("limit").unwrap().to_string())
        .collect();
    assert_eq!(limits, ["5", "5", "10", "20"]);
    assert!(
        notes(&report).contains("share one date_added"),
        "{report:#}"
    );
}

#[test]
fn a_next_that_repeats_ends_the_run_after_storing_what_came() {
    let mut script = Script::new(indicators(30));
    script.quirks.repeat_first_page = true;
    let scenario = Scenario::new(script, &["--page-size", "10"]);
    let outcome = scenario.import();
    assert_eq!(
        outcome["error"]["kind"], "malformed-response",
        "{outcome:#}"
    );
    let message = outcome["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("paging loop") && message.contains("same `next`"),
        "{message}"
    );
    assert_eq!(scenario.stored_ids(), ids_of(&indicators(10)));
    assert_eq!(
        scenario.objects_requests().len(),
        4,
        "the first page and three repeats"
    );
}

#[test]
fn more_true_with_nothing_new_ends_the_run() {
    let mut script = Script::new(indicators(12));
    script.paging = Paging::Keyset;
    script.quirks.endless_empty_pages = true;
    let scenario = Scenario::new(script, &["--page-size", "10"]);
    let outcome = scenario.import();
    assert_eq!(
        outcome["error"]["kind"], "malformed-response",
        "{outcome:#}"
    );
    assert_eq!(
        scenario.stored_ids(),
        ids_of(&indicators(12)),
        "what came is stored"
    );
    assert_eq!(scenario.objects_requests().len(), 5);
}

#[test]
fn a_missing_date_header_keeps_the_previous_cursor_and_says_so() {
    let mut script = Script::new(indicators(5));
    script.quirks.date_added_last = DateHeader::Missing;
    let scenario = Scenario::new(script, &[]);
    let report = scenario.import_ok();
    assert_eq!(report["cursor"], Value::Null);
    assert!(
        notes(&report).contains("without X-TAXII-Date-Added-Last"),
        "{report:#}"
    );

    let again = scenario.import_ok();
    assert_eq!(
        (again["stored"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(5))
    );
    let second = &scenario.objects_requests()[1];
    assert_eq!(second.param("added_after"), None, "no cursor to send");
}

#[test]
fn a_date_header_that_is_not_rfc3339_keeps_the_previous_cursor() {
    let scenario = Scenario::new(Script::new(indicators(5)), &[]);
    let first = scenario.import_ok();
    let cursor = first["cursor"].as_str().unwrap().to_string();
    assert_eq!(cursor, date_added(4));

    scenario.server.edit(|script| {
        script.quirks.date_added_last = DateHeader::Fixed("Wed, 01 May 2024 00:00:00 GMT".into());
        script.collections[0].push((5..8).map(indicator).collect());
    });
    let second = scenario.import_ok();
    assert_eq!(second["stored"], 3);
    assert_eq!(second["cursor"], cursor.as_str(), "kept");
    assert!(
        notes(&second).contains("not an RFC 3339 timestamp"),
        "{second:#}"
    );
    scenario.import_ok();
    let last = scenario.objects_requests().pop().unwrap();
    assert_eq!(last.param("added_after"), Some(cursor.as_str()));
}

#[test]
fn the_cursor_is_sent_back_exactly_as_received() {
    let odd = "2024-05-01T00:00:00.004004+00:00";
    let mut script = Script::new(indicators(5));
    script.quirks.date_added_last = DateHeader::Fixed(odd.into());
    let scenario = Scenario::new(script, &[]);
    assert_eq!(scenario.import_ok()["cursor"], odd);
    scenario.import_ok();
    let last = scenario.objects_requests().pop().unwrap();
    assert_eq!(
        last.param("added_after"),
        Some(odd),
        "not rounded, not reformatted"
    );
    assert_eq!(scenario.host.objects(FEED).len(), 5);
}

#[test]
fn media_types_are_compared_by_their_parts_and_json_is_accepted() {
    for (media, lenient) in [
        ("application/taxii+json; version=2.1", false),
        ("Application/TAXII+JSON;Version=\"2.1\"", false),
        ("application/json; charset=utf-8", true),
        ("application/stix+json;version=2.1", true),
    ] {
        let mut script = Script::new(indicators(3));
        script.quirks.content_type = Some(media.into());
        let scenario = Scenario::new(script, &[]);
        let report = scenario.import_ok();
        assert_eq!(report["stored"], 3, "{media}");
        assert_eq!(
            notes(&report).contains("read it as TAXII 2.1"),
            lenient,
            "{media}: {report:#}"
        );
    }
    let mut script = Script::new(indicators(3));
    script.quirks.content_type = Some("text/html".into());
    let scenario = Scenario::new(script, &[]);
    let outcome = scenario.import();
    assert_eq!(outcome["error"]["kind"], "malformed-response");
    assert!(
        outcome["error"]["message"]
            .as_str()
            .unwrap()
            .contains("text/html")
    );
    assert!(scenario.stored().is_empty());
}

#[test]
fn a_missing_more_reads_as_false_and_an_empty_answer_as_no_objects() {
    let mut script = Script::new(indicators(5));
    script.quirks.omit_more = true;
    let scenario = Scenario::new(script, &["--page-size", "10"]);
    let report = scenario.import_ok();
    assert_eq!(
        (report["stored"].as_u64(), report["complete"].as_bool()),
        (Some(5), Some(true))
    );
    assert_eq!(scenario.objects_requests().len(), 1);

    let empty = Scenario::new(Script::new(Vec::new()), &[]);
    let report = empty.import_ok();
    assert_eq!(
        (report["received"].as_u64(), report["complete"].as_bool()),
        (Some(0), Some(true))
    );
}

#[test]
fn objects_under_another_key_are_reported_not_taken_for_an_empty_feed() {
    let mut script = Script::new(indicators(4));
    script.quirks.objects_key = "data".into();
    let scenario = Scenario::new(script, &[]);
    let report = scenario.import_ok();
    assert_eq!(report["stored"], 0);
    assert_eq!(
        report["cursor"],
        Value::Null,
        "objects not seen are not skipped later"
    );
    let warned = report["notes"].as_array().unwrap().iter().any(|n| {
        n["level"] == "Warn"
            && n["message"]
                .as_str()
                .unwrap()
                .contains("`data` (4 STIX-like")
    });
    assert!(warned, "{report:#}");
    let text = scenario.host.run(["import", FEED]);
    assert!(
        text.stdout.contains("note: the server sent no `objects`"),
        "{}",
        text.stdout
    );
}

#[test]
fn a_rate_limit_ends_the_run_with_its_delay_and_keeps_the_committed_pages() {
    let mut script = Script::new(indicators(25));
    script.faults = vec![Fault {
        at: 1,
        kind: FaultKind::Status(429),
    }];
    let scenario = Scenario::new(script, &["--page-size", "10"]);
    // The host waits out short rate limits itself (see politeness.rs); with
    // no wait allowed, the plugin gets the 429 and must end the run.
    let outcome = scenario.import_with(&["--max-retry-wait", "0s"]);
    assert_eq!(outcome["error"]["kind"], "rate-limited", "{outcome:#}");
    assert_eq!(scenario.stored().len(), 10);
    assert_eq!(
        scenario.objects_requests().len(),
        2,
        "not retried within the run"
    );
}

#[test]
fn a_206_answer_is_accepted() {
    let mut script = Script::new(indicators(15));
    script.quirks.status_206 = true;
    let scenario = Scenario::new(script, &["--page-size", "10"]);
    assert_eq!(scenario.import_ok()["stored"], 15);
    assert!(
        scenario
            .objects_requests()
            .iter()
            .all(|r| r.status == Some(206))
    );
}

#[test]
fn bad_objects_are_quarantined_and_the_rest_of_the_page_stored() {
    let mut objects = indicators(6);
    objects[1].as_object_mut().unwrap().remove("pattern");
    objects[3]["id"] = json!("indicator--not-a-uuid");
    objects.push(json!("not an object"));
    let scenario = Scenario::new(Script::new(objects), &[]);
    let report = scenario.import_ok();
    assert_eq!(
        (report["stored"].as_u64(), report["rejected_count"].as_u64()),
        (Some(4), Some(3))
    );
    let good: Vec<_> = [0, 2, 4, 5].into_iter().map(indicator).collect();
    assert_eq!(scenario.stored_ids(), ids_of(&good));

    let out = scenario.host.ok([
        "retrieve",
        "query",
        FEED,
        "--quarantine",
        "--format",
        "jsonl",
    ]);
    let kept: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut reasons: Vec<&str> = kept.iter().map(|e| e["reason"].as_str().unwrap()).collect();
    reasons.sort();
    assert_eq!(reasons.len(), 3);
    assert!(
        reasons.contains(&"indicator without `pattern`"),
        "{reasons:?}"
    );
    assert!(kept.iter().any(|e| e["object"] == json!("not an object")));
}

#[test]
fn the_page_limit_ends_a_run_early_and_the_next_run_goes_on() {
    let scenario = Scenario::new(
        Script::new(indicators(25)),
        &["--page-size", "5", "--page-limit", "2"],
    );
    let outcome = scenario.import();
    assert_eq!(outcome["status"], "partial", "{outcome:#}");
    assert_eq!(scenario.stored().len(), 10);
    assert_eq!(scenario.objects_requests().len(), 2);
    let listed = scenario.host.ok(["config", "list"]);
    assert!(listed.contains("2 pages"), "{listed}");

    for _ in 0..2 {
        scenario.import();
    }
    assert_eq!(scenario.stored_ids(), ids_of(&indicators(25)));
    let afters: Vec<_> = scenario
        .objects_requests()
        .iter()
        .filter(|r| r.param("next").is_none())
        .map(|r| r.param("added_after").map(String::from))
        .collect();
    assert_eq!(afters, [None, Some(date_added(9)), Some(date_added(19))]);
}

#[test]
fn the_deadline_ends_a_slow_run_keeping_what_was_committed() {
    let mut script = Script::new(indicators(40));
    script.delay = std::time::Duration::from_millis(400);
    let scenario = Scenario::new(script, &["--page-size", "4", "--deadline", "1s"]);
    let outcome = scenario.import();
    assert_eq!(outcome["error"]["kind"], "limit", "{outcome:#}");
    let message = outcome["error"]["message"].as_str().unwrap();
    assert!(message.contains("run time limit (1s)"), "{message}");
    assert!(
        outcome["error"]["fix"]
            .as_str()
            .unwrap()
            .contains("--deadline")
    );
    let kept = scenario.stored().len();
    assert!(
        kept > 0 && kept < 40,
        "some pages committed, not all: {kept}"
    );

    scenario
        .server
        .edit(|script| script.delay = std::time::Duration::ZERO);
    scenario.import_ok();
    assert_eq!(scenario.stored_ids(), ids_of(&indicators(40)));
    let resumed = scenario
        .objects_requests()
        .into_iter()
        .filter(|r| r.param("next").is_none())
        .nth(1)
        .unwrap();
    assert_eq!(
        resumed.param("added_after"),
        Some(date_added(kept - 1).as_str())
    );
}

#[test]
fn a_second_collection_is_not_confused_with_the_first() {
    let mut script = Script::new(indicators(3));
    script
        .collections
        .push(Collection::new("other", indicators(7)));
    let scenario = Scenario::new(script, &[]);
    assert_eq!(scenario.import_ok()["stored"], 3);
    let path = &scenario.objects_requests()[0].path;
    assert!(
        path.contains(taxii_feed_tests::fake_taxii::COLLECTION_ID),
        "{path}"
    );
}
