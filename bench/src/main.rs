//! `taxii-feed-bench`: measures the project against its own static TAXII
//! 2.1 server on 127.0.0.1 and prints one table. Every measured program
//! but the start-up loop runs as a child process, timed from spawn to exit,
//! its peak RSS and CPU time taken from `wait4`. See BENCHMARKS.md.

mod data;
mod measure;
mod native;
mod nginx;
mod server;
mod startup;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::data::Pages;
use crate::measure::Measured;
use crate::server::Server;

/// Children are killed after this long: a benchmark always ends.
const CHILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);

#[derive(Parser)]
#[command(about = "Benchmarks of taxii-host against a pre-rendered TAXII 2.1 server on 127.0.0.1")]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    /// Generated collection sizes (objects), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000", value_parser = positive)]
    sizes: Vec<usize>,
    /// The release taxii-host binary.
    #[arg(long)]
    host: Option<PathBuf>,
    /// The Python with taxii2-client (scripts/setup-python makes it).
    #[arg(long)]
    python: Option<PathBuf>,
    /// The ATT&CK bundle (default: $TAXII_SHARED_DATA or ../shared/data,
    /// enterprise-attack-2.0.json); its row is skipped when absent.
    #[arg(long)]
    attack: Option<PathBuf>,
    /// Where data directories and logs go (default target/bench; emptied
    /// first, if it is empty or was made by this benchmark).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Rows to run: import, attack, python, native, nginx, query, startup.
    /// `attack` also adds ATT&CK to the native and python rows; `nginx`
    /// imports and reads the generated collections from nginx as well.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "import,attack,python,native,nginx,query,startup",
        value_parser = ["import", "attack", "python", "native", "nginx", "query", "startup"]
    )]
    rows: Vec<String>,
    /// Runs of each measured row; the table shows the median run (by
    /// time) and notes the range of all runs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Instantiations in the start-up loop.
    #[arg(long, default_value_t = 1000, value_parser = positive)]
    startup_iterations: usize,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Sub {
    /// (Internal) runs a program and writes its resource usage.
    Measured {
        #[arg(long)]
        usage: PathBuf,
        #[arg(long)]
        timeout_ms: u64,
        #[arg(last = true, required = true)]
        program: Vec<String>,
    },
    /// (Internal) one native import of a Collection URL; prints JSON.
    Native {
        #[arg(long)]
        url: String,
        /// Store in the host's SQLite store in this data directory;
        /// without it objects are only counted.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
struct Row {
    name: String,
    objects: u64,
    seconds: f64,
    objects_per_second: f64,
    mb_per_second: Option<f64>,
    peak_rss_mb: Option<f64>,
    cpu_seconds: Option<f64>,
    note: String,
}

impl Row {
    fn of(name: impl Into<String>, objects: u64, m: &Measured, bytes: Option<u64>) -> Self {
        let seconds = m.wall.as_secs_f64();
        Self {
            name: name.into(),
            objects,
            seconds,
            objects_per_second: objects as f64 / seconds,
            mb_per_second: bytes.map(|b| b as f64 / 1e6 / seconds),
            peak_rss_mb: Some(m.max_rss as f64 / 1e6),
            cpu_seconds: Some((m.user + m.system).as_secs_f64()),
            note: String::new(),
        }
    }

    /// One line for stderr while the benchmark goes on.
    fn progress(&self) -> String {
        format!(
            "{}: {:.3} s, {:.0} objects/s",
            self.name, self.seconds, self.objects_per_second
        )
    }

    fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

/// The median of `runs` runs of one row (by time), noting the range.
fn median(runs: u32, mut run: impl FnMut() -> Result<Row>) -> Result<Row> {
    let mut rows = medians(runs, || Ok(vec![run()?]))?;
    rows.pop().context("a row that ran gave nothing")
}

/// [`median`] of each of the rows one run gives.
fn medians(runs: u32, mut run: impl FnMut() -> Result<Vec<Row>>) -> Result<Vec<Row>> {
    let mut all: Vec<Vec<Row>> = Vec::new();
    for _ in 0..runs {
        for (at, row) in run()?.into_iter().enumerate() {
            match all.get_mut(at) {
                Some(runs) => runs.push(row),
                None => all.push(vec![row]),
            }
        }
    }
    Ok(all
        .into_iter()
        .map(|mut rows| {
            rows.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
            let (fastest, slowest) = (
                rows[0].objects_per_second,
                rows[rows.len() - 1].objects_per_second,
            );
            let n = rows.len();
            let mut row = rows.swap_remove(n / 2);
            if n > 1 {
                row.note = format!(
                    "{}; median of {n} runs ({slowest:.0}-{fastest:.0} objects/s)",
                    row.note
                );
            }
            row
        })
        .collect())
}

/// A count of at least 1.
fn positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `target/` here.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Some(Sub::Native { url, data_dir }) => return native::run(url, data_dir.as_deref()),
        Some(Sub::Measured {
            usage,
            timeout_ms,
            program,
        }) => return measure::helper(usage, Duration::from_millis(*timeout_ms), program),
        None => {}
    }
    let bench = Bench::new(&cli)?;
    let rows = bench.run(&cli)?;
    print_table(&rows);
    if let Some(path) = &cli.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)?;
    }
    Ok(())
}

