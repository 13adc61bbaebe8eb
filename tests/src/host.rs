//! The `taxii-host` binary, run as a user would, with a data directory of
//! the test's own.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::target_dir;

/// The `taxii-host` binary built next to the test binaries.
pub fn host_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TAXII_HOST_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("the test binary has a path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in target/<profile>/deps");
    let path = profile_dir.join("taxii-host");
    assert!(
        path.exists(),
        "{} is missing: the end-to-end tests are tests of the host package, which \
         builds it (`cargo test -p taxii-host`)",
        path.display()
    );
    path
}

/// A host with its own data directory.
pub struct Host {
    /// The data directory.
    pub data_dir: tempfile::TempDir,
    /// Extra environment for every command.
    pub env: Vec<(String, String)>,
}

/// A command's result, with its output as text.
#[derive(Debug)]
pub struct Run {
    /// Whether it exited with 0.
    pub success: bool,
    /// The exit code.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Self {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Host {
    /// A host with an empty data directory.
    pub fn new() -> Self {
        Self {
            data_dir: tempfile::tempdir().expect("cannot create a data directory"),
            env: Vec::new(),
        }
    }

    /// The command, ready to run.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(host_binary());
        command
            .args(args)
            .env("TAXII_HOST_DATA_DIR", self.data_dir.path())
            .env("TAXII_HOST_CACHE_DIR", target_dir().join("test-cache"))
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs a command and returns what it did.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(args)
            .output()
            .expect("cannot run taxii-host")
            .into()
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.command(args);
        let run: Run = command.output().expect("cannot run taxii-host").into();
        assert!(
            run.success,
            "{command:?} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
            run.code, run.stdout, run.stderr
        );
        run.stdout
    }

    /// Adds a feed with a password file, allowed to reach this machine.
    pub fn add_feed(&self, name: &str, url: &str, user: &str, password_file: &std::path::Path) {
        self.ok([
            "config",
            "add",
            name,
            "--collection-url",
            url,
            "--username",
            user,
            "--password-file",
            &password_file.display().to_string(),
            "--allow-private",
        ]);
    }

    /// Imports a feed and returns its JSON outcome, failed or not.
    pub fn import(&self, name: &str) -> Result<Value> {
        let run = self.run(["import", name, "--format", "json"]);
        serde_json::from_str(&run.stdout)
            .with_context(|| format!("import printed no JSON:\n{}\n{}", run.stdout, run.stderr))
    }

    /// Imports a feed that must succeed; returns its report.
    pub fn import_ok(&self, name: &str) -> Value {
        let outcome = self.import(name).unwrap();
        assert_eq!(outcome["status"], "ok", "{outcome:#}");
        outcome["report"].clone()
    }

    /// Every object version in a store (revoked and expired ones too), as
    /// JSON values.
    pub fn objects(&self, store: &str) -> Vec<Value> {
        self.jsonl([
            "retrieve",
            "query",
            store,
            "--versions",
            "all",
            "--include",
            "all",
            "--format",
            "jsonl",
        ])
    }

    /// Runs a command that must succeed and prints JSON lines; returns them.
    pub fn jsonl<I, S>(&self, args: I) -> Vec<Value>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.ok(args)
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }

    /// Every object version in a store as (id, modified).
    pub fn versions(&self, store: &str) -> BTreeSet<(String, Option<String>)> {
        versions_of(&self.objects(store))
    }

    /// [`Host::versions`], or nothing while the store does not exist yet
    /// (its feed has not started a run).
    pub fn versions_so_far(&self, store: &str) -> BTreeSet<(String, Option<String>)> {
        let stores = self.ok(["retrieve", "list", "--format", "json"]);
        let listed: Value = serde_json::from_str(&stores).expect("retrieve list prints JSON");
        let exists = listed
            .as_array()
            .is_some_and(|all| all.iter().any(|s| s["name"] == store));
        match exists {
            true => self.versions(store),
            false => BTreeSet::new(),
        }
    }
}

impl Default for Host {
    fn default() -> Self {
        Self::new()
    }
}

/// The files under `dir` (in subdirectories too) that contain `secret`,
/// except those in `skip` (the files the test wrote the secrets into).
pub fn files_containing(dir: &Path, secret: &str, skip: &[&Path]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a readable directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            found.extend(files_containing(&path, secret, skip));
        } else if !skip.contains(&path.as_path()) {
            let bytes = std::fs::read(&path).expect("a readable file");
            if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                found.push(path);
            }
        }
    }
    found
}

/// (id, modified) of objects.
pub fn versions_of(objects: &[Value]) -> BTreeSet<(String, Option<String>)> {
    objects
        .iter()
        .map(|o| {
            (
                o["id"].as_str().unwrap_or_default().to_string(),
                o["modified"].as_str().map(String::from),
            )
        })
        .collect()
}

/// The objects of a bundle file.
pub fn bundle_objects(path: &std::path::Path) -> Result<Vec<Value>> {
    let bundle: Value = serde_json::from_slice(&std::fs::read(path)?)?;
    match bundle["objects"].as_array() {
        Some(objects) => Ok(objects.clone()),
        None => bail!("{} is not a bundle", path.display()),
    }
}
