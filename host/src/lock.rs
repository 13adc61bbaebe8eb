//! Advisory file locks in the data directory, so that two processes never
//! run the same feed at once and only one `serve` runs per tenant.
//!
//! The operating system releases a lock when its process ends, however it
//! ends (a SIGKILL included), so a crash never leaves a feed locked.

use std::fs::{File, TryLockError};
use std::path::Path;

use anyhow::{Context, Result};

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("{0}")]
    Busy(String),
    /// The lock file could not be opened.
    #[error(transparent)]
    Io(#[from] anyhow::Error),
}

impl Lock {
    /// Takes the lock of a feed's runs.
    pub fn feed(data_dir: &Path, tenant: &str, feed: &str) -> Result<Self, LockError> {
        Self::take(data_dir, &format!("feed-{tenant}.{feed}"), || {
            format!(
                "feed {feed} is being imported by another taxii-host process (an `import` \
                 or `serve` on this data directory); wait for it to finish"
            )
        })
    }

    /// Takes the lock of a tenant's scheduler.
    pub fn scheduler(data_dir: &Path, tenant: &str) -> Result<Self, LockError> {
        Self::take(data_dir, &format!("serve-{tenant}"), || {
            format!(
                "another `taxii-host serve` runs the feeds of tenant {tenant} on this data \
                 directory; stop it first (one scheduler per tenant)"
            )
        })
    }

    fn take(data_dir: &Path, name: &str, busy: impl FnOnce() -> String) -> Result<Self, LockError> {
        let dir = data_dir.join("locks");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(format!("{name}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(LockError::Busy(busy())),
            Err(TryLockError::Error(e)) => Err(LockError::Io(
                anyhow::Error::from(e).context(format!("cannot lock {}", path.display())),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let held = Lock::feed(dir.path(), "default", "intel").unwrap();
        let second = Lock::feed(dir.path(), "default", "intel").unwrap_err();
        assert!(matches!(second, LockError::Busy(_)), "{second}");
        assert!(second.to_string().contains("feed intel"));
        Lock::feed(dir.path(), "default", "other").unwrap();
        drop(held);
        Lock::feed(dir.path(), "default", "intel").unwrap();
    }
}
