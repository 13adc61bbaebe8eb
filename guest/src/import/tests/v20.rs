//! TAXII 2.0: version negotiation and paging by item range.

use serde_json::{Value, json};

use super::fake::{FakeServer, Speaks, header};
use super::{config, object_keys};
use crate::import::import_any_intel;
use crate::store::{MemoryStore, ORIGINAL_PREFIX, TAXII_VERSION_KEY};
use crate::taxii::range::RangeSpelling;
use crate::taxii::{STIX_20, TAXII_20, TAXII_21};

fn malware_20(n: usize) -> Value {
    json!({
        "type": "malware",
        "id": format!("malware--00000000-0000-4000-8000-{n:012}"),
        "created": "2017-01-01T00:00:00.000Z",
        "modified": "2017-01-01T00:00:00.000Z",
        "name": format!("Malware {n}"),
        "labels": ["remote-access-trojan"]
    })
}

fn server_20(count: usize) -> FakeServer {
    let mut server = FakeServer::with_indicators(0);
    server.speaks = Speaks::V20;
    (0..count).for_each(|n| server.add(malware_20(n)));
    server
}

fn ranges(server: &FakeServer) -> Vec<String> {
    server
        .objects_requests()
        .iter()
        .map(|r| header(r, "range").unwrap_or("-").to_string())
        .collect()
}

#[test]
fn a_20_server_is_found_by_its_406_and_paged_by_range() {
    let mut server = server_20(25);
    let mut store = MemoryStore::default();
    let report = import_any_intel(&config(10), &mut server, &mut store).unwrap();

    assert_eq!(report.taxii_version, "2.0");
    assert_eq!((report.pages, report.stored), (3, 25));
    assert!(report.complete);
    let accepts: Vec<_> = server.requests[..2]
        .iter()
        .map(|r| header(r, "accept").unwrap())
        .collect();
    assert_eq!(accepts, [TAXII_21, TAXII_20], "2.1 first, then 2.0");
    assert_eq!(ranges(&server), ["items 0-9", "items 10-19", "items 20-29"]);
    for request in server.objects_requests() {
        assert_eq!(header(request, "accept"), Some(STIX_20));
    }
    assert_eq!(store.entries[TAXII_VERSION_KEY], b"2.0");
    assert_eq!(store.keys_with_prefix(ORIGINAL_PREFIX).count(), 25);
    let stored: Value = serde_json::from_slice(&store.entries[object_keys(&store)[0]]).unwrap();
    assert_eq!(stored["spec_version"], "2.1");
    assert_eq!(stored["malware_types"], json!(["remote-access-trojan"]));
}

#[test]
fn a_later_run_asks_in_the_recorded_version_first() {
    let mut server = server_20(3);
    let mut store = MemoryStore::default();
    import_any_intel(&config(10), &mut server, &mut store).unwrap();
    server.requests.clear();

    let again = import_any_intel(&config(10), &mut server, &mut store).unwrap();
    assert_eq!(again.stored, 0);
    assert_eq!(header(&server.requests[0], "accept"), Some(TAXII_20));
    assert!(
        server
            .requests
            .iter()
            .all(|r| header(r, "accept") != Some(TAXII_21)),
        "no request in 2.1 once 2.0 is known"
    );
}

#[test]
fn a_server_that_moved_to_21_is_followed_and_recorded() {
    let mut server = FakeServer::with_indicators(3);
    let mut store = MemoryStore::default();
    store
        .entries
        .insert(TAXII_VERSION_KEY.into(), b"2.0".to_vec());
    let report = import_any_intel(&config(10), &mut server, &mut store).unwrap();
    assert_eq!((report.taxii_version.as_str(), report.stored), ("2.1", 3));
    assert_eq!(store.entries[TAXII_VERSION_KEY], b"2.1");
}

#[test]
fn the_other_range_spelling_is_tried_once() {
    let mut server = server_20(15);
    server.range_spelling = Some(RangeSpelling::Equals);
    let mut store = MemoryStore::default();
    let report = import_any_intel(&config(10), &mut server, &mut store).unwrap();
    assert_eq!(report.stored, 15);
    assert_eq!(ranges(&server), ["items 0-9", "items=0-9", "items=10-19"]);
}

#[test]
fn an_unknown_total_pages_until_416() {
    let mut server = server_20(20);
    server.total_known = false;
    let mut store = MemoryStore::default();
    let report = import_any_intel(&config(10), &mut server, &mut store).unwrap();
    assert_eq!((report.stored, report.pages), (20, 2));
    assert!(report.complete);
    assert_eq!(ranges(&server), ["items 0-9", "items 10-19", "items 20-29"]);
}

#[test]
fn an_empty_20_collection_is_complete() {
    let mut server = server_20(0);
    let report = import_any_intel(&config(10), &mut server, MemoryStore::default()).unwrap();
    assert!(report.complete && report.stored == 0);
    assert_eq!(ranges(&server), ["items 0-9", "items=0-9"]);
}

#[test]
fn a_server_speaking_neither_version_is_unsupported() {
    struct Nothing(Vec<String>);
    impl crate::http::Transport for Nothing {
        fn get(
            &mut self,
            request: &crate::http::Request,
        ) -> Result<crate::http::Response, crate::http::TransportError> {
            self.0.push(header(request, "accept").unwrap().to_string());
            Ok(crate::http::Response {
                status: 406,
                ..Default::default()
            })
        }
    }
    let mut server = Nothing(Vec::new());
    let failure = import_any_intel(&config(10), &mut server, MemoryStore::default()).unwrap_err();
    let crate::ImportError::UnsupportedVersion(message) = failure.error else {
        panic!("{:?}", failure.error);
    };
    assert!(
        message.contains("406 to TAXII 2.1 and 406 to TAXII 2.0"),
        "{message}"
    );
    assert_eq!(server.0, [TAXII_21, TAXII_20]);
}
