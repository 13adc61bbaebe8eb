//! The limits of one run, and how a run that hits one is stopped.
//!
//! | limit | enforced by | when hit |
//! |---|---|---|
//! | memory | the store's resource limiter | the plugin's allocation traps |
//! | CPU | epoch ticks counted only while the plugin executes | the plugin traps |
//! | run time | a deadline on the whole call, and the epoch callback | the call is dropped |
//! | response size | the HTTP body the plugin reads | the read fails |
//! | pages | the plugin (`max-pages`), and the host's request count | the run ends |
//!
//! Whatever ends the run, pages committed before stay committed, and the
//! host and other runs carry on.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;

/// Default linear memory a plugin may use.
pub const DEFAULT_MEMORY_BYTES: u64 = 256 * 1024 * 1024;
/// Default time a plugin may spend executing.
pub const DEFAULT_CPU: Duration = Duration::from_secs(10 * 60);
/// Default wall-clock time of a run.
pub const DEFAULT_RUN_TIME: Duration = Duration::from_secs(60 * 60);
/// Default size of one HTTP response body.
pub const DEFAULT_RESPONSE_BYTES: u64 = 128 * 1024 * 1024;
/// Default pages per run.
pub const DEFAULT_PAGES: u32 = 10_000;

/// Requests a run may send beyond its pages (the collection resource,
/// retries after a failed page).
const EXTRA_REQUESTS: u64 = 16;

/// What one run may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Linear memory, in bytes.
    pub memory_bytes: u64,
    /// Time spent executing the plugin's code.
    pub cpu: Duration,
    /// Wall-clock time of the whole run.
    pub run_time: Duration,
    /// Bytes of one response body.
    pub response_bytes: u64,
    /// Pages of objects.
    pub pages: u32,
}

impl Default for RunLimits {
    fn default() -> Self {
        Self {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            cpu: DEFAULT_CPU,
            run_time: DEFAULT_RUN_TIME,
            response_bytes: DEFAULT_RESPONSE_BYTES,
            pages: DEFAULT_PAGES,
        }
    }
}

impl RunLimits {
    /// Requests the host lets a run send.
    pub fn requests(&self) -> u64 {
        u64::from(self.pages) + EXTRA_REQUESTS
    }
}

/// A limit that ended a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// `--max-memory`.
    Memory(u64),
    /// `--max-cpu`.
    Cpu(Duration),
    /// `--max-run-time`.
    RunTime(Duration),
    /// `--max-response-size`.
    ResponseSize(u64),
    /// `--max-pages` (as requests sent).
    Requests(u64),
}

impl LimitHit {
    /// The flag that raises this limit.
    pub fn flag(&self) -> &'static str {
        match self {
            Self::Memory(_) => "--max-memory",
            Self::Cpu(_) => "--max-cpu",
            Self::RunTime(_) => "--max-run-time",
            Self::ResponseSize(_) => "--max-response-size",
            Self::Requests(_) => "--max-pages",
        }
    }
}

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // In the units the size was most likely given in: `1KB` is shown
        // as 1 kB, `1KiB` as 1 KiB (not `0 MiB`).
        let size = |b: u64| {
            let size = bytesize::ByteSize::b(b);
            let shown = match !b.is_multiple_of(1024) && b.is_multiple_of(1000) {
                true => size.display().si().to_string(),
                false => size.display().iec().to_string(),
            };
            shown.replace(".0 ", " ")
        };
        match self {
            Self::Memory(b) => write!(f, "the memory limit ({})", size(*b)),
            Self::Cpu(d) => write!(f, "the CPU limit ({})", humantime::format_duration(*d)),
            Self::RunTime(d) => {
                write!(f, "the run time limit ({})", humantime::format_duration(*d))
            }
            Self::ResponseSize(b) => write!(f, "the response size limit ({})", size(*b)),
            Self::Requests(n) => write!(f, "the request limit ({n} requests)"),
        }
    }
}

/// What the host saw of a run while it went: shared by the HTTP hook, the
/// limiter and the runner.
#[derive(Debug, Default)]
pub struct RunWatch {
    hit: Mutex<Option<LimitHit>>,
    tls_failure: Mutex<Option<String>>,
    denied: AtomicU64,
    private_denied: std::sync::atomic::AtomicBool,
    requests: AtomicU64,
}

impl RunWatch {
    /// Records the first limit hit.
    pub fn hit(&self, limit: LimitHit) {
        let mut hit = self.hit.lock().unwrap_or_else(|e| e.into_inner());
        hit.get_or_insert(limit);
    }

