//! Both server paging designs of TAXII 2.1, through the host binary and the
//! fake TAXII server: medallion's consuming `next` session and a stateless
//! keyset token. A failed page never makes the client resend a token or
//! skip data: it resumes from the last committed cursor, in the same run
//! or the next.

use std::time::Duration;

use taxii_feed_tests::fake_taxii::{Fault, FaultKind, Paging, Recorded, Script, date_added};
use taxii_feed_tests::scenario::{Scenario, ids_of, indicators};

fn tokens(requests: &[Recorded]) -> Vec<Option<&str>> {
    requests.iter().map(|r| r.param("next")).collect()
}

fn keyset(count: usize) -> Script {
    Script {
        paging: Paging::Keyset,
        ..Script::new(indicators(count))
    }
}

#[test]
fn a_consuming_session_is_followed_with_every_filter_on_every_page() {
    let scenario = Scenario::new(
        Script::new(indicators(25)),
        &[
            "--page-size",
            "10",
            "--type",
            "indicator",
            "--added-after",
            "2024-01-01T00:00:00Z",
        ],
    );
    let report = scenario.import_ok();
    assert_eq!(report["stored"], 25);
    assert_eq!(scenario.stored_ids(), ids_of(&indicators(25)));
    let requests = scenario.objects_requests();
    assert_eq!(
        tokens(&requests),
        [None, Some("session-1"), Some("session-1")]
    );
    for request in &requests {
        assert_eq!(
            request.status,
            Some(200),
            "the server refuses changed filters"
        );
        assert_eq!(request.param("limit"), Some("10"));
        assert_eq!(request.param("added_after"), Some("2024-01-01T00:00:00Z"));
        assert_eq!(request.param("match[type]"), Some("indicator"));
        assert_eq!(request.param("match[version]"), Some("all"));
    }
}

#[test]
fn keyset_tokens_are_followed() {
    let scenario = Scenario::new(keyset(25), &["--page-size", "10"]);
    assert_eq!(scenario.import_ok()["stored"], 25);
    let requests = scenario.objects_requests();
    let expected = [
        None,
        Some(format!("{}|9", date_added(9))),
        Some(format!("{}|19", date_added(19))),
    ];
    let sent: Vec<Option<String>> = tokens(&requests)
        .iter()
        .map(|t| t.map(String::from))
        .collect();
    assert_eq!(sent, expected);
}

/// A page lost after the server moved on (a 502 from a proxy, a dropped
/// connection) must not be skipped: the run resumes from the cursor of the
/// last committed page with a new request and never sends that token again.
#[test]
fn a_lost_page_resumes_from_the_cursor_in_both_designs() {
    let consuming = Paging::ConsumingNext {
        ttl: Duration::from_secs(300),
    };
    for paging in [consuming, Paging::Keyset] {
        for kind in [FaultKind::Status(502), FaultKind::Drop] {
            let what = format!("{paging:?} {kind:?}");
            let script = Script {
                paging,
                faults: vec![Fault { at: 1, kind }],
                ..Script::new(indicators(25))
            };
            let scenario = Scenario::new(script, &["--page-size", "10"]);
            let report = scenario.import_ok();
            assert_eq!(scenario.stored_ids(), ids_of(&indicators(25)), "{what}");
            assert_eq!(report["stored"], 25, "{what}");
            let notes = report["notes"].to_string();
            assert!(
                notes.contains("resumed from the last committed cursor"),
                "{what}: {notes}"
            );

            let requests = scenario.objects_requests();
            assert_ne!(requests[1].status, Some(200), "{what}");
            assert_eq!(
                requests[2].param("next"),
                None,
                "{what}: a new request, no token"
            );
            assert_eq!(
                requests[2].param("added_after"),
                Some(date_added(9).as_str()),
                "{what}"
            );
            if paging == consuming {
                let lost = requests[1].param("next");
                let resent = requests[2..].iter().filter(|r| r.param("next") == lost);
                assert_eq!(
                    resent.count(),
                    0,
                    "{what}: the consumed token is never sent again"
                );
            }
        }
    }
}

