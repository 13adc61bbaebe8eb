//! The command line. Reading stores (`retrieve query`, `query`) and serving
//! them (`serve-taxii`) are in `cli/read.rs`.

mod read;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytesize::ByteSize;
use clap::{Args, Parser, Subcommand, ValueEnum};

mod connection;
mod schedule;

pub use self::connection::{CredentialArgs, NetworkArgs};
pub use self::read::{ObjectArgs, QueryArgs, QueryFormat, QueryStoreArgs, ServeArgs};
use self::schedule::{RetryArgs, RunsArgs, ScheduleArgs};
use crate::bindings::types::NoteLevel;
use crate::db::{Database, Location, PostgresTarget};
use crate::discover::DiscoverArgs;
use crate::engine::{BUILTIN_PLUGIN, BUILTIN_PLUGIN_NAME, PluginEngine, PluginSource};
use crate::feeds::{Auth, DEFAULT_TENANT, Feed, NetworkOptions};
use crate::limits::RunLimits;
use crate::progress::{ProgressBar, RunProgress};
use crate::retrieve;
use crate::runner::{ImportOutcome, RunOptions, Runner, RunnerOptions};
use crate::runs::RunStatus;
use crate::secret::{DEFAULT_SECRETS_FILE, SECRETS_FILE_ENV, SecretSource};
use crate::shutdown::Shutdown;

/// Environment variable naming the data directory.
pub const DATA_DIR_ENV: &str = "TAXII_HOST_DATA_DIR";
/// Environment variable naming the compiled-plugin cache directory.
pub const CACHE_DIR_ENV: &str = "TAXII_HOST_CACHE_DIR";
/// Environment variable naming a PostgreSQL store (`--store`).
pub const STORE_ENV: &str = "TAXII_HOST_STORE";
/// Environment variable with the PostgreSQL store's password, as libpq
/// reads it.
pub const STORE_PASSWORD_ENV: &str = "PGPASSWORD";

/// Imports TAXII 2.1 and 2.0 feeds through a sandboxed WebAssembly plugin into
/// event stores, and reads the stores back as STIX 2.1.
#[derive(Debug, Parser)]
#[command(name = "taxii-host", version, max_term_width = 100)]
pub struct Cli {
    /// Where feed configurations, event stores and run history live
    /// [default: the per-user data directory, e.g. ~/.local/share/taxii-host]
    #[arg(long, env = DATA_DIR_ENV, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Where compiled plugins are cached [default: the per-user cache
    /// directory, e.g. ~/.cache/taxii-host]
    #[arg(long, env = CACHE_DIR_ENV, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Keep feeds, stores and run history in this PostgreSQL database instead
    /// of the SQLite file in the data directory, shared by every host pointed
    /// at it: postgres://USER@HOST:PORT/DATABASE (no password in it)
    #[arg(long, env = STORE_ENV, global = true, value_name = "URL")]
    pub store: Option<String>,

    /// A file (owner-only) holding the PostgreSQL store's password
    /// [default: the PGPASSWORD environment variable, if set]
    #[arg(long, global = true, value_name = "FILE")]
    pub store_password_file: Option<PathBuf>,

    /// On a PostgreSQL store, how long a host keeps a feed's lease without
    /// renewing it: a host that dies loses its feeds after this long
    #[arg(long, env = "TAXII_HOST_LEASE_TTL", global = true, value_name = "DURATION",
          default_value = "30s", value_parser = crate::lease::parse_ttl)]
    pub lease_ttl: Duration,

    /// The secrets file for `--*-secret KEY` sources: `KEY=value` lines,
    /// readable by its owner only [default: DATA_DIR/secrets.env]
    #[arg(long, env = SECRETS_FILE_ENV, global = true, value_name = "FILE")]
    pub secrets_file: Option<PathBuf>,

    #[command(flatten)]
    pub limits: LimitArgs,

    /// The tenant whose feeds and stores to use.
    #[arg(long, env = "TAXII_HOST_TENANT", global = true, default_value = DEFAULT_TENANT)]
    pub tenant: String,

    /// Log more (-v: decisions, -vv: everything, including the plugin's stderr).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Log only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// A size limit: a number with a unit (`64MiB`, `1GB`), more than 0.
