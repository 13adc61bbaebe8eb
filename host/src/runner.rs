//! One import run: load the feed's plugin, give it a sandbox that reaches
//! only the feed's origins and buckets within the run's limits, call
//! `import-any-intel`, and record the run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use serde::Serialize;
use url::Url;
use wasmtime::{Store, UpdateDeadline};

use crate::bindings::FeedPluginPre;
use crate::bindings::types::{self, ImportError, RunReport};
use crate::db::{Database, Fence, Location};
use crate::engine::{EPOCH_TICK, PluginEngine, PluginSource};
use crate::feeds::{Auth, Feed, NetworkOptions};
use crate::keyvalue::BucketAccess;
use crate::lease::Lease;
use crate::limits::{CpuMeter, LimitHit, MemoryLimiter, RunLimits, RunWatch};
use crate::lock::Lock;
use crate::outgoing::{Sender, Timeouts};
use crate::policy::{Credential, Origin, OutgoingPolicy};
use crate::politeness::{OriginLimits, Politeness, RetryPolicy};
use crate::progress::{ProgressSnapshot, RunProgress};
use crate::runs::{HttpCounts, RunCounts, RunEnd, RunStart, RunStatus};
use crate::shutdown::Shutdown;
use crate::state::RunState;
use crate::store::StoreRef;

mod failure;

pub use self::failure::{RunFailure, explain};

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
    location: Location,
    options: RunnerOptions,
    politeness: Politeness,
    lease_ttl: Duration,
}

/// What keeps a feed's runs apart: a lock file in the data directory, or a
/// lease in a shared database.
enum OneRun {
    Lock(Lock),
    Lease(Lease),
}

impl OneRun {
    fn take(location: &Location, feed: &Feed, ttl: Duration) -> Result<Self> {
        Ok(if location.is_shared() {
            Self::Lease(Lease::acquire(location, &feed.tenant, &feed.name, ttl)?)
        } else {
            Self::Lock(Lock::feed(&location.data_dir, &feed.tenant, &feed.name)?)
        })
    }

    fn fence(&self) -> Option<Fence> {
        match self {
            Self::Lock(_) => None,
            Self::Lease(lease) => Some(lease.fence().clone()),
        }
    }

    /// Resolves when the run's lease is lost; never for a lock file.
    async fn lost(&self) {
        match self {
            Self::Lock(_) => std::future::pending().await,
            Self::Lease(lease) => lease.lost().await,
        }
    }

    fn release(self) -> Result<()> {
        match self {
            Self::Lock(lock) => {
                drop(lock);
                Ok(())
            }
            Self::Lease(lease) => lease.release(),
        }
    }
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
    /// The lease the run holds on a shared store, checked by each of its
    /// writes; set by [`Runner::import_with`] when it takes the lease.
    pub fence: Option<Fence>,
}

