//! Stopping on SIGINT and SIGTERM without corrupting anything.
//!
//! Stopping has two steps. *Finishing*: no new run starts, waits for a
//! rate limit or a backoff end at once, and a run's next request is refused,
//! so each run ends right after the pages it has read are committed.
//! *Abandoning*: runs still going are dropped where they are; what they had
//! not committed is lost, what they had committed stays, and the next run
//! resumes from the stored cursor. A second signal abandons at once.

use tokio_util::sync::CancellationToken;

/// A shared stop request: cheap to clone, every clone sees the same state.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    finish: CancellationToken,
    abandon: CancellationToken,
}

impl Shutdown {
    /// Nothing asked yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks runs to end after their current page.
    pub fn finish(&self) {
        self.finish.cancel();
    }

    /// Asks runs to end now (implies finishing).
    pub fn abandon(&self) {
        self.finish.cancel();
        self.abandon.cancel();
    }

    /// Whether stopping was asked.
    pub fn is_finishing(&self) -> bool {
        self.finish.is_cancelled()
    }

    /// Whether abandoning was asked.
    pub fn is_abandoning(&self) -> bool {
        self.abandon.is_cancelled()
    }

    /// Completes when stopping is asked.
    pub async fn finishing(&self) {
        self.finish.cancelled().await;
    }

    /// Completes when abandoning is asked.
    pub async fn abandoning(&self) {
        self.abandon.cancelled().await;
    }

    /// Turns SIGINT and SIGTERM into this stop request: the first finishes,
    /// the second abandons. Call inside a tokio runtime.
    pub fn listen_for_signals(&self) -> anyhow::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let shutdown = self.clone();
        tokio::spawn(async move {
            for step in 0.. {
                let name = tokio::select! {
                    _ = interrupt.recv() => "SIGINT",
                    _ = terminate.recv() => "SIGTERM",
                };
                if step == 0 {
                    tracing::warn!(
                        "{name}: stopping after the pages being read are committed; \
                         send it again to stop at once"
                    );
                    shutdown.finish();
                } else {
                    tracing::warn!("{name} again: abandoning the runs still going");
                    shutdown.abandon();
                    break;
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoning_implies_finishing_and_clones_share_the_state() {
        let shutdown = Shutdown::new();
        let clone = shutdown.clone();
        assert!(!clone.is_finishing());
        shutdown.finish();
        assert!(clone.is_finishing() && !clone.is_abandoning());
        shutdown.abandon();
        assert!(clone.is_abandoning());
    }
}
