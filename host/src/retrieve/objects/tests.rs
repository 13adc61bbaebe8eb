use serde_json::json;

use super::*;
use crate::db::testing::{Backend, each_backend};
use crate::directive::{self, Directive};

/// A store with objects given as JSON; each call to `commit` is one
/// transaction with its own `added_at`.
struct Fixture {
    db: Database,
    store: StoreRef,
}

impl Fixture {
    fn new(backend: &Backend) -> Self {
        let db = backend.open();
        let store = db.ensure_store("default", "s", "taxii-feed").unwrap();
        Self { db, store }
    }

    fn commit(&mut self, added_at: &str, objects: &[Value]) {
        let entries: Vec<_> = objects
            .iter()
            .map(|o| {
                let version = o["modified"].as_str().and_then(timestamp::canonical);
                let key = format!(
                    "{OBJECT_PREFIX}{}/{}",
                    o["id"].as_str().unwrap(),
                    version.as_deref().unwrap_or("-")
                );
                (key, o.to_string().into_bytes())
            })
            .collect();
        self.db.set_entries(self.store.id, &entries).unwrap();
        self.db
            .execute(
                "UPDATE entries SET added_at = ?1 WHERE added_at > ?1",
                crate::args![added_at],
            )
            .unwrap();
    }

    /// The output of a directive's query, as JSON lines, and its outcome.
    fn run(&self, stages: &str, format: ObjectFormat) -> (String, QueryOutcome) {
        let Directive::Query { query, .. } =
            directive::parse(&format!("_retrieve query s {stages}")).unwrap()
        else {
            panic!("not a query")
        };
        let mut out = Vec::new();
        let outcome = write_objects(&self.db, &self.store, &query, format, &mut out).unwrap();
        (String::from_utf8(out).unwrap(), outcome)
    }

    /// `(id, modified)` of what a query gives, in order.
    fn ids(&self, stages: &str) -> Vec<String> {
        let (out, _) = self.run(stages, ObjectFormat::Jsonl);
        out.lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).unwrap();
                let modified = v["modified"].as_str().unwrap_or("-");
                format!(
                    "{}@{}",
                    v["id"].as_str().unwrap_or("?"),
                    &modified[..4.min(modified.len())]
                )
            })
            .collect()
    }
}

fn sdo(kind: &str, n: u32, year: u32) -> Value {
    json!({
        "type": kind, "spec_version": "2.1", "id": format!("{kind}--{n}"),
        "created": "2020-01-01T00:00:00Z", "modified": format!("{year}-01-01T00:00:00.000Z"),
        "name": format!("{kind} {n}"),
    })
}

/// indicator--1 in 2021, 2022, 2023; indicator--2 in 2021; malware--1 in
/// 2022; an SCO without versions; a revoked tool; an expired indicator.
fn fixture(backend: &Backend) -> Fixture {
    let mut f = Fixture::new(backend);
    f.commit(
        "2024-01-01T00:00:00.000001Z",
        &[
            sdo("indicator", 1, 2021),
            sdo("indicator", 2, 2021),
            sdo("malware", 1, 2022),
        ],
    );
    let mut revoked = sdo("tool", 1, 2022);
    revoked["revoked"] = json!(true);
    let mut expired = sdo("indicator", 3, 2022);
    expired["valid_until"] = json!("2023-01-01T00:00:00Z");
    let sco = json!({"type": "ipv4-addr", "spec_version": "2.1", "id": "ipv4-addr--1", "value": "10.0.0.1"});
    f.commit(
        "2024-02-01T00:00:00.000001Z",
        &[sdo("indicator", 1, 2022), revoked, expired, sco],
    );
    f.commit("2024-03-01T00:00:00.000001Z", &[sdo("indicator", 1, 2023)]);
    f
}

#[test]
fn selects_versions_as_taxii_match_version() {
    each_backend(|backend| {
        let f = fixture(backend);
        let last = [
            "indicator--1@2023",
            "indicator--2@2021",
            "ipv4-addr--1@-",
            "malware--1@2022",
        ];
        assert_eq!(f.ids(""), last);
        assert_eq!(f.ids("| _versions last"), last);
        assert_eq!(
            f.ids("| _versions first"),
            [
                "indicator--1@2021",
                "indicator--2@2021",
                "ipv4-addr--1@-",
                "malware--1@2022"
            ]
        );
        assert_eq!(
            f.ids("| _versions all | _filter id == indicator--1").len(),
            3
        );
        assert_eq!(
            f.ids("| _versions first,last | _filter id == indicator--1"),
            ["indicator--1@2021", "indicator--1@2023"]
        );
        assert_eq!(
            f.ids("| _versions 2022-01-01T00:00:00Z"),
            ["indicator--1@2022", "malware--1@2022"]
        );
    });
}

