//! Leases: on a PostgreSQL store shared by several hosts, each feed is run
//! by one host at a time.
//!
//! A lease is a row of `leases` (tenant, feed, holder, fence, expiry). A
//! host takes it before a run when it is free or expired, renews it while
//! the run lasts and releases it at the end. A host that dies stops
//! renewing, so after the lease's time to live another host takes the feed
//! over. Every write of a run checks, in the write's own transaction, that
//! its lease is still held with the fence number it was taken with (see
//! [`Database::check_fence`]), so a host that stalled past its lease and
//! lost it cannot write a page the new holder also writes: no page is
//! imported twice.
//!
//! Times are the database's own clock (`now()`), so hosts need not agree
//! on the time.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio_util::sync::CancellationToken;

use crate::args;
use crate::db::{Database, Fence, Location};
use crate::lock::LockError;

/// How long a lease lasts without renewal, unless `--lease-ttl` says.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// The shortest time to live allowed: renewals go every third of it.
pub const MIN_TTL: Duration = Duration::from_millis(300);

/// This process, as a lease holder and in the run history: the machine's
/// name, the process id and a random part (a restarted process with the
/// same pid is another holder).
pub fn host_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let machine = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "host".into());
        format!("{machine}/{}/{:08x}", std::process::id(), fastrand::u32(..))
    })
}

/// A held lease, renewed in the background until released or dropped.
pub struct Lease {
    fence: Fence,
    db: Arc<Mutex<Database>>,
    renewer: tokio::task::JoinHandle<()>,
    lost: CancellationToken,
    released: bool,
}

impl Lease {
    /// Takes the lease of a feed for this host, or says who holds it.
    /// Needs a tokio runtime (the renewals run on it).
    pub fn acquire(
        location: &Location,
        tenant: &str,
        feed: &str,
        ttl: Duration,
    ) -> Result<Self, LockError> {
        let db = location.open()?;
        let fence = match db.acquire_lease(tenant, feed, host_id(), ttl)? {
            Some(fence) => fence,
            None => {
                let holder = db
                    .lease_holder(tenant, feed)?
                    .unwrap_or_else(|| "another host".into());
                return Err(LockError::Busy(format!(
                    "feed {feed} is being imported by {holder}, which holds its lease on \
                     {}; it runs again here once that run ends or its lease expires",
                    location.describe()
                )));
            }
        };
        tracing::debug!(feed, fence = fence.fence, "lease taken");
        let db = Arc::new(Mutex::new(db));
        let lost = CancellationToken::new();
        let renewer = tokio::spawn(renew(
            db.clone(),
            location.clone(),
            fence.clone(),
            lost.clone(),
        ));
        Ok(Self {
            fence,
            db,
            renewer,
            lost,
            released: false,
        })
    }

    /// What each write of the run checks.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// Resolves when a renewal finds the lease lost (another host may hold
    /// it now); never while it is held.
    pub async fn lost(&self) {
        self.lost.cancelled().await;
    }

    /// Gives the lease up now, so that another host may run the feed.
    pub fn release(mut self) -> Result<()> {
        self.release_now()
    }

    fn release_now(&mut self) -> Result<()> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        self.renewer.abort();
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        db.release_lease(&self.fence)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Err(e) = self.release_now() {
            tracing::warn!(
                feed = %self.fence.feed,
                "cannot release the lease: {e:#}; it expires by itself"
            );
        }
    }
}

/// Renews the lease every third of its time to live. A failed renewal is
/// tried again at the next one, on a new connection (the database may have
/// restarted); a lease found lost is reported and no longer renewed (the
/// run's writes fail from then on).
async fn renew(
    db: Arc<Mutex<Database>>,
    location: Location,
    fence: Fence,
    lost: CancellationToken,
) {
    let every = fence.ttl / 3;
    let mut reconnect = false;
    loop {
        tokio::time::sleep(every).await;
        let renewed = {
            let mut db = db.lock().unwrap_or_else(|e| e.into_inner());
            if reconnect {
                match location.open() {
                    Ok(fresh) => *db = fresh,
                    Err(e) => tracing::warn!(feed = %fence.feed, "cannot reconnect: {e:#}"),
                }
            }
            db.renew_lease(&fence)
        };
        reconnect = renewed.is_err();
        match renewed {
            Ok(true) => tracing::trace!(feed = %fence.feed, "lease renewed"),
            Ok(false) => {
                tracing::error!(
                    feed = %fence.feed, fence = fence.fence,
                    "this host lost the feed's lease (it was not renewed in time and another \
                     host may have taken it): the run stops"
                );
                lost.cancel();
                return;
            }
            Err(e) => tracing::warn!(
                feed = %fence.feed,
                "cannot renew the lease: {e:#}; trying again"
            ),
        }
    }
}

/// `interval` arithmetic for a time to live in milliseconds.
const TTL: &str = "CAST(?4 AS BIGINT) * interval '1 millisecond'";

