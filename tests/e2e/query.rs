//! The query language from the command line: `retrieve query` flags and
//! `query '<directive>'` stages give the same objects, results match an
//! independent reading of the data, pages resume from the printed cursor,
//! parse errors say where and what, and output streams.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

use serde_json::{Value, json};
use taxii_feed_tests::host::{Host, bundle_objects};
use taxii_feed_tests::python::generated_bundle;
use taxii_feed_tests::store::{
    Commit, commit_time, commits_of, object_key, seed_store, version_key,
};

/// The generated data set plus a revoked and an expired object, stored
/// 100 versions per commit as `intel`.
fn seeded() -> (Host, Vec<Value>, Vec<Commit>) {
    let mut objects = bundle_objects(&generated_bundle(600, 42, None)).unwrap();
    objects.push(json!({
        "type": "malware", "spec_version": "2.1", "id": "malware--00000000-0000-4000-8000-00000000000a",
        "created": "2021-01-01T00:00:00.000Z", "modified": "2021-01-01T00:00:00.000Z",
        "name": "Retired", "is_family": false, "revoked": true,
    }));
    objects.push(json!({
        "type": "indicator", "spec_version": "2.1", "id": "indicator--00000000-0000-4000-8000-00000000000b",
        "created": "2021-01-01T00:00:00.000Z", "modified": "2021-01-01T00:00:00.000Z",
        "pattern": "[ipv4-addr:value = '10.0.0.1']", "pattern_type": "stix",
        "valid_from": "2021-01-01T00:00:00Z", "valid_until": "2021-02-01T00:00:00Z",
    }));
    let commits = commits_of(&objects, 100);
    let host = Host::new();
    seed_store(&host, "intel", &commits);
    (host, objects, commits)
}

