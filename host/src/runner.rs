//! One import run: load the feed's plugin, give it a sandbox that reaches
//! only the feed's origin (within its limits) and bucket, call
//! `import-any-intel`, and record the run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::Serialize;
use url::Url;
use wasmtime::Store;

use crate::bindings::FeedPluginPre;
use crate::bindings::types::{self, ImportError, RunReport};
use crate::db::Database;
use crate::engine::{EPOCH_TICK, PluginEngine, PluginSource};
use crate::feeds::Feed;
use crate::keyvalue::BucketAccess;
use crate::lock::Lock;
use crate::policy::{Credentials, Origin, OutgoingPolicy};
use crate::politeness::{OriginLimits, Politeness, RetryPolicy};
use crate::progress::{ProgressSnapshot, RunProgress};
use crate::runs::{HttpCounts, RunCounts, RunEnd, RunStart, RunStatus};
use crate::shutdown::Shutdown;
use crate::state::RunState;
use crate::store::StoreRef;

/// Longest a run may take by default.
pub const DEFAULT_RUN_DEADLINE: Duration = Duration::from_secs(2 * 60 * 60);

/// Longest `describe` or `validate-config` may take.
const OFFLINE_DEADLINE: Duration = Duration::from_secs(10);

/// Runs imports.
pub struct Runner {
    engine: PluginEngine,
    data_dir: PathBuf,
    guest_stderr: bool,
    deadline: Duration,
    politeness: Politeness,
}

/// How a run is started, and what it reports to while it goes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// What started it, recorded in the run history.
    pub start: RunStart,
    /// Asks the run to stop.
    pub shutdown: Shutdown,
    /// Counters the run updates as it goes.
    pub progress: Arc<RunProgress>,
}

impl RunOptions {
    /// An `import` of `feed` from the command line.
    pub fn manual(feed: &Feed, shutdown: Shutdown) -> Self {
        Self {
            start: RunStart::default(),
            shutdown,
            progress: Arc::new(RunProgress::new(&feed.name, false)),
        }
    }
}

/// How one import ended.
#[derive(Debug, Serialize)]
pub struct ImportOutcome {
    /// The feed.
    pub feed: String,
    /// The store written to.
    pub store: String,
    /// The run's id in the run history.
    pub run_id: i64,
    /// `ok`, `partial`, `failed` or `interrupted`.
    pub status: RunStatus,
    /// What the run did (on failure: what it committed before failing).
    pub report: Option<RunReport>,
    /// What it saw of HTTP.
    pub http: HttpCounts,
    /// Why it failed.
    pub error: Option<RunFailure>,
}

/// Why a run failed, and what to do about it.
#[derive(Debug, Clone, Serialize)]
pub struct RunFailure {
    /// A stable name for the cause, such as `unauthorized`.
    pub kind: String,
    /// What happened.
    pub message: String,
    /// What to do.
    pub fix: String,
    /// For `rate-limited`: how long the server asked to wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

impl Runner {
    /// A runner over the stores in `data_dir`.
    pub fn new(engine: PluginEngine, data_dir: PathBuf, guest_stderr: bool) -> Self {
        Self {
            engine,
            data_dir,
            guest_stderr,
            deadline: DEFAULT_RUN_DEADLINE,
            politeness: Politeness::new(RetryPolicy::default()),
        }
    }

    /// Sends failed requests again by `retry` instead of the default.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.politeness = Politeness::new(retry);
        self
    }

    /// The engine, for describing or validating plugins.
    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    /// Where configurations and stores live.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Runs one import of `feed` from the command line and records it.
    pub async fn import(&self, feed: &Feed) -> Result<ImportOutcome> {
        self.import_with(feed, RunOptions::manual(feed, Shutdown::new()))
            .await
    }