fn nonzero_size(text: &str) -> Result<ByteSize, String> {
    match text.parse::<ByteSize>()? {
        size if size.as_u64() == 0 => Err("a limit of 0 bytes lets nothing run".into()),
        size => Ok(size),
    }
}

/// The limits of each run; hitting one ends that run with an error naming
/// it, keeping what was committed.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Memory a plugin may use.
    #[arg(long, global = true, value_name = "SIZE", default_value = "256MiB", value_parser = nonzero_size)]
    pub max_memory: ByteSize,
    /// Time a plugin may spend executing (its CPU).
    #[arg(long, global = true, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub max_cpu: Duration,
    /// Wall-clock time of a run.
    #[arg(long, global = true, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub max_run_time: Duration,
    /// Size of one HTTP response body.
    #[arg(long, global = true, value_name = "SIZE", default_value = "128MiB", value_parser = nonzero_size)]
    pub max_response_size: ByteSize,
    /// Pages of objects per run; the next run continues from the cursor.
    #[arg(long, global = true, value_name = "N", default_value_t = crate::limits::DEFAULT_PAGES,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_pages: u32,
}

impl LimitArgs {
    fn limits(&self) -> RunLimits {
        RunLimits {
            memory_bytes: self.max_memory.as_u64(),
            cpu: self.max_cpu,
            run_time: self.max_run_time,
            response_bytes: self.max_response_size.as_u64(),
            pages: self.max_pages,
        }
    }
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add, list and remove feed configurations.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Import feeds now, once each (several at once run side by side), and
    /// print what each run did.
    Import(ImportArgs),
    /// Import every feed on its own interval until stopped (SIGINT/SIGTERM).
    Serve(schedule::ServeArgs),
    /// A store's run history: each run's counts, HTTP statuses and failure.
    Runs(RunsArgs),
    /// Read the event stores: list them, or query one's objects as STIX.
    #[command(subcommand)]
    Retrieve(RetrieveCommand),
    /// Run a directive: `_retrieve list`, or `_retrieve query <name>` with
    /// stages such as `| _filter type == indicator | _limit 50`.
    Query(QueryArgs),
    /// Serve the stores as a read-only TAXII 2.1 server (one API root per
    /// tenant, one collection per store).
    ServeTaxii(ServeArgs),
    /// Describe the built-in plugin, or write it out as a component file.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Show the API roots and collections behind a TAXII URL, with the
    /// Collection URL to give `config add`.
    Discover(Box<DiscoverArgs>),
}

/// Feed configuration commands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Add a feed (or replace one with --replace).
    Add(Box<ConfigAddArgs>),
    /// List the feeds.
    List(FormatArgs),
    /// Remove a feed's configuration; its store and history are kept.
    Remove {
        /// The feed's name.
        name: String,
    },
}

/// `config add`.
#[derive(Debug, Args)]
pub struct ConfigAddArgs {
    /// The feed's name, which is also its store's name [default: the
    /// plugin's name]
    pub name: Option<String>,
    /// The TAXII Collection URL: https://host/<api-root>/collections/<id>/
    #[arg(long, value_name = "URL")]
    pub collection_url: String,

    #[command(flatten)]
    pub credentials: CredentialArgs,
    #[command(flatten)]
    pub network: NetworkArgs,

    /// Objects per page (the TAXII `limit`) [default: 1000]
    #[arg(long, value_name = "N")]
    pub page_size: Option<u32>,
    /// Import only these STIX types (repeat, or separate with commas).
    #[arg(long = "type", value_name = "TYPE", value_delimiter = ',')]
    pub types: Vec<String>,
    /// Where the first run starts (RFC 3339); later runs use the stored cursor.
    #[arg(long, value_name = "TIMESTAMP")]
    pub added_after: Option<String>,
    /// Pages one run of this feed fetches at most; the next run continues
    /// from the cursor [default: the host's --max-pages]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub page_limit: Option<u32>,
    /// Longest one run of this feed may take, such as 90s or 30m; pages
    /// committed before it are kept [default: the host's --max-run-time]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub deadline: Option<Duration>,
    /// Use this plugin component instead of the built-in TAXII plugin.
    #[arg(long, value_name = "FILE")]
    pub plugin: Option<PathBuf>,
    /// Replace the feed if it exists (its store is kept).
    #[arg(long)]
    pub replace: bool,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
}

