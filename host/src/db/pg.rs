//! The PostgreSQL backend, for hosts that share their feeds.
//!
//! The `postgres` client is synchronous, like `rusqlite`, and keeps a small
//! runtime of its own; the host's async code reaches it through
//! [`tokio::task::block_in_place`], as it reaches SQLite, so that a query
//! never blocks the other tasks of a worker thread.
//!
//! Keys and names are `COLLATE "C"`: byte order, as SQLite compares them,
//! whatever the database's locale, so that key ranges mean the same on
//! both backends.

use std::cell::{RefCell, RefMut};
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use postgres::types::ToSql;
use postgres::{Client, NoTls, Statement};
use url::Url;

use super::sql::{Row, Value, postgres_placeholders};
use crate::secret::Secret;

/// Rows fetched at a time by a streaming query.
const FETCH_ROWS: i32 = 1000;

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 128;

/// How long connecting may take, unless the URL says.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A key for `pg_advisory_xact_lock`, so that hosts starting together set
/// the schema up one after the other.
const SCHEMA_LOCK: i64 = 0x7461_7869_6966_6565; // "taxiifee"

/// The schema, as the steps that built it; `taxii_schema.version` holds
/// how many have been applied. The first step is the SQLite schema as it
/// stands after all of its own steps, with PostgreSQL's types.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE feeds (
    id                   BIGSERIAL PRIMARY KEY,
    tenant               TEXT COLLATE "C" NOT NULL,
    name                 TEXT COLLATE "C" NOT NULL,
    plugin               TEXT,
    collection_url       TEXT NOT NULL,
    page_size            BIGINT,
    object_types         TEXT NOT NULL DEFAULT '[]',
    added_after          TEXT,
    created_at           TEXT NOT NULL,
    auth                 TEXT NOT NULL DEFAULT '{"kind":"none"}',
    network              TEXT NOT NULL DEFAULT '{}',
    page_limit           BIGINT,
    deadline_secs        BIGINT,
    every_ms             BIGINT NOT NULL DEFAULT 3600000,
    initial_lookback_ms  BIGINT,
    rate_requests        BIGINT,
    rate_per_ms          BIGINT,
    burst                BIGINT NOT NULL DEFAULT 1,
    connect_timeout_ms   BIGINT NOT NULL DEFAULT 10000,
    response_timeout_ms  BIGINT NOT NULL DEFAULT 120000,
    UNIQUE (tenant, name)
);
CREATE TABLE stores (
    id          BIGSERIAL PRIMARY KEY,
    tenant      TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    plugin      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (tenant, name)
);
CREATE TABLE entries (
    seq         BIGSERIAL PRIMARY KEY,
    store_id    BIGINT NOT NULL REFERENCES stores (id),
    key         TEXT COLLATE "C" NOT NULL,
    value       BYTEA NOT NULL,
    added_at    TEXT NOT NULL,
    UNIQUE (store_id, key)
);
CREATE INDEX entries_by_store_seq ON entries (store_id, seq);
CREATE TABLE runs (
    id            BIGSERIAL PRIMARY KEY,
    store_id      BIGINT NOT NULL REFERENCES stores (id),
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    status        TEXT NOT NULL,
    pages         BIGINT NOT NULL DEFAULT 0,
    received      BIGINT NOT NULL DEFAULT 0,
    stored        BIGINT NOT NULL DEFAULT 0,
    duplicates    BIGINT NOT NULL DEFAULT 0,
    rejected      BIGINT NOT NULL DEFAULT 0,
    cursor        TEXT,
    error_kind    TEXT,
    error         TEXT,
    report        TEXT,
    denied        BIGINT NOT NULL DEFAULT 0,
    trigger       TEXT NOT NULL DEFAULT 'manual',
    scheduled_at  TEXT,
    pid           BIGINT,
    quarantined   BIGINT NOT NULL DEFAULT 0,
    requests      BIGINT NOT NULL DEFAULT 0,
    retries       BIGINT NOT NULL DEFAULT 0,
    waited_ms     BIGINT NOT NULL DEFAULT 0,
    http_statuses TEXT NOT NULL DEFAULT '{}',
    fix           TEXT,
    host          TEXT
);
CREATE INDEX runs_by_store ON runs (store_id, id);
CREATE TABLE leases (
    tenant       TEXT COLLATE "C" NOT NULL,
    feed         TEXT COLLATE "C" NOT NULL,
    holder       TEXT NOT NULL,
    fence        BIGINT NOT NULL,
    acquired_at  TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant, feed)
);
"#];

/// A PostgreSQL database to connect to. Prints as its URL without the
/// password.
#[derive(Clone)]
pub struct PostgresTarget {
    config: postgres::Config,
    shown: String,
}

