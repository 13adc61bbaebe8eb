//! Feed configurations: which collection each feed imports, and how.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use crate::db::Database;
use crate::politeness::{OriginLimits, Rate};
use crate::schedule::{FeedSchedule, Lookback};
use crate::secret::PasswordSource;

/// The tenant used when none is given.
pub const DEFAULT_TENANT: &str = "default";

/// Longest feed or tenant name.
const MAX_NAME_LEN: usize = 64;

/// One feed configuration. Holds where the password is, never the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Feed {
    /// The tenant the feed and its store belong to.
    pub tenant: String,
    /// The feed's name, also its store's name.
    pub name: String,
    /// A plugin component file, or `None` for the built-in TAXII plugin.
    pub plugin: Option<PathBuf>,
    /// The TAXII Collection URL.
    pub collection_url: String,
    /// The username for HTTP Basic authentication.
    pub username: Option<String>,
    /// Where the password is read from at each run.
    pub password: Option<PasswordSource>,
    /// Objects per page; `None` lets the plugin choose.
    pub page_size: Option<u32>,
    /// STIX types to import; empty means all.
    pub object_types: Vec<String>,
    /// Where the first run starts (`added_after`).
    pub added_after: Option<String>,
    /// When `serve` runs it.
    pub schedule: FeedSchedule,
    /// How hard its server may be asked.
    pub limits: OriginLimits,
}

/// Checks a feed or tenant name: it names a store and appears in output.
pub fn check_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with(['.', '-']);
    if !ok {
        bail!(
            "{kind} name {name:?} is not usable: use 1 to {MAX_NAME_LEN} letters, digits, \
             '-', '_' or '.', starting with a letter or digit"
        );
    }
    Ok(())
}