#[test]
fn revoked_and_expired_objects_are_hidden_unless_asked_for() {
    each_backend(|backend| {
        let f = fixture(backend);
        assert!(
            !f.ids("")
                .iter()
                .any(|i| i.starts_with("tool--") || i.starts_with("indicator--3"))
        );
        assert_eq!(
            f.ids("| _include revoked | _filter type == tool"),
            ["tool--1@2022"]
        );
        assert_eq!(
            f.ids("| _include expired | _filter id == indicator--3"),
            ["indicator--3@2022"]
        );
        assert_eq!(f.ids("| _include all").len(), 6);
        assert_eq!(f.ids("| _include revoked").len(), 5);
    });
}

#[test]
fn added_after_keeps_versions_stored_after_the_instant() {
    each_backend(|backend| {
        let f = fixture(backend);
        assert_eq!(
            f.ids("| _added_after 2024-01-15 | _include all"),
            [
                "indicator--1@2023",
                "indicator--3@2022",
                "ipv4-addr--1@-",
                "tool--1@2022"
            ]
        );
        // The last version is chosen first, then kept if it was stored after.
        assert_eq!(
            f.ids("| _versions first | _added_after 2024-01-15"),
            ["ipv4-addr--1@-"]
        );
        assert_eq!(
            f.ids("| _versions all | _added_after 2024-02-01T00:00:00.000001Z"),
            ["indicator--1@2023"]
        );
        assert!(
            f.ids("| _added_after 2024-03-01T00:00:00.0000011Z")
                .is_empty()
        );
    });
}

#[test]
fn filters_compare_any_property_and_fields_project() {
    each_backend(|backend| {
        let f = fixture(backend);
        assert_eq!(
            f.ids("| _include all | _filter modified > 2022-06-01"),
            ["indicator--1@2023"]
        );
        assert_eq!(
            f.ids("| _filter name contains MALWARE"),
            ["malware--1@2022"]
        );
        assert_eq!(f.ids("| _filter type in malware,ipv4-addr").len(), 2);
        assert_eq!(f.ids("| _filter value == 10.0.0.1"), ["ipv4-addr--1@-"]);
        let (out, outcome) = f.run(
            "| _filter type == indicator | _fields name,id",
            ObjectFormat::Jsonl,
        );
        assert_eq!(
            out,
            "{\"name\":\"indicator 1\",\"id\":\"indicator--1\"}\n\
             {\"name\":\"indicator 2\",\"id\":\"indicator--2\"}\n"
        );
        assert!(outcome.note.unwrap().contains("not STIX"));
    });
}

