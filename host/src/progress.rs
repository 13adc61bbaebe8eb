//! What a run has done so far, counted by the host as it happens: HTTP
//! answers in the request hook, committed entries in the key-value store.
//!
//! The plugin reports only when it ends; these counters feed the progress
//! bar of `import`, its log lines when not on a terminal, and the run
//! history when a run is stopped before it could report.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::feeds::CURSOR_KEY;
use crate::store::{OBJECT_PREFIX, QUARANTINE_PREFIX};

/// The live counters of one run.
#[derive(Debug)]
pub struct RunProgress {
    feed: String,
    log_pages: bool,
    started: Instant,
    requests: AtomicU64,
    retries: AtomicU64,
    waited_ms: AtomicU64,
    pages: AtomicU64,
    objects: AtomicU64,
    quarantined: AtomicU64,
    refused_on_stop: AtomicBool,
    statuses: Mutex<BTreeMap<String, u64>>,
}

/// The counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProgressSnapshot {
    /// Requests sent, retries included.
    pub requests: u64,
    /// Requests sent again after a failure or a `Retry-After`.
    pub retries: u64,
    /// Time spent waiting for the server's limits, in milliseconds.
    pub waited_ms: u64,
    /// Pages of objects received (2xx answers to Get Objects).
    pub pages: u64,
    /// Object versions committed to the store.
    pub objects: u64,
    /// Rejected objects newly put in the quarantine.
    pub quarantined: u64,
    /// Answers by HTTP status, and failures without one by name
    /// (`timeout`, `connection-refused`, ...).
    pub statuses: BTreeMap<String, u64>,
    /// Time since the run started, in milliseconds.
    pub elapsed_ms: u64,
}

impl RunProgress {
    /// Counters for a run of `feed`; with `log_pages`, each committed page
    /// is logged at `info` (for `import` when stderr is not a terminal).
    pub fn new(feed: &str, log_pages: bool) -> Self {
        Self {
            feed: feed.to_string(),
            log_pages,
            started: Instant::now(),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            waited_ms: AtomicU64::new(0),
            pages: AtomicU64::new(0),
            objects: AtomicU64::new(0),
            quarantined: AtomicU64::new(0),
            refused_on_stop: AtomicBool::new(false),
            statuses: Mutex::default(),
        }
    }

