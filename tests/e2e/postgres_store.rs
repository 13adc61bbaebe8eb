//! Every command on a PostgreSQL store (`--store postgres://…`), against
//! the fake TAXII server: `config add` and `list`, `import`, `retrieve
//! list` and `query`, `query`, `runs`, `serve-taxii`; and the password kept out of the
//! command line, the output and the errors.

use serde_json::Value;
use taxii_feed_tests::fake_taxii::{FakeTaxii, Script};
use taxii_feed_tests::host::{Host, versions_of};
use taxii_feed_tests::postgres::TestDatabase;
use taxii_feed_tests::scenario::indicators;
use taxii_feed_tests::serve::TaxiiServer;
use taxii_feed_tests::write_private;

/// A host on `db`, its password in an owner-only file given on every
/// command with `--store-password-file`.
fn host_on(db: &TestDatabase, password: &str) -> (Host, String) {
    let mut host = Host::new();
    host.env
        .push(("TAXII_HOST_STORE".to_string(), db.url.clone()));
    let file = host.data_dir.path().join("store.password");
    write_private(&file, password);
    (host, file.display().to_string())
}

#[test]
fn every_command_works_on_a_postgresql_store() {
    let db = TestDatabase::create();
    let objects = indicators(12);
    let server = FakeTaxii::start(Script {
        max_page_size: 5,
        ..Script::new(objects.clone())
    });
    let (host, file) = host_on(&db, &db.password);
    let with = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--store-password-file".to_string(), file.clone()]);
        all
    };
    host.ok(with(&[
        "config",
        "add",
        "intel",
        "--collection-url",
        &server.collection_url(),
        "--allow-private",
        "--page-size",
        "5",
    ]));
    let listed = host.ok(with(&["config", "list"]));
    assert!(listed.contains("intel"), "{listed}");
    assert!(!listed.contains(&db.password), "{listed}");

    let outcome: Value =
        serde_json::from_str(&host.ok(with(&["import", "intel", "--format", "json"]))).unwrap();
    assert_eq!(outcome["status"], "ok", "{outcome:#}");
    assert_eq!(outcome["report"]["stored"], 12, "{outcome:#}");
    let again: Value =
        serde_json::from_str(&host.ok(with(&["import", "intel", "--format", "json"]))).unwrap();
    assert_eq!(again["report"]["stored"], 0, "{again:#}");

    let stores: Value =
        serde_json::from_str(&host.ok(with(&["retrieve", "list", "--format", "json"]))).unwrap();
    assert_eq!(stores[0]["name"], "intel", "{stores:#}");
    assert_eq!(stores[0]["objects"], 12, "{stores:#}");
    assert_eq!(stores[0]["types"]["indicator"], 12, "{stores:#}");
    assert_eq!(stores[0]["last_status"], "ok", "{stores:#}");

    let jsonl = |args: &[&str]| -> Vec<Value> {
        host.ok(with(args))
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    };
    let stored = jsonl(&["retrieve", "query", "intel", "--format", "jsonl"]);
    assert_eq!(versions_of(&stored), versions_of(&objects));
    let five = jsonl(&[
        "query",
        "_retrieve query intel | _filter type == indicator | _limit 5",
        "--format",
        "jsonl",
    ]);
    assert_eq!(five.len(), 5);

    let runs: Value =
        serde_json::from_str(&host.ok(with(&["runs", "intel", "--format", "json"]))).unwrap();
    let runs = runs.as_array().expect("a list of runs");
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert!(runs.iter().all(|r| r["status"] == "ok"), "{runs:#?}");

    // serve-taxii serves the store: every version, one page at a time.
    let taxii = TaxiiServer::start(&host, &["--store-password-file", &file]).unwrap();
    let mut url = format!(
        "{}objects/?limit=5&match[version]=all",
        taxii.collection("intel")
    );
    let mut served = Vec::new();
    for _ in 0..10 {
        let page = taxii.get(&url).unwrap().json();
        served.extend(page["objects"].as_array().cloned().unwrap_or_default());
        match page["next"].as_str() {
            Some(next) if page["more"] == true => {
                url = format!(
                    "{}objects/?limit=5&match[version]=all&next={next}",
                    taxii.collection("intel")
                );
            }
            _ => break,
        }
    }
    assert_eq!(versions_of(&served), versions_of(&objects));
    drop(taxii);

    // PGPASSWORD does as well as the file.
    let mut by_env = Host::new();
    by_env.env.extend([
        ("TAXII_HOST_STORE".to_string(), db.url.clone()),
        ("PGPASSWORD".to_string(), db.password.clone()),
    ]);
    assert!(by_env.ok(["config", "list"]).contains("intel"));
}

#[test]
fn the_store_password_stays_off_the_command_line_and_out_of_errors() {
    let db = TestDatabase::create();
    let host = Host::new();

    // In the URL: refused, and not repeated.
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_password(Some(&db.password)).unwrap();
    let run = host.run(["--store", url.as_str(), "config", "list"]);
    assert!(!run.success);
    assert!(
        run.stderr.contains("--store-password-file"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(&db.password), "{}", run.stderr);

    // As a `?password=` parameter, which libpq would read: refused too.
    let mut url = url::Url::parse(&db.url).unwrap();
    url.query_pairs_mut().append_pair("password", &db.password);
    let run = host.run(["--store", url.as_str(), "config", "list"]);
    assert!(!run.success, "{}", run.stdout);
    assert!(
        run.stderr.contains("--store-password-file"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(&db.password), "{}", run.stderr);

    // A wrong password names the fix, and shows neither password.
    let (wrong, file) = host_on(&db, "not-the-password");
    let run = wrong.run(["config", "list", "--store-password-file", &file]);
    assert!(!run.success);
    assert!(run.stderr.contains("PGPASSWORD"), "{}", run.stderr);
    assert!(!run.stderr.contains("not-the-password"), "{}", run.stderr);
    assert!(!run.stderr.contains(&db.password), "{}", run.stderr);

    // A password file others can read is refused.
    let open = host.data_dir.path().join("open.password");
    std::fs::write(&open, &db.password).unwrap();
    let run = host.run([
        "--store",
        &db.url,
        "--store-password-file",
        open.to_str().unwrap(),
        "config",
        "list",
    ]);
    assert!(!run.success);
    assert!(run.stderr.contains("chmod 600"), "{}", run.stderr);

    // Not a PostgreSQL URL.
    let run = host.run(["--store", "mysql://db/x", "config", "list"]);
    assert!(!run.success);
    assert!(
        run.stderr.contains("postgres://USER@HOST"),
        "{}",
        run.stderr
    );
}
