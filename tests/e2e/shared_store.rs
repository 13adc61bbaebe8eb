//! Three `serve` processes sharing one PostgreSQL store and a fake TAXII
//! server with several feeds on short intervals: each feed is run by one
//! host at a time, a host killed with SIGKILL mid-run loses its feeds to
//! the others within the lease's time to live, every store ends equal to
//! its collection, and no page is imported twice.
//!
//! What happened is read from the shared run history (which host ran what,
//! when) and from the stores, never from how long the test took.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use taxii_feed_tests::fake_taxii::{Collection, FakeTaxii, Script};
use taxii_feed_tests::host::{Host, versions_of};
use taxii_feed_tests::postgres::TestDatabase;
use taxii_feed_tests::scenario::indicators;
use taxii_feed_tests::serving::{Serving, wait_until};
use taxii_feed_tests::snapshot::instant;
use taxii_feed_tests::write_private;

const FEEDS: usize = 4;
const OBJECTS: usize = 30;
const PAGE: &str = "5";
/// Each objects request takes this long, so that a first run lasts about
/// `OBJECTS / PAGE * DELAY` and can be killed in the middle.
const DELAY: Duration = Duration::from_millis(250);
const LEASE_TTL: Duration = Duration::from_secs(2);
/// Scheduling on a loaded machine: the takeover may come this much later
/// than the lease's expiry.
const SLACK: Duration = Duration::from_secs(3);
/// Longest wait for anything; none should come close.
const PATIENCE: Duration = Duration::from_secs(90);