    /// A request was sent.
    pub fn request_sent(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// An answer arrived for `path`.
    pub fn answered(&self, status: u16, path: &str) {
        self.count_status(status.to_string());
        if (200..300).contains(&status) && path.contains("/objects/") {
            self.pages.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A request got no answer; `label` names why, e.g. `timeout`.
    pub fn failed(&self, label: &str) {
        self.count_status(label.to_string());
    }

    /// A request will be sent again after waiting.
    pub fn retrying(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Time spent waiting before a request (rate, `Retry-After`, backoff).
    pub fn waited(&self, wait: Duration) {
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        self.waited_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// A request was refused because the host is stopping.
    pub fn refused_on_stop(&self) {
        self.refused_on_stop.store(true, Ordering::Relaxed);
    }

    /// Whether a request was refused because the host is stopping.
    pub fn was_stopped(&self) -> bool {
        self.refused_on_stop.load(Ordering::Relaxed)
    }

    /// Entries were committed to the store in one transaction.
    pub fn committed(&self, entries: &[(String, Vec<u8>)]) {
        let count = |prefix: &str| {
            entries
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .count()
        };
        let objects = count(OBJECT_PREFIX) as u64;
        let quarantined = count(QUARANTINE_PREFIX) as u64;
        let total = self.objects.fetch_add(objects, Ordering::Relaxed) + objects;
        self.quarantined.fetch_add(quarantined, Ordering::Relaxed);
        // A batch with no objects and no cursor is plugin state (such as the
        // TAXII version it recorded), not a page.
        let page = objects + quarantined > 0 || entries.iter().any(|(k, _)| k == CURSOR_KEY);
        if self.log_pages && page {
            let pages = self.pages.load(Ordering::Relaxed);
            let rate = per_second(total, self.started.elapsed());
            tracing::info!(
                feed = %self.feed,
                "page {pages} committed: {objects} new objects, {total} in this run ({rate:.0}/s)"
            );
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            waited_ms: self.waited_ms.load(Ordering::Relaxed),
            pages: self.pages.load(Ordering::Relaxed),
            objects: self.objects.load(Ordering::Relaxed),
            quarantined: self.quarantined.load(Ordering::Relaxed),
            statuses: self.statuses().clone(),
            elapsed_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn count_status(&self, label: String) {
        *self.statuses().entry(label).or_default() += 1;
    }

    fn statuses(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        // A panic while counting leaves a usable map: take it anyway.
        self.statuses.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(0.001)
}

/// `200×12 429×1 timeout×2`.
pub fn format_statuses(statuses: &BTreeMap<String, u64>) -> String {
    if statuses.is_empty() {
        return "-".into();
    }
    statuses
        .iter()
        .map(|(status, n)| format!("{status}×{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The bar on screen, if any: log lines are written above it.
static ACTIVE_BAR: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// Makes the log's writers: stderr, above the progress bar when one is on
/// screen (so that a log line never lands in the middle of the bar).
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrAboveBar;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrAboveBar {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::new())
    }
}

/// One log event, written to stderr when dropped.
#[derive(Debug)]
pub struct LogLine(Vec<u8>);

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        use std::io::Write as _;
        let bar = ACTIVE_BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let write = || {
            let _ = std::io::stderr().lock().write_all(&self.0);
        };
        match bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

/// A progress bar on stderr, redrawn from a run's counters until dropped.
pub struct ProgressBar {
    bar: indicatif::ProgressBar,
    stop: Arc<AtomicBool>,
    updater: Option<std::thread::JoinHandle<()>>,
}

impl ProgressBar {
    /// A bar when stderr is a terminal; `None` otherwise (the run then logs
    /// a line per page instead).
    pub fn on_terminal(progress: &Arc<RunProgress>) -> Option<Self> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = indicatif::ProgressBar::new_spinner();
        let style = indicatif::ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_prefix(progress.feed.clone());
        bar.enable_steady_tick(Duration::from_millis(120));
        let stop = Arc::new(AtomicBool::new(false));
        let updater = {
            let (bar, stop, progress) = (bar.clone(), stop.clone(), progress.clone());
            std::thread::Builder::new()
                .name("progress".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        bar.set_message(bar_message(&progress.snapshot()));
                        std::thread::sleep(Duration::from_millis(100));
                    }
                })
                .ok()
        };
        *ACTIVE_BAR.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
        Some(Self { bar, stop, updater })
    }
}

impl Drop for ProgressBar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(updater) = self.updater.take() {
            let _ = updater.join();
        }
        *ACTIVE_BAR.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.bar.finish_and_clear();
    }
}

/// `pages 12 · objects 3400 · 250 objects/s · HTTP 200×13`.
pub fn bar_message(s: &ProgressSnapshot) -> String {
    let rate = per_second(s.objects, Duration::from_millis(s.elapsed_ms));
    let mut message = format!(
        "pages {} · objects {} · {rate:.0} objects/s · HTTP {}",
        s.pages,
        s.objects,
        format_statuses(&s.statuses)
    );
    if s.retries > 0 {
        message.push_str(&format!(" · retries {}", s.retries));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_pages_objects_quarantine_and_statuses() {
        let progress = RunProgress::new("feed", false);
        progress.answered(200, "/api/collections/c/");
        progress.answered(200, "/api/collections/c/objects/");
        progress.answered(429, "/api/collections/c/objects/");
        progress.failed("timeout");
        progress.committed(&[
            ("object/a/1".into(), vec![]),
            ("object/b/1".into(), vec![]),
            ("quarantine/ff".into(), vec![]),
            ("state/cursor".into(), vec![]),
        ]);
        let s = progress.snapshot();
        assert_eq!((s.pages, s.objects, s.quarantined), (1, 2, 1));
        assert_eq!(format_statuses(&s.statuses), "200×2 429×1 timeout×1");
        assert!(bar_message(&s).starts_with("pages 1 · objects 2 · "));
    }
}