/// Which server a row reads from.
#[derive(Clone, Copy, PartialEq)]
enum Source {
    /// The benchmark's own server.
    Own,
    /// nginx serving the same pages from files.
    Nginx,
}

struct Bench {
    host: PathBuf,
    work: PathBuf,
    cache: PathBuf,
    server: Server,
    /// Collection id, objects, and whether it is generated.
    collections: Vec<(String, u64, bool)>,
    attack_missing: Option<String>,
    /// nginx, when the nginx rows were asked for and it could start.
    nginx: Option<nginx::Nginx>,
    /// Why the nginx rows were skipped.
    nginx_missing: Option<String>,
}

impl Source {
    /// Before the collection in a row's name.
    fn label(self) -> &'static str {
        match self {
            Self::Own => "",
            Self::Nginx => "nginx, ",
        }
    }

    /// After the collection in a log file's name.
    fn suffix(self) -> &'static str {
        match self {
            Self::Own => "",
            Self::Nginx => "-nginx",
        }
    }
}

fn size_name(n: usize) -> String {
    format!("gen{n}")
}

impl Bench {
    fn new(cli: &Cli) -> Result<Self> {
        let root = repo_root();
        let host = cli
            .host
            .clone()
            .unwrap_or_else(|| target_dir().join("release/taxii-host"));
        ensure!(
            host.exists(),
            "{} is missing: build it with `cargo build --release -p taxii-host`",
            host.display()
        );
        let work = cli
            .work_dir
            .clone()
            .unwrap_or_else(|| target_dir().join("bench"));
        // Empty only a directory this benchmark made (it leaves a marker).
        let marker = work.join(".taxii-feed-bench");
        let foreign = std::fs::read_dir(&work).is_ok_and(|mut d| d.next().is_some());
        ensure!(
            !foreign || marker.exists(),
            "{} is not empty and was not made by taxii-feed-bench: give another --work-dir",
            work.display()
        );
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work)?;
        std::fs::write(&marker, "")?;
        let cache = work.join("cache");
        let mut pages = HashMap::new();
        let mut collections = Vec::new();
        for &n in &cli.sizes {
            pages.insert(size_name(n), Pages::generated(n));
            collections.push((size_name(n), n as u64, true));
        }
        let attack = cli.attack.clone().unwrap_or_else(|| {
            let shared = std::env::var_os("TAXII_SHARED_DATA")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("../shared/data"));
            shared.join("enterprise-attack-2.0.json")
        });
        let mut attack_missing = None;
        if cli.rows.iter().any(|r| r == "attack") {
            if attack.exists() {
                let attack_pages = Pages::from_bundle(&attack)?;
                collections.push(("attack".into(), attack_pages.objects() as u64, false));
                pages.insert("attack".into(), attack_pages);
            } else {
                attack_missing = Some(format!("{} is absent", attack.display()));
            }
        }
        let (mut nginx, mut nginx_missing) = (None, None);
        if cli.rows.iter().any(|r| r == "nginx") {
            match nginx::find() {
                Some(binary) => {
                    let generated: Vec<(&str, &Pages)> = pages
                        .iter()
                        .filter(|(id, _)| id.as_str() != "attack")
                        .map(|(id, p)| (id.as_str(), p))
                        .collect();
                    let started = nginx::start(&binary, &work.join("nginx"), &generated)?;
                    eprintln!("bench: nginx serving on {}", started.base);
                    nginx = Some(started);
                }
                None => {
                    nginx_missing = Some(
                        "nginx is not installed (scripts/bench installs Debian's nginx-light)"
                            .into(),
                    )
                }
            }
        }
        let server = server::start(pages)?;
        eprintln!("bench: serving on {}", server.base);
        Ok(Self {
            host,
            work,
            cache,
            server,
            collections,
            attack_missing,
            nginx,
            nginx_missing,
        })
    }

    fn host_command(&self, data_dir: &Path) -> Command {
        let mut command = Command::new(&self.host);
        command
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--cache-dir")
            .arg(&self.cache);
        command
    }

    fn log(&self, name: &str) -> Result<Stdio> {
        Ok(std::fs::File::create(self.work.join(format!("{name}.log")))?.into())
    }

    fn served_bytes(&self) -> u64 {
        self.server.served.page_bytes.load(Ordering::Relaxed)
    }

    /// The Collection URL of `id` on `source`.
    fn url(&self, source: Source, id: &str) -> Result<String> {
        match (source, &self.nginx) {
            (Source::Own, _) => Ok(self.server.collection_url(id)),
            (Source::Nginx, Some(nginx)) => Ok(nginx.collection_url(id)),
            (Source::Nginx, None) => bail!("nginx is not running"),
        }
    }

    /// Runs `f` and gives the page bytes `source` served meanwhile (nginx:
    /// the collection's pages, all of which a complete read fetches once).
    fn counting_bytes<T>(
        &self,
        source: Source,
        id: &str,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<(T, u64)> {
        let before = self.served_bytes();
        let value = f()?;
        let bytes = match (source, &self.nginx) {
            (Source::Nginx, Some(nginx)) => nginx.page_bytes.get(id).copied().unwrap_or(0),
            _ => self.served_bytes() - before,
        };
        Ok((value, bytes))
    }

    fn run(&self, cli: &Cli) -> Result<Vec<Row>> {
        let wants = |row: &str| cli.rows.iter().any(|r| r == row);
        let mut rows = Vec::new();
        // Compile the plugin into the cache once, as a first run would.
        let warm = self.work.join("warm");
        measure::run(
            self.host_command(&warm).args(["plugin", "describe"]),
            self.log("warm")?,
            CHILD_TIMEOUT,
        )?;
        let imports: Vec<_> = self
            .collections
            .iter()
            .filter(|(_, _, generated)| {
                if *generated {
                    wants("import")
                } else {
                    wants("attack")
                }
            })
            .collect();
        let mut largest: Option<(PathBuf, &str, u64)> = None;
        for (id, objects, generated) in &imports {
            let mut dir = PathBuf::new();
            let row = median(cli.repeat, || {
                let (row, imported) = self.host_import(Source::Own, id, *objects, *generated)?;
                dir = imported;
                Ok(row)
            })?;
            eprintln!("bench: {}", row.progress());
            rows.push(row);
            if *generated && largest.as_ref().is_none_or(|(_, _, n)| objects > n) {
                largest = Some((dir, id.as_str(), *objects));
            }
        }
        if let Some(missing) = &self.attack_missing {
            rows.push(skipped("taxii-host import, ATT&CK 2.0", missing));
        }
        if wants("native") {
            for (id, objects, _) in self.selected(cli) {
                for sqlite in [true, false] {
                    let row = median(cli.repeat, || self.native(id, objects, sqlite))?;
                    eprintln!("bench: {}", row.progress());
                    rows.push(row);
                }
            }
        }
        if wants("python") {
            for (id, objects, _) in self.selected(cli) {
                let row = median(cli.repeat, || self.python(cli, Source::Own, id, objects))?;
                eprintln!("bench: {}", row.progress());
                rows.push(row);
            }
        }
        if wants("nginx") {
            match &self.nginx_missing {
                Some(missing) => rows.push(skipped("nginx rows", missing)),
                None => {
                    for (id, objects, _) in self.selected(cli).filter(|(_, _, g)| *g) {
                        let import = median(cli.repeat, || {
                            Ok(self.host_import(Source::Nginx, id, objects, true)?.0)
                        })?;
                        let python =
                            median(cli.repeat, || self.python(cli, Source::Nginx, id, objects))?;
                        for row in [import, python] {
                            eprintln!("bench: {}", row.progress());
                            rows.push(row);
                        }
                    }
                }
            }
        }
        if wants("query") {
            match &largest {
                Some((dir, id, objects)) => {
                    for row in medians(cli.repeat, || self.query(dir, id, *objects))? {
                        eprintln!("bench: {}", row.progress());
                        rows.push(row);
                    }
                }
                None => rows.push(skipped("retrieve query", "needs the import row")),
            }
        }
        if wants("startup") {
            rows.extend(self.startup(cli.startup_iterations)?);
        }
        Ok(rows)
    }

    /// Collections of the selected rows: generated ones with `import`,
    /// ATT&CK with `attack`.
    /// The collections the native and Python rows run on: every generated
    /// size, and ATT&CK when its row is asked for.
    fn selected<'a>(&'a self, cli: &'a Cli) -> impl Iterator<Item = (&'a str, u64, bool)> + 'a {
        self.collections
            .iter()
            .filter(move |(_, _, generated)| *generated || cli.rows.iter().any(|r| r == "attack"))
            .map(|(id, n, generated)| (id.as_str(), *n, *generated))
    }

    fn label(id: &str, objects: u64, generated: bool) -> String {
        if generated {
            format!("{objects} generated")
        } else {
            let _ = id;
            "ATT&CK 2.0".into()
        }
    }

    fn host_import(
        &self,
        source: Source,
        id: &str,
        objects: u64,
        generated: bool,
    ) -> Result<(Row, PathBuf)> {
        let via = source.suffix();
        let dir = self.work.join(format!("import-{id}{via}"));
        // Each run imports into an empty store.
        let _ = std::fs::remove_dir_all(&dir);
        let url = self.url(source, id)?;
        measure::run(
            self.host_command(&dir)
                .args(["config", "add", id, "--collection-url", &url])
                .args(["--allow-private", "--page-size", "1000"]),
            self.log(&format!("config-{id}"))?,
            CHILD_TIMEOUT,
        )?;
        let (m, bytes) = self.counting_bytes(source, id, || {
            measure::run(
                self.host_command(&dir)
                    .args(["import", id, "--format", "json"]),
                self.log(&format!("import-{id}{via}"))?,
                CHILD_TIMEOUT,
            )
        })?;
        let outcome: serde_json::Value = serde_json::from_slice(&m.stdout)
            .with_context(|| format!("import {id} printed no JSON"))?;
        let report = find(&outcome, "report").context("no report in the import's output")?;
        let stored = report["stored"].as_u64().unwrap_or(0);
        let rejected = report["rejected_count"].as_u64().unwrap_or(0);
        let converted = if generated {
            ""
        } else {
            "; STIX 2.0 objects converted to 2.1"
        };
        if generated {
            ensure!(
                stored == objects,
                "import {id} stored {stored} of {objects}: {outcome}"
            );
        }
        let row = Row::of(
            format!(
                "taxii-host import, {}{}",
                source.label(),
                Self::label(id, objects, generated)
            ),
            objects,
            &m,
            Some(bytes),
        )
        .note(format!(
            "wasm plugin, SQLite on disk; {stored} stored, {rejected} rejected{converted}"
        ));
        Ok((row, dir))
    }

    fn native(&self, id: &str, objects: u64, sqlite: bool) -> Result<Row> {
        let exe = std::env::current_exe()?;
        let mut command = Command::new(exe);
        command.args(["native", "--url", &self.server.collection_url(id)]);
        let dir = self.work.join(format!("native-{id}"));
        if sqlite {
            let _ = std::fs::remove_dir_all(&dir);
            command.arg("--data-dir").arg(&dir);
        }
        let before = self.served_bytes();
        let stderr = self.log(&format!("native-{id}"))?;
        let m = measure::run(&command, stderr, CHILD_TIMEOUT)?;
        let bytes = self.served_bytes() - before;
        let result: serde_json::Value = serde_json::from_slice(&m.stdout)?;
        let stored = result["stored"].as_u64().unwrap_or(0);
        ensure!(
            result["complete"].as_bool() == Some(true),
            "native import of {id} incomplete: {result}"
        );
        let (what, note) = if sqlite {
            (
                "SQLite on disk",
                "same code as the plugin, native; host's SQLite store",
            )
        } else {
            (
                "no store",
                "fetch, parse, check and key only; nothing written",
            )
        };
        let _ = std::fs::remove_dir_all(&dir);
        Ok(Row::of(
            format!(
                "native plugin code, {}, {what}",
                Self::label(id, objects, id != "attack")
            ),
            objects,
            &m,
            Some(bytes),
        )
        .note(match sqlite {
            true => format!("{note}; {stored} stored"),
            false => format!("{note}; {stored} found new"),
        }))
    }

    fn python(&self, cli: &Cli, source: Source, id: &str, objects: u64) -> Result<Row> {
        let python = cli
            .python
            .clone()
            .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
        let name = format!(
            "taxii2-client as_pages, {}{}",
            source.label(),
            Self::label(id, objects, id != "attack")
        );
        if !python.exists() {
            return Ok(skipped(
                &name,
                &format!("{} is missing: run scripts/setup-python", python.display()),
            ));
        }
        let script = repo_root().join("bench/python/taxii2_client_pages.py");
        let url = self.url(source, id)?;
        let (m, bytes) = self.counting_bytes(source, id, || {
            measure::run(
                Command::new(python).arg(script).arg(&url).arg("1000"),
                self.log(&format!("python-{id}{}", source.suffix()))?,
                CHILD_TIMEOUT,
            )
        })?;
        let result: serde_json::Value = serde_json::from_slice(&m.stdout)?;
        let parsed = result["objects"].as_u64().unwrap_or(0);
        ensure!(
            parsed == objects,
            "taxii2-client read {parsed} of {objects} objects: {result}"
        );
        Ok(Row::of(name, objects, &m, Some(bytes))
            .note("fetch and json-parse every page, nothing stored"))
    }

    fn query(&self, dir: &Path, id: &str, objects: u64) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        let generated: usize = id.trim_start_matches("gen").parse().unwrap_or(0);
        let indicators = data::generated_count_of("indicator", generated) as u64;
        for (flags, expected, label) in [
            (vec![], objects, "all"),
            (vec!["--type", "indicator"], indicators, "--type indicator"),
        ] {
            let m = measure::run(
                self.host_command(dir)
                    .args(["retrieve", "query", id, "--format", "jsonl"])
                    .args(&flags),
                self.log(&format!("query-{id}"))?,
                CHILD_TIMEOUT,
            )?;
            ensure!(
                m.stdout_lines == expected,
                "retrieve query {label} printed {} lines, expected {expected}",
                m.stdout_lines
            );
            rows.push(
                Row::of(
                    format!("taxii-host retrieve query --format jsonl, {objects} stored, {label}"),
                    expected,
                    &m,
                    Some(m.stdout_bytes),
                )
                .note("objects/s and MB/s of output, read through a pipe"),
            );
        }
        Ok(rows)
    }

    fn startup(&self, iterations: usize) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        let cache = self.work.join("startup-cache");
        let s = startup::measure(&cache, iterations)?;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let line = |name: &str, d: Duration, note: String| Row {
            name: name.into(),
            objects: 0,
            seconds: d.as_secs_f64(),
            objects_per_second: 0.0,
            mb_per_second: None,
            peak_rss_mb: None,
            cpu_seconds: None,
            note,
        };
        rows.push(line(
            "start-up: compile the plugin (empty cache, once)",
            s.first_compile,
            format!("{:.1} ms", ms(s.first_compile)),
        ));
        rows.push(line(
            "start-up: engine and linker",
            s.engine,
            format!("{:.3} ms, median of {}", ms(s.engine), iterations.min(200)),
        ));
        rows.push(line(
            "start-up: load the cached component",
            s.load_cached,
            format!(
                "{:.3} ms, median of {} (deserialize_file + instantiate_pre)",
                ms(s.load_cached),
                iterations.min(200)
            ),
        ));
        rows.push(line(
            "start-up: instantiate per run",
            s.instantiate,
            format!(
                "{:.3} ms median of {}; {:.0} instantiations/s",
                ms(s.instantiate),
                s.iterations,
                s.instantiations_per_second
            ),
        ));
        // A whole process: what `taxii-host` costs before the plugin runs.
        let dir = self.work.join("warm");
        let mut walls = Vec::new();
        let mut rss = 0;
        for _ in 0..20 {
            let m = measure::run(
                self.host_command(&dir).args(["plugin", "describe"]),
                Stdio::null(),
                CHILD_TIMEOUT,
            )?;
            rss = rss.max(m.max_rss);
            walls.push(m.wall);
        }
        walls.sort();
        let median = walls[walls.len() / 2];
        let mut row = line(
            "start-up: process `taxii-host plugin describe`",
            median,
            format!(
                "{:.1} ms median of 20, whole process, cached plugin",
                ms(median)
            ),
        );
        row.peak_rss_mb = Some(rss as f64 / 1e6);
        rows.push(row);
        Ok(rows)
    }
}

