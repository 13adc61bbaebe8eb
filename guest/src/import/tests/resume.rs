//! Resuming after failures, and servers that page by `added_after`.

use super::fake::{FakeServer, date_added, indicator, param};
use super::{config, object_keys};
use crate::import::{MAX_RESUMES, import_any_intel};
use crate::report::ImportError;
use crate::store::MemoryStore;

/// The `next` tokens sent, in order (None for requests without one).
fn tokens(server: &FakeServer) -> Vec<Option<String>> {
    server
        .objects_requests()
        .iter()
        .map(|r| param(&r.url, "next"))
        .collect()
}

#[test]
fn a_failed_page_of_a_consuming_session_resumes_from_the_cursor() {
    let mut server = FakeServer::with_indicators(30);
    server.consuming = true;
    server.fail_at = Some((2, 502));
    let mut store = MemoryStore::default();
    let report = import_any_intel(&config(10), &mut server, &mut store).unwrap();

    assert_eq!(report.stored, 30);
    assert_eq!(object_keys(&store).len(), 30);
    let after: Vec<_> = server
        .objects_requests()
        .iter()
        .map(|r| param(&r.url, "added_after"))
        .collect();
    assert_eq!(
        tokens(&server),
        [None, Some("0".into()), Some("0".into()), None]
    );
    assert_eq!(
        after[3],
        Some(date_added(19)),
        "resumed from the committed cursor"
    );
    assert!(report.notes.iter().any(|n| n.message.contains("resumed")));
}

#[test]
fn a_refused_token_resumes_from_the_cursor() {
    let mut server = FakeServer::with_indicators(25);
    server.fail_at = Some((1, 400));
    let mut store = MemoryStore::default();
    let report = import_any_intel(&config(10), &mut server, &mut store).unwrap();
    assert_eq!(report.stored, 25);
    assert_eq!(
        tokens(&server),
        [None, Some("10".into()), None, Some("10".into())]
    );
}

#[test]
fn a_400_without_a_token_is_not_retried() {
    let mut server = FakeServer::with_indicators(5);
    server.fail_at = Some((0, 400));
    let failure = import_any_intel(&config(10), &mut server, MemoryStore::default()).unwrap_err();
    assert!(matches!(failure.error, ImportError::Other(_)));
    assert_eq!(server.objects_requests().len(), 1);
}

#[test]
fn resumes_are_bounded() {
    struct AlwaysDown(FakeServer);
    impl crate::http::Transport for AlwaysDown {
        fn get(
            &mut self,
            request: &crate::http::Request,
        ) -> Result<crate::http::Response, crate::http::TransportError> {
            if request.url.path().ends_with("/objects/") {
                self.0.requests.push(request.clone());
                return Err(crate::http::TransportError::Unreachable("refused".into()));
            }
            self.0.get(request)
        }
    }
    let mut server = AlwaysDown(FakeServer::with_indicators(5));
    let failure = import_any_intel(&config(10), &mut server, MemoryStore::default()).unwrap_err();
    assert!(matches!(failure.error, ImportError::Unavailable(_)));
    assert_eq!(server.0.objects_requests().len(), 1 + MAX_RESUMES as usize);
}

#[test]
fn an_inclusive_added_after_loses_and_doubles_nothing_at_the_boundary() {
    let mut server = FakeServer::with_indicators(8);
    for n in 100..104 {
        server.add_at_last_date(indicator(n, "2024-01-01T00:00:00.000Z"));
    }
    (200..206).for_each(|n| server.add(indicator(n, "2024-01-01T00:00:00.000Z")));
    server.no_next = true;
    server.inclusive = true;
    let mut store = MemoryStore::default();
    let report = import_any_intel(&config(5), &mut server, &mut store).unwrap();

    assert_eq!(object_keys(&store).len(), 18);
    assert_eq!(report.stored, 18);
    assert!(report.duplicates > 0, "the boundary objects came again");
    let again = import_any_intel(&config(5), &mut server, &mut store).unwrap();
    assert_eq!(again.stored, 0);
}

#[test]
fn a_full_page_sharing_the_boundary_makes_the_page_grow() {
    let mut server = FakeServer::with_indicators(1);
    for n in 100..112 {
        server.add_at_last_date(indicator(n, "2024-01-01T00:00:00.000Z"));
    }
    server.add(indicator(300, "2024-01-01T00:00:00.000Z"));
    server.no_next = true;
    server.inclusive = true;
    let mut store = MemoryStore::default();
    let report = import_any_intel(&config(4), &mut server, &mut store).unwrap();

    assert_eq!(object_keys(&store).len(), 14);
    let limits: Vec<_> = server
        .objects_requests()
        .iter()
        .map(|r| param(&r.url, "limit").unwrap())
        .collect();
    assert_eq!(limits, ["4", "4", "8", "16"]);
    assert!(report.complete);
}
