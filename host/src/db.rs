//! The database that holds feed configurations, event stores and run
//! history: a SQLite file in the data directory (the default), or a
//! PostgreSQL database shared by several hosts (`--store postgres://…`).
//!
//! Both backends run the same statements, written once with SQLite's `?N`
//! placeholders (see [`sql`]); the few that need an engine's own function
//! ask [`Database::is_postgres`]. Each backend keeps its own list of
//! schema steps.
//!
//! - SQLite in WAL mode: a page committed by a plugin survives a crash of
//!   the host at any instant, readers (`retrieve`) never block the
//!   importer, and the file can be inspected with the `sqlite3` shell.
//! - PostgreSQL: the same guarantees from its transactions, for hosts on
//!   several machines; a feed's runs are then kept to one host at a time by
//!   a lease in the database (see [`crate::lease`]) instead of a lock file.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};

mod pg;
pub mod sql;
mod sqlite;

pub use self::pg::{Fence, PostgresTarget};
pub use self::sql::{Row, Value};
pub use self::sqlite::DB_FILE;

/// The parameters of a statement: `args![a, b]` is `&[Value::from(a),
/// Value::from(b)]`.
#[macro_export]
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::db::Value::from($value)),*][..]
    };
}

/// Where configurations, stores and run history are kept.
#[derive(Debug, Clone)]
pub struct Location {
    /// The data directory: the SQLite file (unless `postgres` is set), the
    /// lock files and the default secrets file.
    pub data_dir: PathBuf,
    /// A PostgreSQL database that holds everything instead of the SQLite
    /// file, shared by every host pointed at it.
    pub postgres: Option<Arc<PostgresTarget>>,
}

impl Location {
    /// The SQLite file in `data_dir`.
    pub fn sqlite(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            postgres: None,
        }
    }

    /// Opens a connection of its own.
    pub fn open(&self) -> Result<Database> {
        match &self.postgres {
            Some(target) => Database::connect(target),
            None => Database::open(&self.data_dir),
        }
    }

    /// Whether several hosts may share this database, so that a feed's
    /// runs are kept apart by leases in it rather than by lock files.
    pub fn is_shared(&self) -> bool {
        self.postgres.is_some()
    }

    /// The database, for messages: a path, or a URL without its password.
    pub fn describe(&self) -> String {
        match &self.postgres {
            Some(target) => target.to_string(),
            None => self.data_dir.join(DB_FILE).display().to_string(),
        }
    }
}

/// An open database connection.
pub struct Database {
    backend: Backend,
}

enum Backend {
    Sqlite(rusqlite::Connection),
    Postgres(Box<RefCell<pg::Connection>>),
}

