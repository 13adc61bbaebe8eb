//! Crash safety against a real TAXII server: the host is killed with
//! SIGKILL at random points of imports from medallion (300 generated
//! objects, 1 per page, so that kills land between and during commits,
//! and while a batch of pages is being gathered) and restarted each time. After every kill the store is intact,
//! holds no version twice and nothing the server lacks, and its cursor is
//! not ahead of its data (checked against the server's manifest); at the
//! end it equals the server's collection exactly.
//!
//! The kill points come from a seeded generator: the seed is printed, and
//! `TAXII_CRASH_SEED=N` replays a run.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use taxii_feed_tests::host::Host;
use taxii_feed_tests::medallion::Medallion;
use taxii_feed_tests::python::generated_bundle;
use taxii_feed_tests::snapshot::{StoreSnapshot, manifest};

/// Kills of a running import, at least.
const KILLS: u32 = 20;
/// Rounds at most (a round whose import ends before its kill point does
/// not count as a kill).
const MAX_ROUNDS: u32 = 150;
/// The seed used unless `TAXII_CRASH_SEED` says otherwise.
const DEFAULT_SEED: u64 = 0x7a11_2026;
/// The collection: generated objects, and how many a page holds. medallion
/// slows down quadratically with collection size: at 300 objects its
/// first page takes about 1 s, each next one about 40 ms.
const OBJECTS: u32 = 300;
const PAGE_SIZE: &str = "1";
/// A kill comes after 0 to this many commits of the run, then a random
/// part of [`LATEST_KILL_AFTER_COMMIT`]. The first page of a run is slow
/// (about 1 s), so it is committed alone; the next pages come every 40 ms
/// or so and are committed in batches of 8, so a batch is gathered for
/// about 320 ms. With about 320 pages in all, 20 kills leave part of the
/// collection to the last, unkilled import.
const MOST_COMMITS_BEFORE_KILL: u32 = 2;
/// How long after the last commit a kill comes, at most: into the next
/// batch, or its commit.
const LATEST_KILL_AFTER_COMMIT: Duration = Duration::from_millis(400);
/// A kill before the first commit comes this long after the start, at
/// most: while the host starts or waits for medallion's first page.
const LATEST_EARLY_KILL: Duration = Duration::from_millis(1200);
/// Longest wait for the next page commit before calling the import ended.
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where in an import a kill lands.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// This long after the start, before any commit.
    Early(Duration),
    /// After this many commits, and this long after the last one.
    AfterCommits(u32, Duration),
}

impl KillPoint {
    fn draw(rng: &mut fastrand::Rng) -> Self {
        match rng.u32(0..=MOST_COMMITS_BEFORE_KILL) {
            0 => Self::Early(Duration::from_millis(
                rng.u64(0..=LATEST_EARLY_KILL.as_millis() as u64),
            )),
            commits => Self::AfterCommits(
                commits,
                Duration::from_micros(rng.u64(0..=LATEST_KILL_AFTER_COMMIT.as_micros() as u64)),
            ),
        }
    }
}

