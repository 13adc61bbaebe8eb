//! One import run: load the feed's plugin, give it a sandbox that reaches
//! only the feed's origins and buckets within the run's limits, call
//! `import-any-intel`, and record the run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use url::Url;
use wasmtime::{Store, UpdateDeadline};

use crate::bindings::FeedPluginPre;
use crate::bindings::types::{self, ImportError, RunReport};
use crate::db::Database;
use crate::engine::{EPOCH_TICK, PluginEngine, PluginSource};
use crate::feeds::{Auth, Feed};
use crate::keyvalue::BucketAccess;
use crate::limits::{CpuMeter, LimitHit, MemoryLimiter, RunLimits, RunWatch};
use crate::outgoing::{Sender, Timeouts};
use crate::policy::{Credential, Origin, OutgoingPolicy};
use crate::runs::{RunCounts, RunEnd, RunStatus};
use crate::state::RunState;
use crate::store::StoreRef;

/// Longest `describe` or `validate-config` may take.
const OFFLINE_DEADLINE: Duration = Duration::from_secs(10);

/// Longest one `discover` call may take.
const DISCOVER_DEADLINE: Duration = Duration::from_secs(120);

/// Requests one `discover` call may send.
const DISCOVER_REQUESTS: u64 = 256;

/// How runs are made.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Show the plugin's stderr (its panic messages).
    pub guest_stderr: bool,
    /// The limits of each run.
    pub limits: RunLimits,
    /// The host's secrets file, for `secret:KEY` sources.
    pub secrets_file: PathBuf,
}

/// Runs imports.
pub struct Runner {
    engine: PluginEngine,
    data_dir: PathBuf,
    options: RunnerOptions,
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
    /// Requests the host refused to send for the run.
    pub denied: u64,
    /// Why it failed.
    pub error: Option<RunFailure>,
}

/// Why a run failed, and what to do about it.
#[derive(Debug, Clone, Serialize)]
pub struct RunFailure {
    /// A stable name for the cause, such as `unauthorized` or `limit`.
    pub kind: String,
    /// What happened.
    pub message: String,
    /// What to do.
    pub fix: String,
}

/// What a plugin call gave back.
type CallResult = Result<Result<RunReport, types::ImportFailure>>;

