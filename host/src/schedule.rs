//! `serve`: runs every feed of a tenant on its own interval until stopped.
//!
//! - Each feed runs every `every` (default 1 hour), counted from the start
//!   of its last run, plus a random jitter of up to 10 % so that feeds
//!   added together drift apart; first runs are spread over up to a minute.
//! - A feed never runs twice at once (here, and across processes through
//!   the feed's lock); at most `max_concurrent` runs go at once.
//! - A run that fails for a reason that may pass (the server is down or
//!   rate-limits) is tried again after an exponential backoff capped at the
//!   interval, and never before the server's `Retry-After`; one that needs
//!   a fix (credentials, URL) waits for the next interval or for its
//!   configuration to change.
//! - Configurations are read again every `reload_every`: added, changed and
//!   removed feeds take effect without a restart.
//! - On SIGINT or SIGTERM no new run starts, runs end after their current
//!   page, and those still going after the grace period are abandoned (see
//!   [`crate::shutdown`]). Every page is committed with its cursor in one
//!   transaction, so nothing is ever half written.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use serde::Serialize;
use tokio::task::{Id, JoinError, JoinSet};

use crate::db::Database;
use crate::feeds::Feed;
use crate::lock::{Lock, LockError};
use crate::progress::RunProgress;
use crate::runner::{ImportOutcome, RunOptions, Runner};
use crate::runs::{RunStart, RunStatus, Trigger};
use crate::shutdown::Shutdown;

mod config;
pub use config::{DEFAULT_EVERY, FeedSchedule, Lookback, MIN_EVERY, MIN_EVERY_ENV, parse_every};

/// The largest jitter, as a fraction of the interval.
pub const JITTER: f64 = 0.1;
/// First runs are spread over at most this long.
const FIRST_RUN_SPREAD: Duration = Duration::from_secs(60);
/// A feed another process is importing is looked at again after this long
/// (or its interval, if shorter).
const BUSY_RETRY: Duration = Duration::from_secs(60);

/// How `serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The tenant whose feeds run.
    pub tenant: String,
    /// Runs at once, at most.
    pub max_concurrent: usize,
    /// How often the configurations are read again.
    pub reload_every: Duration,
    /// How long runs may take to finish their page once stopping is asked.
    pub shutdown_grace: Duration,
}

/// What a `serve` did, when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServeSummary {
    /// Runs that ended.
    pub runs: u64,
    /// Of those, runs that failed.
    pub failed: u64,
    /// Of those, runs stopped by the shutdown.
    pub interrupted: u64,
}

/// Runs the tenant's feeds until `shutdown` is asked, then stops cleanly.
pub async fn serve(
    runner: Arc<Runner>,
    options: ServeOptions,
    shutdown: Shutdown,
) -> Result<ServeSummary> {
    // On a shared store several `serve` processes run the tenant's feeds
    // together, each feed under a lease; on a data directory, one does.
    let location = runner.location();
    let _one_scheduler = if location.is_shared() {
        None
    } else {
        Some(Lock::scheduler(&location.data_dir, &options.tenant)?)
    };
    let mut scheduler = Scheduler {
        runner,
        options,
        shutdown,
        slots: BTreeMap::new(),
        tasks: JoinSet::new(),
        task_feeds: HashMap::new(),
        rng: fastrand::Rng::new(),
        next_reload: Instant::now(),
        summary: ServeSummary::default(),
    };
    scheduler.run().await
}

/// One feed as the scheduler sees it.
#[derive(Debug)]
struct Slot {
    feed: Feed,
    next_due: SystemTime,
    running: bool,
    removed: bool,
    failures: u32,
    last_start: Option<SystemTime>,
}

struct Finished {
    name: String,
    started: SystemTime,
    result: Result<ImportOutcome>,
}

struct Scheduler {
    runner: Arc<Runner>,
    options: ServeOptions,
    shutdown: Shutdown,
    slots: BTreeMap<String, Slot>,
    tasks: JoinSet<Finished>,
    task_feeds: HashMap<Id, String>,
    rng: fastrand::Rng,
    next_reload: Instant,
    summary: ServeSummary,
}