/// `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The feeds to import.
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    /// How to print the run's report.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    #[command(flatten)]
    pub retry: RetryArgs,
}

/// Report output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// A short summary.
    Text,
    /// The whole report as JSON.
    Json,
}

/// Table or JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// Columns for people.
    #[default]
    Table,
    /// JSON for programs.
    Json,
}

/// `--format table|json`.
#[derive(Debug, Args)]
pub struct FormatArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

/// Store reading commands.
#[derive(Debug, Subcommand)]
pub enum RetrieveCommand {
    /// Every store with its objects, last run and last status.
    List(FormatArgs),
    /// One store's objects, as a STIX 2.1 bundle, a TAXII envelope or JSON
    /// lines.
    Query(Box<QueryStoreArgs>),
}

/// Plugin commands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Print what a plugin says about itself (JSON).
    Describe {
        /// A plugin component [default: the built-in plugin]
        #[arg(long, value_name = "FILE")]
        plugin: Option<PathBuf>,
    },
    /// Write the built-in plugin to a file, to run it in another host.
    Export {
        /// Where to write the component.
        path: PathBuf,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
}

/// Sets up logging to stderr; `RUST_LOG` overrides the verbosity flags.
pub fn init_tracing(cli: &Cli) {
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn,taxii_host=info",
        (false, 1) => "info,taxii_host=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::progress::StderrAboveBar)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// Whether `url` has the shape TAXII gives a collection:
/// `{api-root}/collections/{id}/`.
fn is_collection_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|url| {
        url.path_segments().is_some_and(|segments| {
            segments.filter(|s| !s.is_empty()).rev().nth(1) == Some("collections")
        })
    })
}

/// A command line that is wrong in a way clap cannot see: exit code 2, as
/// for clap's own errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// True when the command line was wrong (exit code 2).
pub fn is_usage_error(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.is::<UsageError>())
}

/// True when the error is a closed stdout (`| head`), which is not a failure.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let data_dir = match &cli.data_dir {
        Some(dir) => dir.clone(),
        None => dirs::data_dir()
            .context("no per-user data directory: pass --data-dir or set TAXII_HOST_DATA_DIR")?
            .join("taxii-host"),
    };
    let cache_dir = cli
        .cache_dir
        .clone()
        .or_else(|| dirs::cache_dir().map(|d| d.join("taxii-host")));
    let secrets_file = cli
        .secrets_file
        .clone()
        .unwrap_or_else(|| data_dir.join(DEFAULT_SECRETS_FILE));
    let postgres = match &cli.store {
        Some(url) => Some(Arc::new(postgres_target(
            url,
            cli.store_password_file.as_deref(),
            &secrets_file,
        )?)),
        None if cli.store_password_file.is_some() => bail!(
            "--store-password-file is the password of a PostgreSQL store: give the store \
             with --store postgres://USER@HOST:PORT/DATABASE (or {STORE_ENV}), or drop it"
        ),
        None => None,
    };
    let context = Session {
        tenant: cli.tenant.clone(),
        runner: RunnerOptions {
            guest_stderr: cli.verbose >= 2,
            limits: cli.limits.limits(),
            secrets_file,
        },
        location: Location { data_dir, postgres },
        cache_dir,
        quiet: cli.quiet,
        lease_ttl: cli.lease_ttl,
    };
    crate::feeds::check_name("tenant", &context.tenant)?;
    match cli.command {
        Command::Config(command) => context.config(command),
        Command::Import(args) => context.import(args),
        Command::Serve(args) => context.serve(args),
        Command::Runs(args) => context.runs(args),
        Command::Retrieve(RetrieveCommand::List(args)) => context.list(args.format),
        Command::Retrieve(RetrieveCommand::Query(args)) => {
            context.query_store(&args.name, &args.objects.to_query(), args.format)
        }
        Command::Query(args) => context.directive(&args),
        Command::ServeTaxii(args) => context.serve_taxii(args),
        Command::Plugin(command) => context.plugin(command),
        Command::Discover(args) => {
            let runner = context.runner()?;
            let secrets = &context.runner.secrets_file;
            runtime()?.block_on(crate::discover::run(&runner, &args, secrets))
        }
    }
}

