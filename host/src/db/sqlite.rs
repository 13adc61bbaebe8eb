//! The SQLite backend: one file in the data directory, in WAL mode.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::Connection;

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "taxii-host.db";

/// How long a writer waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// SQLite's page cache per connection, in KiB (32 MiB): bounded, whatever
/// the size of the store.
const CACHE_KIB: i64 = 32 * 1024;

/// WAL pages (4 KiB each) between automatic checkpoints: 64 MiB.
const WAL_CHECKPOINT_PAGES: i64 = 16 * 1024;

/// The schema, as the steps that built it. `PRAGMA user_version` holds how
/// many have been applied; a new column or table is a new step at the end,
/// never an edit of an old one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE feeds (
    id              INTEGER PRIMARY KEY,
    tenant          TEXT NOT NULL,
    name            TEXT NOT NULL,
    plugin          TEXT,
    collection_url  TEXT NOT NULL,
    username        TEXT,
    password_env    TEXT,
    password_file   TEXT,
    page_size       INTEGER,
    object_types    TEXT NOT NULL DEFAULT '[]',
    added_after     TEXT,
    created_at      TEXT NOT NULL,
    UNIQUE (tenant, name)
);
CREATE TABLE stores (
    id          INTEGER PRIMARY KEY,
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    plugin      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (tenant, name)
);
CREATE TABLE entries (
    seq         INTEGER PRIMARY KEY,
    store_id    INTEGER NOT NULL REFERENCES stores (id),
    key         TEXT NOT NULL,
    value       BLOB NOT NULL,
    added_at    TEXT NOT NULL,
    UNIQUE (store_id, key)
);
CREATE TABLE runs (
    id           INTEGER PRIMARY KEY,
    store_id     INTEGER NOT NULL REFERENCES stores (id),
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    status       TEXT NOT NULL,
    pages        INTEGER NOT NULL DEFAULT 0,
    received     INTEGER NOT NULL DEFAULT 0,
    stored       INTEGER NOT NULL DEFAULT 0,
    duplicates   INTEGER NOT NULL DEFAULT 0,
    rejected     INTEGER NOT NULL DEFAULT 0,
    cursor       TEXT,
    error_kind   TEXT,
    error        TEXT,
    report       TEXT
);
CREATE INDEX runs_by_store ON runs (store_id, id);
"#,
    // Credentials of any kind (Basic, bearer token, a custom header) and the
    // network settings of a feed, each as one JSON document.
    r#"
ALTER TABLE feeds ADD COLUMN auth TEXT NOT NULL DEFAULT '{"kind":"none"}';
ALTER TABLE feeds ADD COLUMN network TEXT NOT NULL DEFAULT '{}';
UPDATE feeds SET auth = json_object(
    'kind', 'basic',
    'username', username,
    'password', CASE WHEN password_env IS NOT NULL THEN 'env:' || password_env
                     ELSE 'file:' || password_file END)
WHERE username IS NOT NULL;
ALTER TABLE feeds DROP COLUMN username;
ALTER TABLE feeds DROP COLUMN password_env;
ALTER TABLE feeds DROP COLUMN password_file;
ALTER TABLE runs ADD COLUMN denied INTEGER NOT NULL DEFAULT 0;
"#,
    // serve-taxii reads a store's entries in commit order (date_added),
    // page after page from a `seq`.
    r#"
CREATE INDEX entries_by_store_seq ON entries (store_id, seq);
"#,
    // A feed's own page limit and run deadline, tighter than the host's.
    r#"
ALTER TABLE feeds ADD COLUMN page_limit INTEGER;
ALTER TABLE feeds ADD COLUMN deadline_secs INTEGER;
"#,
    // Scheduling and politeness of each feed; what each run saw of HTTP.
    r#"
ALTER TABLE feeds ADD COLUMN every_ms INTEGER NOT NULL DEFAULT 3600000;
ALTER TABLE feeds ADD COLUMN initial_lookback_ms INTEGER;
ALTER TABLE feeds ADD COLUMN rate_requests INTEGER;
ALTER TABLE feeds ADD COLUMN rate_per_ms INTEGER;
ALTER TABLE feeds ADD COLUMN burst INTEGER NOT NULL DEFAULT 1;
ALTER TABLE feeds ADD COLUMN connect_timeout_ms INTEGER NOT NULL DEFAULT 10000;
ALTER TABLE feeds ADD COLUMN response_timeout_ms INTEGER NOT NULL DEFAULT 120000;
ALTER TABLE runs ADD COLUMN trigger TEXT NOT NULL DEFAULT 'manual';
ALTER TABLE runs ADD COLUMN scheduled_at TEXT;
ALTER TABLE runs ADD COLUMN pid INTEGER;
ALTER TABLE runs ADD COLUMN quarantined INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN requests INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN waited_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN http_statuses TEXT NOT NULL DEFAULT '{}';
ALTER TABLE runs ADD COLUMN fix TEXT;
"#,
    // Which host ran each run, now that several may share a database.
    r#"
ALTER TABLE runs ADD COLUMN host TEXT;
"#,
];

/// Opens (creating if needed) the database file in `data_dir` and brings
/// its schema up to date.
pub(super) fn open(data_dir: &Path) -> Result<Connection> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    // Intel, run history and the secrets file live here: a directory this
    // host makes is its user's only (one that exists is left as it is).
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let path = data_dir.join(DB_FILE);
    let created = !path.exists();
    let mut conn = Connection::open(&path)
        .with_context(|| format!("cannot open the database {}", path.display()))?;
    if created {
        // SQLite gives its -wal and -shm files the database's mode.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict the database {}", path.display()))?;
    }
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL in WAL mode: a process crash loses nothing committed; a
    // power loss may lose the last transactions but never corrupts.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // A page of 1,000 objects inserts 1,000 keys spread over the key index
    // (ids are random): with SQLite's default 2 MiB cache nearly each one
    // reads its B-tree page back from the kernel. A bounded cache of its
    // own keeps a large store's index pages at hand; negative means KiB.
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    // Checkpoints (the WAL copied into the database, with an fsync) every
    // 64 MiB of WAL rather than every 4 MiB: far fewer fsyncs per import,
    // and a WAL that stays bounded.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
    migrate(&mut conn).with_context(|| format!("cannot set up the database {}", path.display()))?;
    Ok(conn)
}

/// Applies the migrations this file has not seen, each in a transaction.
fn migrate(conn: &mut Connection) -> Result<()> {
    let applied: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if applied > MIGRATIONS.len() {
        anyhow::bail!(
            "the database was written by a newer taxii-host (schema {applied}, this \
             one knows {}); upgrade taxii-host",
            MIGRATIONS.len()
        );
    }
    for (step, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", step + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(dir: &Path) -> usize {
        let conn = Connection::open(dir.join(DB_FILE)).unwrap();
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_new_data_directory_and_database_are_the_owners_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("new/data");
        drop(open(&data_dir).unwrap());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data_dir), 0o700);
        assert_eq!(mode(&data_dir.join(DB_FILE)), 0o600);
    }

    #[test]
    fn opening_twice_applies_the_schema_once() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()).unwrap());
        drop(open(dir.path()).unwrap());
        assert_eq!(version(dir.path()), MIGRATIONS.len());
    }

    #[test]
    fn refuses_a_database_from_a_newer_host() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(dir.path()).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
        drop(conn);
        let message = format!("{:#}", open(dir.path()).err().unwrap());
        assert!(message.contains("newer taxii-host"), "{message}");
    }
}