impl RunOptions {
    /// An `import` of `feed` from the command line.
    pub fn manual(feed: &Feed, shutdown: Shutdown) -> Self {
        Self {
            start: RunStart::default(),
            shutdown,
            progress: Arc::new(RunProgress::new(&feed.name, false)),
            fence: None,
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
    /// Requests the host refused to send for the run.
    pub denied: u64,
    /// Why it failed.
    pub error: Option<RunFailure>,
}

/// What a plugin call gave back.
type CallResult = Result<Result<RunReport, types::ImportFailure>>;

impl Runner {
    /// A runner over the stores at `location`.
    pub fn new(engine: PluginEngine, location: Location, options: RunnerOptions) -> Self {
        Self {
            engine,
            location,
            options,
            politeness: Politeness::new(RetryPolicy::default()),
            lease_ttl: crate::lease::DEFAULT_TTL,
        }
    }

    /// How long a feed's lease lasts without renewal (shared stores only).
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
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
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Runs one import of `feed` from the command line and records it.
    pub async fn import(&self, feed: &Feed) -> Result<ImportOutcome> {
        self.import_with(feed, RunOptions::manual(feed, Shutdown::new()))
            .await
    }

    /// Runs one import of `feed` and records it. Fails without running if
    /// another process is importing the feed ([`crate::lock::LockError`]):
    /// one on this data directory (a lock file), or any host on a shared
    /// store (a lease, see [`crate::lease`]).
    pub async fn import_with(&self, feed: &Feed, options: RunOptions) -> Result<ImportOutcome> {
        let one_run = OneRun::take(&self.location, feed, self.lease_ttl)?;
        let fence = one_run.fence();
        let mut options = options;
        if fence.is_some() {
            // Taking a lease goes over the network: the run starts once it
            // holds it, which is what its record says on a shared store.
            options.start.started_at = options.start.started_at.max(SystemTime::now());
        }
        let db = self.location.open()?;
        let source = PluginSource::from_path(feed.plugin.as_deref());
        let pre = self.engine.load(&source)?;
        let store = db.ensure_store(&feed.tenant, &feed.name, &plugin_label(&source))?;
        let origin_limits = origin_limits(&db, feed);
        let run_id = db.begin_run(&store, &options.start)?;
        tracing::info!(feed = %feed.name, url = %feed.collection_url, "import started");
        let watch = Arc::new(RunWatch::default());
        let options = RunOptions { fence, ..options };
        let run = self.run(&pre, feed, &store, origin_limits, &options, &watch);
        let mut lease_lost = false;
        let result = tokio::select! {
            result = run => Some(result),
            () = options.shutdown.abandoning() => None,
            () = one_run.lost() => {
                lease_lost = true;
                None
            }
        };
        let stopped_run = options.progress.was_stopped();
        let (report, mut error) = match (result, watch.limit_hit()) {
            (None, _) if lease_lost => (None, Some(failure::lease_lost(feed, self.lease_ttl))),
            (None, _) => (None, Some(failure::stopped(true))),
            (Some(Ok(Err(failure))), None) if stopped_run => {
                (Some(failure.progress), Some(failure::stopped(false)))
            }
            (Some(Ok(Ok(report))), None) => (Some(report), None),
            (Some(Ok(Ok(report))), Some(hit)) => (Some(report), Some(failure::limit(feed, hit))),
            (Some(Ok(Err(failure))), None) => {
                let error = explain(&failure.error, feed);
                (Some(failure.progress), Some(error))
            }
            (Some(Ok(Err(failure))), Some(hit)) => {
                (Some(failure.progress), Some(failure::limit(feed, hit)))
            }
            (Some(Err(_)), Some(hit)) => (None, Some(failure::limit(feed, hit))),
            (Some(Err(host)), None) => (None, Some(failure::host(&host))),
        };
        if let (Some(_), Some(detail)) = (&error, watch.tls_failure()) {
            error = Some(failure::tls(feed, &detail));
        }
        if let Some(e) = error.as_mut().filter(|e| e.kind == "denied")
            && watch.private_denied()
        {
            e.fix = failure::PRIVATE_ADDRESS_FIX.into();
        }
        let status = match (&report, &error) {
            (_, Some(e)) if e.kind == "interrupted" => RunStatus::Interrupted,
            (_, Some(_)) => RunStatus::Failed,
            (Some(r), None) if !r.complete => RunStatus::Partial,
            _ => RunStatus::Ok,
        };
        let denied = watch.denied();
        let seen = options.progress.snapshot();
        let end = run_end(status, report.as_ref(), error.as_ref(), &seen, denied);
        db.finish_run(run_id, &end)?;
        if let Err(e) = one_run.release() {
            tracing::warn!(feed = %feed.name, "cannot release the feed: {e:#}; it expires by itself");
        }
        log_outcome(feed, report.as_ref(), error.as_ref());
        Ok(ImportOutcome {
            feed: feed.name.clone(),
            store: store.name,
            run_id,
            status,
            report,
            http: end.http,
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
        origin_limits: OriginLimits,
        options: &RunOptions,
        watch: &Arc<RunWatch>,
    ) -> CallResult {
        let limits = feed_limits(self.options.limits, feed);
        let mut wasm = self.sandbox(feed, store, origin_limits, options, watch)?;
        let deadline = Instant::now() + limits.run_time;
        let mut meter = CpuMeter::new(limits.cpu, EPOCH_TICK, deadline);
        let meter_watch = watch.clone();
        wasm.set_epoch_deadline(1);
        wasm.epoch_deadline_callback(move |_| match meter.tick(&limits, &meter_watch) {
            // Yielding at each tick lets other runs share the thread.
            Ok(()) => Ok(UpdateDeadline::Yield(1)),
            Err(hit) => Err(wasmtime::format_err!("stopped by {hit}")),
        });
        let mut config = wit_config(feed, limits.pages);
        if config.added_after.is_none() {
            config.added_after = feed
                .schedule
                .initial_lookback
                .added_after(SystemTime::now());
        }
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

    /// A store for one run: its HTTP policy, credentials, politeness,
    /// bucket and limits.
    fn sandbox(
        &self,
        feed: &Feed,
        store: &StoreRef,
        origin_limits: OriginLimits,
        options: &RunOptions,
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
        let timeouts = Timeouts {
            connect: origin_limits.connect_timeout,
            first_byte: origin_limits.response_timeout,
            between_bytes: origin_limits.response_timeout,
        };
        let sender = sender(&feed.network, &limits, timeouts, watch)
            .with_context(|| format!("feed {}: TLS settings", feed.name))?;
        let client = self.politeness.client(
            &allowed[0].to_string(),
            origin_limits,
            sender.clone(),
            options.progress.clone(),
            options.shutdown.clone(),
        );
        let policy = OutgoingPolicy::new(allowed, credential, sender, limits.requests())
            .with_politeness(client);
        let bucket = BucketAccess::new(self.location.open()?, store.clone())
            .with_progress(options.progress.clone())
            .with_fence(options.fence.clone());
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
        network: &NetworkOptions,
    ) -> Result<DiscoverResult> {
        let watch = Arc::new(RunWatch::default());
        let limits = self.options.limits;
        let sender = sender(network, &limits, Timeouts::default(), &watch)?;
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

/// What sends one run's requests: its TLS settings, which addresses it may
/// reach, its response cap and timeouts.
fn sender(
    network: &NetworkOptions,
    limits: &RunLimits,
    timeouts: Timeouts,
    watch: &Arc<RunWatch>,
) -> Result<Arc<Sender>> {
    Ok(Arc::new(Sender {
        tls: crate::tls::client_config(&network.tls())?,
        allow_private: network.allow_private,
        response_bytes: limits.response_bytes,
        timeouts,
        watch: watch.clone(),
    }))
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

/// The rate and burst of the strictest feed of this tenant on the same
/// origin, with this feed's timeouts.
fn origin_limits(db: &Database, feed: &Feed) -> OriginLimits {
    let origin_of = |f: &Feed| origin(&f.collection_url).ok();
    let Some(here) = origin_of(feed) else {
        return feed.limits;
    };
    let feeds = db.feeds(&feed.tenant).unwrap_or_default();
    let same_origin = feeds
        .iter()
        .filter(|f| origin_of(f).as_ref() == Some(&here));
    feed.limits.strictest(same_origin.map(|f| &f.limits))
}

fn run_end(
    status: RunStatus,
    report: Option<&RunReport>,
    error: Option<&RunFailure>,
    seen: &ProgressSnapshot,
    denied: u64,
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
        denied,
        cursor: report.and_then(|r| r.cursor.clone()),
        error_kind: error.map(|e| e.kind.clone()),
        error: error.map(|e| format!("{} (fix: {})", e.message, e.fix)),
        fix: error.map(|e| e.fix.clone()),
        report: report.and_then(|r| serde_json::to_string(r).ok()),
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
            schedule: crate::schedule::FeedSchedule::default(),
            limits: OriginLimits::default(),
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
