//! The paging loop against an in-process TAXII server.

use serde_json::{Value, json};

use super::*;
use crate::http::{Request, Response, TransportError};
use crate::store::{self, MemoryStore};
use fake::{FakeServer, date_added, indicator, param};

mod fake;
mod resume;
mod v20;

const COLLECTION: &str = "http://taxii.test/api/collections/c1/";

fn config(page_size: u32) -> FeedConfig {
    FeedConfig {
        name: "test".into(),
        collection_url: COLLECTION.into(),
        page_size: Some(page_size),
        ..FeedConfig::default()
    }
}

fn object_keys(store: &MemoryStore) -> Vec<&str> {
    store.keys_with_prefix(store::OBJECT_PREFIX).collect()
}

#[test]
fn imports_every_page_and_stores_the_last_cursor() {
    let mut server = FakeServer::with_indicators(25);
    let mut store = MemoryStore::default();
    let report = import_any_intel(&config(10), &mut server, &mut store).unwrap();

    assert_eq!((report.pages, report.received, report.stored), (3, 25, 25));
    assert!(report.complete);
    assert_eq!(object_keys(&store).len(), 25);
    assert_eq!(
        store.commits, 2,
        "the TAXII version, then one atomic batch for the three pages"
    );
    assert_eq!(report.cursor.as_deref(), Some(date_added(24).as_str()));
    assert_eq!(store.entries[CURSOR_KEY], date_added(24).as_bytes());
}

#[test]
fn sends_every_filter_on_every_page() {
    let mut server = FakeServer::with_indicators(25);
    let mut store = MemoryStore::default();
    let mut config = config(10);
    config.object_types = vec!["indicator".into()];
    config.added_after = Some("2000-01-01T00:00:00Z".into());
    import_any_intel(&config, &mut server, &mut store).unwrap();

    let pages = server.objects_requests();
    assert_eq!(pages.len(), 3);
    for (n, request) in pages.iter().enumerate() {
        let query: Vec<(String, String)> = request.url.query_pairs().into_owned().collect();
        let get = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.as_str());
        assert_eq!(get("limit"), Some("10"));
        assert_eq!(get("added_after"), Some("2000-01-01T00:00:00Z"));
        assert_eq!(get("match[type]"), Some("indicator"));
        assert_eq!(get("match[version]"), Some("all"));
        assert_eq!(get("next").is_some(), n > 0);
    }
}

#[test]
fn a_second_run_resumes_from_the_cursor_and_stores_only_new_objects() {
    let mut server = FakeServer::with_indicators(12);
    let mut store = MemoryStore::default();
    import_any_intel(&config(5), &mut server, &mut store).unwrap();

    let again = import_any_intel(&config(5), &mut server, &mut store).unwrap();
    assert_eq!((again.received, again.stored), (0, 0));
    let last = server.objects_requests().last().unwrap().url.clone();
    let after = param(&last, "added_after");
    assert_eq!(
        after,
        Some(date_added(11)),
        "the cursor is sent back verbatim"
    );

    server.add(indicator(100, "2024-01-01T00:00:00.000Z"));
    server.add(indicator(3, "2024-06-01T00:00:00.000Z"));
    let third = import_any_intel(&config(5), &mut server, &mut store).unwrap();
    assert_eq!((third.received, third.stored), (2, 2));
    assert_eq!(object_keys(&store).len(), 14);
}

#[test]
fn page_size_does_not_change_what_is_stored() {
    let mut small = MemoryStore::default();
    let mut large = MemoryStore::default();
    import_any_intel(&config(7), FakeServer::with_indicators(30), &mut small).unwrap();
    import_any_intel(&config(100), FakeServer::with_indicators(30), &mut large).unwrap();
    assert_eq!(small.entries, large.entries);
}

#[test]
fn duplicates_within_and_across_pages_are_stored_once() {
    let mut server = FakeServer::with_indicators(3);
    server.add(indicator(1, "2024-01-01T00:00:00.000Z"));
    server.add(indicator(1, "2024-01-01T00:00:00Z"));
    let mut store = MemoryStore::default();
    let report = import_any_intel(&config(2), &mut server, &mut store).unwrap();
    assert_eq!((report.stored, report.duplicates), (3, 2));
}

#[test]
fn each_page_asks_the_store_about_its_keys_once() {
    let mut store = MemoryStore::default();
    let report =
        import_any_intel(&config(10), FakeServer::with_indicators(30), &mut store).unwrap();
    assert_eq!(report.pages, 3);
    assert_eq!((store.exists_many_calls, store.exists_calls), (3, 0));
}

#[test]
fn a_page_of_objects_already_stored_adds_nothing_but_its_cursor() {
    let mut store = MemoryStore::default();
    import_any_intel(&config(10), FakeServer::with_indicators(30), &mut store).unwrap();
    store.entries.remove(store::CURSOR_KEY);
    let before = store.entries.clone();
    let report =
        import_any_intel(&config(10), FakeServer::with_indicators(30), &mut store).unwrap();
    assert_eq!((report.stored, report.duplicates), (0, 30));
    store.entries.remove(store::CURSOR_KEY);
    assert_eq!(store.entries, before);
}

