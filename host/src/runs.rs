//! Run history: one record per import run, written when it starts and
//! completed when it ends. `runs NAME` shows it in full.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::args;
use crate::db::{Database, Row};
use crate::progress::format_statuses;
use crate::store::StoreRef;

/// What the record of a run that a dead host left says.
const DIED_CAUSE: &str = "the host stopped during this run (it was killed, crashed or the \
                          machine went down); the pages it committed are kept";
/// And what to do about it.
const DIED_FIX: &str = "nothing: the next run resumes from the stored cursor";

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// `import`.
    Manual,
    /// The scheduler of `serve`.
    Schedule,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Schedule => "schedule",
        }
    }
}

/// How a run starts, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStart {
    /// What started it.
    pub trigger: Trigger,
    /// When it started (for the scheduler: when it decided to start it, the
    /// moment its next run is counted from).
    pub started_at: SystemTime,
    /// When the scheduler meant it to start.
    pub scheduled_at: Option<SystemTime>,
}

impl Default for RunStart {
    fn default() -> Self {
        Self {
            trigger: Trigger::Manual,
            started_at: SystemTime::now(),
            scheduled_at: None,
        }
    }
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
}

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
    /// Rejected objects newly put in the quarantine.
    pub quarantined: u64,
}

/// What a run saw of HTTP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HttpCounts {
    /// Requests sent, retries included.
    pub requests: u64,
    /// Requests sent again after a failure or a `Retry-After`.
    pub retries: u64,
    /// Time spent waiting for the server's limits, in milliseconds.
    pub waited_ms: u64,
    /// Answers by status (`"200"`), and failures without one by name
    /// (`"timeout"`, `"connection-refused"`).
    pub http_statuses: BTreeMap<String, u64>,
}

/// One run as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    /// Run id.
    pub id: i64,
    /// What started it.
    pub trigger: Trigger,
    /// When the scheduler meant it to start.
    pub scheduled_at: Option<String>,
    /// When it started.
    pub started_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
    /// How it ended.
    pub status: RunStatus,
    /// What it did.
    #[serde(flatten)]
    pub counts: RunCounts,
    /// What it saw of HTTP.
    #[serde(flatten)]
    pub http: HttpCounts,
    /// The cursor it left.
    pub cursor: Option<String>,
    /// Requests the host refused.
    pub denied: u64,
    /// The kind of failure, for example `unauthorized`.
    pub error_kind: Option<String>,
    /// The failure, with its fix.
    pub error: Option<String>,
    /// What to do about the failure.
    pub fix: Option<String>,
    /// The process that ran it.
    pub pid: Option<u32>,
    /// The host that ran it: machine, pid and a random part (see
    /// [`crate::lease::host_id`]); several share a PostgreSQL store.
    pub host: Option<String>,
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
    /// What it saw of HTTP.
    pub http: HttpCounts,
    /// The cursor it left.
    pub cursor: Option<String>,
    /// The kind of failure.
    pub error_kind: Option<String>,
    /// The failure, with its fix.
    pub error: Option<String>,
    /// What to do about it.
    pub fix: Option<String>,
    /// The whole report as JSON.
    pub report: Option<String>,
}

impl RunRecord {
    fn from_row(row: &Row<'_>) -> Result<Self> {
        let statuses: String = row.get("http_statuses")?;
        Ok(Self {
            id: row.get("id")?,
            trigger: match row.get::<String>("trigger")?.as_str() {
                "schedule" => Trigger::Schedule,
                _ => Trigger::Manual,
            },
            scheduled_at: row.get("scheduled_at")?,
            started_at: row.get("started_at")?,
            finished_at: row.get("finished_at")?,
            status: RunStatus::parse(&row.get::<String>("status")?),
            counts: RunCounts {
                pages: row.get("pages")?,
                received: row.get("received")?,
                stored: row.get("stored")?,
                duplicates: row.get("duplicates")?,
                rejected: row.get("rejected")?,
                quarantined: row.get("quarantined")?,
            },
            http: HttpCounts {
                requests: row.get("requests")?,
                retries: row.get("retries")?,
                waited_ms: row.get("waited_ms")?,
                http_statuses: serde_json::from_str(&statuses).unwrap_or_default(),
            },
            cursor: row.get("cursor")?,
            denied: row.get("denied")?,
            error_kind: row.get("error_kind")?,
            error: row.get("error")?,
            fix: row.get("fix")?,
            pid: row.get("pid")?,
            host: row.get("host")?,
        })
    }