    /// Runs one import of `feed` and records it. Fails without running if
    /// another process is importing the feed ([`crate::lock::LockError`]).
    pub async fn import_with(&self, feed: &Feed, options: RunOptions) -> Result<ImportOutcome> {
        let _one_run = Lock::feed(&self.data_dir, &feed.tenant, &feed.name)?;
        let db = Database::open(&self.data_dir)?;
        let source = PluginSource::from_path(feed.plugin.as_deref());
        let pre = self.engine.load(&source)?;
        let store = db.ensure_store(&feed.tenant, &feed.name, &plugin_label(&source))?;
        let limits = origin_limits(&db, feed);
        let run_id = db.begin_run(&store, &options.start)?;
        tracing::info!(feed = %feed.name, url = %feed.collection_url, "import started");
        let run = self.run(&pre, feed, &store, limits, &options);
        let result = tokio::select! {
            result = run => Some(result),
            () = options.shutdown.abandoning() => None,
        };
        let (report, error) = match result {
            Some(Ok(Ok(report))) => (Some(report), None),
            Some(Ok(Err(failure))) if options.progress.was_stopped() => {
                (Some(failure.progress), Some(stopped(false)))
            }
            Some(Ok(Err(failure))) => {
                let error = explain(&failure.error, feed);
                (Some(failure.progress), Some(error))
            }
            Some(Err(host)) => (None, Some(host_failure(&host))),
            None => (None, Some(stopped(true))),
        };
        let status = match (&report, &error) {
            (_, Some(e)) if e.kind == "interrupted" => RunStatus::Interrupted,
            (_, Some(_)) => RunStatus::Failed,
            (Some(r), None) if !r.complete => RunStatus::Partial,
            _ => RunStatus::Ok,
        };
        let seen = options.progress.snapshot();
        let end = run_end(status, report.as_ref(), error.as_ref(), &seen);
        db.finish_run(run_id, &end)?;
        log_outcome(feed, report.as_ref(), error.as_ref());
        Ok(ImportOutcome {
            feed: feed.name.clone(),
            store: store.name,
            run_id,
            status,
            report,
            http: end.http,
            error,
        })
    }

    /// The plugin's own description.
    pub async fn describe(&self, source: &PluginSource) -> Result<types::PluginInfo> {
        let (plugin, mut wasm) = self.offline_instance(source).await?;
        plugin
            .taxii_feed_importer()
            .call_describe(&mut wasm)
            .await
            .map_err(anyhow::Error::from)
    }

    /// The plugin's verdict on a feed configuration; each problem is
    /// `(field, message)`.
    pub async fn validate(&self, feed: &Feed) -> Result<Vec<(String, String)>> {
        let source = PluginSource::from_path(feed.plugin.as_deref());
        let (plugin, mut wasm) = self.offline_instance(&source).await?;
        let verdict = plugin
            .taxii_feed_importer()
            .call_validate_config(&mut wasm, &wit_config(feed))
            .await
            .map_err(anyhow::Error::from)?;
        Ok(verdict
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.field, p.message))
            .collect())
    }

    /// An instance with no network and no store.
    async fn offline_instance(
        &self,
        source: &PluginSource,
    ) -> Result<(crate::bindings::FeedPlugin, Store<RunState>)> {
        let pre = self.engine.load(source)?;
        let state = RunState::new(OutgoingPolicy::deny_all(), BucketAccess::none(), false);
        let mut wasm = Store::new(self.engine.engine(), state);
        wasm.set_epoch_deadline(ticks(OFFLINE_DEADLINE));
        let plugin = pre
            .instantiate_async(&mut wasm)
            .await
            .map_err(anyhow::Error::from)?;
        Ok((plugin, wasm))
    }

    async fn run(
        &self,
        pre: &FeedPluginPre<RunState>,
        feed: &Feed,
        store: &StoreRef,
        limits: OriginLimits,
        options: &RunOptions,
    ) -> Result<Result<RunReport, types::ImportFailure>> {
        let credentials = match (&feed.username, &feed.password) {
            (Some(username), Some(source)) => Some(Credentials {
                username: username.clone(),
                password: source.read()?,
            }),
            _ => None,
        };
        let url = Url::parse(&feed.collection_url).with_context(|| {
            format!("the Collection URL {:?} is not a URL", feed.collection_url)
        })?;
        let origin = Origin::of_url(&url)
            .with_context(|| format!("the Collection URL {url} has no host and port"))?;
        let client = self.politeness.client(
            &origin.to_string(),
            limits,
            options.progress.clone(),
            options.shutdown.clone(),
        );
        let policy = OutgoingPolicy::new(origin, credentials).with_politeness(client);
        let bucket = BucketAccess::new(Database::open(&self.data_dir)?, store.id)
            .with_progress(options.progress.clone());
        let state = RunState::new(policy, bucket, self.guest_stderr);
        let mut wasm = Store::new(self.engine.engine(), state);
        wasm.set_epoch_deadline(ticks(self.deadline));
        let plugin = pre
            .instantiate_async(&mut wasm)
            .await
            .map_err(anyhow::Error::from)?;
        let mut config = wit_config(feed);
        if config.added_after.is_none() {
            config.added_after = feed
                .schedule
                .initial_lookback
                .added_after(SystemTime::now());
        }
        plugin
            .taxii_feed_importer()
            .call_import_any_intel(&mut wasm, &config)
            .await
            .map_err(anyhow::Error::from)
    }
}