#[test]
fn keeps_every_version_of_an_object() {
    let mut server = FakeServer::with_indicators(1);
    server.add(indicator(0, "2024-05-01T00:00:00.000Z"));
    let mut store = MemoryStore::default();
    import_any_intel(&config(10), &mut server, &mut store).unwrap();
    let id = "indicator--00000000-0000-4000-8000-000000000000";
    assert_eq!(
        object_keys(&store),
        [
            format!("object/{id}/2024-01-01T00:00:00.000000000Z"),
            format!("object/{id}/2024-05-01T00:00:00.000000000Z"),
        ]
    );
}

#[test]
fn a_bad_object_is_quarantined_and_the_rest_of_the_page_stored() {
    let mut server = FakeServer::with_indicators(2);
    let mut bad = indicator(9, "2024-01-01T00:00:00.000Z");
    bad.as_object_mut().unwrap().remove("pattern");
    server.add(bad);
    server.add(json!("not an object"));
    server.add(indicator(5, "2024-01-01T00:00:00.000Z"));
    let mut store = MemoryStore::default();
    let report = import_any_intel(&config(10), &mut server, &mut store).unwrap();

    assert_eq!((report.stored, report.rejected_count), (3, 2));
    assert_eq!(report.rejected[0].reason, "indicator without `pattern`");
    assert_eq!(
        report.rejected[0].id.as_deref(),
        Some("indicator--00000000-0000-4000-8000-000000000009")
    );
    let quarantined: Vec<_> = store.keys_with_prefix(store::QUARANTINE_PREFIX).collect();
    assert_eq!(quarantined.len(), 2);
    let entry: Value = serde_json::from_slice(&store.entries[quarantined[0]]).unwrap();
    assert!(entry["reason"].is_string() && !entry["object"].is_null());

    let again = import_any_intel(&config(10), &mut server, &mut store).unwrap();
    assert_eq!(again.received, 0);
    assert_eq!(store.keys_with_prefix(store::QUARANTINE_PREFIX).count(), 2);
}

#[test]
fn refuses_a_collection_that_cannot_be_read() {
    let mut server = FakeServer::with_indicators(3);
    server.can_read = false;
    let mut store = MemoryStore::default();
    let failure = import_any_intel(&config(10), &mut server, &mut store).unwrap_err();
    let ImportError::Forbidden(message) = failure.error else {
        panic!("expected forbidden, got {:?}", failure.error);
    };
    assert!(message.contains("can_read: false"), "{message}");
    assert!(server.objects_requests().is_empty());
    assert!(store.entries.is_empty());
}

#[test]
fn a_failure_mid_walk_keeps_committed_pages_and_the_next_run_resumes() {
    let mut server = FakeServer::with_indicators(30);
    server.fail_at = Some((2, 429));
    let mut store = MemoryStore::default();
    let failure = import_any_intel(&config(10), &mut server, &mut store).unwrap_err();
    assert!(matches!(
        failure.error,
        ImportError::RateLimited {
            retry_after_seconds: Some(30),
            ..
        }
    ));
    assert_eq!((failure.progress.pages, failure.progress.stored), (2, 20));
    assert_eq!(object_keys(&store).len(), 20);

    server.fail_at = None;
    server.requests.clear();
    let report = import_any_intel(&config(10), &mut server, &mut store).unwrap();
    assert_eq!(report.stored, 10);
    let first = &server.objects_requests()[0].url;
    assert!(
        first.query_pairs().all(|(k, _)| k != "next"),
        "a new run starts from the cursor, not from a token"
    );
    assert_eq!(object_keys(&store).len(), 30);
}

#[test]
fn a_failed_commit_stores_nothing_of_its_batch() {
    // 13 pages of 2: the TAXII version, pages 1-8, then pages 9-13, which fail.
    let mut store = MemoryStore {
        fail_commit: Some(2),
        ..MemoryStore::default()
    };
    let failure =
        import_any_intel(&config(2), FakeServer::with_indicators(25), &mut store).unwrap_err();
    assert!(matches!(failure.error, ImportError::Store(_)));
    let per_batch = 2 * commit::BATCH_PAGES as u64;
    assert_eq!(
        (failure.progress.pages, failure.progress.stored),
        (8, per_batch)
    );
    assert_eq!(object_keys(&store).len() as u64, per_batch);
    assert_eq!(
        store.entries[CURSOR_KEY],
        date_added(per_batch as usize - 1).as_bytes()
    );
}

#[test]
fn pages_are_written_in_batches_each_with_its_cursor() {
    let mut store = MemoryStore::default();
    let report = import_any_intel(&config(1), FakeServer::with_indicators(20), &mut store).unwrap();
    assert_eq!((report.pages, report.stored), (20, 20));
    assert_eq!(
        store.commits,
        1 + 20_usize.div_ceil(commit::BATCH_PAGES as usize),
        "the TAXII version, then batches of {} pages",
        commit::BATCH_PAGES
    );
    assert_eq!(store.entries[CURSOR_KEY], date_added(19).as_bytes());
}