    /// The limit that ended the run, if one did.
    pub fn limit_hit(&self) -> Option<LimitHit> {
        *self.hit.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records why a TLS connection failed (the last failure is kept).
    pub fn tls_failed(&self, detail: String) {
        *self.tls_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(detail);
    }

    /// The last TLS failure, if any.
    pub fn tls_failure(&self) -> Option<String> {
        self.tls_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counts a request the egress policy refused.
    pub fn deny(&self) {
        self.denied.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request refused because its address is private, loopback
    /// or link-local.
    pub fn deny_private(&self) {
        self.private_denied.store(true, Ordering::Relaxed);
        self.deny();
    }

    /// Whether a private address was refused.
    pub fn private_denied(&self) -> bool {
        self.private_denied.load(Ordering::Relaxed)
    }

    /// Requests refused.
    pub fn denied(&self) -> u64 {
        self.denied.load(Ordering::Relaxed)
    }

    /// Counts a request; returns how many were sent, this one included.
    pub fn count_request(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Caps the plugin's linear memory and records when it asks for more.
pub struct MemoryLimiter {
    limit: u64,
    watch: std::sync::Arc<RunWatch>,
}

impl MemoryLimiter {
    /// A limiter for `limit` bytes.
    pub fn new(limit: u64, watch: std::sync::Arc<RunWatch>) -> Self {
        Self { limit, watch }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limit {
            self.watch.hit(LimitHit::Memory(self.limit));
            wasmtime::bail!("{}", LimitHit::Memory(self.limit));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Counts the plugin's execution time in epoch ticks: the epoch callback
/// runs only while plugin code executes, once per tick.
#[derive(Debug)]
pub struct CpuMeter {
    ticks: u64,
    budget: u64,
    deadline: Instant,
}

impl CpuMeter {
    /// A meter allowing `cpu` of execution, ticking every `tick`, within a
    /// run that must end by `deadline`.
    pub fn new(cpu: Duration, tick: Duration, deadline: Instant) -> Self {
        let budget = (cpu.as_millis() / tick.as_millis().max(1)).max(1) as u64;
        Self {
            ticks: 0,
            budget,
            deadline,
        }
    }

    /// Called at each tick the plugin is executing: `Ok` to go on.
    pub fn tick(&mut self, limits: &RunLimits, watch: &RunWatch) -> Result<(), LimitHit> {
        self.ticks += 1;
        let hit = if self.ticks > self.budget {
            LimitHit::Cpu(limits.cpu)
        } else if Instant::now() >= self.deadline {
            LimitHit::RunTime(limits.run_time)
        } else {
            return Ok(());
        };
        watch.hit(hit);
        Err(hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_stops_at_the_budget_or_the_deadline() {
        let limits = RunLimits {
            cpu: Duration::from_millis(300),
            ..RunLimits::default()
        };
        let watch = RunWatch::default();
        let far = Instant::now() + Duration::from_secs(3600);
        let mut meter = CpuMeter::new(limits.cpu, Duration::from_millis(100), far);
        assert!((0..3).all(|_| meter.tick(&limits, &watch).is_ok()));
        assert_eq!(meter.tick(&limits, &watch), Err(LimitHit::Cpu(limits.cpu)));
        assert_eq!(watch.limit_hit(), Some(LimitHit::Cpu(limits.cpu)));

        let past = Instant::now();
        let mut late = CpuMeter::new(limits.cpu, Duration::from_millis(100), past);
        assert!(matches!(
            late.tick(&limits, &watch),
            Err(LimitHit::RunTime(_))
        ));
    }

    #[test]
    fn the_first_limit_hit_is_the_one_reported() {
        let watch = RunWatch::default();
        watch.hit(LimitHit::Memory(1));
        watch.hit(LimitHit::Cpu(Duration::ZERO));
        assert_eq!(watch.limit_hit(), Some(LimitHit::Memory(1)));
        let shown = |hit: LimitHit| hit.to_string();
        assert_eq!(
            shown(LimitHit::Memory(256 << 20)),
            "the memory limit (256 MiB)"
        );
        assert_eq!(shown(LimitHit::Memory(1024)), "the memory limit (1 KiB)");
        assert_eq!(shown(LimitHit::Memory(1000)), "the memory limit (1 kB)");
        assert_eq!(
            shown(LimitHit::Memory(5_000_000)),
            "the memory limit (5 MB)"
        );
        assert_eq!(
            shown(LimitHit::ResponseSize(1536)),
            "the response size limit (1.5 KiB)"
        );
    }

    #[test]
    fn memory_beyond_the_limit_is_refused() {
        let watch = std::sync::Arc::new(RunWatch::default());
        let mut limiter = MemoryLimiter::new(1 << 20, watch.clone());
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        assert!(limiter.memory_growing(0, (1 << 20) + 1, None).is_err());
        assert_eq!(watch.limit_hit(), Some(LimitHit::Memory(1 << 20)));
    }
}
