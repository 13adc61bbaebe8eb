//! Feed configurations: which collection each feed imports, with which
//! credentials, over which network.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::args;
use crate::db::{Database, Row};
use crate::politeness::{OriginLimits, Rate};
use crate::schedule::{FeedSchedule, Lookback};
use crate::secret::SecretSource;
use crate::tls::TlsOptions;

/// The tenant used when none is given.
pub const DEFAULT_TENANT: &str = "default";

/// Where the built-in plugin records the TAXII version a feed's server
/// speaks (see `wit/feed.wit`).
pub const TAXII_VERSION_KEY: &str = "state/taxii-version";

/// Where the built-in plugin keeps the next run's `added_after` cursor
/// (see `wit/feed.wit`).
pub const CURSOR_KEY: &str = "state/cursor";

/// Longest feed or tenant name.
const MAX_NAME_LEN: usize = 64;

/// How a feed authenticates. Holds where secrets are, never a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// HTTP Basic.
    Basic {
        /// The username.
        username: String,
        /// Where the password is.
        password: SecretSource,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// Where the token is.
        token: SecretSource,
    },
    /// A header of the server's choosing, such as `X-API-Key`.
    Header {
        /// The header's name.
        name: String,
        /// Where its value is.
        value: SecretSource,
    },
}

impl Auth {
    /// A short description for listings: kind and source, never a secret.
    pub fn describe(&self) -> String {
        match self {
            Self::None => "none".into(),
            Self::Basic { username, password } => format!("basic {username} ({password})"),
            Self::Bearer { token } => format!("bearer ({token})"),
            Self::Header { name, value } => format!("header {name} ({value})"),
        }
    }
}

/// What a feed's runs may reach, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkOptions {
    /// Origins besides the Collection URL's that runs may reach.
    pub allowed_origins: Vec<String>,
    /// Whether private, loopback and link-local addresses may be reached.
    pub allow_private: bool,
    /// Whether credentials may go over plain `http://` to another machine.
    pub allow_insecure_auth: bool,
    /// A CA bundle to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// A client certificate to present (mTLS).
    pub client_cert: Option<PathBuf>,
    /// Its private key.
    pub client_key: Option<PathBuf>,
    /// Skip verifying the server's certificate.
    pub insecure_skip_tls_verify: bool,
}

impl NetworkOptions {
    /// The TLS part.
    pub fn tls(&self) -> TlsOptions {
        TlsOptions {
            ca_file: self.ca_file.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            skip_verify: self.insecure_skip_tls_verify,
        }
    }
}

/// One feed configuration.
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
    /// Credentials.
    pub auth: Auth,
    /// Network and TLS settings.
    pub network: NetworkOptions,
    /// Objects per page; `None` lets the plugin choose.
    pub page_size: Option<u32>,
    /// STIX types to import; empty means all.
    pub object_types: Vec<String>,
    /// Where the first run starts (`added_after`).
    pub added_after: Option<String>,
    /// Pages a run of this feed fetches at most (the host's limit applies
    /// too); the next run continues from the cursor.
    pub page_limit: Option<u32>,
    /// Seconds a run of this feed may take at most (the host's limit
    /// applies too); pages committed before it ends are kept.
    pub deadline_secs: Option<u64>,
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

/// True when a host name or address is this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses credentials over plain `http://` to another machine, unless
/// the operator allowed it.
pub fn check_transport(url: &Url, auth: &Auth, network: &NetworkOptions) -> Result<()> {
    let plain_remote = url.scheme() == "http" && !url.host_str().is_some_and(is_loopback_host);
    if *auth != Auth::None && plain_remote && !network.allow_insecure_auth {
        bail!(
            "refusing to send credentials over plain http:// to {}: anyone on the path \
             could read them; use https://, or pass --allow-insecure-auth if this network \
             is trusted",
            url.host_str().unwrap_or_default()
        );
    }
    Ok(())
}

