//! The project's Python tools, run from the virtualenv that
//! `scripts/setup-python` makes (it is run once per test process).

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result, bail};

use crate::{repo_root, target_dir};

/// The virtualenv's `bin/` directory, set up on first use.
pub fn venv_bin() -> PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| PathBuf::from(crate::project_script("setup-python", &[])).join("bin"))
        .clone()
}

/// A command for one of the virtualenv's programs.
pub fn venv_command(program: &str) -> Command {
    Command::new(venv_bin().join(program))
}

/// Runs a script of `tests/python` and returns its stdout.
pub fn run_script(script: &str, args: &[&str]) -> Result<String> {
    let output = venv_command("python")
        .arg(repo_root().join("tests/python").join(script))
        .args(args)
        .output()
        .with_context(|| format!("cannot run {script}"))?;
    if !output.status.success() {
        bail!(
            "{script} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// A generated bundle of valid STIX 2.1 objects (every version), made once
/// and kept in `target/test-data`: the generator is deterministic.
/// `after` names an earlier batch whose objects this one must follow.
pub fn generated_bundle(count: u32, seed: u32, after: Option<&PathBuf>) -> PathBuf {
    // One generation at a time in this process; other processes write to
    // temporaries of their own and rename, which is atomic.
    static GENERATING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = GENERATING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = target_dir().join("test-data");
    std::fs::create_dir_all(&dir).expect("cannot create target/test-data");
    let path = dir.join(format!("stix-{count}-seed{seed}.json"));
    if path.exists() {
        return path;
    }
    let temporary = dir.join(format!(
        ".stix-{count}-seed{seed}.{}.tmp",
        std::process::id()
    ));
    let mut args = vec![
        "--count".to_string(),
        count.to_string(),
        "--seed".into(),
        seed.to_string(),
        "--out".into(),
        temporary.display().to_string(),
    ];
    if let Some(after) = after {
        args.extend(["--after".to_string(), after.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_script("gen_stix.py", &args).expect("generating STIX data failed");
    std::fs::rename(&temporary, &path).expect("cannot move the generated data in place");
    path
}

/// Validates a STIX 2.1 document with `stix2-validator`; returns its
/// report when it finds errors.
pub fn validate_stix(path: &std::path::Path) -> Result<()> {
    let output = venv_command("stix2_validator")
        .args(["--version", "2.1"])
        .arg(path)
        .output()
        .context("cannot run stix2_validator")?;
    let report = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || report.contains("[X]") {
        bail!("stix2-validator rejects {}:\n{report}", path.display());
    }
    Ok(())
}