impl Feed {
    /// Checks what the host itself needs; the plugin checks the rest.
    pub fn check(&self) -> Result<()> {
        check_name("tenant", &self.tenant)?;
        check_name("feed", &self.name)?;
        match (&self.username, &self.password) {
            (Some(_), None) => bail!(
                "feed {}: a username needs a password: add --password-env VAR or \
                 --password-file PATH",
                self.name
            ),
            (None, Some(_)) => bail!(
                "feed {}: a password needs a username: add --username",
                self.name
            ),
            _ => Ok(()),
        }
    }

    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        let env: Option<String> = row.get("password_env")?;
        let file: Option<String> = row.get("password_file")?;
        let types: String = row.get("object_types")?;
        Ok(Self {
            tenant: row.get("tenant")?,
            name: row.get("name")?,
            plugin: row.get::<_, Option<String>>("plugin")?.map(PathBuf::from),
            collection_url: row.get("collection_url")?,
            username: row.get("username")?,
            password: env
                .map(PasswordSource::Env)
                .or(file.map(|f| PasswordSource::File(f.into()))),
            page_size: row.get("page_size")?,
            object_types: serde_json::from_str(&types).unwrap_or_default(),
            added_after: row.get("added_after")?,
            schedule: FeedSchedule {
                every: millis(row.get("every_ms")?),
                initial_lookback: match row.get::<_, Option<u64>>("initial_lookback_ms")? {
                    Some(ms) => Lookback::Window(millis(ms)),
                    None => Lookback::All,
                },
            },
            limits: OriginLimits {
                rate: match (row.get("rate_requests")?, row.get("rate_per_ms")?) {
                    (Some(requests), Some(per)) => Some(Rate {
                        requests,
                        per: millis(per),
                    }),
                    _ => None,
                },
                burst: row.get("burst")?,
                connect_timeout: millis(row.get("connect_timeout_ms")?),
                response_timeout: millis(row.get("response_timeout_ms")?),
            },
        })
    }
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn as_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Database {
    /// Adds a feed; with `replace`, replaces one of the same name.
    pub fn add_feed(&self, feed: &Feed, replace: bool) -> Result<()> {
        feed.check()?;
        if !replace && self.feed(&feed.tenant, &feed.name)?.is_some() {
            bail!(
                "feed {} already exists: pass --replace to change it, or choose another name",
                feed.name
            );
        }
        let (env, file) = match &feed.password {
            Some(PasswordSource::Env(var)) => (Some(var.clone()), None),
            Some(PasswordSource::File(path)) => (None, Some(path.display().to_string())),
            None => (None, None),
        };
        let lookback = match feed.schedule.initial_lookback {
            Lookback::All => None,
            Lookback::Window(window) => Some(as_millis(window)),
        };
        let limits = &feed.limits;
        self.conn.execute(
            "INSERT INTO feeds (tenant, name, plugin, collection_url, username, password_env,
                                password_file, page_size, object_types, added_after, created_at,
                                every_ms, initial_lookback_ms, rate_requests, rate_per_ms, burst,
                                connect_timeout_ms, response_timeout_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                     ?18)
             ON CONFLICT (tenant, name) DO UPDATE SET
                plugin = excluded.plugin, collection_url = excluded.collection_url,
                username = excluded.username, password_env = excluded.password_env,
                password_file = excluded.password_file, page_size = excluded.page_size,
                object_types = excluded.object_types, added_after = excluded.added_after,
                every_ms = excluded.every_ms, initial_lookback_ms = excluded.initial_lookback_ms,
                rate_requests = excluded.rate_requests, rate_per_ms = excluded.rate_per_ms,
                burst = excluded.burst, connect_timeout_ms = excluded.connect_timeout_ms,
                response_timeout_ms = excluded.response_timeout_ms",
            params![
                feed.tenant,
                feed.name,
                feed.plugin.as_ref().map(|p| p.display().to_string()),
                feed.collection_url,
                feed.username,
                env,
                file,
                feed.page_size,
                serde_json::to_string(&feed.object_types)?,
                feed.added_after,
                crate::now_rfc3339(),
                as_millis(feed.schedule.every),
                lookback,
                limits.rate.map(|r| r.requests),
                limits.rate.map(|r| as_millis(r.per)),
                limits.burst,
                as_millis(limits.connect_timeout),
                as_millis(limits.response_timeout),
            ],
        )?;
        Ok(())
    }

    /// One feed by name.
    pub fn feed(&self, tenant: &str, name: &str) -> Result<Option<Feed>> {
        self.conn
            .query_row(
                "SELECT * FROM feeds WHERE tenant = ?1 AND name = ?2",
                params![tenant, name],
                Feed::from_row,
            )
            .optional()
            .context("cannot read the feed configuration")
    }

    /// One feed by name, or an error that lists the feeds there are.
    pub fn require_feed(&self, tenant: &str, name: &str) -> Result<Feed> {
        if let Some(feed) = self.feed(tenant, name)? {
            return Ok(feed);
        }
        let names: Vec<_> = self.feeds(tenant)?.into_iter().map(|f| f.name).collect();
        if names.is_empty() {
            bail!("no feed named {name}: there are no feeds yet; add one with `config add`");
        }
        bail!(
            "no feed named {name}: the feeds are {}; `config list` shows them",
            names.join(", ")
        )
    }

    /// Every feed of a tenant, by name.
    pub fn feeds(&self, tenant: &str) -> Result<Vec<Feed>> {
        let mut statement = self
            .conn
            .prepare("SELECT * FROM feeds WHERE tenant = ?1 ORDER BY name")?;
        let feeds = statement
            .query_map([tenant], Feed::from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(feeds)
    }

    /// Removes a feed's configuration; its store and history stay.
    pub fn remove_feed(&self, tenant: &str, name: &str) -> Result<bool> {
        let removed = self.conn.execute(
            "DELETE FROM feeds WHERE tenant = ?1 AND name = ?2",
            params![tenant, name],
        )?;
        Ok(removed > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(name: &str) -> Feed {
        Feed {
            tenant: DEFAULT_TENANT.into(),
            name: name.into(),
            plugin: None,
            collection_url: "http://127.0.0.1:1/api/collections/c/".into(),
            username: Some("alice".into()),
            password: Some(PasswordSource::Env("PW".into())),
            page_size: Some(7),
            object_types: vec!["indicator".into()],
            added_after: None,
            schedule: FeedSchedule {
                every: Duration::from_secs(900),
                initial_lookback: Lookback::Window(Duration::from_secs(86_400)),
            },
            limits: OriginLimits {
                rate: Some("5/min".parse().unwrap()),
                burst: 2,
                connect_timeout: Duration::from_secs(3),
                response_timeout: Duration::from_secs(7),
            },
        }
    }

    #[test]
    fn stores_and_reads_back_a_feed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).unwrap();
        db.add_feed(&feed("intel"), false).unwrap();
        assert_eq!(db.feed("default", "intel").unwrap(), Some(feed("intel")));
        assert!(db.add_feed(&feed("intel"), false).is_err());
        db.add_feed(&feed("intel"), true).unwrap();
        assert_eq!(db.feeds("default").unwrap().len(), 1);
        assert!(db.remove_feed("default", "intel").unwrap());
        let message = db.require_feed("default", "intel").unwrap_err().to_string();
        assert!(message.contains("config add"), "{message}");
    }

    #[test]
    fn refuses_names_that_cannot_name_a_store() {
        for bad in ["", "a b", "../x", ".hidden", "x/y", &"n".repeat(65)] {
            assert!(check_name("feed", bad).is_err(), "{bad:?}");
        }
        check_name("feed", "ATT&CK").unwrap_err();
        check_name("feed", "attack-enterprise_2.0").unwrap();
    }

    #[test]
    fn a_username_needs_a_password_and_the_other_way_round() {
        let mut no_password = feed("a");
        no_password.password = None;
        assert!(no_password.check().is_err());
        let mut no_user = feed("a");
        no_user.username = None;
        assert!(no_user.check().is_err());
    }
}
