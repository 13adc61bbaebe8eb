//! Run history: one record per import run, written when it starts and
//! completed when it ends.

use anyhow::Result;
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use crate::db::Database;
use crate::store::StoreRef;

/// A run's final state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Still going (or the host died during it).
    Running,
    /// Finished with every page imported.
    Ok,
    /// Stopped at the page limit; the next run continues.
    Partial,
    /// Failed; `error` says why.
    Failed,
    /// The host stopped while it ran.
    Interrupted,
}

impl RunStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Ok => "ok",
            Self::Partial => "partial",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "running" => Self::Running,
            "ok" => Self::Ok,
            "partial" => Self::Partial,
            "interrupted" => Self::Interrupted,
            _ => Self::Failed,
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The counters of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunCounts {
    /// Pages committed.
    pub pages: u64,
    /// Objects received.
    pub received: u64,
    /// Object versions stored.
    pub stored: u64,
    /// Object versions already held.
    pub duplicates: u64,
    /// Objects rejected.
    pub rejected: u64,
}

/// One run as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    /// Run id.
    pub id: i64,
    /// When it started.
    pub started_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
    /// How it ended.
    pub status: RunStatus,
    /// What it did.
    #[serde(flatten)]
    pub counts: RunCounts,
    /// The cursor it left.
    pub cursor: Option<String>,
    /// Requests the host refused.
    pub denied: u64,
    /// The kind of failure, for example `unauthorized`.
    pub error_kind: Option<String>,
    /// The failure, with its fix.
    pub error: Option<String>,
}

/// How a run ended, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    /// Requests the host refused.
    pub denied: u64,
    /// The final status.
    pub status: RunStatus,
    /// What it did.
    pub counts: RunCounts,
    /// The cursor it left.
    pub cursor: Option<String>,
    /// The kind of failure.
    pub error_kind: Option<String>,
    /// The failure.
    pub error: Option<String>,
    /// The whole report as JSON.
    pub report: Option<String>,
}

impl RunRecord {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get("id")?,
            started_at: row.get("started_at")?,
            finished_at: row.get("finished_at")?,
            status: RunStatus::parse(&row.get::<_, String>("status")?),
            counts: RunCounts {
                pages: row.get("pages")?,
                received: row.get("received")?,
                stored: row.get("stored")?,
                duplicates: row.get("duplicates")?,
                rejected: row.get("rejected")?,
            },
            cursor: row.get("cursor")?,
            denied: row.get("denied")?,
            error_kind: row.get("error_kind")?,
            error: row.get("error")?,
        })
    }
}

impl Database {
    /// Records the start of a run. Runs of this store still marked
    /// running belonged to a host that died: they become interrupted.
    pub fn begin_run(&self, store: &StoreRef) -> Result<i64> {
        self.conn.execute(
            "UPDATE runs SET status = 'interrupted' WHERE store_id = ?1 AND status = 'running'",
            [store.id],
        )?;
        self.conn.execute(
            "INSERT INTO runs (store_id, started_at, status) VALUES (?1, ?2, 'running')",
            params![store.id, crate::now_rfc3339()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records the end of a run.
    pub fn finish_run(&self, run_id: i64, end: &RunEnd) -> Result<()> {
        let c = &end.counts;
        self.conn.execute(
            "UPDATE runs SET finished_at = ?2, status = ?3, pages = ?4, received = ?5,
                stored = ?6, duplicates = ?7, rejected = ?8, cursor = ?9, error_kind = ?10,
                error = ?11, report = ?12, denied = ?13
             WHERE id = ?1",
            params![
                run_id,
                crate::now_rfc3339(),
                end.status.as_str(),
                c.pages,
                c.received,
                c.stored,
                c.duplicates,
                c.rejected,
                end.cursor,
                end.error_kind,
                end.error,
                end.report,
                end.denied,
            ],
        )?;
        Ok(())
    }

    /// The most recent run of a store.
    pub fn last_run(&self, store: &StoreRef) -> Result<Option<RunRecord>> {
        Ok(self
            .conn
            .query_row(
                "SELECT * FROM runs WHERE store_id = ?1 ORDER BY id DESC LIMIT 1",
                [store.id],
                RunRecord::from_row,
            )
            .optional()?)
    }

    /// A store's runs, newest first.
    pub fn runs(&self, store: &StoreRef, limit: u32) -> Result<Vec<RunRecord>> {
        let mut statement = self
            .conn
            .prepare("SELECT * FROM runs WHERE store_id = ?1 ORDER BY id DESC LIMIT ?2")?;
        let runs = statement
            .query_map(params![store.id, limit], RunRecord::from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(runs)
    }
}
