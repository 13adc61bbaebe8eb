//! The command line.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

mod schedule;

use std::sync::Arc;

use self::schedule::{RetryArgs, RunsArgs, ScheduleArgs, ServeArgs};
use crate::db::Database;
use crate::directive::{self, Directive};
use crate::engine::{BUILTIN_PLUGIN, BUILTIN_PLUGIN_NAME, PluginEngine, PluginSource};
use crate::feeds::{DEFAULT_TENANT, Feed};
use crate::progress::{ProgressBar, RunProgress};
use crate::retrieve::{self, ObjectFormat, ObjectQuery, Versions};
use crate::runner::{ImportOutcome, RunOptions, Runner};
use crate::runs::RunStatus;
use crate::secret::PasswordSource;
use crate::shutdown::Shutdown;

/// Environment variable naming the data directory.
pub const DATA_DIR_ENV: &str = "TAXII_HOST_DATA_DIR";
/// Environment variable naming the compiled-plugin cache directory.
pub const CACHE_DIR_ENV: &str = "TAXII_HOST_CACHE_DIR";

/// Imports TAXII 2.1 feeds through a sandboxed WebAssembly plugin into event
/// stores, and reads the stores back as STIX 2.1.
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

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add, list and remove feed configurations.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Import a feed now, once, and print what the run did.
    Import(ImportArgs),
    /// Import every feed on its own interval until stopped (SIGINT/SIGTERM).
    Serve(ServeArgs),
    /// A store's run history: each run's counts, HTTP statuses and failure.
    Runs(RunsArgs),
    /// Read the event stores: list them, or query one's objects as STIX.
    #[command(subcommand)]
    Retrieve(RetrieveCommand),
    /// Run a directive: `_retrieve list` or `_retrieve query <name>`.
    Query(QueryArgs),
    /// Describe the built-in plugin, or write it out as a component file.
    #[command(subcommand)]
    Plugin(PluginCommand),
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
    /// Username for HTTP Basic authentication.
    #[arg(long)]
    pub username: Option<String>,
    /// Read the password from this environment variable at each run.
    #[arg(long, value_name = "VAR", conflicts_with = "password_file")]
    pub password_env: Option<String>,
    /// Read the password from the first line of this file at each run.
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
    /// Refused: a password on the command line ends up in the shell history.
    #[arg(long, hide = true, value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Objects per page (the TAXII `limit`) [default: 1000]
    #[arg(long, value_name = "N")]
    pub page_size: Option<u32>,
    /// Import only these STIX types (repeat, or separate with commas).
    #[arg(long = "type", value_name = "TYPE", value_delimiter = ',')]
    pub types: Vec<String>,
    /// Where the first run starts (RFC 3339); later runs use the stored cursor.
    #[arg(long, value_name = "TIMESTAMP")]
    pub added_after: Option<String>,
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
    /// The feed to import.
    pub name: String,
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
    /// One store's objects, as a STIX 2.1 bundle or JSON lines.
    Query(QueryStoreArgs),
}

/// `retrieve query`.
#[derive(Debug, Args)]
pub struct QueryStoreArgs {
    /// The store.
    pub name: String,
    #[command(flatten)]
    pub output: ObjectArgs,
}

/// How objects are selected and written.
#[derive(Debug, Args)]
pub struct ObjectArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ObjectFormat::Bundle)]
    pub format: ObjectFormat,
    /// Only objects of these STIX types (repeat, or separate with commas).
    #[arg(long = "type", value_name = "TYPE", value_delimiter = ',')]
    pub types: Vec<String>,
    /// At most this many objects.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Which versions of each object.
    #[arg(long, value_enum, default_value_t = Versions::Last)]
    pub versions: Versions,
    /// Show the quarantine instead: objects rejected, with the reason.
    #[arg(long)]
    pub quarantine: bool,
}

