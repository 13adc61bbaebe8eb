use super::*;

fn query(input: &str) -> (String, ObjectQuery) {
    match parse(input) {
        Ok(Directive::Query { store, query }) => (store, query),
        other => panic!("{input:?} gave {other:?}"),
    }
}

#[test]
fn parses_list_and_a_bare_query() {
    assert_eq!(parse("_retrieve list"), Ok(Directive::List));
    let (store, q) = query("  _retrieve   query feed1 ");
    assert_eq!(store, "feed1");
    assert_eq!(q, ObjectQuery::default());
}

#[test]
fn parses_the_pipeline_of_the_issue() {
    let (store, q) = query(
        "_retrieve query feed1 | _filter type == indicator | _filter modified > 2024-01-01 \
         | _limit 50",
    );
    assert_eq!(store, "feed1");
    assert_eq!(
        q.stages,
        [
            Stage::Filter(Filter::new("type", Op::Eq, &["indicator"])),
            Stage::Filter(Filter::new("modified", Op::Gt, &["2024-01-01"])),
            Stage::Limit(50),
        ]
    );
    assert_eq!(q.source, Source::default());
}

#[test]
fn parses_every_stage() {
    let cursor = Cursor("object/indicator--1/-".into()).encode();
    let (_, q) = query(&format!(
        "_retrieve query s | _versions first,2024-01-01T00:00:00Z | _added_after 2024-06-01 \
         | _include revoked | _cursor {cursor} | _filter name contains \"evil | corp\" \
         | _filter type in indicator,malware | _fields id,name | _limit 0"
    ));
    let source = Source {
        versions: Some(VersionMatch::parse("first,2024-01-01T00:00:00Z").unwrap()),
        added_after: Some("2024-06-01T00:00:00.000000000Z".into()),
        include: Some(Include {
            revoked: true,
            expired: false,
        }),
        cursor: Cursor::decode(&cursor),
        quarantine: false,
        original: false,
    };
    assert_eq!(q.source, source);
    assert_eq!(
        q.stages,
        [
            Stage::Filter(Filter::new("name", Op::Contains, &["evil | corp"])),
            Stage::Filter(Filter::new("type", Op::In, &["indicator", "malware"])),
            Stage::Fields(vec!["id".into(), "name".into()]),
            Stage::Limit(0),
        ]
    );
}