    /// The failure without its fix.
    pub fn cause(&self) -> Option<&str> {
        let error = self.error.as_deref()?;
        let suffix = self.fix.as_ref().map(|fix| format!(" (fix: {fix})"));
        Some(suffix.and_then(|s| error.strip_suffix(&s)).unwrap_or(error))
    }

    /// How long it took, if it ended.
    pub fn duration(&self) -> Option<std::time::Duration> {
        let start = humantime::parse_rfc3339(&self.started_at).ok()?;
        let end = humantime::parse_rfc3339(self.finished_at.as_deref()?).ok()?;
        end.duration_since(start).ok()
    }
}

impl Database {
    /// Records the start of a run. The caller holds the feed's lock (see
    /// [`crate::lock`]), so runs of this store still marked running belonged
    /// to a host that died: they become interrupted.
    pub fn begin_run(&self, store: &StoreRef, start: &RunStart) -> Result<i64> {
        self.execute(
            "UPDATE runs SET status = 'interrupted', error_kind = 'interrupted',
                error = CAST(?2 AS TEXT) || ' (fix: ' || CAST(?3 AS TEXT) || ')', fix = ?3
             WHERE store_id = ?1 AND status = 'running'",
            args![store.id, DIED_CAUSE, DIED_FIX],
        )?;
        let id = self.query_opt(
            "INSERT INTO runs (store_id, started_at, status, trigger, scheduled_at, pid, host)
             VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6) RETURNING id",
            args![
                store.id,
                rfc3339(start.started_at),
                start.trigger.as_str(),
                start.scheduled_at.map(rfc3339),
                std::process::id(),
                crate::lease::host_id(),
            ],
            |row| row.at(0),
        )?;
        id.context("the database did not return the new run's id")
    }

    /// Records the end of a run.
    pub fn finish_run(&self, run_id: i64, end: &RunEnd) -> Result<()> {
        let (c, h) = (&end.counts, &end.http);
        self.execute(
            "UPDATE runs SET finished_at = ?2, status = ?3, pages = ?4, received = ?5,
                stored = ?6, duplicates = ?7, rejected = ?8, cursor = ?9, error_kind = ?10,
                error = ?11, report = ?12, denied = ?13, quarantined = ?14, requests = ?15,
                retries = ?16, waited_ms = ?17, http_statuses = ?18, fix = ?19
             WHERE id = ?1",
            args![
                run_id,
                crate::now_rfc3339(),
                end.status.as_str(),
                c.pages,
                c.received,
                c.stored,
                c.duplicates,
                c.rejected,
                end.cursor.as_deref(),
                end.error_kind.as_deref(),
                end.error.as_deref(),
                end.report.as_deref(),
                end.denied,
                c.quarantined,
                h.requests,
                h.retries,
                h.waited_ms,
                serde_json::to_string(&h.http_statuses)?,
                end.fix.as_deref(),
            ],
        )?;
        Ok(())
    }

    /// The most recent run of a store.
    pub fn last_run(&self, store: &StoreRef) -> Result<Option<RunRecord>> {
        self.query_opt(
            "SELECT * FROM runs WHERE store_id = ?1 ORDER BY id DESC LIMIT 1",
            args![store.id],
            RunRecord::from_row,
        )
    }

    /// A store's runs, newest first.
    pub fn runs(&self, store: &StoreRef, limit: u32) -> Result<Vec<RunRecord>> {
        self.query_all(
            "SELECT * FROM runs WHERE store_id = ?1 ORDER BY id DESC LIMIT ?2",
            args![store.id, limit],
            RunRecord::from_row,
        )
    }
}