/// The PostgreSQL store of `--store`, with its password from
/// `--store-password-file` or `PGPASSWORD`; never from the URL, which
/// shows in process lists and shell history.
fn postgres_target(
    url: &str,
    password_file: Option<&std::path::Path>,
    secrets_file: &std::path::Path,
) -> Result<PostgresTarget> {
    if PostgresTarget::has_password_in_url(url) {
        bail!(
            "--store: the URL holds a password, which would show in process lists and \
             shell history; remove it from the URL and give it with --store-password-file \
             FILE or the {STORE_PASSWORD_ENV} environment variable"
        );
    }
    let password = match password_file {
        Some(path) => Some(
            SecretSource::File(path.to_path_buf())
                .read(secrets_file)
                .context("--store-password-file")?,
        ),
        None if std::env::var_os(STORE_PASSWORD_ENV).is_some() => {
            Some(SecretSource::Env(STORE_PASSWORD_ENV.into()).read(secrets_file)?)
        }
        None => None,
    };
    PostgresTarget::new(url, password)
}

struct Session {
    tenant: String,
    location: Location,
    cache_dir: Option<PathBuf>,
    runner: RunnerOptions,
    quiet: bool,
    lease_ttl: Duration,
}

impl Session {
    /// The database, created if it is not there yet (commands that write).
    fn db(&self) -> Result<Database> {
        self.location.open()
    }

    /// The database, which must already be there: a command that only
    /// reads, given a mistyped `--data-dir`, says so instead of creating an
    /// empty one and answering from it.
    fn existing_db(&self) -> Result<Database> {
        let file = self.location.data_dir.join(crate::db::DB_FILE);
        if self.location.postgres.is_none() && !file.exists() {
            bail!(
                "there is no taxii-host database in {}: nothing was configured there. Check \
                 --data-dir (or {DATA_DIR_ENV}); `config add` creates it",
                self.location.data_dir.display()
            );
        }
        self.location.open()
    }

    fn runner(&self) -> Result<Runner> {
        let engine = PluginEngine::new(self.cache_dir.clone())?;
        Ok(
            Runner::new(engine, self.location.clone(), self.runner.clone())
                .with_lease_ttl(self.lease_ttl),
        )
    }