fn collection_id(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

fn feed(n: usize) -> String {
    format!("feed{n}")
}

/// Objects `from..from + count` of collection `n`: indicators whose ids
/// are the collection's own.
fn objects(n: usize, count: usize, from: usize) -> Vec<Value> {
    indicators(from + count)
        .into_iter()
        .skip(from)
        .map(|mut object| {
            let id = object["id"].as_str().unwrap().to_string();
            let id = id.replacen("-0000-", &format!("-{n:04}-"), 1);
            object["id"] = Value::String(id);
            object
        })
        .collect()
}

/// One run as the shared history has it.
#[derive(Debug, Clone)]
struct RunRow {
    feed: String,
    status: String,
    started: SystemTime,
    finished: Option<SystemTime>,
    stored: i64,
    duplicates: i64,
    pid: Option<i64>,
}

fn runs(db: &TestDatabase) -> Vec<RunRow> {
    let mut client = db.client();
    client
        .query(
            "SELECT s.name, r.status, r.started_at, r.finished_at, r.stored, r.duplicates, r.pid
             FROM runs r JOIN stores s ON s.id = r.store_id ORDER BY r.id",
            &[],
        )
        .expect("cannot read the run history")
        .iter()
        .map(|row| RunRow {
            feed: row.get(0),
            status: row.get(1),
            started: instant(row.get::<_, &str>(2)).unwrap(),
            finished: row.get::<_, Option<&str>>(3).map(|t| instant(t).unwrap()),
            stored: row.get(4),
            duplicates: row.get(5),
            pid: row.get(6),
        })
        .collect()
}

#[test]
fn three_hosts_share_the_feeds_and_take_over_from_a_killed_one() {
    let db = TestDatabase::create();
    let collections: Vec<Collection> = (0..FEEDS)
        .map(|n| Collection::new(&collection_id(n), objects(n, OBJECTS, 0)))
        .collect();
    let server = FakeTaxii::start(Script {
        collections,
        max_page_size: 5,
        delay: DELAY,
        ..Script::new(Vec::new())
    });

    let hosts: Vec<Host> = (0..3)
        .map(|_| {
            let mut host = Host::new();
            host.env.extend([
                ("TAXII_HOST_STORE".to_string(), db.url.clone()),
                ("TAXII_HOST_TEST_MIN_EVERY".to_string(), "100ms".to_string()),
            ]);
            host
        })
        .collect();
    // The command line and `config` go through PGPASSWORD; `serve` reads
    // an owner-only password file.
    let admin = Host {
        env: [
            hosts[0].env.clone(),
            vec![("PGPASSWORD".to_string(), db.password.clone())],
        ]
        .concat(),
        ..Host::new()
    };
    for n in 0..FEEDS {
        let url = server.collection_url_of(&collection_id(n));
        admin.ok([
            "config",
            "add",
            &feed(n),
            "--collection-url",
            &url,
            "--allow-private",
            "--page-size",
            PAGE,
            "--every",
            "200ms",
        ]);
    }
    let listed = admin.ok(["config", "list", "--format", "json"]);
    assert!(
        !listed.contains(&db.password),
        "config list shows the password"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&listed)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        FEEDS
    );

    let ttl = format!("{}ms", LEASE_TTL.as_millis());
    let mut serving: Vec<Serving> = hosts
        .iter()
        .map(|host| {
            let password_file = host.data_dir.path().join("pg.password");
            write_private(&password_file, &db.password);
            let args = [
                "--store-password-file",
                password_file.to_str().unwrap(),
                "--lease-ttl",
                &ttl,
                "--max-concurrent",
                "4",
                "--reload-every",
                "200ms",
                "--backoff",
                "100ms",
                "-v",
            ];
            Serving::start(host, &args)
        })
        .collect();

    // Kill the host of a first run while it is in the middle of it.
    let mut victim = None;
    let found = wait_until(PATIENCE, || {
        victim = runs(&db).into_iter().find(|run| {
            run.status == "running" && serving.iter().any(|s| run.pid == Some(i64::from(s.pid())))
        });
        victim.is_some()
    });
    assert!(found, "no run started");
    let victim = victim.unwrap();
    let index = serving
        .iter()
        .position(|s| victim.pid == Some(i64::from(s.pid())))
        .unwrap();
    let killed = serving.remove(index);
    let killed_pid = i64::from(killed.pid());
    killed.signal("KILL");
    let killed_at = SystemTime::now();
    let killed_log = killed.log();
    drop(killed);
    assert!(
        !killed_log.contains(&db.password),
        "the log shows the password"
    );

    // Its feed goes to another host once its lease expires.
    let took_over = wait_until(PATIENCE, || {
        runs(&db).iter().any(|run| {
            run.feed == victim.feed && run.pid != Some(killed_pid) && run.started > killed_at
        })
    });
    assert!(took_over, "nobody took feed {} over", victim.feed);

    // Every store reaches its collection; then the collections grow and
    // the stores follow them.
    let expected = |n: usize, count: usize| versions_of(&objects(n, count, 0));
    let caught_up =
        |count: usize| (0..FEEDS).all(|n| admin.versions_so_far(&feed(n)) == expected(n, count));
    assert!(
        wait_until(PATIENCE, || caught_up(OBJECTS)),
        "the stores did not reach their collections"
    );
    server.edit(|script| {
        for (n, collection) in script.collections.iter_mut().enumerate() {
            collection.push(objects(n, 10, OBJECTS));
        }
    });
    assert!(
        wait_until(PATIENCE, || caught_up(OBJECTS + 10)),
        "the stores did not follow their collections"
    );
    let logs: Vec<String> = serving.iter().map(Serving::log).collect();
    for mut host in serving {
        host.signal("TERM");
        let status = host.wait(PATIENCE).expect("serve did not stop on SIGTERM");
        assert!(
            status.success(),
            "serve exited with {status}:\n{}",
            host.log()
        );
    }
    for log in &logs {
        assert!(!log.contains(&db.password), "a log shows the password");
    }

    let history = runs(&db);
    // The run the kill cut short is recorded as interrupted by the next one.
    let cut = history
        .iter()
        .find(|run| {
            run.pid == Some(killed_pid) && run.finished.is_none() && run.feed == victim.feed
        })
        .expect("the killed run is in the history");
    assert_eq!(cut.status, "interrupted", "{cut:?}");
    // The takeover came within the lease's time to live.
    let takeover = history
        .iter()
        .filter(|run| run.feed == victim.feed && run.pid != Some(killed_pid))
        .map(|run| run.started)
        .filter(|started| *started > killed_at)
        .min()
        .unwrap();
    let after = takeover.duration_since(killed_at).unwrap();
    assert!(
        after <= LEASE_TTL + SLACK,
        "feed {} was taken over {after:?} after the kill (lease {LEASE_TTL:?})",
        victim.feed
    );

    let mut per_feed: BTreeMap<&str, Vec<&RunRow>> = BTreeMap::new();
    for run in &history {
        per_feed.entry(&run.feed).or_default().push(run);
    }
    let hosts_seen: BTreeSet<i64> = history.iter().filter_map(|r| r.pid).collect();
    assert!(
        hosts_seen.len() >= 2,
        "one host ran everything: {history:#?}"
    );
    for (name, runs) in &per_feed {
        // One host at a time: a feed's runs never overlap (the killed run
        // ends at the kill).
        let mut spans: Vec<(SystemTime, SystemTime)> = runs
            .iter()
            .map(|r| (r.started, r.finished.unwrap_or(killed_at)))
            .collect();
        spans.sort();
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "feed {name}: two runs at once: {pair:?}\n{runs:#?}"
            );
        }
        // No page imported twice: no run saw an object it had already.
        assert!(
            runs.iter().all(|r| r.duplicates == 0),
            "feed {name} imported something twice: {runs:#?}"
        );
        // What the finished runs stored, plus what the killed run
        // committed before the kill, is the collection, each version once.
        let stored: i64 = runs.iter().map(|r| r.stored).sum();
        assert!(
            stored <= (OBJECTS + 10) as i64,
            "feed {name}: {stored} versions stored for {} in the collection",
            OBJECTS + 10
        );
    }
}