/// Writes a store's runs as a table, then the cause and fix of each run
/// that did not end well.
pub fn write_runs(store: &str, runs: &[RunRecord], out: &mut impl Write) -> Result<()> {
    if runs.is_empty() {
        writeln!(
            out,
            "store {store} has no runs yet: `import {store}` runs it once"
        )?;
        return Ok(());
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header([
        "RUN",
        "TRIGGER",
        "STARTED",
        "TOOK",
        "STATUS",
        "PAGES",
        "RECEIVED",
        "STORED",
        "DUPS",
        "REJECTED",
        "QUARANTINED",
        "RETRIES",
        "WAITED",
        "HTTP",
    ]);
    for run in runs {
        let c = &run.counts;
        table.add_row([
            run.id.to_string(),
            run.trigger.as_str().to_string(),
            run.started_at.clone(),
            run.duration().map_or_else(|| "-".into(), short_duration),
            run.status.to_string(),
            c.pages.to_string(),
            c.received.to_string(),
            c.stored.to_string(),
            c.duplicates.to_string(),
            c.rejected.to_string(),
            c.quarantined.to_string(),
            run.http.retries.to_string(),
            short_duration(std::time::Duration::from_millis(run.http.waited_ms)),
            format_statuses(&run.http.http_statuses),
        ]);
    }
    writeln!(out, "{table}")?;
    for run in runs.iter().filter(|r| r.error.is_some()) {
        let kind = run.error_kind.as_deref().unwrap_or("error");
        writeln!(
            out,
            "\nrun {} {} ({kind}): {}",
            run.id,
            run.status,
            run.cause().unwrap_or_default()
        )?;
        if let Some(fix) = &run.fix {
            writeln!(out, "  fix: {fix}")?;
        }
    }
    Ok(())
}

/// `1.2s`, `3m4s`.
fn short_duration(d: std::time::Duration) -> String {
    if d < std::time::Duration::from_secs(60) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::each_backend;

    fn store(db: &Database) -> StoreRef {
        db.ensure_store("default", "intel", "taxii-feed").unwrap()
    }

    #[test]
    fn a_run_left_running_by_a_dead_host_becomes_interrupted_with_its_cause() {
        each_backend(|backend| {
            let db = backend.open();
            let store = store(&db);
            let dead = db.begin_run(&store, &RunStart::default()).unwrap();
            let scheduled = humantime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
            let start = RunStart {
                trigger: Trigger::Schedule,
                started_at: scheduled + std::time::Duration::from_millis(5),
                scheduled_at: Some(scheduled),
            };
            let live = db.begin_run(&store, &start).unwrap();
            let runs = db.runs(&store, 10).unwrap();
            assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [live, dead]);
            assert_eq!(runs[1].status, RunStatus::Interrupted);
            assert_eq!(runs[1].error_kind.as_deref(), Some("interrupted"));
            assert_eq!(runs[1].cause(), Some(DIED_CAUSE));
            assert_eq!(runs[1].fix.as_deref(), Some(DIED_FIX));
            assert_eq!(runs[0].status, RunStatus::Running);
            assert_eq!(runs[0].trigger, Trigger::Schedule);
            assert_eq!(runs[0].started_at, "2026-01-01T00:00:00.005000Z");
            assert_eq!(
                runs[0].scheduled_at.as_deref(),
                Some("2026-01-01T00:00:00.000000Z")
            );
            assert_eq!(runs[0].pid, Some(std::process::id()));
            assert_eq!(runs[0].host.as_deref(), Some(crate::lease::host_id()));
        });
    }

    #[test]
    fn a_finished_run_keeps_its_counts_statuses_and_fix() {
        each_backend(|backend| {
            let db = backend.open();
            let store = store(&db);
            let id = db.begin_run(&store, &RunStart::default()).unwrap();
            let end = RunEnd {
                denied: 0,
                status: RunStatus::Failed,
                counts: RunCounts {
                    pages: 3,
                    received: 30,
                    stored: 20,
                    duplicates: 9,
                    rejected: 1,
                    quarantined: 1,
                },
                http: HttpCounts {
                    requests: 6,
                    retries: 2,
                    waited_ms: 1500,
                    http_statuses: [("200".to_string(), 4), ("503".to_string(), 2)].into(),
                },
                cursor: Some("c".into()),
                error_kind: Some("unavailable".into()),
                error: Some("it broke (fix: try later)".into()),
                fix: Some("try later".into()),
                report: None,
            };
            db.finish_run(id, &end).unwrap();
            let run = db.last_run(&store).unwrap().unwrap();
            assert_eq!(
                (run.counts.clone(), run.http.clone()),
                (end.counts, end.http)
            );
            assert_eq!(run.cause(), Some("it broke"));
            let mut out = Vec::new();
            write_runs("intel", &[run], &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("200×4 503×2"), "{text}");
            assert!(
                text.contains("failed (unavailable): it broke\n  fix: try later"),
                "{text}"
            );
        });
    }
}