    fn config(&self, command: ConfigCommand) -> Result<ExitCode> {
        match command {
            ConfigCommand::Add(args) => self.add_feed(*args),
            ConfigCommand::List(args) => {
                let db = self.existing_db()?;
                let feeds = db
                    .feeds(&self.tenant)?
                    .into_iter()
                    .map(|feed| {
                        let taxii_version = db.taxii_version(&self.tenant, &feed.name)?;
                        Ok(FeedListing {
                            feed,
                            taxii_version,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let mut out = std::io::stdout().lock();
                match args.format {
                    ListFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&feeds)?)?,
                    ListFormat::Table => write_feed_table(&feeds, &mut out)?,
                }
                Ok(ExitCode::SUCCESS)
            }
            ConfigCommand::Remove { name } => {
                let db = self.existing_db()?;
                db.require_feed(&self.tenant, &name)?;
                db.remove_feed(&self.tenant, &name)?;
                println!("removed feed {name}; its store and run history are kept");
                Ok(ExitCode::SUCCESS)
            }
        }
    }

    fn add_feed(&self, args: ConfigAddArgs) -> Result<ExitCode> {
        let runtime = runtime()?;
        let runner = self.runner()?;
        let source = PluginSource::from_path(args.plugin.as_deref());
        let name = match args.name.clone() {
            Some(name) => name,
            None if source == PluginSource::Builtin => BUILTIN_PLUGIN_NAME.to_string(),
            None => runtime.block_on(runner.describe(&source))?.name,
        };
        let feed = Feed {
            tenant: self.tenant.clone(),
            name,
            plugin: args.plugin.clone().map(absolute).transpose()?,
            collection_url: args.collection_url.clone(),
            auth: args.credentials.auth()?,
            network: args.network.network()?,
            page_size: args.page_size,
            object_types: args.types,
            added_after: args.added_after,
            page_limit: args.page_limit,
            deadline_secs: args.deadline.map(|d| d.as_secs()),
            schedule: args.schedule.split().0,
            limits: args.schedule.split().1,
        };
        feed.check()?;
        let problems = runtime.block_on(runner.validate(&feed))?;
        if !problems.is_empty() {
            let list: Vec<_> = problems
                .iter()
                .map(|(field, message)| format!("  {field}: {message}"))
                .collect();
            bail!("feed {} is not valid:\n{}", feed.name, list.join("\n"));
        }
        if !is_collection_url(&feed.collection_url) {
            tracing::warn!(
                "feed {}: {} does not look like a Collection URL \
                 ({{api-root}}/collections/{{id}}/); if it is a discovery or API root URL, \
                 `taxii-host discover {}` lists its collections with their URLs",
                feed.name,
                feed.collection_url,
                feed.collection_url
            );
        }
        crate::tls::client_config(&feed.network.tls())
            .with_context(|| format!("feed {}: TLS settings", feed.name))?;
        if feed.network.insecure_skip_tls_verify {
            tracing::warn!(
                "feed {}: TLS certificate verification is OFF: anyone on the path can \
                 impersonate the server",
                feed.name
            );
        }
        let secrets: Vec<&SecretSource> = match &feed.auth {
            Auth::None => vec![],
            Auth::Basic { password, .. } => vec![password],
            Auth::Bearer { token } => vec![token],
            Auth::Header { value, .. } => vec![value],
        };
        for source in secrets {
            if let Err(e) = source.read(&self.runner.secrets_file) {
                tracing::warn!(
                    "{e:#}; the feed is saved, but its imports will fail until it is fixed"
                );
            }
        }
        let mut db = self.db()?;
        // A cursor belongs to the collection it was read from: one left by
        // another collection (the URL changed, or a feed of this name was
        // removed) would skip everything the new one added before it.
        let restart = db
            .feed(&self.tenant, &feed.name)?
            .is_none_or(|previous| previous.collection_url != feed.collection_url);
        db.add_feed(&feed, args.replace)?;
        println!(
            "feed {} → store {}: {}",
            feed.name, feed.name, feed.collection_url
        );
        if restart && db.restart_feed(&self.tenant, &feed.name)? {
            println!(
                "store {} has the cursor of an earlier configuration: the next \
                 import reads {} from its beginning (objects stored stay; versions it \
                 already has are not stored twice)",
                feed.name, feed.collection_url
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    fn import(&self, args: ImportArgs) -> Result<ExitCode> {
        let db = self.existing_db()?;
        // A feed named twice is imported once: two runs of one feed in one
        // process would only race for its lock.
        let mut named = std::collections::HashSet::new();
        let feeds = args
            .names
            .iter()
            .filter(|name| named.insert(name.as_str()))
            .map(|name| db.require_feed(&self.tenant, name))
            .collect::<Result<Vec<_>>>()?;
        let runner = Arc::new(self.runner()?.with_retry(args.retry.policy()));
        // Progress goes to stderr: a bar on a terminal when one feed runs,
        // else a line a page.
        let bar = std::io::stderr().is_terminal() && feeds.len() == 1 && !self.quiet;
        let shutdown = Shutdown::new();
        let runs: Vec<(Feed, RunOptions)> = feeds
            .into_iter()
            .map(|feed| {
                let progress = Arc::new(RunProgress::new(&feed.name, !self.quiet && !bar));
                let options = RunOptions {
                    progress,
                    ..RunOptions::manual(&feed, shutdown.clone())
                };
                (feed, options)
            })
            .collect();
        let (outcomes, refused) = runtime()?.block_on(async {
            shutdown.listen_for_signals()?;
            let _bar = runs
                .first()
                .filter(|_| bar)
                .and_then(|(_, options)| ProgressBar::on_terminal(&options.progress));
            let handles: Vec<_> = runs
                .into_iter()
                .map(|(feed, options)| {
                    let runner = runner.clone();
                    let name = feed.name.clone();
                    let run = tokio::spawn(async move { runner.import_with(&feed, options).await });
                    (name, run)
                })
                .collect();
            // Every feed's report is printed, even when another feed could
            // not run at all (its lock is held elsewhere, say).
            let mut outcomes = Vec::with_capacity(handles.len());
            let mut refused = Vec::new();
            for (name, handle) in handles {
                match handle.await? {
                    Ok(outcome) => outcomes.push(outcome),
                    Err(e) => refused.push(e.context(format!("feed {name}"))),
                }
            }
            anyhow::Ok((outcomes, refused))
        })?;
        let mut out = std::io::stdout().lock();
        match (args.format, outcomes.as_slice()) {
            (ReportFormat::Json, [one]) => writeln!(out, "{}", serde_json::to_string_pretty(one)?)?,
            (ReportFormat::Json, all) => writeln!(out, "{}", serde_json::to_string_pretty(all)?)?,
            (ReportFormat::Text, all) => {
                for outcome in all {
                    write_outcome(outcome, &mut out)?;
                }
            }
        }
        let mut code = ExitCode::SUCCESS;
        for error in outcomes.iter().filter_map(|o| o.error.as_ref()) {
            eprintln!(
                "error ({}): {}\n  fix: {}",
                error.kind, error.message, error.fix
            );
            code = ExitCode::FAILURE;
        }
        for error in refused {
            eprintln!("error: {error:#}");
            code = ExitCode::FAILURE;
        }
        Ok(code)
    }

    fn list(&self, format: ListFormat) -> Result<ExitCode> {
        let db = self.existing_db()?;
        let stores = retrieve::list_stores(&db, &self.tenant)?;
        if stores.is_empty() {
            let others = db.tenants()?;
            if !others.is_empty() && !others.contains(&self.tenant) {
                eprintln!(
                    "tenant {} has no stores; tenants with stores here: {} (--tenant)",
                    self.tenant,
                    others.join(", ")
                );
            }
        }
        let mut out = std::io::stdout().lock();
        match format {
            ListFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&stores)?)?,
            ListFormat::Table => retrieve::write_store_table(&stores, &mut out)?,
        }
        Ok(ExitCode::SUCCESS)
    }

    fn plugin(&self, command: PluginCommand) -> Result<ExitCode> {
        match command {
            PluginCommand::Describe { plugin } => {
                let source = PluginSource::from_path(plugin.as_deref());
                let info = runtime()?.block_on(self.runner()?.describe(&source))?;
                println!("{}", serde_json::to_string_pretty(&info)?);
            }
            PluginCommand::Export { path, force } => {
                let mut file = std::fs::OpenOptions::new();
                match force {
                    true => file.create(true).truncate(true),
                    false => file.create_new(true),
                };
                let written = file
                    .write(true)
                    .open(&path)
                    .and_then(|mut f| f.write_all(BUILTIN_PLUGIN));
                match written {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
                        "{} exists; give another path, or --force to replace it",
                        path.display()
                    ),
                    other => other.with_context(|| format!("cannot write {}", path.display()))?,
                }
                println!("wrote the built-in plugin to {}", path.display());
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Paths are stored absolute: runs may start from another directory.
fn absolute(path: PathBuf) -> Result<PathBuf> {
    std::path::absolute(&path).with_context(|| format!("cannot resolve {}", path.display()))
}

/// A feed as `config list` shows it: its configuration and the TAXII
/// version its server spoke last.
#[derive(Debug, serde::Serialize)]
struct FeedListing {
    #[serde(flatten)]
    feed: Feed,
    /// `2.1` or `2.0`; `None` before the first run reached the server.
    taxii_version: Option<String>,
}

fn write_feed_table(feeds: &[FeedListing], out: &mut impl Write) -> Result<()> {
    if feeds.is_empty() {
        writeln!(out, "no feeds yet: add one with `config add`")?;
        return Ok(());
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header([
        "FEED",
        "COLLECTION",
        "CREDENTIALS",
        "NETWORK",
        "PAGE",
        "TYPES",
        "LIMITS",
        "TAXII",
        "EVERY",
        "RATE",
    ]);
    for FeedListing {
        feed,
        taxii_version,
    } in feeds
    {
        table.add_row([
            feed.name.clone(),
            feed.collection_url.clone(),
            feed.auth.describe(),
            describe_network(&feed.network),
            feed.page_size
                .map_or_else(|| "default".into(), |n| n.to_string()),
            if feed.object_types.is_empty() {
                "all".into()
            } else {
                feed.object_types.join(",")
            },
            describe_limits(feed),
            taxii_version.clone().unwrap_or_else(|| "-".into()),
            humantime::format_duration(feed.schedule.every).to_string(),
            feed.limits
                .rate
                .map_or_else(|| "-".into(), |r| r.to_string()),
        ]);
    }
    writeln!(out, "{table}")?;
    Ok(())
}

fn describe_limits(feed: &Feed) -> String {
    let pages = feed.page_limit.map(|n| format!("{n} pages"));
    let deadline = feed
        .deadline_secs
        .map(|s| humantime::format_duration(Duration::from_secs(s)).to_string());
    let parts: Vec<String> = pages.into_iter().chain(deadline).collect();
    if parts.is_empty() {
        "host's".into()
    } else {
        parts.join(", ")
    }
}

fn describe_network(network: &NetworkOptions) -> String {
    let mut parts = Vec::new();
    if network.allow_private {
        parts.push("private allowed".to_string());
    }
    if network.allow_insecure_auth {
        parts.push("credentials over http allowed".into());
    }
    if network.insecure_skip_tls_verify {
        parts.push("TLS NOT VERIFIED".into());
    }
    if let Some(ca) = &network.ca_file {
        parts.push(format!("CA {}", ca.display()));
    }
    if network.client_cert.is_some() {
        parts.push("client certificate".into());
    }
    for origin in &network.allowed_origins {
        parts.push(format!("+{origin}"));
    }
    if parts.is_empty() {
        "default".into()
    } else {
        parts.join(", ")
    }
}

fn write_outcome(outcome: &ImportOutcome, out: &mut impl Write) -> Result<()> {
    let status = match outcome.status {
        RunStatus::Ok => "ok",
        RunStatus::Partial => "partial (page limit reached; the next run continues)",
        RunStatus::Interrupted => "interrupted (stopped on request; the next run continues)",
        _ => "failed",
    };
    writeln!(
        out,
        "feed {} → store {}: {status}",
        outcome.feed, outcome.store
    )?;
    if let Some(r) = &outcome.report {
        let kept = if outcome.error.is_some() {
            " (committed before the failure)"
        } else {
            ""
        };
        writeln!(
            out,
            "  TAXII {}, pages {}, received {}, stored {}, duplicates {}, rejected {}{kept}",
            r.taxii_version, r.pages, r.received, r.stored, r.duplicates, r.rejected_count
        )?;
        for note in r.notes.iter().filter(|n| n.level == NoteLevel::Warn) {
            writeln!(out, "  note: {}", note.message)?;
        }
        if let Some(cursor) = &r.cursor {
            writeln!(out, "  cursor {cursor}")?;
        }
        let http = &outcome.http;
        writeln!(
            out,
            "  requests {}: {}, retries {}, waited {}",
            http.requests,
            crate::progress::format_statuses(&http.http_statuses),
            http.retries,
            humantime::format_duration(std::time::Duration::from_millis(http.waited_ms))
        )?;
        for rejected in r.rejected.iter().take(5) {
            let id = rejected.id.as_deref().unwrap_or("(no id)");
            writeln!(out, "  rejected {id}: {}", rejected.reason)?;
        }
        if outcome.denied > 0 {
            writeln!(
                out,
                "  requests denied by the egress policy: {}",
                outcome.denied
            )?;
        }
        if r.rejected_count > 5 {
            writeln!(
                out,
                "  … see them all with `retrieve query {} --quarantine`",
                outcome.store
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// `config add` of a feed `f`, to which a test adds options.
    const CONFIG_ADD: &[&str] = &[
        "taxii-host",
        "config",
        "add",
        "f",
        "--collection-url",
        "https://h/c/",
    ];

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn collection_urls_are_told_from_discovery_and_api_roots() {
        for url in [
            "https://h/api1/collections/91a7b528-80eb-42ed-a74d-c6fbd5a26116/",
            "https://h/api1/collections/x",
        ] {
            assert!(is_collection_url(url), "{url}");
        }
        for url in [
            "https://h/taxii2/",
            "https://h/api1/",
            "https://h/api1/collections/",
            "not a url",
        ] {
            assert!(!is_collection_url(url), "{url}");
        }
    }

    #[test]
    fn page_limits_of_zero_are_refused() {
        let parses = |args: &[&str]| Cli::try_parse_from(args).is_ok();
        assert!(!parses(&[
            "taxii-host",
            "--max-pages",
            "0",
            "config",
            "list"
        ]));
        assert!(parses(&[
            "taxii-host",
            "--max-pages",
            "1",
            "config",
            "list"
        ]));
        assert!(!parses(&[CONFIG_ADD, &["--page-limit", "0"]].concat()));
        assert!(parses(&[CONFIG_ADD, &["--page-limit", "3"]].concat()));
    }

    #[test]
    fn credentials_options_make_one_kind_of_credentials() {
        let parse = |args: &[&str]| {
            let mut all = CONFIG_ADD.to_vec();
            all.extend(args);
            match Cli::try_parse_from(all).map(|cli| cli.command) {
                Ok(Command::Config(ConfigCommand::Add(args))) => {
                    args.credentials.auth().map_err(|e| e.to_string())
                }
                Ok(_) => unreachable!("config add parses as config add"),
                Err(e) => Err(e.to_string()),
            }
        };
        assert!(matches!(
            parse(&["--username", "u", "--password-env", "P"]),
            Ok(Auth::Basic { .. })
        ));
        assert!(matches!(
            parse(&["--token-secret", "k"]),
            Ok(Auth::Bearer { .. })
        ));
        assert!(matches!(
            parse(&["--header", "X-API-Key", "--header-env", "K"]),
            Ok(Auth::Header { .. })
        ));
        assert!(matches!(parse(&[]), Ok(Auth::None)));
        assert!(parse(&["--username", "u"]).is_err());
        assert!(parse(&["--password-env", "P"]).is_err());
        assert!(
            parse(&[
                "--username",
                "u",
                "--password-env",
                "P",
                "--password-file",
                "f"
            ])
            .is_err()
        );
        assert!(parse(&["--username", "u", "--password-env", "P", "--token-env", "T"]).is_err());
        assert!(parse(&["--header", "X-API-Key"]).is_err());
    }

    #[test]
    fn a_password_on_the_command_line_is_refused_without_echoing_it() {
        let cli = Cli::try_parse_from([
            "taxii-host",
            "--data-dir",
            "/nonexistent/never",
            "config",
            "add",
            "f",
            "--collection-url",
            "https://h/c/",
            "--username",
            "u",
            "--password",
            "hunter2",
        ]);
        // Refused by the host, not clap: clap would say an option is missing.
        let error = run(cli.expect("the command line parses")).unwrap_err();
        assert!(is_usage_error(&error), "exit code 2: {error:#}");
        let message = format!("{error:#}");
        assert!(message.contains("--password is not accepted"), "{message}");
        assert!(message.contains("--password-file"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}