impl Database {
    /// Takes a feed's lease for `holder` if it is free or expired; its
    /// fence number is one more than the last holder's.
    pub fn acquire_lease(
        &self,
        tenant: &str,
        feed: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Fence>> {
        self.require_leases()?;
        let sql = format!(
            "INSERT INTO leases (tenant, feed, holder, fence, acquired_at, expires_at)
             VALUES (?1, ?2, ?3, 1, clock_timestamp(), clock_timestamp() + {TTL})
             ON CONFLICT (tenant, feed) DO UPDATE SET holder = excluded.holder,
                fence = leases.fence + 1, acquired_at = excluded.acquired_at,
                expires_at = excluded.expires_at
             WHERE leases.expires_at <= clock_timestamp()
             RETURNING fence"
        );
        let fence = self
            .query_opt(&sql, args![tenant, feed, holder, millis(ttl)], |row| {
                row.at::<i64>(0)
            })
            .with_context(|| format!("cannot take the lease of feed {feed}"))?;
        Ok(fence.map(|fence| Fence {
            tenant: tenant.into(),
            feed: feed.into(),
            holder: holder.into(),
            fence,
            ttl,
        }))
    }

    /// Extends a held lease by its time to live; false if it was lost.
    pub fn renew_lease(&self, fence: &Fence) -> Result<bool> {
        self.require_leases()?;
        let sql = format!(
            "UPDATE leases SET expires_at = clock_timestamp() + {TTL}
             WHERE tenant = ?1 AND feed = ?2 AND holder = ?3 AND fence = ?5
               AND expires_at > clock_timestamp()"
        );
        let changed = self.execute(
            &sql,
            args![
                &fence.tenant,
                &fence.feed,
                &fence.holder,
                millis(fence.ttl),
                fence.fence
            ],
        )?;
        Ok(changed == 1)
    }

    /// Ends a held lease now (the row stays, keeping the fence number).
    pub fn release_lease(&self, fence: &Fence) -> Result<()> {
        self.require_leases()?;
        self.execute(
            "UPDATE leases SET expires_at = clock_timestamp()
             WHERE tenant = ?1 AND feed = ?2 AND holder = ?3 AND fence = ?4",
            args![&fence.tenant, &fence.feed, &fence.holder, fence.fence],
        )?;
        Ok(())
    }

    /// Who holds a feed's lease now, if anyone.
    pub fn lease_holder(&self, tenant: &str, feed: &str) -> Result<Option<String>> {
        self.require_leases()?;
        self.query_opt(
            "SELECT holder FROM leases
             WHERE tenant = ?1 AND feed = ?2 AND expires_at > clock_timestamp()",
            args![tenant, feed],
            |row| row.at(0),
        )
    }

    /// Fails unless `fence` still holds its lease. Called inside a write's
    /// transaction: the row is locked (`FOR SHARE`) until the write
    /// commits, so another host cannot take the lease in between.
    pub fn check_fence(&self, fence: &Fence) -> Result<()> {
        self.require_leases()?;
        let held = self.query_opt(
            "SELECT 1 FROM leases
             WHERE tenant = ?1 AND feed = ?2 AND holder = ?3 AND fence = ?4
               AND expires_at > clock_timestamp()
             FOR SHARE",
            args![&fence.tenant, &fence.feed, &fence.holder, fence.fence],
            |_| Ok(()),
        )?;
        if held.is_none() {
            bail!(
                "feed {}: this host no longer holds the feed's lease (fence {}); it was not \
                 renewed within {} and another host may run the feed now, so nothing was \
                 written; the next run resumes from the stored cursor",
                fence.feed,
                fence.fence,
                humantime::format_duration(fence.ttl)
            );
        }
        Ok(())
    }

    fn require_leases(&self) -> Result<()> {
        if !self.is_postgres() {
            bail!("leases need a PostgreSQL store (--store postgres://…)");
        }
        Ok(())
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Reads `--lease-ttl`: a duration of at least [`MIN_TTL`].
pub fn parse_ttl(text: &str) -> Result<Duration> {
    let ttl = humantime::parse_duration(text)
        .with_context(|| format!("--lease-ttl {text:?} is not a duration: write it like 30s"))?;
    if ttl < MIN_TTL {
        bail!(
            "--lease-ttl {text} is too short: leases are renewed every third of it; give at \
             least {}",
            humantime::format_duration(MIN_TTL)
        );
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing;

    const TTL: Duration = Duration::from_millis(400);

    /// Leases renew in a task of tokio's multi-threaded runtime, as in
    /// `serve`.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_lease_is_held_by_one_host_until_released_or_expired() {
        let backend = testing::postgres();
        let db = backend.open();
        let first = db
            .acquire_lease("default", "intel", "a", TTL)
            .unwrap()
            .unwrap();
        assert_eq!(first.fence, 1);
        assert_eq!(
            db.acquire_lease("default", "intel", "b", TTL).unwrap(),
            None
        );
        assert_eq!(
            db.lease_holder("default", "intel").unwrap().as_deref(),
            Some("a")
        );
        // Another feed is free.
        assert!(
            db.acquire_lease("default", "other", "b", TTL)
                .unwrap()
                .is_some()
        );
        assert!(db.renew_lease(&first).unwrap());
        db.release_lease(&first).unwrap();
        assert_eq!(db.lease_holder("default", "intel").unwrap(), None);
        let second = db
            .acquire_lease("default", "intel", "b", TTL)
            .unwrap()
            .unwrap();
        assert_eq!(second.fence, 2, "each holder gets the next fence");
        assert!(
            !db.renew_lease(&first).unwrap(),
            "a released lease is not renewed"
        );
        assert!(db.check_fence(&first).is_err());
        db.check_fence(&second).unwrap();

        // b dies: after the time to live, c takes the feed over.
        std::thread::sleep(TTL + Duration::from_millis(100));
        assert!(
            !db.renew_lease(&second).unwrap(),
            "an expired lease is lost"
        );
        let third = db
            .acquire_lease("default", "intel", "c", TTL)
            .unwrap()
            .unwrap();
        assert_eq!(third.fence, 3);
    }

    #[test]
    fn a_host_that_lost_its_lease_writes_nothing() {
        let backend = testing::postgres();
        let mut db = backend.open();
        let store = db.ensure_store("default", "intel", "taxii-feed").unwrap();
        let old = db
            .acquire_lease("default", "intel", "a", TTL)
            .unwrap()
            .unwrap();
        let page = |n: &str| vec![(format!("object/x--{n}/1"), b"{}".to_vec())];
        db.set_entries_fenced(store.id, &page("1"), Some(&old))
            .unwrap();
        std::thread::sleep(TTL + Duration::from_millis(100));
        let new = db
            .acquire_lease("default", "intel", "b", TTL)
            .unwrap()
            .unwrap();
        let error = db
            .set_entries_fenced(store.id, &page("2"), Some(&old))
            .unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains("no longer holds the feed's lease"),
            "{message}"
        );
        assert!(
            db.delete_entries_fenced(store.id, &["object/x--1/1".into()], Some(&old))
                .is_err()
        );
        db.set_entries_fenced(store.id, &page("3"), Some(&new))
            .unwrap();
        let (keys, _) = db.list_keys(store.id, None, 10).unwrap();
        assert_eq!(keys, ["object/x--1/1", "object/x--3/1"]);
    }

    #[test]
    fn a_lease_is_renewed_while_held_and_freed_when_dropped() {
        let backend = testing::postgres();
        runtime().block_on(async {
            let lease = Lease::acquire(&backend.location, "default", "intel", TTL).unwrap();
            // Three times the time to live: renewals keep it.
            tokio::time::sleep(TTL * 3).await;
            let db = backend.open();
            db.check_fence(lease.fence()).unwrap();
            let busy = Lease::acquire(&backend.location, "default", "intel", TTL)
                .err()
                .unwrap();
            assert!(
                matches!(&busy, LockError::Busy(m) if m.contains(host_id())),
                "{busy}"
            );
            drop(lease);
            let next = Lease::acquire(&backend.location, "default", "intel", TTL).unwrap();
            assert_eq!(next.fence().fence, 2);
        });
    }

    #[test]
    fn a_lease_taken_over_is_reported_lost() {
        let backend = testing::postgres();
        runtime().block_on(async {
            let lease = Lease::acquire(&backend.location, "default", "intel", TTL).unwrap();
            let db = backend.open();
            // As if this host had stalled past the expiry: another takes over.
            db.execute(
                "UPDATE leases SET expires_at = clock_timestamp() WHERE feed = 'intel'",
                args![],
            )
            .unwrap();
            let other = db
                .acquire_lease("default", "intel", "b", TTL)
                .unwrap()
                .unwrap();
            assert_eq!(other.fence, 2);
            tokio::time::timeout(TTL * 3, lease.lost())
                .await
                .expect("the loss was not noticed within a renewal");
            drop(lease);
            db.check_fence(&other).unwrap();
        });
    }

    #[test]
    fn renewals_reconnect_when_the_connection_is_lost() {
        let backend = testing::postgres();
        let ttl = Duration::from_millis(1500);
        runtime().block_on(async {
            let lease = Lease::acquire(&backend.location, "default", "intel", ttl).unwrap();
            let db = backend.open();
            // Every other connection to the database: the renewer's.
            let terminated: Option<i64> = db
                .query_opt(
                    "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t",
                    args![],
                    |row| row.at(0),
                )
                .unwrap();
            assert!(terminated.unwrap() >= 1);
            tokio::time::sleep(ttl * 2).await;
            db.check_fence(lease.fence()).unwrap();
        });
    }

    #[test]
    fn leases_need_postgres_and_a_sane_time_to_live() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).unwrap();
        let message = db
            .acquire_lease("default", "intel", "a", TTL)
            .unwrap_err()
            .to_string();
        assert!(message.contains("--store postgres://"), "{message}");
        assert!(
            parse_ttl("100ms")
                .unwrap_err()
                .to_string()
                .contains("at least")
        );
        assert_eq!(parse_ttl("15s").unwrap(), Duration::from_secs(15));
    }
}