fn skipped(name: &str, why: &str) -> Row {
    Row {
        name: name.into(),
        objects: 0,
        seconds: 0.0,
        objects_per_second: 0.0,
        mb_per_second: None,
        peak_rss_mb: None,
        cpu_seconds: None,
        note: format!("SKIPPED: {why}"),
    }
}

/// The first value under `key`, searching depth first.
fn find<'a>(value: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    match value {
        serde_json::Value::Object(map) => map
            .get(key)
            .or_else(|| map.values().find_map(|v| find(v, key))),
        serde_json::Value::Array(items) => items.iter().find_map(|v| find(v, key)),
        _ => None,
    }
}

fn print_table(rows: &[Row]) {
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(3);
    println!(
        "| {:<width$} | {:>9} | {:>8} | {:>10} | {:>7} | {:>8} | {:>7} | note |",
        "row", "objects", "seconds", "objects/s", "MB/s", "peak RSS", "CPU s"
    );
    println!(
        "|{}|{}|{}|{}|{}|{}|{}|---|",
        "-".repeat(width + 2),
        "-".repeat(11),
        "-".repeat(10),
        "-".repeat(12),
        "-".repeat(9),
        "-".repeat(10),
        "-".repeat(9)
    );
    let opt = |v: Option<f64>, digits: usize| {
        v.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
    };
    for row in rows {
        let rate = if row.objects > 0 {
            format!("{:.0}", row.objects_per_second)
        } else {
            "-".into()
        };
        println!(
            "| {:<width$} | {:>9} | {:>8.3} | {:>10} | {:>7} | {:>8} | {:>7} | {} |",
            row.name,
            row.objects,
            row.seconds,
            rate,
            opt(row.mb_per_second, 1),
            opt(row.peak_rss_mb, 1).to_string()
                + if row.peak_rss_mb.is_some() { " MB" } else { "" },
            opt(row.cpu_seconds, 2),
            row.note
        );
    }
    if rows.iter().any(|r| r.note.starts_with("SKIPPED")) {
        println!("(rows marked SKIPPED were not measured)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, seconds: f64) -> Row {
        Row {
            name: name.into(),
            objects: 100,
            seconds,
            objects_per_second: 100.0 / seconds,
            mb_per_second: None,
            peak_rss_mb: None,
            cpu_seconds: None,
            note: "n".into(),
        }
    }

    #[test]
    fn each_row_is_the_median_of_its_own_runs() {
        let mut times = [[3.0, 10.0], [1.0, 30.0], [2.0, 20.0]].into_iter();
        let rows = medians(3, || {
            let [a, b] = times.next().unwrap();
            Ok(vec![row("a", a), row("b", b)])
        })
        .unwrap();
        assert_eq!((rows[0].name.as_str(), rows[0].seconds), ("a", 2.0));
        assert_eq!((rows[1].name.as_str(), rows[1].seconds), ("b", 20.0));
        assert_eq!(rows[0].note, "n; median of 3 runs (33-100 objects/s)");
        assert_eq!(median(1, || Ok(row("c", 4.0))).unwrap().note, "n");
    }
}