impl Scheduler {
    async fn run(&mut self) -> Result<ServeSummary> {
        while !self.shutdown.is_finishing() {
            if Instant::now() >= self.next_reload {
                if let Err(e) = self.reload() {
                    tracing::warn!("cannot read the feed configurations: {e:#}; trying again");
                }
                self.next_reload = Instant::now() + self.options.reload_every;
            }
            self.start_due();
            let wake = self.until_next_wake();
            tokio::select! {
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.finished(joined);
                }
                () = tokio::time::sleep(wake) => {}
                () = self.shutdown.finishing() => {}
            }
        }
        self.drain().await;
        tracing::info!(
            runs = self.summary.runs,
            failed = self.summary.failed,
            interrupted = self.summary.interrupted,
            "stopped"
        );
        Ok(self.summary.clone())
    }

    /// Reads the configurations and updates the slots.
    fn reload(&mut self) -> Result<()> {
        let db = self.runner.location().open()?;
        let feeds = db.feeds(&self.options.tenant)?;
        let now = SystemTime::now();
        for slot in self.slots.values_mut() {
            slot.removed = !feeds.iter().any(|f| f.name == slot.feed.name);
        }
        self.slots.retain(|name, slot| {
            if slot.removed && !slot.running {
                tracing::info!(feed = %name, "feed removed: no more runs");
            }
            !slot.removed || slot.running
        });
        for feed in feeds {
            let every = feed.schedule.every;
            match self.slots.get_mut(&feed.name) {
                Some(slot) if slot.feed == feed => {}
                Some(slot) => {
                    tracing::info!(feed = %feed.name, "configuration changed: applied");
                    let jitter = jitter(&mut self.rng, every);
                    slot.next_due = match (slot.failures, slot.last_start) {
                        (0, Some(start)) => start + every + jitter,
                        _ => now + spread(&mut self.rng, every),
                    };
                    slot.feed = feed;
                }
                None => {
                    let next_due = self.first_due(&db, &feed, now);
                    tracing::info!(feed = %feed.name, every = %humantime::format_duration(every),
                        "feed scheduled");
                    let slot = Slot {
                        feed,
                        next_due,
                        running: false,
                        removed: false,
                        failures: 0,
                        last_start: None,
                    };
                    self.slots.insert(slot.feed.name.clone(), slot);
                }
            }
        }
        Ok(())
    }

    /// A new feed's first run: an interval after its last recorded run, or
    /// soon if it never ran or is overdue.
    fn first_due(&mut self, db: &Database, feed: &Feed, now: SystemTime) -> SystemTime {
        let every = feed.schedule.every;
        let last_start = db
            .find_store(&feed.tenant, &feed.name)
            .ok()
            .flatten()
            .and_then(|store| db.last_run(&store).ok().flatten())
            .and_then(|run| humantime::parse_rfc3339(&run.started_at).ok());
        match last_start {
            Some(start) if start + every > now => start + every + jitter(&mut self.rng, every),
            _ => now + spread(&mut self.rng, every),
        }
    }

    /// Starts the feeds that are due, oldest due first, within the bound.
    fn start_due(&mut self) {
        let now = SystemTime::now();
        let mut due: Vec<(SystemTime, String)> = self
            .slots
            .values()
            .filter(|s| !s.running && !s.removed && s.next_due <= now)
            .map(|s| (s.next_due, s.feed.name.clone()))
            .collect();
        due.sort();
        for (_, name) in due {
            if self.tasks.len() >= self.options.max_concurrent {
                break;
            }
            self.start(&name);
        }
    }

    fn start(&mut self, name: &str) {
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        let started = SystemTime::now();
        slot.running = true;
        slot.last_start = Some(started);
        let feed = slot.feed.clone();
        let options = RunOptions {
            start: RunStart {
                trigger: Trigger::Schedule,
                started_at: started,
                scheduled_at: Some(slot.next_due),
            },
            shutdown: self.shutdown.clone(),
            progress: Arc::new(RunProgress::new(&feed.name, false)),
            fence: None,
        };
        let runner = self.runner.clone();
        let name = name.to_string();
        let handle = self.tasks.spawn(async move {
            let result = runner.import_with(&feed, options).await;
            Finished {
                name: feed.name,
                started,
                result,
            }
        });
        self.task_feeds.insert(handle.id(), name);
    }

    /// Records a run's end and decides when its feed runs next.
    fn finished(&mut self, joined: Result<(Id, Finished), JoinError>) {
        let finished = match joined {
            Ok((id, finished)) => {
                self.task_feeds.remove(&id);
                finished
            }
            Err(error) => {
                let name = self.task_feeds.remove(&error.id()).unwrap_or_default();
                tracing::error!(feed = %name, "a run panicked: {error}");
                Finished {
                    name,
                    started: SystemTime::now(),
                    result: Err(anyhow::anyhow!("the run panicked: {error}")),
                }
            }
        };
        self.summary.runs += 1;
        let Some(slot) = self.slots.get_mut(&finished.name) else {
            return;
        };
        slot.running = false;
        if slot.removed {
            tracing::info!(feed = %finished.name, "feed removed: no more runs");
            self.slots.remove(&finished.name);
            return;
        }
        let every = slot.feed.schedule.every;
        let now = SystemTime::now();
        let regular = finished.started + every + jitter(&mut self.rng, every);
        slot.next_due = match &finished.result {
            Ok(outcome) => match (outcome.status, &outcome.error) {
                (RunStatus::Failed, Some(error)) => {
                    self.summary.failed += 1;
                    slot.failures += 1;
                    tracing::warn!(feed = %finished.name, kind = %error.kind,
                        "run failed: {}; fix: {}", error.message, error.fix);
                    if retry_helps(&error.kind) {
                        let asked = Duration::from_secs(error.retry_after_seconds.unwrap_or(0));
                        now + run_backoff(every, slot.failures).max(asked)
                    } else {
                        regular
                    }
                }
                (RunStatus::Interrupted, _) => {
                    self.summary.interrupted += 1;
                    regular
                }
                _ => {
                    slot.failures = 0;
                    regular
                }
            },
            Err(error) if is_busy(error) => {
                tracing::info!(feed = %finished.name, "{error:#}; trying again later");
                now + every.min(BUSY_RETRY)
            }
            Err(error) => {
                self.summary.failed += 1;
                slot.failures += 1;
                tracing::warn!(feed = %finished.name, "run failed: {error:#}");
                now + run_backoff(every, slot.failures)
            }
        };
        tracing::debug!(feed = %finished.name, next = %rfc3339(slot.next_due), "next run");
    }

    /// How long to sleep: until the next due feed (if a run may start) or
    /// the next reload.
    fn until_next_wake(&self) -> Duration {
        let now = SystemTime::now();
        let mut wake = self.next_reload.saturating_duration_since(Instant::now());
        if self.tasks.len() < self.options.max_concurrent {
            let due = self
                .slots
                .values()
                .filter(|s| !s.running && !s.removed)
                .map(|s| s.next_due.duration_since(now).unwrap_or(Duration::ZERO))
                .min();
            wake = due.map_or(wake, |d| d.min(wake));
        }
        wake.max(Duration::from_millis(1))
    }

    /// Waits for the runs still going: they end after their current page;
    /// those still going after the grace period are abandoned.
    async fn drain(&mut self) {
        if self.tasks.is_empty() {
            return;
        }
        tracing::warn!(
            runs = self.tasks.len(),
            "stopping: waiting up to {} for runs to commit their current page",
            humantime::format_duration(self.options.shutdown_grace)
        );
        let grace = tokio::time::sleep(self.options.shutdown_grace);
        tokio::pin!(grace);
        while !self.tasks.is_empty() {
            tokio::select! {
                Some(joined) = self.tasks.join_next_with_id() => self.finished(joined),
                () = &mut grace, if !self.shutdown.is_abandoning() => {
                    tracing::warn!("grace period over: abandoning the runs still going");
                    self.shutdown.abandon();
                }
            }
        }
    }
}

