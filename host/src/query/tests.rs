use super::*;
use crate::filter::Op;

fn obj(text: &str) -> Map<String, Value> {
    serde_json::from_str(text).unwrap()
}

#[test]
fn version_match_reads_taxii_values() {
    let m = VersionMatch::parse("first,2024-01-01T00:00:00Z").unwrap();
    assert!(m.first && !m.last && !m.all);
    let t = "2024-01-01T00:00:00.000000000Z";
    assert!(m.selects(t, "2023", "2025"));
    assert!(m.selects("2023", "2023", "2025"));
    assert!(!m.selects("2025", "2023", "2025"));
    assert_eq!(VersionMatch::parse("newest"), Err("newest".into()));
    assert_eq!(VersionMatch::parse("last,"), Err("".into()));
    assert_eq!(
        VersionMatch::default(),
        VersionMatch::parse("last").unwrap()
    );
}

#[test]
fn revoked_and_expired_objects_are_hidden_unless_included() {
    let now = timestamp::canonical("2025-01-01T00:00:00Z").unwrap();
    let revoked = br#"{"revoked":true}"#;
    let expired = br#"{"valid_until":"2024-12-31T23:59:59Z"}"#;
    let valid = br#"{"revoked":false,"valid_until":"2025-01-01T00:00:01Z"}"#;
    let none = Include::default();
    assert!(none.hides(revoked, &now).unwrap());
    assert!(none.hides(expired, &now).unwrap());
    assert!(!none.hides(valid, &now).unwrap());
    let r = Include::parse("revoked").unwrap();
    assert!(!r.hides(revoked, &now).unwrap() && r.hides(expired, &now).unwrap());
    let all = Include::parse("all").unwrap();
    assert!(!all.hides(expired, &now).unwrap());
    assert_eq!(Include::parse("revoked,old"), Err("old".into()));
}

#[test]
fn cursors_round_trip_and_refuse_other_words() {
    let c = Cursor("object/indicator--1/2024-01-01T00:00:00.000000000Z".into());
    let word = c.encode();
    assert!(
        word.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    );
    assert_eq!(Cursor::decode(&word), Some(c));
    assert_eq!(Cursor::decode("not a cursor"), None);
    assert_eq!(Cursor::decode("c3RhdGUvY3Vyc29y"), None, "state/cursor");
}

#[test]
fn stages_run_in_order_and_limits_stop_the_page() {
    let stages = vec![
        Stage::Filter(Filter::new("type", Op::Eq, &["indicator"])),
        Stage::Limit(1),
        Stage::Fields(vec!["name".into(), "id".into()]),
    ];
    let mut pipeline = Pipeline::new(&stages);
    let malware = obj(r#"{"type":"malware","id":"malware--1"}"#);
    let first = obj(r#"{"type":"indicator","id":"indicator--1","name":"a"}"#);
    let second = obj(r#"{"type":"indicator","id":"indicator--2"}"#);
    assert_eq!(pipeline.run(Some(&malware)), Verdict::Skip);
    assert_eq!(
        pipeline.run(Some(&first)),
        Verdict::Emit(Some(r#"{"name":"a","id":"indicator--1"}"#.into()))
    );
    assert_eq!(pipeline.run(Some(&second)), Verdict::Stop);
    assert!(pipeline.would_emit(Some(&second)));
    assert!(!pipeline.would_emit(Some(&malware)));
    let kept = ["name".to_string(), "id".to_string()];
    assert_eq!(pipeline.fields(), Some(&kept[..]));
}

#[test]
fn filters_after_a_projection_see_the_projection() {
    let stages = vec![
        Stage::Fields(vec!["id".into()]),
        Stage::Filter(Filter::new("type", Op::Eq, &["indicator"])),
    ];
    let mut pipeline = Pipeline::new(&stages);
    let object = obj(r#"{"type":"indicator","id":"indicator--1"}"#);
    assert_eq!(pipeline.run(Some(&object)), Verdict::Skip);
    let zero = [Stage::Limit(0)];
    assert_eq!(Pipeline::new(&zero).run(None), Verdict::Stop);
    assert!(!Pipeline::new(&zero).would_emit(None));
    assert!(!Pipeline::new(&zero).reads_objects());
}

#[test]
fn a_setting_given_twice_is_refused_by_name() {
    let mut mine = Source {
        versions: Some(VersionMatch::default()),
        ..Source::default()
    };
    let theirs = Source {
        versions: Some(VersionMatch::parse("all").unwrap()),
        ..Source::default()
    };
    let error = mine.clone().merge(theirs).unwrap_err();
    assert!(error.contains("`_versions`/`--versions`"), "{error}");
    let cursor = Source {
        cursor: Some(Cursor("object/x/1".into())),
        ..Source::default()
    };
    mine.merge(cursor).unwrap();
    assert!(mine.cursor.is_some() && mine.versions.is_some());
}