fn jsonl(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The last version of each object, in key order, as the store holds it.
fn last_versions(objects: &[Value]) -> Vec<Value> {
    let mut last: BTreeMap<String, (String, Value)> = BTreeMap::new();
    for object in objects {
        let key = object_key(object);
        let id = object["id"].as_str().unwrap().to_string();
        if last.get(&id).is_none_or(|(held, _)| *held < key) {
            last.insert(id, (key, object.clone()));
        }
    }
    let mut by_key: Vec<(String, Value)> = last.into_values().collect();
    by_key.sort_by(|a, b| a.0.cmp(&b.0));
    by_key.into_iter().map(|(_, o)| o).collect()
}

/// Whether an object is hidden by default: revoked, or expired now.
fn hidden(object: &Value) -> bool {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let expired = object["valid_until"]
        .as_str()
        .is_some_and(|until| until[..19] < now[..19]);
    object["revoked"] == true || expired
}

#[test]
fn the_pipeline_of_the_issue_matches_a_reading_of_the_data() {
    let (host, objects, _) = seeded();
    // The issue's own example (the data has few indicators), then the
    // same shape where the limit bites.
    for (kind, limit) in [("indicator", 50), ("identity", 50), ("identity", 7)] {
        let out = host.ok([
            "query",
            &format!(
                "_retrieve query intel | _filter type == {kind} | _filter modified > 2022-01-01 \
                 | _limit {limit}"
            ),
            "--format",
            "jsonl",
        ]);
        let matching: Vec<Value> = last_versions(&objects)
            .into_iter()
            .filter(|o| !hidden(o) && o["type"] == kind)
            .filter(|o| version_key(o).as_str() > "2022-01-01T00:00:00.000000000Z")
            .collect();
        assert!(!matching.is_empty(), "the data has such {kind} objects");
        assert!(kind == "indicator" || matching.len() > 7, "the limit bites");
        let expected: Vec<Value> = matching.iter().take(limit).cloned().collect();
        assert_eq!(jsonl(&out), expected, "{kind} {limit}");
    }
}

#[test]
fn flags_and_directive_stages_give_the_same_objects() {
    let (host, objects, commits) = seeded();
    let id = objects[objects.len() - 3]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let after = &commits[3].0;
    let cases: [(Vec<&str>, String); 5] = [
        (
            vec!["--type", "indicator", "--versions", "all"],
            "_versions all | _filter type in indicator".into(),
        ),
        (
            vec![
                "--filter",
                "modified > 2021-06-01",
                "--limit",
                "7",
                "--fields",
                "id,modified",
            ],
            "_filter modified > 2021-06-01 | _limit 7 | _fields id,modified".into(),
        ),
        (
            vec![
                "--versions",
                "first",
                "--added-after",
                after,
                "--include",
                "all",
            ],
            format!("_versions first | _added_after {after} | _include all"),
        ),
        (
            vec!["--id", &id, "--versions", "all"],
            format!("_versions all | _filter id == {id}"),
        ),
        (
            vec![
                "--filter",
                "name contains a",
                "--filter",
                "type != report",
                "--limit",
                "20",
            ],
            "_filter name contains a | _filter type != report | _limit 20".into(),
        ),
    ];
    for (flags, stages) in cases {
        let run = |args: Vec<&str>| host.ok([args, vec!["--format", "jsonl"]].concat());
        let by_flags = run([vec!["retrieve", "query", "intel"], flags.clone()].concat());
        let directive = format!("_retrieve query intel | {stages}");
        let by_stages = run(vec!["query", &directive]);
        let mixed = run([vec!["query", "_retrieve query intel"], flags.clone()].concat());
        assert!(!by_flags.is_empty(), "{stages}");
        assert_eq!(by_flags, by_stages, "{stages}");
        assert_eq!(by_flags, mixed, "{stages}");
    }

    let all_indicators = jsonl(&host.ok([
        "retrieve",
        "query",
        "intel",
        "--type",
        "indicator",
        "--versions",
        "all",
        "--include",
        "all",
        "--format",
        "jsonl",
    ]));
    let mut expected: Vec<Value> = objects
        .iter()
        .filter(|o| o["type"] == "indicator")
        .cloned()
        .collect();
    expected.sort_by_key(object_key);
    assert_eq!(all_indicators, expected);

    let run = host.run([
        "query",
        "_retrieve query intel | _versions all",
        "--versions",
        "first",
    ]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("`_versions`/`--versions`"),
        "{}",
        run.stderr
    );
}

#[test]
fn revoked_and_expired_objects_show_only_when_asked_for() {
    let (host, objects, _) = seeded();
    let count = |args: &[&str]| {
        let mut all = vec!["retrieve", "query", "intel", "--format", "jsonl"];
        all.extend(args);
        host.ok(all).lines().count()
    };
    let last = last_versions(&objects);
    let hidden_revoked = last.iter().filter(|o| o["revoked"] == true).count();
    let hidden_total = last.iter().filter(|o| hidden(o)).count();
    assert!(hidden_revoked >= 1 && hidden_total > hidden_revoked);
    assert_eq!(count(&[]), last.len() - hidden_total);
    assert_eq!(count(&["--include", "all"]), last.len());
    let revoked_too = last
        .iter()
        .filter(|o| hidden(o) && o["revoked"] != true)
        .count();
    assert_eq!(count(&["--include", "revoked"]), last.len() - revoked_too);
}

#[test]
fn pages_resume_from_the_printed_cursor_and_add_up_to_the_whole() {
    let (host, _, _) = seeded();
    let whole = host.ok([
        "retrieve",
        "query",
        "intel",
        "--versions",
        "all",
        "--format",
        "jsonl",
    ]);
    let mut pages = String::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        assert!(page < 20, "paging does not end");
        let directive = match &cursor {
            Some(c) => format!("_retrieve query intel | _versions all | _cursor {c} | _limit 100"),
            None => "_retrieve query intel | _versions all | _limit 100".into(),
        };
        let run = host.run(["query", &directive, "--format", "jsonl"]);
        assert!(run.success, "{run:?}");
        assert!(run.stdout.lines().count() <= 100);
        pages.push_str(&run.stdout);
        cursor = run
            .stderr
            .split("--cursor ")
            .nth(1)
            .map(|rest| rest.trim().to_string());
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(pages, whole);

    let envelope: Value = serde_json::from_str(&host.ok([
        "retrieve", "query", "intel", "--limit", "3", "--format", "envelope",
    ]))
    .unwrap();
    assert_eq!(envelope["more"], true);
    let next = envelope["next"].as_str().unwrap();
    let second = host.ok([
        "retrieve", "query", "intel", "--limit", "3", "--cursor", next,
    ]);
    let second: Value = serde_json::from_str(&second).unwrap();
    assert_eq!(second["type"], "bundle");
    assert_ne!(second["objects"][0], envelope["objects"][0]);
}

#[test]
fn a_directive_that_does_not_parse_says_where_and_what_was_expected() {
    let host = Host::new();
    let run = host.run(["query", "_retrieve query intel | _filter type = indicator"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains(
            "column 38: expected an operator: ==, !=, <, <=, >, >=, contains or in, found `=`"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("\n  {}^", " ".repeat(37))),
        "{}",
        run.stderr
    );
    let flag = host.run(["retrieve", "query", "intel", "--filter", "type =="]);
    assert_eq!(flag.code, Some(2), "{flag:?}");
    assert!(
        flag.stderr.contains("expected a value after `==`"),
        "{}",
        flag.stderr
    );
    let versions = host.run(["retrieve", "query", "intel", "--versions", "newest"]);
    assert_eq!(versions.code, Some(2));
    assert!(
        versions.stderr.contains("\"newest\" is not `last`"),
        "{}",
        versions.stderr
    );
}

#[test]
fn projections_say_they_are_not_stix() {
    let (host, _, _) = seeded();
    let doc: Value = serde_json::from_str(&host.ok([
        "query",
        "_retrieve query intel | _filter type == indicator | _fields id,pattern | _limit 2",
    ]))
    .unwrap();
    assert_eq!(doc["stix"], false);
    assert!(doc.get("type").is_none(), "not a bundle");
    assert_eq!(doc["fields"], json!(["id", "pattern"]));
    for object in doc["objects"].as_array().unwrap() {
        let keys: Vec<&String> = object.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["id", "pattern"]);
    }
    let run = host.run([
        "retrieve", "query", "intel", "--fields", "id", "--format", "jsonl",
    ]);
    assert!(run.stderr.contains("not STIX"), "{}", run.stderr);
}

#[test]
fn retrieve_list_shows_every_store_as_a_table_and_as_json() {
    let (host, objects, commits) = seeded();
    seed_store(&host, "empty", &[]);
    let json: Value =
        serde_json::from_str(&host.ok(["retrieve", "list", "--format", "json"])).unwrap();
    let same: Value =
        serde_json::from_str(&host.ok(["query", "_retrieve list", "--format", "json"])).unwrap();
    assert_eq!(json, same);
    let intel = &json[1];
    assert_eq!(intel["name"], "intel");
    let ids: BTreeMap<&str, &str> = objects
        .iter()
        .map(|o| (o["id"].as_str().unwrap(), o["type"].as_str().unwrap()))
        .collect();
    assert_eq!(intel["objects"], ids.len());
    assert_eq!(intel["versions"], objects.len());
    let mut types: BTreeMap<&str, u64> = BTreeMap::new();
    for kind in ids.values() {
        *types.entry(kind).or_default() += 1;
    }
    assert_eq!(intel["types"], json!(types));
    assert_eq!(intel["plugin"], "taxii-feed");
    assert_eq!(json[0]["objects"], 0);
    assert!(commits.len() > 1);

    let table = host.ok(["query", "_retrieve list"]);
    let header = table.lines().next().unwrap();
    for column in [
        "STORE", "FEED", "PLUGIN", "OBJECTS", "VERSIONS", "TYPES", "LAST RUN", "STATUS",
    ] {
        assert!(header.contains(column), "{table}");
    }
    assert!(table.contains(&format!("{}", objects.len())), "{table}");
    let wrong = host.run(["query", "_retrieve list", "--format", "bundle"]);
    assert_eq!(wrong.code, Some(1));
    assert!(wrong.stderr.contains("table or json"), "{}", wrong.stderr);
}

#[test]
fn output_starts_before_the_store_is_read_through() {
    let host = Host::new();
    let objects: Vec<Value> = (0..40_000)
        .map(|n| {
            json!({
                "type": "indicator", "spec_version": "2.1",
                "id": format!("indicator--00000000-0000-4000-8000-{n:012}"),
                "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z",
                "pattern": format!("[ipv4-addr:value = '10.{}.{}.{}']", n / 65536, n / 256 % 256, n % 256),
                "pattern_type": "stix", "valid_from": "2024-01-01T00:00:00Z",
                "description": "x".repeat(200),
            })
        })
        .collect();
    seed_store(&host, "big", &[(commit_time(1), objects)]);
    let database = host.data_dir.path().join("taxii-host.db");
    let size = std::fs::metadata(&database).unwrap().len();

    let mut child = host
        .command(["retrieve", "query", "big", "--format", "jsonl"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    // Nothing reads the pipe now: a streaming process stops when it is
    // full, having read a little of the store; one that read the whole
    // store first has read all of it already.
    let io = std::fs::read_to_string(format!("/proc/{}/io", child.id()));
    let _ = child.kill();
    let _ = child.wait();
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        first["id"],
        "indicator--00000000-0000-4000-8000-000000000000"
    );
    let Ok(io) = io else {
        eprintln!("no /proc/PID/io on this system: the read count is not checked");
        return;
    };
    let read: u64 = io
        .lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    assert!(size > 10_000_000, "the store is large: {size} bytes");
    eprintln!("read {read} of {size} bytes of the store before the first line");
    assert!(
        read < size / 4,
        "read {read} of {size} bytes before the first line"
    );
}

#[test]
fn a_mistyped_data_directory_or_tenant_is_named_not_created() {
    let (host, _, _) = seeded();
    let typo = host.data_dir.path().join("no-such-dir");
    let typo = typo.to_str().unwrap();
    for args in [
        vec!["retrieve", "list"],
        vec!["retrieve", "query", "intel"],
        vec!["runs", "intel"],
        vec!["config", "list"],
    ] {
        let run = host.run(["--data-dir", typo].into_iter().chain(args.clone()));
        assert!(!run.success, "{args:?}: {run:?}");
        assert!(
            run.stderr.contains("no taxii-host database in"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stderr.contains("--data-dir"), "{}", run.stderr);
        assert!(
            !std::path::Path::new(typo).exists(),
            "{args:?} created {typo}"
        );
    }
    let other = host.run(["--tenant", "acme", "retrieve", "list"]);
    assert!(other.success, "{other:?}");
    assert!(
        other.stderr.contains("tenant acme has no stores") && other.stderr.contains("default"),
        "{}",
        other.stderr
    );
}
