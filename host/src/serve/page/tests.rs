use super::*;
use crate::db::testing::{Backend, each_backend};

/// A store whose commits are given as (added_at, keys); values are
/// `{"id": ..., "spec_version": ...}`.
fn store(backend: &Backend, commits: &[(&str, &[&str])]) -> (Database, StoreRef) {
    let mut db = backend.open();
    let store = db.ensure_store("default", "s", "taxii-feed").unwrap();
    for (added_at, keys) in commits {
        let entries: Vec<_> = keys
            .iter()
            .map(|k| {
                let id = crate::store::object_id(k);
                let spec = if id.starts_with("old") { "2.0" } else { "2.1" };
                let value = format!(r#"{{"id":"{id}","spec_version":"{spec}"}}"#);
                (format!("object/{k}"), value.into_bytes())
            })
            .collect();
        db.set_entries(store.id, &entries).unwrap();
        db.execute(
            "UPDATE entries SET added_at = ?1 WHERE added_at > ?1",
            crate::args![*added_at],
        )
        .unwrap();
    }
    (db, store)
}

const T1: &str = "2024-01-01T00:00:00.000001Z";
const T2: &str = "2024-01-01T00:00:00.000002Z";
const T3: &str = "2024-01-01T00:00:00.000003Z";

fn keys(page: &Page) -> Vec<&str> {
    page.rows
        .iter()
        .map(|r| r.key.strip_prefix("object/").unwrap())
        .collect()
}

fn all_versions(limit: usize) -> PageQuery {
    PageQuery {
        versions: VersionMatch::parse("all").unwrap(),
        limit,
        ..PageQuery::default()
    }
}

/// Every page of a query, following `next`.
fn pages(db: &Database, store: &StoreRef, query: &PageQuery) -> Vec<Vec<String>> {
    let mut query = query.clone();
    let mut pages = Vec::new();
    for _ in 0..100 {
        let page = read_page(db, store, &query).unwrap();
        pages.push(keys(&page).iter().map(|k| k.to_string()).collect());
        match page.next() {
            Some(next) => query.after_seq = next.parse().unwrap(),
            None => return pages,
        }
    }
    panic!("paging does not end");
}

#[test]
fn pages_follow_commit_order_and_next_is_exact_inside_a_commit() {
    each_backend(|backend| {
        let (db, store) = store(
            backend,
            &[
                (T1, &["z--1/1", "a--1/1", "m--1/1", "b--1/1", "c--1/1"]),
                (T2, &["a--1/2"]),
            ],
        );
        let got = pages(&db, &store, &all_versions(2));
        assert_eq!(
            got,
            [
                vec!["z--1/1", "a--1/1"],
                vec!["m--1/1", "b--1/1"],
                vec!["c--1/1", "a--1/2"],
            ]
        );
    });
}

#[test]
fn a_page_ends_before_a_commit_it_would_cut() {
    each_backend(|backend| {
        let (db, store) = store(
            backend,
            &[
                (T1, &["a--1/1", "a--2/1"]),
                (T2, &["a--3/1", "a--4/1", "a--5/1"]),
                (T3, &["a--6/1"]),
            ],
        );
        let got = pages(&db, &store, &all_versions(4));
        assert_eq!(
            got,
            [
                vec!["a--1/1", "a--2/1"],
                vec!["a--3/1", "a--4/1", "a--5/1", "a--6/1"],
            ]
        );
        let page = read_page(&db, &store, &all_versions(4)).unwrap();
        assert_eq!(
            page.rows.last().unwrap().added_at,
            T1,
            "Date-Added-Last is a safe resume point"
        );
    });
}

#[test]
fn added_after_keeps_what_was_committed_strictly_later() {
    each_backend(|backend| {
        let (db, store) = store(backend, &[(T1, &["a--1/1"]), (T2, &["a--2/1", "a--3/1"])]);
        let mut query = all_versions(10);
        query.added_after = Some(T1.into());
        assert_eq!(
            keys(&read_page(&db, &store, &query).unwrap()),
            ["a--2/1", "a--3/1"]
        );
        query.added_after = Some(T2.into());
        assert!(read_page(&db, &store, &query).unwrap().rows.is_empty());
    });
}

#[test]
fn version_match_picks_by_version_not_by_commit() {
    each_backend(|backend| {
        // The older version of a--1 was committed last.
        let (db, store) = store(
            backend,
            &[
                (T1, &["a--1/2024", "b--1/2020"]),
                (T2, &["a--1/2023", "b--1/2021"]),
            ],
        );
        let page = |versions: &str| {
            let query = PageQuery {
                versions: VersionMatch::parse(versions).unwrap(),
                limit: 10,
                ..PageQuery::default()
            };
            keys(&read_page(&db, &store, &query).unwrap())
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(page("last"), ["a--1/2024", "b--1/2021"]);
        assert_eq!(page("first"), ["b--1/2020", "a--1/2023"]);
        assert_eq!(page("first,last").len(), 4);
    });
}

#[test]
fn matches_ids_types_and_spec_versions() {
    each_backend(|backend| {
        let (db, store) = store(
            backend,
            &[(
                T1,
                &[
                    "indicator--1/1",
                    "malware--1/1",
                    "indicator--2/1",
                    "old--1/1",
                ],
            )],
        );
        let read = |query: PageQuery| keys(&read_page(&db, &store, &query).unwrap()).len();
        let base = all_versions(10);
        let types = PageQuery {
            types: vec!["indicator".into()],
            ..base.clone()
        };
        assert_eq!(read(types), 2);
        let ids = PageQuery {
            ids: vec!["malware--1".into(), "indicator--2".into()],
            ..base.clone()
        };
        assert_eq!(read(ids), 2);
        let spec = PageQuery {
            spec_versions: vec!["2.0".into()],
            ..base.clone()
        };
        assert_eq!(read(spec), 1);
        assert!(has_object(&db, &store, "malware--1").unwrap());
        assert!(!has_object(&db, &store, "malware--2").unwrap());
    });
}

#[test]
fn a_client_resuming_from_date_added_last_misses_nothing_of_a_large_commit() {
    each_backend(|backend| {
        let mut db = backend.open();
        let store = db.ensure_store("default", "s", "taxii-feed").unwrap();
        // One commit of 30 versions (a batch of pages), read 10 at a time.
        let entries: Vec<_> = (0..30)
            .map(|i| (format!("object/indicator--{i:02}/-"), b"{}".to_vec()))
            .collect();
        db.set_entries(store.id, &entries).unwrap();
        // Between runs a TAXII client resumes from the last page's
        // X-TAXII-Date-Added-Last, not from `next`.
        let mut query = all_versions(10);
        let mut seen = Vec::new();
        for _ in 0..10 {
            let page = read_page(&db, &store, &query).unwrap();
            seen.extend(keys(&page).iter().map(|k| k.to_string()));
            match page.rows.last() {
                Some(last) if page.more => query.added_after = Some(last.added_at.clone()),
                _ => break,
            }
        }
        let all: Vec<String> = (0..30).map(|i| format!("indicator--{i:02}/-")).collect();
        assert_eq!(seen, all);
    });
}
