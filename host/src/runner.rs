//! One import run: load the feed's plugin, give it a sandbox that reaches
//! only the feed's origin and bucket, call `import-any-intel`, and record
//! the run.

use std::path::PathBuf;
use std::time::Duration;

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
use crate::policy::{Credentials, Origin, OutgoingPolicy};
use crate::runs::{RunCounts, RunEnd, RunStatus};
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
    /// `ok`, `partial` or `failed`.
    pub status: RunStatus,
    /// What the run did (on failure: what it committed before failing).
    pub report: Option<RunReport>,
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
}

impl Runner {
    /// A runner over the stores in `data_dir`.
    pub fn new(engine: PluginEngine, data_dir: PathBuf, guest_stderr: bool) -> Self {
        Self {
            engine,
            data_dir,
            guest_stderr,
            deadline: DEFAULT_RUN_DEADLINE,
        }
    }

    /// The engine, for describing or validating plugins.
    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    /// Runs one import of `feed` and records it.
    pub async fn import(&self, feed: &Feed) -> Result<ImportOutcome> {
        let db = Database::open(&self.data_dir)?;
        let source = PluginSource::from_path(feed.plugin.as_deref());
        let pre = self.engine.load(&source)?;
        let store = db.ensure_store(&feed.tenant, &feed.name, &plugin_label(&source))?;
        let run_id = db.begin_run(&store)?;
        tracing::info!(feed = %feed.name, url = %feed.collection_url, "import started");
        let (report, error) = match self.run(&pre, feed, &store).await {
            Ok(Ok(report)) => (Some(report), None),
            Ok(Err(failure)) => {
                let error = explain(&failure.error, feed);
                (Some(failure.progress), Some(error))
            }
            Err(host) => (None, Some(host_failure(&host))),
        };
        let status = match (&report, &error) {
            (_, Some(_)) => RunStatus::Failed,
            (Some(r), None) if !r.complete => RunStatus::Partial,
            _ => RunStatus::Ok,
        };
        db.finish_run(run_id, &run_end(status, report.as_ref(), error.as_ref()))?;
        log_outcome(feed, report.as_ref(), error.as_ref());
        Ok(ImportOutcome {
            feed: feed.name.clone(),
            store: store.name,
            run_id,
            status,
            report,
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
        let policy = OutgoingPolicy::new(origin, credentials);
        let bucket = BucketAccess::new(Database::open(&self.data_dir)?, store.id);
        let state = RunState::new(policy, bucket, self.guest_stderr);
        let mut wasm = Store::new(self.engine.engine(), state);
        wasm.set_epoch_deadline(ticks(self.deadline));
        let plugin = pre
            .instantiate_async(&mut wasm)
            .await
            .map_err(anyhow::Error::from)?;
        let config = wit_config(feed);
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

fn run_end(status: RunStatus, report: Option<&RunReport>, error: Option<&RunFailure>) -> RunEnd {
    RunEnd {
        status,
        counts: report.map(counts).unwrap_or_default(),
        cursor: report.and_then(|r| r.cursor.clone()),
        error_kind: error.map(|e| e.kind.clone()),
        error: error.map(|e| format!("{} (fix: {})", e.message, e.fix)),
        report: report.and_then(|r| serde_json::to_string(r).ok()),
    }
}

fn counts(report: &RunReport) -> RunCounts {
    RunCounts {
        pages: report.pages.into(),
        received: report.received,
        stored: report.stored,
        duplicates: report.duplicates,
        rejected: report.rejected_count,
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
    RunFailure {
        kind: kind.into(),
        message: format!("feed {name}: {message}"),
        fix,
    }
}