#[test]
fn operators_need_no_spaces_and_quotes_escape() {
    let (_, q) =
        query(r#"_retrieve query s|_filter modified>=2024-01-01|_filter name=="a \"b\" \\c""#);
    assert_eq!(
        q.stages,
        [
            Stage::Filter(Filter::new("modified", Op::Ge, &["2024-01-01"])),
            Stage::Filter(Filter::new("name", Op::Eq, &[r#"a "b" \c"#])),
        ]
    );
    let (_, q) = query(r#"_retrieve query s | _filter type in "a,b""#);
    assert_eq!(
        q.stages,
        [Stage::Filter(Filter::new("type", Op::In, &["a,b"]))]
    );
}

#[test]
fn a_flag_filter_parses_like_a_stage() {
    assert_eq!(
        parse_filter("confidence >= 50"),
        Ok(Filter::new("confidence", Op::Ge, &["50"]))
    );
    let e = parse_filter("confidence >= 50 60").unwrap_err();
    assert_eq!((e.column, e.found.as_str()), (18, "`60`"));
    assert_eq!(e.expected, END);
    let e = parse_filter("confidence").unwrap_err();
    assert_eq!((e.column, e.found.as_str()), (11, END));
}

/// Every way a directive can be wrong: (input, column, expected, found).
const ERRORS: &[(&str, usize, &str, &str)] = &[
    // The tokens.
    (
        r#"_retrieve query s | _filter name == "open"#,
        37,
        "a closing `\"`",
        END,
    ),
    // A timestamp property ordered against something that is no timestamp.
    (
        "_retrieve query s | _filter modified > 2022/06/01",
        40,
        "a timestamp after `modified >`, such as 2024-01-01 or 2024-01-01T12:00:00Z",
        "`2022/06/01`",
    ),
    (
        "_retrieve query s | _filter valid_until <= notadate",
        44,
        "a timestamp after `valid_until <=`, such as 2024-01-01 or 2024-01-01T12:00:00Z",
        "`notadate`",
    ),
    // `_retrieve`.
    ("", 1, "`_retrieve`", END),
    ("retrieve list", 1, "`_retrieve`", "`retrieve`"),
    ("| _retrieve list", 1, "`_retrieve`", "`|`"),
    // `list` or `query`.
    ("_retrieve", 10, "`list` or `query`", END),
    ("_retrieve lsit", 11, "`list` or `query`", "`lsit`"),
    (
        "_retrieve list now",
        16,
        "the end of the directive (`_retrieve list` takes no stages)",
        "`now`",
    ),
    (
        "_retrieve list | _limit 1",
        16,
        "the end of the directive (`_retrieve list` takes no stages)",
        "`|`",
    ),
    // The store.
    (
        "_retrieve query",
        16,
        "a store name after `_retrieve query`",
        END,
    ),
    (
        "_retrieve query | x",
        17,
        "a store name after `_retrieve query`",
        "`|`",
    ),
    (
        "_retrieve query ../x",
        17,
        "a store name after `_retrieve query`",
        "`../x`",
    ),
    (
        "_retrieve query == x",
        17,
        "a store name after `_retrieve query`",
        "`==`",
    ),
    // After the store or a stage.
    (
        "_retrieve query s t",
        19,
        "`|` or the end of the directive",
        "`t`",
    ),
    (
        "_retrieve query s | _limit 5 6",
        30,
        "`|` or the end of the directive",
        "`6`",
    ),
    // The stage's name.
    ("_retrieve query s |", 20, STAGES, END),
    ("_retrieve query s | |", 21, STAGES, "`|`"),
    ("_retrieve query s | _sort name", 21, STAGES, "`_sort`"),
    (
        "_retrieve query s | filter type == x",
        21,
        STAGES,
        "`filter`",
    ),
    (
        "_retrieve query s | \"_limit\" 5",
        21,
        STAGES,
        "`\"_limit\"`",
    ),
    // `_filter`.
    (
        "_retrieve query s | _filter",
        28,
        "a property name after `_filter`",
        END,
    ),
    (
        "_retrieve query s | _filter == x",
        29,
        "a property name after `_filter`",
        "`==`",
    ),
    (
        "_retrieve query s | _filter a.b == x",
        29,
        "a property name after `_filter`",
        "`a.b`",
    ),
    (
        "_retrieve query s | _filter \"type\" == x",
        29,
        "a property name after `_filter`",
        "`\"type\"`",
    ),
    (
        "_retrieve query s | _filter type",
        33,
        "an operator: ==, !=, <, <=, >, >=, contains or in",
        END,
    ),
    (
        "_retrieve query s | _filter type = x",
        34,
        "an operator: ==, !=, <, <=, >, >=, contains or in",
        "`=`",
    ),
    (
        "_retrieve query s | _filter type like x",
        34,
        "an operator: ==, !=, <, <=, >, >=, contains or in",
        "`like`",
    ),
    (
        "_retrieve query s | _filter type =< x",
        34,
        "an operator: ==, !=, <, <=, >, >=, contains or in",
        "`=<`",
    ),
    (
        "_retrieve query s | _filter type \"==\" x",
        34,
        "an operator: ==, !=, <, <=, >, >=, contains or in",
        "`\"==\"`",
    ),
    (
        "_retrieve query s | _filter type ==",
        36,
        "a value after `==`",
        END,
    ),
    (
        "_retrieve query s | _filter type == | _limit 1",
        37,
        "a value after `==`",
        "`|`",
    ),
    (
        "_retrieve query s | _filter type contains >",
        43,
        "a value after `contains`",
        "`>`",
    ),
    (
        "_retrieve query s | _filter type in a,,b",
        39,
        "values separated by commas after `in`",
        "an empty item",
    ),
    (
        "_retrieve query s | _filter type in a,",
        39,
        "values separated by commas after `in`",
        "an empty item",
    ),
    // `_limit`.
    (
        "_retrieve query s | _limit",
        27,
        "a whole number after `_limit`",
        END,
    ),
    (
        "_retrieve query s | _limit five",
        28,
        "a whole number after `_limit`",
        "`five`",
    ),
    (
        "_retrieve query s | _limit -1",
        28,
        "a whole number after `_limit`",
        "`-1`",
    ),
    (
        "_retrieve query s | _limit 99999999999999999999",
        28,
        "a whole number after `_limit`",
        "`99999999999999999999`",
    ),
    // `_fields`.
    (
        "_retrieve query s | _fields",
        28,
        "property names separated by commas after `_fields`",
        END,
    ),
    (
        "_retrieve query s | _fields | _limit 1",
        29,
        "property names separated by commas after `_fields`",
        "`|`",
    ),
    (
        "_retrieve query s | _fields id,na me",
        35,
        "`|` or the end of the directive",
        "`me`",
    ),
    (
        "_retrieve query s | _fields id,,name",
        32,
        "property names separated by commas after `_fields`",
        "an empty item",
    ),
    (
        "_retrieve query s | _fields id,x.y",
        32,
        "property names separated by commas after `_fields`",
        "`x.y`",
    ),
    // Source stages: where, how often, and their values.
    (
        "_retrieve query s | _limit 1 | _versions all",
        32,
        "`_filter`, `_limit` or `_fields` (`_versions` chooses what is read, so it comes before them)",
        "`_versions`",
    ),
    (
        "_retrieve query s | _filter a == b | _cursor x",
        38,
        "`_filter`, `_limit` or `_fields` (`_cursor` chooses what is read, so it comes before them)",
        "`_cursor`",
    ),
    (
        "_retrieve query s | _versions all | _versions last",
        37,
        "a stage other than `_versions` (it is given already)",
        "`_versions`",
    ),
    (
        "_retrieve query s | _include all | _include revoked",
        36,
        "a stage other than `_include` (it is given already)",
        "`_include`",
    ),
    (
        "_retrieve query s | _versions",
        30,
        "`last`, `first`, `all` or a timestamp, separated by commas after `_versions`",
        END,
    ),
    (
        "_retrieve query s | _versions last,newest",
        36,
        "`last`, `first`, `all` or a timestamp, separated by commas after `_versions`",
        "`newest`",
    ),
    (
        "_retrieve query s | _versions all,2024-01-01",
        35,
        "`last`, `first`, `all` or a timestamp, separated by commas after `_versions`",
        "`2024-01-01`",
    ),
    (
        "_retrieve query s | _added_after | _limit 1",
        34,
        "a timestamp such as 2024-01-31 or 2024-01-31T12:00:00Z after `_added_after`",
        "`|`",
    ),
    (
        "_retrieve query s | _added_after yesterday",
        34,
        "a timestamp such as 2024-01-31 or 2024-01-31T12:00:00Z after `_added_after`",
        "`yesterday`",
    ),
    (
        "_retrieve query s | _include",
        29,
        "`revoked`, `expired` or `all`, separated by commas after `_include`",
        END,
    ),
    (
        "_retrieve query s | _include revoked,deleted",
        38,
        "`revoked`, `expired` or `all`, separated by commas after `_include`",
        "`deleted`",
    ),
    (
        "_retrieve query s | _cursor",
        28,
        "a cursor printed with an earlier page after `_cursor`",
        END,
    ),
    (
        "_retrieve query s | _cursor abc!",
        29,
        "a cursor printed with an earlier page after `_cursor`",
        "`abc`",
    ),
    (
        "_retrieve query s | _cursor c3RhdGUvY3Vyc29y",
        29,
        "a cursor printed with an earlier page after `_cursor`",
        "`c3RhdGUvY3Vyc29y`",
    ),
];

#[test]
fn every_parse_error_points_at_the_column_and_says_what_was_expected() {
    for &(input, column, expected, found) in ERRORS {
        let e = parse(input).expect_err(input);
        assert_eq!(
            (e.column, e.expected.as_str(), e.found.as_str()),
            (column, expected, found),
            "{input:?}"
        );
    }
}

#[test]
fn a_parse_error_shows_the_directive_with_a_caret() {
    let shown = parse("_retrieve lsit").unwrap_err().to_string();
    assert_eq!(
        shown,
        "column 11: expected `list` or `query`, found `lsit`\n  _retrieve lsit\n            ^"
    );
    // Columns count characters, not bytes.
    let input = "_retrieve query s | _filter name == café oops";
    let e = parse(input).unwrap_err();
    assert_eq!(e.column, input.chars().position(|c| c == 'o').unwrap() + 1);
    let caret = format!("\n  {}^", " ".repeat(e.column - 1));
    assert!(e.to_string().ends_with(&caret), "{e}");
}

#[test]
fn timestamp_properties_take_dates_and_other_properties_take_anything() {
    for input in [
        "_retrieve query s | _filter modified > 2022-06-01",
        "_retrieve query s | _filter modified >= 2022-06-01T00:00:00.123456Z",
        "_retrieve query s | _filter modified == whatever",
        "_retrieve query s | _filter name > 2022/06/01",
    ] {
        assert!(parse(input).is_ok(), "{input}");
    }
}