/// `query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The directive, for example '_retrieve query feed1'.
    pub directive: String,
    /// Output of `_retrieve list`.
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub list_format: ListFormat,
    #[command(flatten)]
    pub output: ObjectArgs,
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
    let context = Session {
        tenant: cli.tenant.clone(),
        data_dir,
        cache_dir,
        guest_stderr: cli.verbose >= 2,
        quiet: cli.quiet,
    };
    crate::feeds::check_name("tenant", &context.tenant)?;
    match cli.command {
        Command::Config(command) => context.config(command),
        Command::Import(args) => context.import(args),
        Command::Serve(args) => context.serve(args),
        Command::Runs(args) => context.runs(args),
        Command::Retrieve(RetrieveCommand::List(args)) => context.list(args.format),
        Command::Retrieve(RetrieveCommand::Query(args)) => {
            context.query_store(&args.name, &args.output)
        }
        Command::Query(args) => match directive::parse(&args.directive)? {
            Directive::List => context.list(args.list_format),
            Directive::Query { store } => context.query_store(&store, &args.output),
        },
        Command::Plugin(command) => context.plugin(command),
    }
}

struct Session {
    tenant: String,
    data_dir: PathBuf,
    cache_dir: Option<PathBuf>,
    guest_stderr: bool,
    quiet: bool,
}

impl Session {
    fn db(&self) -> Result<Database> {
        Database::open(&self.data_dir)
    }

    fn runner(&self) -> Result<Runner> {
        let engine = PluginEngine::new(self.cache_dir.clone())?;
        Ok(Runner::new(
            engine,
            self.data_dir.clone(),
            self.guest_stderr,
        ))
    }