impl PostgresTarget {
    /// A `postgres://` (or `postgresql://`) URL, and the password when it
    /// is not in the URL.
    pub fn new(url: &str, password: Option<Secret>) -> Result<Self> {
        let mut shown = Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "postgres" | "postgresql") && u.has_host())
            .with_context(|| {
                format!(
                    "--store {:?} is not a PostgreSQL URL: write it like \
                     postgres://USER@HOST:5432/DATABASE",
                    redact(url)
                )
            })?;
        let mut config: postgres::Config = url
            .parse()
            .with_context(|| format!("--store {}: cannot read the URL", redact(url)))?;
        if let Some(password) = password {
            config.password(password.expose());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("taxii-host");
        let _ = shown.set_password(None);
        Ok(Self {
            config,
            shown: shown.to_string(),
        })
    }

    /// Whether the URL carries a password of its own, as `user:password@`
    /// or as a `?password=` parameter (libpq reads both).
    pub fn has_password_in_url(url: &str) -> bool {
        Url::parse(url).is_ok_and(|u| {
            u.password().is_some()
                || u.query_pairs()
                    .any(|(key, _)| key.eq_ignore_ascii_case("password"))
        })
    }
}

/// The URL with any password replaced, for messages about a bad URL.
fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("REDACTED"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(not a URL)".into(),
    }
}

impl fmt::Display for PostgresTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for PostgresTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresTarget({})", self.shown)
    }
}

/// The proof that a run still holds its feed's lease: every write of the
/// run checks it in the write's own transaction, so a host that lost its
/// lease (it stalled past the lease's expiry and another host took the
/// feed) can no longer write to the feed's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The feed's tenant.
    pub tenant: String,
    /// The feed.
    pub feed: String,
    /// Who holds the lease.
    pub holder: String,
    /// The lease's number: it grows each time the lease changes hands.
    pub fence: i64,
    /// How long a renewal extends the lease.
    pub ttl: Duration,
}

/// Runs `f`, which blocks on the network, without stalling the tasks of
/// the tokio worker thread it is called on.
pub(super) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        Ok(_) => panic!("the PostgreSQL store needs tokio's multi-threaded runtime"),
        Err(_) => f(),
    }
}

/// Borrows the connection; a query started from inside another query's
/// row callback is a bug, reported rather than panicking.
pub(super) fn borrow(conn: &RefCell<Connection>) -> Result<RefMut<'_, Connection>> {
    conn.try_borrow_mut()
        .map_err(|_| anyhow!("a query was started while another one was being read"))
}

/// One connection, its prepared statements, and whether a transaction is
/// open on it.
pub(super) struct Connection {
    client: Option<Client>,
    statements: HashMap<String, Statement>,
    in_transaction: bool,
    shown: String,
}