impl Feed {
    /// Checks what the host itself needs; the plugin checks the rest.
    pub fn check(&self) -> Result<()> {
        check_name("tenant", &self.tenant)?;
        check_name("feed", &self.name)?;
        let url = Url::parse(&self.collection_url).with_context(|| {
            format!("the Collection URL {:?} is not a URL", self.collection_url)
        })?;
        // Whatever a user puts in the URL is stored and shown with it: no
        // secret may ride there, and these messages repeat none of it.
        if !url.username().is_empty() || url.password().is_some() {
            bail!(
                "feed {}: the Collection URL holds credentials (`user:password@`), which would \
                 be stored and shown with it: remove them and give them as --username and \
                 --password-file (or --password-env) instead",
                self.name
            );
        }
        // The URL as these messages may show it.
        let mut shown = url.clone();
        shown.set_query(None);
        shown.set_fragment(None);
        if url.fragment().is_some() {
            bail!(
                "feed {}: the Collection URL {shown} has a fragment (`#...`), which is never sent \
                 but would be stored and shown with it: remove it",
                self.name
            );
        }
        if url.query().is_some() {
            bail!(
                "feed {}: the Collection URL {shown} has a query (`?...`), which would be stored \
                 and logged with it, and TAXII URLs have none: remove it, and if it holds a \
                 token give the token as credentials instead (--token-file FILE, or --header \
                 NAME --header-file FILE)",
                self.name
            );
        }
        check_transport(&url, &self.auth, &self.network)
            .with_context(|| format!("feed {}", self.name))?;
        if let Auth::Header { name, .. } = &self.auth {
            let ok = http::HeaderName::from_bytes(name.as_bytes()).is_ok();
            if !ok || name.eq_ignore_ascii_case("host") {
                bail!(
                    "feed {}: {name:?} cannot be a credentials header",
                    self.name
                );
            }
        }
        if self.page_limit == Some(0) {
            bail!("feed {}: --page-limit must be at least 1", self.name);
        }
        if self.deadline_secs == Some(0) {
            bail!("feed {}: --deadline must be at least one second", self.name);
        }
        for origin in &self.network.allowed_origins {
            let parsed = Url::parse(origin).ok().filter(|u| u.has_host());
            if parsed.is_none() {
                bail!(
                    "feed {}: --allow-origin {origin:?} is not an origin: write it like \
                     https://host:port",
                    self.name
                );
            }
        }
        Ok(())
    }