impl Runner {
    /// A runner over the stores in `data_dir`.
    pub fn new(engine: PluginEngine, data_dir: PathBuf, options: RunnerOptions) -> Self {
        Self {
            engine,
            data_dir,
            options,
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
        let watch = Arc::new(RunWatch::default());
        let result = self.run(&pre, feed, &store, &watch).await;
        let (report, mut error) = match (result, watch.limit_hit()) {
            (Ok(Ok(report)), None) => (Some(report), None),
            (Ok(Ok(report)), Some(hit)) => (Some(report), Some(limit_failure(feed, hit))),
            (Ok(Err(failure)), None) => {
                let error = explain(&failure.error, feed);
                (Some(failure.progress), Some(error))
            }
            (Ok(Err(failure)), Some(hit)) => {
                (Some(failure.progress), Some(limit_failure(feed, hit)))
            }
            (Err(_), Some(hit)) => (None, Some(limit_failure(feed, hit))),
            (Err(host), None) => (None, Some(host_failure(&host))),
        };
        if let (Some(_), Some(detail)) = (&error, watch.tls_failure()) {
            error = Some(tls_failure(feed, &detail));
        }
        let status = match (&report, &error) {
            (_, Some(_)) => RunStatus::Failed,
            (Some(r), None) if !r.complete => RunStatus::Partial,
            _ => RunStatus::Ok,
        };
        let denied = watch.denied();
        db.finish_run(
            run_id,
            &run_end(status, report.as_ref(), error.as_ref(), denied),
        )?;
        log_outcome(feed, report.as_ref(), error.as_ref());
        Ok(ImportOutcome {
            feed: feed.name.clone(),
            store: store.name,
            run_id,
            status,
            report,
            denied,
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
            .call_validate_config(
                &mut wasm,
                &wit_config(feed, feed_limits(self.options.limits, feed).pages),
            )
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
        let watch = Arc::new(RunWatch::default());
        let limiter = MemoryLimiter::new(self.options.limits.memory_bytes, watch);
        let state = RunState::new(
            OutgoingPolicy::deny_all(),
            BucketAccess::none(),
            limiter,
            false,
        );
        let mut wasm = Store::new(self.engine.engine(), state);
        wasm.limiter(|state| &mut state.limiter);
        wasm.set_epoch_deadline(ticks(OFFLINE_DEADLINE));
        let plugin = pre
            .instantiate_async(&mut wasm)
            .await
            .map_err(anyhow::Error::from)?;
        Ok((plugin, wasm))
    }

    /// Runs the plugin within the run's limits; `watch` learns what the
    /// host saw.
    async fn run(
        &self,
        pre: &FeedPluginPre<RunState>,
        feed: &Feed,
        store: &StoreRef,
        watch: &Arc<RunWatch>,
    ) -> CallResult {
        let limits = feed_limits(self.options.limits, feed);
        let mut wasm = self.sandbox(feed, store, watch)?;
        let deadline = Instant::now() + limits.run_time;
        let mut meter = CpuMeter::new(limits.cpu, EPOCH_TICK, deadline);
        let meter_watch = watch.clone();
        wasm.set_epoch_deadline(1);
        wasm.epoch_deadline_callback(move |_| match meter.tick(&limits, &meter_watch) {
            // Yielding at each tick lets other runs share the thread.
            Ok(()) => Ok(UpdateDeadline::Yield(1)),
            Err(hit) => Err(wasmtime::format_err!("stopped by {hit}")),
        });
        let config = wit_config(feed, limits.pages);
        let call = async {
            let plugin = pre
                .instantiate_async(&mut wasm)
                .await
                .map_err(anyhow::Error::from)?;
            plugin
                .taxii_feed_importer()
                .call_import_any_intel(&mut wasm, &config)
                .await
                .map_err(anyhow::Error::from)
        };
        match tokio::time::timeout(limits.run_time, call).await {
            Ok(result) => result,
            Err(_) => {
                watch.hit(LimitHit::RunTime(limits.run_time));
                Err(anyhow::anyhow!(
                    "stopped by {}",
                    LimitHit::RunTime(limits.run_time)
                ))
            }
        }
    }

    /// A store for one run: its HTTP policy, credentials, bucket and limits.
    fn sandbox(
        &self,
        feed: &Feed,
        store: &StoreRef,
        watch: &Arc<RunWatch>,
    ) -> Result<Store<RunState>> {
        feed.check()?;
        let limits = feed_limits(self.options.limits, feed);
        let credential = credential(&feed.auth, &self.options.secrets_file)?;
        let mut allowed = vec![origin(&feed.collection_url)?];
        for extra in &feed.network.allowed_origins {
            allowed.push(origin(extra)?);
        }
        if feed.network.insecure_skip_tls_verify {
            tracing::warn!(
                feed = %feed.name,
                "TLS certificate verification is OFF for this feed: anyone on the path \
                 can impersonate the server (config add --insecure-skip-tls-verify)"
            );
        }
        let sender = Arc::new(Sender {
            tls: crate::tls::client_config(&feed.network.tls())
                .with_context(|| format!("feed {}: TLS settings", feed.name))?,
            allow_private: feed.network.allow_private,
            response_bytes: limits.response_bytes,
            timeouts: Timeouts::default(),
            watch: watch.clone(),
        });
        let policy = OutgoingPolicy::new(allowed, credential, sender, limits.requests());
        let bucket = BucketAccess::new(Database::open(&self.data_dir)?, store.clone());
        let limiter = MemoryLimiter::new(limits.memory_bytes, watch.clone());
        let state = RunState::new(policy, bucket, limiter, self.options.guest_stderr);
        let mut wasm = Store::new(self.engine.engine(), state);
        wasm.limiter(|state| &mut state.limiter);
        Ok(wasm)
    }
}

/// What a `discover` call gave back.
pub type DiscoverResult = Result<types::Discovery, ImportError>;

impl Runner {
    /// Runs the built-in plugin's `discover` on `url`: no store, requests
    /// only to `url`'s origin, with `credential` added to them.
    pub async fn discover(
        &self,
        url: &str,
        follow_other_origins: bool,
        credential: Option<Credential>,
        network: &crate::feeds::NetworkOptions,
    ) -> Result<DiscoverResult> {
        let watch = Arc::new(RunWatch::default());
        let limits = self.options.limits;
        let sender = Arc::new(Sender {
            tls: crate::tls::client_config(&network.tls())?,
            allow_private: network.allow_private,
            response_bytes: limits.response_bytes,
            timeouts: Timeouts::default(),
            watch: watch.clone(),
        });
        let policy = OutgoingPolicy::new(vec![origin(url)?], credential, sender, DISCOVER_REQUESTS);
        let limiter = MemoryLimiter::new(limits.memory_bytes, watch);
        let state = RunState::new(
            policy,
            BucketAccess::none(),
            limiter,
            self.options.guest_stderr,
        );
        let mut wasm = Store::new(self.engine.engine(), state);
        wasm.limiter(|state| &mut state.limiter);
        wasm.set_epoch_deadline(ticks(DISCOVER_DEADLINE));
        let pre = self.engine.load(&PluginSource::Builtin)?;
        let call = async {
            let plugin = pre
                .instantiate_async(&mut wasm)
                .await
                .map_err(anyhow::Error::from)?;
            plugin
                .taxii_feed_importer()
                .call_discover(&mut wasm, url, follow_other_origins)
                .await
                .map_err(anyhow::Error::from)
        };
        tokio::time::timeout(DISCOVER_DEADLINE, call)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "discovering {url} took longer than {}",
                    humantime::format_duration(DISCOVER_DEADLINE)
                )
            })?
    }
}