impl Database {
    /// Opens (creating if needed) the SQLite database in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        Ok(Self {
            backend: Backend::Sqlite(sqlite::open(data_dir)?),
        })
    }

    /// Connects to a PostgreSQL database, setting up its schema if needed.
    pub fn connect(target: &PostgresTarget) -> Result<Self> {
        Ok(Self {
            backend: Backend::Postgres(Box::new(RefCell::new(pg::Connection::open(target)?))),
        })
    }

    /// Whether this is the PostgreSQL backend.
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Runs a statement; returns the rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value<'_>]) -> Result<u64> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                let mut statement = conn.prepare_cached(sql)?;
                Ok(statement.execute(rusqlite::params_from_iter(params))? as u64)
            }
            Backend::Postgres(conn) => pg::borrow(conn)?.execute(sql, params),
        }
    }

    /// Runs statements separated by `;`, with no parameters.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Backend::Postgres(conn) => pg::borrow(conn)?.execute_batch(sql),
        }
    }

    /// Runs a query and hands each row to `f` while it returns true. Rows
    /// stream from the database: a query over millions of rows holds one
    /// at a time (PostgreSQL: a batch). `f` must not use this connection.
    pub fn query_each(
        &self,
        sql: &str,
        params: &[Value<'_>],
        mut f: impl FnMut(&Row<'_>) -> Result<bool>,
    ) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                let mut statement = conn.prepare_cached(sql)?;
                let mut rows = statement.query(rusqlite::params_from_iter(params))?;
                while let Some(row) = rows.next()? {
                    if !f(&Row::Sqlite(row))? {
                        break;
                    }
                }
                Ok(())
            }
            Backend::Postgres(conn) => pg::borrow(conn)?.query_each(sql, params, &mut f),
        }
    }

    /// Every row of a query, each read by `f`.
    pub fn query_all<T>(
        &self,
        sql: &str,
        params: &[Value<'_>],
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut all = Vec::new();
        self.query_each(sql, params, |row| {
            all.push(f(row)?);
            Ok(true)
        })?;
        Ok(all)
    }

    /// The first row of a query, read by `f`, if there is one.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        params: &[Value<'_>],
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut f = Some(f);
        let mut found = None;
        self.query_each(sql, params, |row| {
            if let Some(f) = f.take() {
                found = Some(f(row)?);
            }
            Ok(false)
        })?;
        Ok(found)
    }

    /// Runs `f` in one transaction: everything it wrote is committed if it
    /// returns `Ok`, nothing if it fails.
    pub fn transaction<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        // IMMEDIATE: take the write lock now, so that two writers wait for
        // each other instead of one failing at its first write.
        self.within("BEGIN IMMEDIATE", f)
    }

    /// Runs `f`'s reads in one transaction, so that they see one state of
    /// the database and SQLite takes its read lock once for all of them.
    pub fn read<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        self.within("BEGIN DEFERRED", f)
    }

    /// Runs `f` between `begin` (on SQLite; PostgreSQL's `BEGIN` on the
    /// other backend) and a commit, or a rollback if it fails.
    fn within<R>(&self, begin: &str, f: impl FnOnce() -> Result<R>) -> Result<R> {
        match &self.backend {
            Backend::Sqlite(conn) => conn.execute_batch(begin)?,
            Backend::Postgres(conn) => pg::borrow(conn)?.begin()?,
        }
        let result = f();
        let end = match (&self.backend, result.is_ok()) {
            (Backend::Sqlite(conn), true) => conn.execute_batch("COMMIT").map_err(Into::into),
            (Backend::Sqlite(conn), false) => conn.execute_batch("ROLLBACK").map_err(Into::into),
            (Backend::Postgres(conn), commit) => pg::borrow(conn)?.end(commit),
        };
        match (result, end) {
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(e)) => Err(e.context("cannot commit")),
            (Err(e), _) => Err(e),
        }
    }

    /// The PostgreSQL connection, for the statements only it has.
    fn postgres(&self) -> Result<std::cell::RefMut<'_, pg::Connection>> {
        match &self.backend {
            Backend::Postgres(conn) => pg::borrow(conn),
            Backend::Sqlite(_) => bail!("this needs the PostgreSQL store"),
        }
    }

    /// Writes entries with one statement, in the transaction open on this
    /// PostgreSQL connection (see [`Database::set_entries`]).
    pub(crate) fn postgres_upsert_entries(
        &self,
        store_id: i64,
        entries: &[(String, Vec<u8>)],
        added_at: &[String],
    ) -> Result<()> {
        self.postgres()?.upsert_entries(store_id, entries, added_at)
    }

    /// The values of `keys` with one statement on PostgreSQL (see
    /// [`Database::get_entries`]).
    pub(crate) fn postgres_get_entries(
        &self,
        store_id: i64,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        self.postgres()?.get_entries(store_id, keys)
    }

    /// SQL for the position of `needle` in `haystack`, from 1 (0 if absent).
    pub fn strpos(&self, haystack: &str, needle: &str) -> String {
        if self.is_postgres() {
            format!("strpos({haystack}, {needle})")
        } else {
            format!("instr({haystack}, {needle})")
        }
    }
}

/// The store test suite runs on both backends: each test body is given a
/// fresh SQLite data directory, then a fresh PostgreSQL database.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::secret::Secret;
    use taxii_feed_tests::postgres::TestDatabase;

    /// One backend, empty, for one test body.
    pub(crate) struct Backend {
        /// `sqlite` or `postgres`, for failure messages.
        pub name: &'static str,
        /// Where it is.
        pub location: Location,
        _dir: tempfile::TempDir,
        _postgres: Option<TestDatabase>,
    }

    impl Backend {
        /// A connection of its own.
        pub fn open(&self) -> Database {
            self.location
                .open()
                .unwrap_or_else(|e| panic!("{}: cannot open: {e:#}", self.name))
        }
    }

    /// Runs `test` on a fresh SQLite store, then on a fresh PostgreSQL one.
    pub(crate) fn each_backend(mut test: impl FnMut(&Backend)) {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Backend {
            name: "sqlite",
            location: Location::sqlite(dir.path()),
            _dir: dir,
            _postgres: None,
        };
        eprintln!("on sqlite");
        test(&sqlite);
        eprintln!("on postgres");
        test(&postgres());
    }

    /// A fresh PostgreSQL store (a database of its own).
    pub(crate) fn postgres() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let database = TestDatabase::create();
        let target =
            PostgresTarget::new(&database.url, Some(Secret::new(database.password.clone())))
                .unwrap();
        Backend {
            name: "postgres",
            location: Location {
                data_dir: dir.path().to_path_buf(),
                postgres: Some(Arc::new(target)),
            },
            _dir: dir,
            _postgres: Some(database),
        }
    }
}