    fn config(&self, command: ConfigCommand) -> Result<ExitCode> {
        match command {
            ConfigCommand::Add(args) => self.add_feed(*args),
            ConfigCommand::List(args) => {
                let feeds = self.db()?.feeds(&self.tenant)?;
                let mut out = std::io::stdout().lock();
                match args.format {
                    ListFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&feeds)?)?,
                    ListFormat::Table => write_feed_table(&feeds, &mut out)?,
                }
                Ok(ExitCode::SUCCESS)
            }
            ConfigCommand::Remove { name } => {
                let db = self.db()?;
                db.require_feed(&self.tenant, &name)?;
                db.remove_feed(&self.tenant, &name)?;
                println!("removed feed {name}; its store and run history are kept");
                Ok(ExitCode::SUCCESS)
            }
        }
    }

    fn add_feed(&self, args: ConfigAddArgs) -> Result<ExitCode> {
        if args.password.is_some() {
            bail!(
                "--password is not accepted: a password on the command line is kept in the \
                 shell history and visible to other users; use --password-env VAR or \
                 --password-file PATH"
            );
        }
        let runtime = runtime()?;
        let runner = self.runner()?;
        let source = PluginSource::from_path(args.plugin.as_deref());
        let name = match args.name {
            Some(name) => name,
            None if source == PluginSource::Builtin => BUILTIN_PLUGIN_NAME.to_string(),
            None => runtime.block_on(runner.describe(&source))?.name,
        };
        let password = match (args.password_env, args.password_file) {
            (Some(var), _) => Some(PasswordSource::Env(var)),
            (None, Some(path)) => Some(PasswordSource::File(absolute(path)?)),
            (None, None) => None,
        };
        let feed = Feed {
            tenant: self.tenant.clone(),
            name,
            plugin: args.plugin.map(absolute).transpose()?,
            collection_url: args.collection_url,
            username: args.username,
            password,
            page_size: args.page_size,
            object_types: args.types,
            added_after: args.added_after,
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
        if let Some(source) = &feed.password
            && let Err(e) = source.read()
        {
            tracing::warn!("{e:#}; the feed is saved, but its imports will fail until it is fixed");
        }
        self.db()?.add_feed(&feed, args.replace)?;
        println!(
            "feed {} → store {}: {}",
            feed.name, feed.name, feed.collection_url
        );
        Ok(ExitCode::SUCCESS)
    }

    fn import(&self, args: ImportArgs) -> Result<ExitCode> {
        let feed = self.db()?.require_feed(&self.tenant, &args.name)?;
        let runner = self.runner()?.with_retry(args.retry.policy());
        // Progress goes to stderr: a bar on a terminal, else a line a page.
        let on_terminal = std::io::stderr().is_terminal();
        let progress = Arc::new(RunProgress::new(&feed.name, !self.quiet && !on_terminal));
        let shutdown = Shutdown::new();
        let options = RunOptions {
            progress: progress.clone(),
            ..RunOptions::manual(&feed, shutdown.clone())
        };
        let outcome = runtime()?.block_on(async {
            shutdown.listen_for_signals()?;
            let _bar = (!self.quiet)
                .then(|| ProgressBar::on_terminal(&progress))
                .flatten();
            runner.import_with(&feed, options).await
        })?;
        let mut out = std::io::stdout().lock();
        match args.format {
            ReportFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&outcome)?)?,
            ReportFormat::Text => write_outcome(&outcome, &mut out)?,
        }
        if let Some(error) = &outcome.error {
            eprintln!(
                "error ({}): {}\n  fix: {}",
                error.kind, error.message, error.fix
            );
            return Ok(ExitCode::FAILURE);
        }
        Ok(ExitCode::SUCCESS)
    }

    fn list(&self, format: ListFormat) -> Result<ExitCode> {
        let stores = retrieve::list_stores(&self.db()?, &self.tenant)?;
        let mut out = std::io::stdout().lock();
        match format {
            ListFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&stores)?)?,
            ListFormat::Table => retrieve::write_store_table(&stores, &mut out)?,
        }
        Ok(ExitCode::SUCCESS)
    }

    fn query_store(&self, name: &str, args: &ObjectArgs) -> Result<ExitCode> {
        let db = self.db()?;
        let store = db.require_store(&self.tenant, name)?;
        let query = ObjectQuery {
            types: args.types.clone(),
            limit: args.limit,
            versions: args.versions,
            quarantine: args.quarantine,
        };
        let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        retrieve::write_objects(&db, &store, &query, args.format, &mut out)?;
        Ok(ExitCode::SUCCESS)
    }

    fn plugin(&self, command: PluginCommand) -> Result<ExitCode> {
        match command {
            PluginCommand::Describe { plugin } => {
                let source = PluginSource::from_path(plugin.as_deref());
                let info = runtime()?.block_on(self.runner()?.describe(&source))?;
                println!("{}", serde_json::to_string_pretty(&info)?);
            }
            PluginCommand::Export { path } => {
                std::fs::write(&path, BUILTIN_PLUGIN)
                    .with_context(|| format!("cannot write {}", path.display()))?;
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

fn write_feed_table(feeds: &[Feed], out: &mut impl Write) -> Result<()> {
    if feeds.is_empty() {
        writeln!(out, "no feeds yet: add one with `config add`")?;
        return Ok(());
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header([
        "FEED",
        "COLLECTION",
        "USERNAME",
        "PASSWORD FROM",
        "PAGE",
        "TYPES",
        "EVERY",
        "RATE",
    ]);
    for feed in feeds {
        table.add_row([
            feed.name.clone(),
            feed.collection_url.clone(),
            feed.username.clone().unwrap_or_else(|| "-".into()),
            feed.password
                .as_ref()
                .map_or_else(|| "-".into(), PasswordSource::to_string),
            feed.page_size
                .map_or_else(|| "default".into(), |n| n.to_string()),
            if feed.object_types.is_empty() {
                "all".into()
            } else {
                feed.object_types.join(",")
            },
            humantime::format_duration(feed.schedule.every).to_string(),
            feed.limits
                .rate
                .map_or_else(|| "-".into(), |r| r.to_string()),
        ]);
    }
    writeln!(out, "{table}")?;
    Ok(())
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
            "  pages {}, received {}, stored {}, duplicates {}, rejected {}{kept}",
            r.pages, r.received, r.stored, r.duplicates, r.rejected_count
        )?;
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