fn origin(url: &str) -> Result<Origin> {
    let parsed = Url::parse(url).with_context(|| format!("{url:?} is not a URL"))?;
    Origin::of_url(&parsed).with_context(|| format!("{url} has no host and port"))
}

/// The credentials header for a feed, with the secret read now.
pub fn credential(auth: &Auth, secrets_file: &Path) -> Result<Option<Credential>> {
    Ok(match auth {
        Auth::None => None,
        Auth::Basic { username, password } => {
            Some(Credential::basic(username, &password.read(secrets_file)?))
        }
        Auth::Bearer { token } => Some(Credential::bearer(&token.read(secrets_file)?)),
        Auth::Header { name, value } => Some(Credential::header(name, value.read(secrets_file)?)?),
    })
}

/// The feed as the plugin sees it: no credentials.
pub fn wit_config(feed: &Feed, max_pages: u32) -> types::FeedConfig {
    types::FeedConfig {
        name: feed.name.clone(),
        collection_url: feed.collection_url.clone(),
        page_size: feed.page_size,
        object_types: feed.object_types.clone(),
        added_after: feed.added_after.clone(),
        max_pages: Some(max_pages),
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

fn run_end(
    status: RunStatus,
    report: Option<&RunReport>,
    error: Option<&RunFailure>,
    denied: u64,
) -> RunEnd {
    RunEnd {
        denied,
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

/// The host's limits, tightened by the feed's own page limit and deadline.
pub fn feed_limits(host: RunLimits, feed: &Feed) -> RunLimits {
    RunLimits {
        pages: feed
            .page_limit
            .map_or(host.pages, |own| own.min(host.pages)),
        run_time: feed.deadline_secs.map_or(host.run_time, |own| {
            Duration::from_secs(own).min(host.run_time)
        }),
        ..host
    }
}

/// A run stopped by one of its limits.
fn limit_failure(feed: &Feed, hit: LimitHit) -> RunFailure {
    let own_deadline = feed.deadline_secs.map(Duration::from_secs);
    let fix = match hit {
        LimitHit::RunTime(limit) if own_deadline == Some(limit) => format!(
            "the next run continues from the cursor; to give this feed more time, raise its \
             deadline with `taxii-host config add {} --replace --deadline ...`",
            feed.name
        ),
        _ => format!(
            "if this feed needs more, raise the limit with {} (see `taxii-host import --help`)",
            hit.flag()
        ),
    };
    RunFailure {
        kind: "limit".into(),
        message: format!(
            "feed {}: the run was stopped by {hit}; pages committed before it are kept",
            feed.name
        ),
        fix,
    }
}

/// A run whose TLS connection failed.
fn tls_failure(feed: &Feed, detail: &str) -> RunFailure {
    RunFailure {
        kind: "tls".into(),
        message: format!("feed {}: {detail}", feed.name),
        fix: "if the server's certificate comes from a private CA, give the feed its \
              certificate with --ca-file; if the server asks for a client certificate, \
              give --client-cert and --client-key; check that the URL names the server's \
              own host"
            .into(),
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
            match &feed.auth {
                Auth::Basic { username, password } => format!(
                    "check the username {username:?} and the password in the {password}; \
                     change them with {change}"
                ),
                Auth::Bearer { token } => {
                    format!("check the token in the {token}; change it with {change}")
                }
                Auth::Header { name, value } => {
                    format!("check the {name} value in the {value}; change it with {change}")
                }
                Auth::None => format!(
                    "the server wants credentials: give the feed --username and a \
                     --password-* option (or a token) with {change}"
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

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(page_limit: Option<u32>, deadline_secs: Option<u64>) -> Feed {
        Feed {
            tenant: "default".into(),
            name: "f".into(),
            plugin: None,
            collection_url: "https://h/api/collections/c/".into(),
            auth: Auth::None,
            network: crate::feeds::NetworkOptions::default(),
            page_size: None,
            object_types: Vec::new(),
            added_after: None,
            page_limit,
            deadline_secs,
        }
    }

    #[test]
    fn a_feed_tightens_the_host_limits_and_never_loosens_them() {
        let host = RunLimits {
            pages: 100,
            run_time: Duration::from_secs(600),
            ..RunLimits::default()
        };
        assert_eq!(feed_limits(host, &feed(None, None)), host);
        let own = feed_limits(host, &feed(Some(3), Some(30)));
        assert_eq!((own.pages, own.run_time), (3, Duration::from_secs(30)));
        assert_eq!(feed_limits(host, &feed(Some(1_000), Some(6_000))), host);
    }
}