fn seed() -> u64 {
    std::env::var("TAXII_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

#[test]
fn sigkill_at_random_points_never_loses_doubles_or_runs_ahead() {
    let seed = seed();
    println!("crash test seed {seed} (TAXII_CRASH_SEED={seed} replays it)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let server = Medallion::start(&generated_bundle(OBJECTS, 44, None)).unwrap();
    let collection = server.collection("intel");
    let manifest = manifest(&server, collection).unwrap();
    let host = Host::new();
    host.ok([
        "config",
        "add",
        "feed",
        "--collection-url",
        collection,
        "--username",
        &server.user,
        "--password-file",
        &server.password_file().display().to_string(),
        "--page-size",
        PAGE_SIZE,
        "--allow-private",
    ]);

    let mut previous = StoreSnapshot::read(host.data_dir.path(), "feed").unwrap();
    let (mut kills, mut mid_import) = (0, 0);
    for round in 0..MAX_ROUNDS {
        if kills >= KILLS {
            break;
        }
        let point = KillPoint::draw(&mut rng);
        let before = last_run_id(&host);
        let killed = import_and_kill_at(&host, point) && killed_mid_run(&host, before);
        let snapshot = StoreSnapshot::read(host.data_dir.path(), "feed").unwrap();
        if let Err(e) = snapshot.check_consistent(&manifest) {
            panic!("round {round} (seed {seed}, kill {point:?}): {e:#}");
        }
        assert!(
            snapshot.version_set().is_superset(&previous.version_set()),
            "round {round}: versions stored before are gone"
        );
        let grew = snapshot.versions.len() > previous.versions.len();
        let complete = snapshot.versions.len() == manifest.len();
        kills += u32::from(killed);
        mid_import += u32::from(killed && grew && !complete);
        println!(
            "round {round}: {} at {point:?}; {} of {} versions stored, cursor {}",
            if killed { "killed" } else { "finished before" },
            snapshot.versions.len(),
            manifest.len(),
            snapshot.cursor.as_deref().unwrap_or("none"),
        );
        previous = snapshot;
    }
    assert!(
        kills >= KILLS,
        "only {kills} kills landed in {MAX_ROUNDS} rounds"
    );
    assert!(
        mid_import > 0,
        "no kill landed between two commits of an import (seed {seed})"
    );
    println!("{kills} kills, {mid_import} of them after some pages of an import were committed");

    host.import_ok("feed");
    let last = StoreSnapshot::read(host.data_dir.path(), "feed").unwrap();
    last.check_complete(&manifest).unwrap();

    let history: Value =
        serde_json::from_str(&host.ok(["runs", "feed", "--limit", "1000", "--format", "json"]))
            .unwrap();
    let interrupted = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|run| run["status"] == "interrupted")
        .inspect(|run| assert_eq!(run["error_kind"], "interrupted", "{run:#}"))
        .count();
    assert!(
        interrupted >= KILLS as usize,
        "{interrupted} runs are recorded as interrupted"
    );
}

/// The id of the last run in the history (0 if none).
fn last_run_id(host: &Host) -> i64 {
    let db = rusqlite::Connection::open(host.data_dir.path().join("taxii-host.db"))
        .expect("cannot open the database");
    db.query_row("SELECT COALESCE(MAX(id), 0) FROM runs", [], |row| {
        row.get(0)
    })
    .unwrap_or(0)
}

/// Whether the kill cut a run short: the import started a run after
/// `before` and had not recorded its end. A kill that lands after the run
/// recorded its end (the process was exiting) or before it began is not
/// a kill at a random point of an import.
fn killed_mid_run(host: &Host, before: i64) -> bool {
    let db = rusqlite::Connection::open(host.data_dir.path().join("taxii-host.db"))
        .expect("cannot open the database");
    db.query_row(
        "SELECT status FROM runs WHERE id > ?1 ORDER BY id DESC LIMIT 1",
        [before],
        |row| row.get::<_, String>(0),
    )
    .is_ok_and(|status| status == "running")
}

/// Starts `import feed` and kills it (SIGKILL) at `point`, which it finds
/// from the line the host logs for each committed page when its stderr is
/// not a terminal. Returns false if the import ended by itself before.
fn import_and_kill_at(host: &Host, point: KillPoint) -> bool {
    let mut child = host
        .command(["import", "feed"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start taxii-host");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (commits, committed) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(" committed: ") && commits.send(()).is_err() {
                break;
            }
        }
    });
    let (commits_before, then) = match point {
        KillPoint::Early(delay) => (0, delay),
        KillPoint::AfterCommits(commits, delay) => (commits, delay),
    };
    for _ in 0..commits_before {
        if committed.recv_timeout(PAGE_TIMEOUT).is_err() {
            // The import ended (or hung, and is killed here) before the
            // kill point: not a kill at a random point.
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
            return false;
        }
    }
    std::thread::sleep(then);
    let killed = child.try_wait().expect("cannot poll taxii-host").is_none();
    let _ = child.kill();
    let _ = child.wait();
    drop(committed);
    let _ = reader.join();
    killed
}