#[test]
fn a_page_slow_to_arrive_is_committed_at_once() {
    struct Slow(FakeServer);
    impl Transport for Slow {
        fn get(&mut self, request: &Request) -> Result<Response, TransportError> {
            std::thread::sleep(commit::SLOW_PAGE);
            self.0.get(request)
        }
    }
    let mut store = MemoryStore::default();
    let report =
        import_any_intel(&config(2), Slow(FakeServer::with_indicators(6)), &mut store).unwrap();
    assert_eq!(report.pages, 3);
    assert_eq!(store.commits, 4, "the TAXII version, then each page");
}

#[test]
fn a_server_failure_keeps_the_pages_staged_before_it() {
    // Pages 1-3 arrive, then the server fails for good: the three pages
    // are written, with their cursor, before the run reports the failure.
    let mut server = FakeServer::with_indicators(10);
    server.fail_at = Some((3, 403));
    let mut store = MemoryStore::default();
    let failure = import_any_intel(&config(3), &mut server, &mut store).unwrap_err();
    assert!(
        matches!(failure.error, ImportError::Forbidden(_)),
        "{:?}",
        failure.error
    );
    assert_eq!((failure.progress.pages, failure.progress.stored), (3, 9));
    assert_eq!(object_keys(&store).len(), 9);
    assert_eq!(store.entries[CURSOR_KEY], date_added(8).as_bytes());
}

#[test]
fn continues_with_added_after_when_the_server_gives_no_next() {
    let mut server = FakeServer::with_indicators(25);
    server.no_next = true;
    let mut store = MemoryStore::default();
    let report = import_any_intel(&config(10), &mut server, &mut store).unwrap();
    assert_eq!(report.stored, 25);
    assert_eq!(server.objects_requests().len(), 3);
}

#[test]
fn stops_a_paging_loop_with_a_clear_error() {
    let mut server = FakeServer::with_indicators(5);
    server.stuck = true;
    let mut store = MemoryStore::default();
    let failure = import_any_intel(&config(2), &mut server, &mut store).unwrap_err();
    let ImportError::MalformedResponse(message) = &failure.error else {
        panic!("expected a malformed response, got {:?}", failure.error);
    };
    assert!(message.contains("paging loop"), "{message}");
    assert_eq!(failure.progress.stored, 2);
    assert!(server.objects_requests().len() <= 2 + MAX_STALLED_PAGES as usize);
}

#[test]
fn the_page_limit_ends_the_run_incomplete_and_the_next_run_goes_on() {
    let mut server = FakeServer::with_indicators(25);
    let mut store = MemoryStore::default();
    let mut config = config(10);
    config.max_pages = Some(2);
    let first = import_any_intel(&config, &mut server, &mut store).unwrap();
    assert!(!first.complete);
    assert_eq!(first.stored, 20);
    let second = import_any_intel(&config, &mut server, &mut store).unwrap();
    assert!(second.complete);
    assert_eq!(second.stored, 5);
}

#[test]
fn an_invalid_configuration_sends_nothing() {
    let mut server = FakeServer::with_indicators(1);
    let mut config = config(10);
    config.collection_url = "collections/c1".into();
    let failure = import_any_intel(&config, &mut server, MemoryStore::default()).unwrap_err();
    assert!(matches!(failure.error, ImportError::InvalidConfig(_)));
    assert!(server.requests.is_empty());
}

#[test]
fn lenient_media_types_are_accepted_with_a_note() {
    struct JsonServer(FakeServer);
    impl Transport for JsonServer {
        fn get(&mut self, request: &Request) -> Result<Response, TransportError> {
            let mut response = self.0.get(request)?;
            response.headers[0] = ("content-type".into(), "application/json".into());
            Ok(response)
        }
    }
    let server = JsonServer(FakeServer::with_indicators(3));
    let report = import_any_intel(&config(10), server, MemoryStore::default()).unwrap();
    assert_eq!(report.stored, 3);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.level == NoteLevel::Debug && n.message.contains("application/json"))
    );
}

#[test]
fn keys_an_envelope_should_not_have_are_reported() {
    struct Extra(FakeServer);
    impl Transport for Extra {
        fn get(&mut self, request: &Request) -> Result<Response, TransportError> {
            let mut response = self.0.get(request)?;
            if request.url.path().ends_with("/objects/") {
                let mut body: Value = serde_json::from_slice(&response.body).unwrap();
                body["paging_hint"] = json!("x");
                response.body = body.to_string().into_bytes();
            }
            Ok(response)
        }
    }
    let server = Extra(FakeServer::with_indicators(3));
    let report = import_any_intel(&config(10), server, MemoryStore::default()).unwrap();
    assert_eq!(report.stored, 3);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.level == NoteLevel::Info && n.message.contains("paging_hint")),
        "{:?}",
        report.notes
    );
}