impl Connection {
    /// Connects and brings the schema up to date.
    pub(super) fn open(target: &PostgresTarget) -> Result<Self> {
        let client = blocking(|| target.config.connect(NoTls)).map_err(|e| {
            let fix = if e.as_db_error().is_some_and(|d| d.code().code() == "28P01") {
                "give the password with --store-password-file or PGPASSWORD"
            } else {
                "check --store, and that the server runs and lets this user in"
            };
            anyhow!("cannot connect to the PostgreSQL store {target}: {e}; {fix}")
        })?;
        let mut conn = Self {
            client: Some(client),
            statements: HashMap::new(),
            in_transaction: false,
            shown: target.shown.clone(),
        };
        // Once per database and process: a host opens a connection per
        // run, and the schema does not change under a running host.
        static MIGRATED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        let key = target.shown.clone();
        let done = MIGRATED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key);
        if !done {
            conn.migrate()
                .with_context(|| format!("cannot set up the PostgreSQL store {target}"))?;
            MIGRATED.lock().unwrap_or_else(|e| e.into_inner()).push(key);
        }
        Ok(conn)
    }

    fn client(&mut self) -> Result<&mut Client> {
        self.client
            .as_mut()
            .ok_or_else(|| anyhow!("the connection to {} is closed", self.shown))
    }

    /// Applies the schema steps the database has not seen, all in one
    /// transaction under an advisory lock.
    fn migrate(&mut self) -> Result<()> {
        let client = self.client()?;
        blocking(|| -> Result<()> {
            let mut tx = client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
            tx.batch_execute("CREATE TABLE IF NOT EXISTS taxii_schema (version BIGINT NOT NULL)")?;
            let applied: i64 = match tx.query_opt("SELECT version FROM taxii_schema", &[])? {
                Some(row) => row.get(0),
                None => {
                    tx.execute("INSERT INTO taxii_schema (version) VALUES (0)", &[])?;
                    0
                }
            };
            let applied = usize::try_from(applied)?;
            if applied > MIGRATIONS.len() {
                bail!(
                    "the database was written by a newer taxii-host (schema {applied}, this \
                     one knows {}); upgrade taxii-host",
                    MIGRATIONS.len()
                );
            }
            for sql in &MIGRATIONS[applied..] {
                tx.batch_execute(sql)?;
            }
            let version = i64::try_from(MIGRATIONS.len())?;
            tx.execute("UPDATE taxii_schema SET version = $1", &[&version])?;
            tx.commit()?;
            Ok(())
        })
    }

    /// The statement prepared for `sql` (written with `?N` placeholders).
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let text = postgres_placeholders(sql);
        let client = self.client()?;
        let statement = blocking(|| client.prepare(&text))
            .with_context(|| format!("cannot prepare the statement {text}"))?;
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    pub(super) fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        let client = self.client()?;
        Ok(blocking(|| client.execute(&statement, &params))?)
    }

    pub(super) fn execute_batch(&mut self, sql: &str) -> Result<()> {
        let client = self.client()?;
        Ok(blocking(|| client.batch_execute(sql))?)
    }

    pub(super) fn query_each(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        f: &mut dyn FnMut(&Row<'_>) -> Result<bool>,
    ) -> Result<()> {
        use postgres::fallible_iterator::FallibleIterator;
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        let in_transaction = self.in_transaction;
        let client = self.client()?;
        blocking(|| -> Result<()> {
            if in_transaction {
                let mut rows = client.query_raw(&statement, params.iter().copied())?;
                while let Some(row) = rows.next()? {
                    if !f(&Row::Postgres(&row))? {
                        break;
                    }
                }
                return Ok(());
            }
            // A portal read a batch at a time: memory stays bounded and a
            // reader that stops early leaves the rest unsent.
            let mut tx = client.transaction()?;
            let portal = tx.bind(&statement, &params)?;
            'batches: loop {
                let batch = tx.query_portal(&portal, FETCH_ROWS)?;
                for row in &batch {
                    if !f(&Row::Postgres(row))? {
                        break 'batches;
                    }
                }
                if batch.len() < FETCH_ROWS as usize {
                    break;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    pub(super) fn begin(&mut self) -> Result<()> {
        if self.in_transaction {
            bail!("a transaction is already open on this connection");
        }
        let client = self.client()?;
        blocking(|| client.batch_execute("BEGIN"))?;
        self.in_transaction = true;
        Ok(())
    }

    pub(super) fn end(&mut self, commit: bool) -> Result<()> {
        self.in_transaction = false;
        let client = self.client()?;
        let sql = if commit { "COMMIT" } else { "ROLLBACK" };
        Ok(blocking(|| client.batch_execute(sql))?)
    }

    /// Writes entries with one statement (arrays unnested), in the
    /// transaction open on this connection.
    pub(super) fn upsert_entries(
        &mut self,
        store_id: i64,
        entries: &[(String, Vec<u8>)],
        added_at: &[String],
    ) -> Result<()> {
        const UPSERT: &str = "INSERT INTO entries (store_id, key, value, added_at)
             SELECT ?1, k, v, a FROM unnest(?2::text[], ?3::bytea[], ?4::text[]) AS t (k, v, a)
             ON CONFLICT (store_id, key) DO UPDATE SET value = excluded.value";
        let statement = self.statement(UPSERT)?;
        // One statement may not change a row twice: a key given twice
        // keeps its first place and its last value, as row by row would.
        let mut keys: Vec<&str> = Vec::with_capacity(entries.len());
        let mut values: Vec<&[u8]> = Vec::with_capacity(entries.len());
        let mut times: Vec<&str> = Vec::with_capacity(entries.len());
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(entries.len());
        for ((key, value), time) in entries.iter().zip(added_at) {
            match seen.get(key.as_str()) {
                Some(&at) => values[at] = value,
                None => {
                    seen.insert(key, keys.len());
                    keys.push(key);
                    values.push(value);
                    times.push(time);
                }
            }
        }
        let client = self.client()?;
        blocking(|| client.execute(&statement, &[&store_id, &keys, &values, &times]))?;
        Ok(())
    }
}

impl Connection {
    /// The values of `keys`, in order, with one statement.
    pub(super) fn get_entries(
        &mut self,
        store_id: i64,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        const GET: &str =
            "SELECT key, value FROM entries WHERE store_id = ?1 AND key = ANY(?2::text[])";
        let statement = self.statement(GET)?;
        let client = self.client()?;
        let rows = blocking(|| client.query(&statement, &[&store_id, &keys]))?;
        let found: HashMap<String, Vec<u8>> = rows
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, postgres::Error>>()?;
        Ok(keys.iter().map(|key| found.get(key).cloned()).collect())
    }
}

impl Drop for Connection {
    /// The client shuts its runtime down when dropped, which tokio allows
    /// only outside async code.
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            blocking(|| drop(client));
        }
    }
}