    fn from_row(row: &Row<'_>) -> Result<Self> {
        fn json<T: serde::de::DeserializeOwned>(column: &str, text: String) -> Result<T> {
            serde_json::from_str(&text).with_context(|| format!("feeds.{column} is not valid"))
        }
        Ok(Self {
            tenant: row.get("tenant")?,
            name: row.get("name")?,
            plugin: row.get::<Option<String>>("plugin")?.map(PathBuf::from),
            collection_url: row.get("collection_url")?,
            auth: json("auth", row.get("auth")?)?,
            network: json("network", row.get("network")?)?,
            page_size: row.get("page_size")?,
            object_types: json("object_types", row.get("object_types")?)?,
            added_after: row.get("added_after")?,
            page_limit: row.get("page_limit")?,
            deadline_secs: row.get("deadline_secs")?,
            schedule: FeedSchedule {
                every: millis(row.get("every_ms")?),
                initial_lookback: match row.get::<Option<u64>>("initial_lookback_ms")? {
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
        let lookback = match feed.schedule.initial_lookback {
            Lookback::All => None,
            Lookback::Window(window) => Some(as_millis(window)),
        };
        let limits = &feed.limits;
        self.execute(
            "INSERT INTO feeds (tenant, name, plugin, collection_url, auth, network, page_size,
                                object_types, added_after, created_at, page_limit,
                                deadline_secs, every_ms, initial_lookback_ms, rate_requests,
                                rate_per_ms, burst, connect_timeout_ms, response_timeout_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                     ?18, ?19)
             ON CONFLICT (tenant, name) DO UPDATE SET
                plugin = excluded.plugin, collection_url = excluded.collection_url,
                auth = excluded.auth, network = excluded.network,
                page_size = excluded.page_size, object_types = excluded.object_types,
                added_after = excluded.added_after, page_limit = excluded.page_limit,
                deadline_secs = excluded.deadline_secs,
                every_ms = excluded.every_ms, initial_lookback_ms = excluded.initial_lookback_ms,
                rate_requests = excluded.rate_requests, rate_per_ms = excluded.rate_per_ms,
                burst = excluded.burst, connect_timeout_ms = excluded.connect_timeout_ms,
                response_timeout_ms = excluded.response_timeout_ms",
            args![
                &feed.tenant,
                &feed.name,
                feed.plugin.as_ref().map(|p| p.display().to_string()),
                &feed.collection_url,
                serde_json::to_string(&feed.auth)?,
                serde_json::to_string(&feed.network)?,
                feed.page_size,
                serde_json::to_string(&feed.object_types)?,
                feed.added_after.as_deref(),
                crate::now_rfc3339(),
                feed.page_limit,
                feed.deadline_secs,
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

    /// Forgets where the plugin stopped in the feed's store (its cursor
    /// and the TAXII version it recorded), so that the next run reads its
    /// collection from the beginning; the objects stored stay. Returns
    /// whether there was a cursor.
    pub fn restart_feed(&mut self, tenant: &str, name: &str) -> Result<bool> {
        let Some(store) = self.find_store(tenant, name)? else {
            return Ok(false);
        };
        let had_cursor = self.get_entry(store.id, CURSOR_KEY)?.is_some();
        self.delete_entries(
            store.id,
            &[CURSOR_KEY.to_string(), TAXII_VERSION_KEY.to_string()],
        )?;
        Ok(had_cursor)
    }

    /// One feed by name.
    pub fn feed(&self, tenant: &str, name: &str) -> Result<Option<Feed>> {
        self.query_opt(
            "SELECT * FROM feeds WHERE tenant = ?1 AND name = ?2",
            args![tenant, name],
            Feed::from_row,
        )
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
        self.query_all(
            "SELECT * FROM feeds WHERE tenant = ?1 ORDER BY name",
            args![tenant],
            Feed::from_row,
        )
    }

    /// The TAXII version the server of a feed spoke last, as its plugin
    /// recorded it in the feed's store (`state/taxii-version`).
    pub fn taxii_version(&self, tenant: &str, feed: &str) -> Result<Option<String>> {
        let Some(store) = self.find_store(tenant, feed)? else {
            return Ok(None);
        };
        let value = self.get_entry(store.id, TAXII_VERSION_KEY)?;
        Ok(value.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Removes a feed's configuration; its store and history stay.
    pub fn remove_feed(&self, tenant: &str, name: &str) -> Result<bool> {
        let removed = self.execute(
            "DELETE FROM feeds WHERE tenant = ?1 AND name = ?2",
            args![tenant, name],
        )?;
        Ok(removed > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::each_backend;

    fn feed(name: &str) -> Feed {
        Feed {
            tenant: DEFAULT_TENANT.into(),
            name: name.into(),
            plugin: None,
            collection_url: "http://127.0.0.1:1/api/collections/c/".into(),
            auth: Auth::Basic {
                username: "alice".into(),
                password: SecretSource::Env("PW".into()),
            },
            network: NetworkOptions {
                allow_private: true,
                ..NetworkOptions::default()
            },
            page_size: Some(7),
            object_types: vec!["indicator".into()],
            added_after: None,
            page_limit: Some(3),
            deadline_secs: Some(90),
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
        each_backend(|backend| {
            let db = backend.open();
            db.add_feed(&feed("intel"), false).unwrap();
            assert_eq!(db.feed("default", "intel").unwrap(), Some(feed("intel")));
            assert!(db.add_feed(&feed("intel"), false).is_err());
            db.add_feed(&feed("intel"), true).unwrap();
            assert_eq!(db.feeds("default").unwrap().len(), 1);
            assert!(db.remove_feed("default", "intel").unwrap());
            let message = db.require_feed("default", "intel").unwrap_err().to_string();
            assert!(message.contains("config add"), "{message}");
        });
    }

    #[test]
    fn reads_the_taxii_version_the_plugin_recorded() {
        each_backend(|backend| {
            let mut db = backend.open();
            db.add_feed(&feed("intel"), false).unwrap();
            assert_eq!(db.taxii_version("default", "intel").unwrap(), None);
            let store = db.ensure_store("default", "intel", "taxii-feed").unwrap();
            db.set_entries(store.id, &[(TAXII_VERSION_KEY.into(), b"2.0".to_vec())])
                .unwrap();
            assert_eq!(
                db.taxii_version("default", "intel").unwrap().as_deref(),
                Some("2.0")
            );
        });
    }

    #[test]
    fn refuses_names_that_cannot_name_a_store() {
        for bad in ["", "a b", "../x", ".hidden", "x/y", "a:b", &"n".repeat(65)] {
            assert!(check_name("feed", bad).is_err(), "{bad:?}");
        }
        check_name("feed", "ATT&CK").unwrap_err();
        check_name("feed", "attack-enterprise_2.0").unwrap();
    }

    #[test]
    fn refuses_credentials_over_plain_http_to_another_machine() {
        let mut remote = feed("a");
        remote.collection_url = "http://taxii.example/api/collections/c/".into();
        let message = format!("{:#}", remote.check().unwrap_err());
        assert!(message.contains("--allow-insecure-auth"), "{message}");
        remote.network.allow_insecure_auth = true;
        remote.check().unwrap();
        remote.network.allow_insecure_auth = false;
        remote.auth = Auth::None;
        remote.check().unwrap();
        feed("local").check().unwrap();
    }

    #[test]
    fn refuses_a_collection_url_with_a_query_without_repeating_it() {
        let mut keyed = feed("a");
        keyed.collection_url = "https://taxii.example/api/collections/c/?token=s3cret".into();
        let message = format!("{:#}", keyed.check().unwrap_err());
        assert!(message.contains("has a query"), "{message}");
        assert!(message.contains("--token-file"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");

        keyed.collection_url = "https://taxii.example/api/collections/c/#s3cret".into();
        let message = format!("{:#}", keyed.check().unwrap_err());
        assert!(
            message.contains("fragment") && !message.contains("s3cret"),
            "{message}"
        );

        keyed.collection_url = "https://bob:hunter2@taxii.example/api/collections/c/?t=1".into();
        let message = format!("{:#}", keyed.check().unwrap_err());
        assert!(message.contains("credentials"), "{message}");
        assert!(
            !message.contains("bob") && !message.contains("hunter2"),
            "{message}"
        );
    }

    #[test]
    fn descriptions_name_sources_not_secrets() {
        let auth = Auth::Bearer {
            token: SecretSource::File("/run/token".into()),
        };
        assert_eq!(auth.describe(), "bearer (file /run/token)");
    }
}