/// The feed as the plugin sees it: no credentials.
pub fn wit_config(feed: &Feed) -> types::FeedConfig {
    types::FeedConfig {
        name: feed.name.clone(),
        collection_url: feed.collection_url.clone(),
        page_size: feed.page_size,
        object_types: feed.object_types.clone(),
        added_after: feed.added_after.clone(),
        max_pages: None,
    }
}

fn ticks(duration: Duration) -> u64 {
    (duration.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

fn plugin_label(source: &PluginSource) -> String {
    match source {
        PluginSource::Builtin => crate::engine::BUILTIN_PLUGIN_NAME.to_string(),
        PluginSource::File(path) => path.display().to_string(),
    }
}

/// The rate and burst of the strictest feed of this tenant on the same
/// origin, with this feed's timeouts.
fn origin_limits(db: &Database, feed: &Feed) -> OriginLimits {
    let origin_of = |f: &Feed| {
        Url::parse(&f.collection_url)
            .ok()
            .and_then(|u| Origin::of_url(&u))
    };
    let Some(origin) = origin_of(feed) else {
        return feed.limits;
    };
    let feeds = db.feeds(&feed.tenant).unwrap_or_default();
    let same_origin = feeds
        .iter()
        .filter(|f| origin_of(f).as_ref() == Some(&origin));
    feed.limits.strictest(same_origin.map(|f| &f.limits))
}

fn run_end(
    status: RunStatus,
    report: Option<&RunReport>,
    error: Option<&RunFailure>,
    seen: &ProgressSnapshot,
) -> RunEnd {
    let counts = match report {
        Some(report) => RunCounts {
            pages: report.pages.into(),
            received: report.received,
            stored: report.stored,
            duplicates: report.duplicates,
            rejected: report.rejected_count,
            quarantined: seen.quarantined,
        },
        // No report: the host's own count of what was committed.
        None => RunCounts {
            pages: seen.pages,
            stored: seen.objects,
            quarantined: seen.quarantined,
            ..RunCounts::default()
        },
    };
    RunEnd {
        status,
        counts,
        http: HttpCounts {
            requests: seen.requests,
            retries: seen.retries,
            waited_ms: seen.waited_ms,
            http_statuses: seen.statuses.clone(),
        },
        cursor: report.and_then(|r| r.cursor.clone()),
        error_kind: error.map(|e| e.kind.clone()),
        error: error.map(|e| format!("{} (fix: {})", e.message, e.fix)),
        fix: error.map(|e| e.fix.clone()),
        report: report.and_then(|r| serde_json::to_string(r).ok()),
    }
}

/// A run ended by a stop request: after its last committed page, or
/// (`abandoned`) wherever it was.
fn stopped(abandoned: bool) -> RunFailure {
    let message = if abandoned {
        "the host was stopped and abandoned the run before it ended; the pages it \
         committed are kept, a page being read was dropped"
    } else {
        "the host was asked to stop; the run ended after its last committed page"
    };
    RunFailure {
        kind: "interrupted".into(),
        message: message.into(),
        fix: "nothing: the next run resumes from the stored cursor".into(),
        retry_after_seconds: None,
    }
}

fn log_outcome(feed: &Feed, report: Option<&RunReport>, error: Option<&RunFailure>) {
    for note in report.iter().flat_map(|r| &r.notes) {
        match note.level {
            types::NoteLevel::Debug => tracing::debug!(feed = %feed.name, "{}", note.message),
            types::NoteLevel::Info => tracing::info!(feed = %feed.name, "{}", note.message),
            types::NoteLevel::Warn => tracing::warn!(feed = %feed.name, "{}", note.message),
        }
    }
    for rejected in report.iter().flat_map(|r| &r.rejected) {
        let id = rejected.id.as_deref().unwrap_or("(no id)");
        tracing::debug!(feed = %feed.name, id, reason = %rejected.reason, "object rejected");
    }
    match (report, error) {
        (_, Some(e)) => tracing::debug!(feed = %feed.name, kind = %e.kind, "import failed"),
        (Some(r), None) => tracing::info!(
            feed = %feed.name, pages = r.pages, stored = r.stored,
            duplicates = r.duplicates, rejected = r.rejected_count, "import finished"
        ),
        (None, None) => {}
    }
}

/// A failure of the host itself (configuration, plugin trap, database).
fn host_failure(error: &anyhow::Error) -> RunFailure {
    let trapped = error.downcast_ref::<wasmtime::Trap>().is_some();
    RunFailure {
        kind: if trapped { "trap" } else { "host" }.into(),
        message: format!("{error:#}"),
        fix: if trapped {
            "the plugin crashed or hit a limit; nothing after its last committed page was \
             stored; run with --verbose to see the plugin's own messages"
                .into()
        } else {
            "see the message; nothing was lost from the store".into()
        },
        retry_after_seconds: None,
    }
}

/// A plugin's failure, with the fix spelled out for this feed.
pub fn explain(error: &ImportError, feed: &Feed) -> RunFailure {
    let name = &feed.name;
    let change = format!("`taxii-host config add {name} --replace ...`");
    let (kind, message, fix) = match error {
        ImportError::InvalidConfig(m) => (
            "invalid-config",
            m,
            format!("correct the feed with {change}"),
        ),
        ImportError::Unauthorized(m) => (
            "unauthorized",
            m,
            match (&feed.username, &feed.password) {
                (Some(user), Some(source)) => format!(
                    "check the username {user:?} and the password in the {source}; change them with {change}"
                ),
                _ => format!(
                    "the server wants credentials: give the feed --username and \
                     --password-file (or --password-env) with {change}"
                ),
            },
        ),
        ImportError::Forbidden(m) => (
            "forbidden",
            m,
            "ask the server's operator for read access, or use a collection these \
             credentials may read"
                .into(),
        ),
        ImportError::NotFound(m) => (
            "not-found",
            m,
            format!(
                "check the Collection URL; it has the form \
                 https://host/<api-root>/collections/<id>/ (change it with {change})"
            ),
        ),
        ImportError::RateLimited(limit) => (
            "rate-limited",
            &limit.message,
            match limit.retry_after_seconds {
                Some(s) => format!("the server asks to wait {s} s; import again after that"),
                None => "the server asks to slow down; import again later".into(),
            },
        ),
        ImportError::Unavailable(m) => (
            "unavailable",
            m,
            "check that the server is up and reachable, then import again; pages \
             already committed are kept"
                .into(),
        ),
        ImportError::MalformedResponse(m) => (
            "malformed-response",
            m,
            "the server's answer is not the TAXII expected; pages already committed are \
             kept; report it to the server's operator"
                .into(),
        ),
        ImportError::UnsupportedVersion(m) => (
            "unsupported-version",
            m,
            "the server does not speak a TAXII version this plugin reads".into(),
        ),
        ImportError::Denied(m) => (
            "denied",
            m,
            "the plugin tried to reach an origin other than its feed's; the host's \
             egress policy refused it"
                .into(),
        ),
        ImportError::Store(m) => (
            "store",
            m,
            "check free disk space and the permissions of the data directory".into(),
        ),
        ImportError::Other(m) => ("other", m, "see the message".into()),
    };
    let retry_after_seconds = match error {
        ImportError::RateLimited(limit) => limit.retry_after_seconds,
        _ => None,
    };
    RunFailure {
        kind: kind.into(),
        message: format!("feed {name}: {message}"),
        fix,
        retry_after_seconds,
    }
}