#[test]
fn an_expired_session_token_resumes_from_the_cursor() {
    let script = Script {
        paging: Paging::ConsumingNext {
            ttl: Duration::ZERO,
        },
        ..Script::new(indicators(25))
    };
    let scenario = Scenario::new(script, &["--page-size", "10"]);
    let report = scenario.import_ok();
    assert_eq!(report["stored"], 25);
    assert_eq!(scenario.stored_ids(), ids_of(&indicators(25)));
    let requests = scenario.objects_requests();
    let refused: Vec<_> = requests.iter().filter(|r| r.status == Some(400)).collect();
    assert_eq!(
        refused.len(),
        2,
        "each session token expired before its second page"
    );
    let afters: Vec<_> = requests
        .iter()
        .filter(|r| r.param("next").is_none())
        .map(|r| r.param("added_after").map(String::from))
        .collect();
    assert_eq!(afters, [None, Some(date_added(9)), Some(date_added(19))]);
}

#[test]
fn when_the_run_gives_up_the_next_run_resumes_from_the_cursor() {
    let down = (1..=4)
        .map(|at| Fault {
            at,
            kind: FaultKind::Status(503),
        })
        .collect();
    let script = Script {
        faults: down,
        ..Script::new(indicators(25))
    };
    let scenario = Scenario::new(script, &["--page-size", "10"]);
    // With one attempt the host hands each 503 to the plugin instead of
    // retrying it (see politeness.rs), so the plugin's own resumes show.
    let outcome = scenario.import_with(&["--attempts", "1"]);
    assert_eq!(outcome["error"]["kind"], "unavailable", "{outcome:#}");
    assert_eq!(
        outcome["report"]["stored"], 10,
        "the first page stays committed"
    );
    assert_eq!(scenario.stored().len(), 10);
    assert_eq!(
        scenario.objects_requests().len(),
        5,
        "one walk and three resumes"
    );

    scenario.server.edit(|script| script.faults.clear());
    scenario.server.clear_requests();
    let report = scenario.import_ok();
    assert_eq!(report["stored"], 15);
    assert_eq!(scenario.stored_ids(), ids_of(&indicators(25)));
    let first = &scenario.objects_requests()[0];
    assert_eq!(first.param("next"), None);
    assert_eq!(first.param("added_after"), Some(date_added(9).as_str()));
}

/// A feed pointed at another collection (`config add --replace`) starts
/// that collection from its beginning: the cursor it had belongs to the old
/// one, whose objects may all have been added after the new one's.
#[test]
fn a_feed_moved_to_another_collection_reads_it_from_the_beginning() {
    use taxii_feed_tests::fake_taxii::{Collection, FakeTaxii};
    use taxii_feed_tests::host::Host;

    const OLD: &str = "00000000-0000-4000-8000-00000000000a";
    const NEW: &str = "00000000-0000-4000-8000-00000000000b";
    // Both collections get the same `date_added` values, so the old one's
    // cursor is past every object of the new one.
    let renamed = |from: &str, to: &str| {
        indicators(12)
            .into_iter()
            .map(|mut object| {
                let id = object["id"].as_str().unwrap().replacen(from, to, 1);
                object["id"] = id.into();
                object
            })
            .collect::<Vec<_>>()
    };
    let old_objects = indicators(12);
    let new_objects = renamed("indicator--6e8f4a1c-", "indicator--7e8f4a1c-");
    let server = FakeTaxii::start(Script {
        collections: vec![
            Collection::new(OLD, old_objects.clone()),
            Collection::new(NEW, new_objects.clone()),
        ],
        ..Script::new(Vec::new())
    });
    let host = Host::new();
    let add = |url: &str, extra: &[&str]| {
        let mut args = vec![
            "config",
            "add",
            "feed",
            "--collection-url",
            url,
            "--allow-private",
        ];
        args.extend(extra);
        host.ok(args)
    };

    add(&server.collection_url_of(OLD), &[]);
    assert_eq!(host.import_ok("feed")["stored"], 12);

    let said = add(&server.collection_url_of(NEW), &["--replace"]);
    assert!(said.contains("from its beginning"), "{said}");
    let report = host.import_ok("feed");
    assert_eq!(report["stored"], 12, "{report:#}");
    assert_eq!(
        report["previous_cursor"],
        serde_json::Value::Null,
        "{report:#}"
    );
    let mut expected = ids_of(&old_objects);
    expected.extend(ids_of(&new_objects));
    let stored: std::collections::BTreeSet<String> = host
        .versions("feed")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(stored, expected.into_iter().collect());

    // The same URL again changes nothing: the cursor stays.
    let said = add(
        &server.collection_url_of(NEW),
        &["--replace", "--page-size", "5"],
    );
    assert!(!said.contains("from its beginning"), "{said}");
    assert_eq!(host.import_ok("feed")["received"], 0);
}