#[test]
fn pages_resume_after_their_cursor_and_add_up_to_the_whole() {
    each_backend(|backend| {
        let f = fixture(backend);
        for (stages, whole) in [
            ("| _versions all | _include all", 8),
            ("", 4),
            ("| _versions first,last", 5),
            ("| _filter type == indicator", 2),
        ] {
            let everything = f.ids(stages);
            assert_eq!(everything.len(), whole, "{stages}");
            for limit in 1..=whole + 1 {
                let mut pages = Vec::new();
                let mut cursor: Option<String> = None;
                loop {
                    let with_cursor = insert_cursor(stages, cursor.as_deref());
                    let (out, outcome) = f.run(
                        &format!("{with_cursor} | _limit {limit}"),
                        ObjectFormat::Jsonl,
                    );
                    let got: Vec<_> = out.lines().map(String::from).collect();
                    assert!(got.len() <= limit, "{stages} limit {limit}");
                    pages.extend(got);
                    assert_eq!(outcome.more, outcome.next.is_some());
                    match outcome.next {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                    assert!(pages.len() <= whole, "{stages}: paging does not end");
                }
                let (all, _) = f.run(stages, ObjectFormat::Jsonl);
                assert_eq!(
                    pages,
                    all.lines().collect::<Vec<_>>(),
                    "{stages} limit {limit}"
                );
            }
        }
    });
}

/// Puts `_cursor` before the first pipeline stage of `stages`.
fn insert_cursor(stages: &str, cursor: Option<&str>) -> String {
    let Some(cursor) = cursor else {
        return stages.to_string();
    };
    match stages.find("| _filter") {
        Some(at) => format!("{} | _cursor {cursor} {}", &stages[..at], &stages[at..]),
        None => format!("{stages} | _cursor {cursor}"),
    }
}

#[test]
fn a_limit_before_a_filter_counts_what_reaches_it() {
    each_backend(|backend| {
        let f = fixture(backend);
        // The first two objects are indicators 1 and 2, the third ipv4-addr.
        let (out, outcome) = f.run("| _limit 2 | _filter type == malware", ObjectFormat::Jsonl);
        assert_eq!(out, "");
        assert!(outcome.more, "malware--1 comes later");
        let next = outcome.next.unwrap();
        let (out, outcome) = f.run(
            &format!("| _cursor {next} | _limit 2 | _filter type == malware"),
            ObjectFormat::Jsonl,
        );
        assert!(out.contains("malware--1"), "{out}");
        assert!(!outcome.more);
    });
}

#[test]
fn an_envelope_carries_more_and_next() {
    each_backend(|backend| {
        let f = fixture(backend);
        let (out, outcome) = f.run("| _limit 3", ObjectFormat::Envelope);
        let envelope: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(envelope["objects"].as_array().unwrap().len(), 3);
        assert_eq!(envelope["more"], true);
        assert_eq!(envelope["next"].as_str(), outcome.next.as_deref());
        let (out, _) = f.run("| _limit 4", ObjectFormat::Envelope);
        let envelope: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(envelope["more"], false, "exactly four objects");
        let (out, _) = f.run("| _limit 0", ObjectFormat::Bundle);
        let bundle: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(bundle["objects"], json!([]));
    });
}

#[test]
fn reads_the_quarantine_without_versions() {
    each_backend(|backend| {
        let mut f = Fixture::new(backend);
        let record = br#"{"reason":"indicator without `pattern`","object":{"id":"indicator--9"}}"#;
        f.db.set_entries(f.store.id, &[("quarantine/00ff".into(), record.to_vec())])
            .unwrap();
        let query = ObjectQuery {
            source: crate::query::Source {
                quarantine: true,
                ..Default::default()
            },
            stages: vec![],
        };
        let mut out = Vec::new();
        let outcome =
            write_objects(&f.db, &f.store, &query, ObjectFormat::Jsonl, &mut out).unwrap();
        assert_eq!(out, [&record[..], b"\n"].concat());
        assert!(outcome.note.unwrap().contains("quarantine"));
        let mut versioned = query.clone();
        versioned.source.versions = Some(VersionMatch::default());
        let error = write_objects(&f.db, &f.store, &versioned, ObjectFormat::Jsonl, &mut out)
            .unwrap_err()
            .to_string();
        assert!(error.contains("leave out versions"), "{error}");
    });
}

fn query(stages: &str) -> ObjectQuery {
    match directive::parse(&format!("_retrieve query s {stages}")).unwrap() {
        Directive::Query { query, .. } => query,
        _ => panic!("not a query"),
    }
}

#[test]
fn the_key_ranges_stand_in_for_the_filter_that_pins_ids_or_types() {
    let implied = |stages: &str| implied_filter(&query(stages));
    assert_eq!(implied("| _filter type == indicator"), Some(0));
    assert_eq!(
        implied("| _filter confidence > 50 | _filter type in a,b"),
        Some(1)
    );
    assert_eq!(
        implied("| _filter type == indicator | _filter id == indicator--1"),
        Some(1),
        "the ranges follow the ids; the type filter still runs"
    );
    assert_eq!(implied("| _filter type != indicator"), None);
    assert_eq!(
        implied("| _limit 5 | _filter type == indicator"),
        None,
        "not leading"
    );
    assert_eq!(implied("| _filter name == x"), None);
    assert_eq!(implied(""), None);
}

#[test]
fn a_type_query_reads_the_type_from_the_key_and_parses_no_object() {
    each_backend(|backend| {
        let f = Fixture::new(backend);
        // An entry no plugin of ours writes: its key says indicator, its
        // body is not JSON. Reading the type range must not parse it...
        let entries = [
            ("object/indicator--1/-".to_string(), b"not json".to_vec()),
            (
                "object/malware--2/-".to_string(),
                b"{\"type\":\"malware\"}".to_vec(),
            ),
        ];
        let mut db = backend.open();
        db.set_entries(f.store.id, &entries).unwrap();
        let stages = "| _include revoked,expired | _filter type == indicator";
        let (out, outcome) = f.run(stages, ObjectFormat::Jsonl);
        assert_eq!((out.as_str(), outcome.written), ("not json\n", 1));
        // ... while a filter the ranges cannot serve still reads objects.
        let q = query("| _include revoked,expired | _filter name == x");
        let mut sink = Vec::new();
        let error = write_objects(&f.db, &f.store, &q, ObjectFormat::Jsonl, &mut sink);
        assert!(error.is_err(), "the malformed entry was not read");
    });
}
