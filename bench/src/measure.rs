//! Running a command as a child and measuring it: wall time, CPU time and
//! peak RSS from `wait4`'s resource usage, which the kernel keeps for the
//! child alone (the server in this process is not counted; see [`run`]).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What a child did.
#[derive(Debug, Clone)]
pub struct Measured {
    /// From spawn to exit.
    pub wall: Duration,
    /// User CPU time.
    pub user: Duration,
    /// System CPU time.
    pub system: Duration,
    /// Peak resident set size, bytes.
    pub max_rss: u64,
    /// Bytes written to stdout.
    pub stdout_bytes: u64,
    /// Lines written to stdout.
    pub stdout_lines: u64,
    /// The first MiB of stdout.
    pub stdout: Vec<u8>,
}

/// Stdout kept for parsing.
const KEPT: usize = 1 << 20;

/// What the helper writes: the measured child's resource usage.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Usage {
    wall_us: u64,
    user_us: u64,
    system_us: u64,
    max_rss_kb: u64,
    status: i32,
    killed: bool,
}

/// Writes dirty pages out before a measured run, untimed: a 1,000,000
/// object import leaves about 1.4 GB for the kernel to write back, which
/// would otherwise slow whatever row comes next.
fn settle() {
    let _ = Command::new("sync").status();
}

/// Runs `command` to its end (killing it after `timeout`); fails unless it
/// exits with status 0. Stdout is read and counted; stderr goes to
/// `stderr`.
///
/// The command is started by a helper (this program, `measured`), a fresh
/// small process, not by this one: Linux carries the peak RSS of the
/// process that forks and execs a child into the child's `ru_maxrss`, so
/// a child of this process (which holds the servers' pages) would report
/// at least this process's size.
pub fn run(command: &Command, stderr: Stdio, timeout: Duration) -> Result<Measured> {
    settle();
    let program = format!("{command:?}");
    let usage_file = tempfile_path()?;
    let mut wrapper = Command::new(std::env::current_exe()?);
    wrapper
        .arg("measured")
        .arg("--usage")
        .arg(&usage_file)
        .arg("--timeout-ms")
        .arg(timeout.as_millis().to_string())
        .arg("--")
        .arg(command.get_program())
        .args(command.get_args());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => wrapper.env(name, value),
            None => wrapper.env_remove(name),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapper.current_dir(dir);
    }
    wrapper
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    let mut child = wrapper
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let mut stdout = child.stdout.take().context("no stdout")?;
    let (mut stdout_bytes, mut stdout_lines, mut kept) = (0u64, 0u64, Vec::new());
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        match stdout.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                stdout_bytes += n as u64;
                stdout_lines += buffer[..n].iter().filter(|b| **b == b'\n').count() as u64;
                if kept.len() < KEPT {
                    let room = (KEPT - kept.len()).min(n);
                    kept.extend_from_slice(&buffer[..room]);
                }
            }
        }
    }
    let helper = child.wait()?;
    let usage = std::fs::read(&usage_file);
    let _ = std::fs::remove_file(&usage_file);
    if !helper.success() {
        bail!("the measuring helper failed ({helper}) for {program}");
    }
    let usage: Usage = serde_json::from_slice(&usage?)?;
    if usage.killed {
        bail!("{program} took longer than {timeout:?} and was killed");
    }
    if usage.status != 0 {
        bail!(
            "{program} failed (exit status {}); stdout: {}",
            usage.status,
            String::from_utf8_lossy(&kept[..kept.len().min(2000)])
        );
    }
    Ok(Measured {
        wall: Duration::from_micros(usage.wall_us),
        user: Duration::from_micros(usage.user_us),
        system: Duration::from_micros(usage.system_us),
        max_rss: usage.max_rss_kb * 1024,
        stdout_bytes,
        stdout_lines,
        stdout: kept,
    })
}

fn tempfile_path() -> Result<std::path::PathBuf> {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Ok(std::env::temp_dir().join(format!("taxii-feed-bench-{}-{n}.usage", std::process::id())))
}

/// The helper: runs `program` with inherited stdio, waits for it with
/// `wait4`, kills it after `timeout`, and writes its [`Usage`] to
/// `usage_file`.
pub fn helper(usage_file: &Path, timeout: Duration, program: &[String]) -> Result<()> {
    let (first, rest) = program.split_first().context("no program to measure")?;
    let start = Instant::now();
    let child = Command::new(first)
        .args(rest)
        .spawn()
        .with_context(|| format!("cannot start {first}"))?;
    let pid = child.id() as libc::pid_t;
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + timeout;
            while !done.load(Ordering::Relaxed) {
                if Instant::now() >= deadline {
                    // SAFETY: `pid` is our child, not yet reaped (the flag
                    // is set right after wait4 returns).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        })
    };
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; the pointers are to live locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let killed = watchdog.join().unwrap_or(false);
    // The child is reaped; std must not wait for it again.
    drop(child);
    if waited != pid {
        bail!("wait4 failed for {first}");
    }
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    let usage = Usage {
        wall_us: wall.as_micros() as u64,
        user_us: micros(usage.ru_utime),
        system_us: micros(usage.ru_stime),
        max_rss_kb: usage.ru_maxrss as u64,
        status: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
        killed,
    };
    std::fs::write(usage_file, serde_json::to_vec(&usage)?)?;
    Ok(())
}