/// Whether running again later may succeed without a fix.
fn retry_helps(kind: &str) -> bool {
    !matches!(
        kind,
        "invalid-config"
            | "unauthorized"
            | "forbidden"
            | "not-found"
            | "unsupported-version"
            | "denied"
    )
}

fn is_busy(error: &anyhow::Error) -> bool {
    matches!(error.downcast_ref::<LockError>(), Some(LockError::Busy(_)))
}

/// The wait after `failures` failed runs in a row: from a quarter of the
/// interval (at most a minute), doubling, capped at the interval.
pub fn run_backoff(every: Duration, failures: u32) -> Duration {
    let base = (every / 4).min(Duration::from_secs(60));
    let doubling = 2u32.saturating_pow(failures.saturating_sub(1));
    base.saturating_mul(doubling).min(every)
}

fn jitter(rng: &mut fastrand::Rng, every: Duration) -> Duration {
    every.mul_f64(rng.f64() * JITTER)
}

fn spread(rng: &mut fastrand::Rng, every: Duration) -> Duration {
    every
        .mul_f64(JITTER)
        .min(FIRST_RUN_SPREAD)
        .mul_f64(rng.f64())
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_backoff_doubles_from_a_quarter_interval_up_to_the_interval() {
        let hour = Duration::from_secs(3600);
        let minutes = |f| run_backoff(hour, f).as_secs() / 60;
        assert_eq!([1, 2, 3, 6, 7, 8].map(minutes), [1, 2, 4, 32, 60, 60]);
        let second = Duration::from_secs(1);
        assert_eq!(run_backoff(second, 1), Duration::from_millis(250));
        assert_eq!(run_backoff(second, 5), second);
    }

    #[test]
    fn jitter_stays_within_a_tenth_of_the_interval() {
        let mut rng = fastrand::Rng::with_seed(7);
        let every = Duration::from_secs(100);
        let values: Vec<_> = (0..50).map(|_| jitter(&mut rng, every)).collect();
        assert!(values.iter().all(|j| *j <= Duration::from_secs(10)));
        assert!(values.windows(2).any(|w| w[0] != w[1]), "jitter varies");
        assert!(spread(&mut rng, Duration::from_secs(86_400)) <= FIRST_RUN_SPREAD);
    }

    #[test]
    fn only_failures_that_may_pass_are_retried_early() {
        for kind in [
            "unavailable",
            "rate-limited",
            "malformed-response",
            "host",
            "store",
        ] {
            assert!(retry_helps(kind), "{kind}");
        }
        for kind in ["unauthorized", "forbidden", "not-found", "invalid-config"] {
            assert!(!retry_helps(kind), "{kind}");
        }
    }
}
