//! The command line of scheduled imports: `serve`, `runs`, and the flags
//! that set a feed's schedule and its server's limits.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::{ListFormat, Session, runtime};
use crate::politeness::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT, OriginLimits, Rate, RetryPolicy,
};
use crate::runs::write_runs;
use crate::schedule::{self, FeedSchedule, Lookback, ServeOptions};
use crate::shutdown::Shutdown;

/// `config add` flags: when the feed runs and how hard its server is asked.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// How often `serve` imports the feed (e.g. 30m, 1h, 1d; at least 1m)
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = schedule::parse_every)]
    pub every: Duration,
    /// How far back the first import reads: a window such as 30d, or `all`
    #[arg(long, value_name = "WINDOW|all", default_value = "all")]
    pub initial_lookback: Lookback,
    /// At most this many requests to the feed's server, e.g. 5/min, 1/s
    /// [default: no limit beyond one request at a time]
    #[arg(long, value_name = "N/TIME")]
    pub rate: Option<Rate>,
    /// Requests that may go at once after a quiet spell (with --rate)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub burst: u32,
    /// Longest wait for a connection to the server
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = positive_duration)]
    pub connect_timeout: Duration,
    /// Longest wait for an answer to start, and between its parts
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = positive_duration)]
    pub response_timeout: Duration,
}

impl ScheduleArgs {
    /// The feed's schedule and limits.
    pub fn split(&self) -> (FeedSchedule, OriginLimits) {
        let schedule = FeedSchedule {
            every: self.every,
            initial_lookback: self.initial_lookback,
        };
        let limits = OriginLimits {
            rate: self.rate,
            burst: self.burst,
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
        };
        (schedule, limits)
    }
}

// The defaults above are written as text for clap; keep them in step.
const _: () = assert!(DEFAULT_CONNECT_TIMEOUT.as_secs() == 10);
const _: () = assert!(DEFAULT_RESPONSE_TIMEOUT.as_secs() == 120);

/// How failed requests are sent again (`import` and `serve`).
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// Tries per request, the first included
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub attempts: u32,
    /// The first wait after a failed request; each next one doubles
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = positive_duration)]
    pub backoff: Duration,
    /// The longest wait between two tries
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = positive_duration)]
    pub backoff_cap: Duration,
    /// The longest Retry-After honoured within a run; a longer one ends the
    /// run as rate-limited, and `serve` runs it again when the wait is over
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub max_retry_wait: humantime::Duration,
}

impl RetryArgs {
    /// The policy these flags describe.
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            attempts: self.attempts,
            backoff: self.backoff,
            backoff_cap: self.backoff_cap.max(self.backoff),
            max_wait: self.max_retry_wait.into(),
        }
    }
}

/// `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Imports running at once, at most
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_concurrent: u16,
    /// How often feed configurations are read again (changes apply without a restart)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = positive_duration)]
    pub reload_every: Duration,
    /// On SIGINT/SIGTERM, how long runs may take to commit the page they
    /// are reading before they are abandoned
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub shutdown_grace: humantime::Duration,
    #[command(flatten)]
    pub retry: RetryArgs,
}

/// `runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// The store (feed) whose runs to show.
    pub name: String,
    /// The most recent runs, at most this many
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be more than zero".into()),
        Err(e) => Err(format!(
            "{s:?} is not a duration ({e}): write e.g. 500ms, 10s, 2m"
        )),
    }
}

impl Session {
    pub(super) fn serve(&self, args: ServeArgs) -> Result<ExitCode> {
        let runner = Arc::new(self.runner()?.with_retry(args.retry.policy()));
        let options = ServeOptions {
            tenant: self.tenant.clone(),
            max_concurrent: args.max_concurrent.into(),
            reload_every: args.reload_every,
            shutdown_grace: args.shutdown_grace.into(),
        };
        let shutdown = Shutdown::new();
        let summary = runtime()?.block_on(async {
            shutdown.listen_for_signals()?;
            tracing::info!(
                tenant = %options.tenant,
                max_concurrent = options.max_concurrent,
                "serving; stop with Ctrl-C or SIGTERM"
            );
            schedule::serve(runner, options, shutdown.clone()).await
        })?;
        eprintln!(
            "stopped: {} runs ended, {} failed, {} interrupted",
            summary.runs, summary.failed, summary.interrupted
        );
        Ok(ExitCode::SUCCESS)
    }

    pub(super) fn runs(&self, args: RunsArgs) -> Result<ExitCode> {
        let db = self.existing_db()?;
        // A feed that never ran has no store yet, and no runs.
        let runs = match db.find_store(&self.tenant, &args.name)? {
            Some(store) => db.runs(&store, args.limit)?,
            None if db.feed(&self.tenant, &args.name)?.is_some() => Vec::new(),
            None => db
                .require_store(&self.tenant, &args.name)
                .map(|_| Vec::new())?,
        };
        let mut out = std::io::stdout().lock();
        match args.format {
            ListFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&runs)?)?,
            ListFormat::Table => write_runs(&args.name, &runs, &mut out)?,
        }
        Ok(ExitCode::SUCCESS)
    }
}
