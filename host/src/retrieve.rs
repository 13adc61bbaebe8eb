//! Reading stores back: the list of stores ([`list_stores`]), and a
//! store's objects as STIX ([`write_objects`]).

mod objects;

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Result;
use serde::Serialize;

pub use self::objects::{QueryOutcome, write_objects};
use crate::db::Database;
use crate::runs::RunStatus;

/// One line of `retrieve list`.
#[derive(Debug, Clone, Serialize)]
pub struct StoreSummary {
    /// The store's name.
    pub name: String,
    /// The tenant.
    pub tenant: String,
    /// The plugin that fills it.
    pub plugin: String,
    /// The feed that fills it (of the same name), if it is still
    /// configured.
    pub feed: Option<String>,
    /// The feed's Collection URL, without credentials or query.
    pub collection_url: Option<String>,
    /// Distinct objects.
    pub objects: u64,
    /// Object versions.
    pub versions: u64,
    /// Objects per STIX type.
    pub types: BTreeMap<String, u64>,
    /// When the last run started.
    pub last_run: Option<String>,
    /// How it ended.
    pub last_status: Option<RunStatus>,
    /// Its error, if it failed.
    pub last_error: Option<String>,
    /// When `serve` runs the feed next by its interval: the last run's
    /// start plus the feed's `--every` (`serve` adds up to 10 % jitter,
    /// and tries a failed run sooner). `None` without a feed; `"due"`
    /// when the feed has not run yet.
    pub next_run: Option<String>,
}

/// When a feed is due next by its interval, from its last run's start.
fn next_run(feed: &crate::feeds::Feed, last_started: Option<&str>) -> String {
    let Some(started) = last_started.and_then(|t| humantime::parse_rfc3339_weak(t).ok()) else {
        return "due".into();
    };
    humantime::format_rfc3339_seconds(started + feed.schedule.every).to_string()
}

/// Every store of a tenant with its counts and last run.
pub fn list_stores(db: &Database, tenant: &str) -> Result<Vec<StoreSummary>> {
    db.stores(tenant)?
        .into_iter()
        .map(|store| {
            let (objects, versions) = db.object_counts(&store)?;
            let last = db.last_run(&store)?;
            let feed = db.feed(tenant, &store.name)?;
            let next_run = feed
                .as_ref()
                .map(|f| next_run(f, last.as_ref().map(|r| r.started_at.as_str())));
            Ok(StoreSummary {
                next_run,
                feed: feed.as_ref().map(|f| f.name.clone()),
                collection_url: feed.map(|f| without_credentials(&f.collection_url)),
                objects,
                versions,
                types: db.type_counts(&store)?,
                last_run: last.as_ref().map(|r| r.started_at.clone()),
                last_status: last.as_ref().map(|r| r.status),
                last_error: last.and_then(|r| r.error),
                name: store.name,
                tenant: store.tenant,
                plugin: store.plugin,
            })
        })
        .collect()
}

/// A URL without user, password, query or fragment: what may be shown.
pub fn without_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut url) => {
            // Both only fail for URLs that cannot have credentials at all.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => "(not a URL)".into(),
    }
}

/// Writes the stores as a table.
pub fn write_store_table(stores: &[StoreSummary], out: &mut impl Write) -> Result<()> {
    if stores.is_empty() {
        writeln!(
            out,
            "no stores yet: add a feed with `config add`, then `import` it"
        )?;
        return Ok(());
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header([
        "STORE",
        "FEED",
        "PLUGIN",
        "OBJECTS",
        "VERSIONS",
        "TYPES",
        "LAST RUN",
        "STATUS",
        "NEXT RUN",
        "COLLECTION",
    ]);
    for s in stores {
        table.add_row([
            s.name.clone(),
            s.feed.clone().unwrap_or_else(|| "(removed)".into()),
            s.plugin.clone(),
            s.objects.to_string(),
            s.versions.to_string(),
            s.types.len().to_string(),
            s.last_run.clone().unwrap_or_else(|| "never".into()),
            s.last_status
                .map_or_else(|| "-".into(), |st| st.to_string()),
            s.next_run.clone().unwrap_or_else(|| "-".into()),
            s.collection_url.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    writeln!(out, "{table}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::each_backend;
    use crate::feeds::Feed;

    #[test]
    fn lists_stores_with_types_and_a_url_without_credentials() {
        each_backend(|backend| {
            let mut db = backend.open();
            let feed = Feed {
                tenant: "default".into(),
                name: "intel".into(),
                plugin: None,
                collection_url: "https://taxii.example/api/collections/c/".into(),
                auth: crate::feeds::Auth::None,
                network: crate::feeds::NetworkOptions::default(),
                page_size: None,
                object_types: Vec::new(),
                added_after: None,
                page_limit: None,
                deadline_secs: None,
                schedule: crate::schedule::FeedSchedule::default(),
                limits: crate::politeness::OriginLimits::default(),
            };
            db.add_feed(&feed, false).unwrap();
            // A feed stored before the host refused credentials and queries
            // in the URL: listing it must still show neither.
            db.execute(
                "UPDATE feeds SET collection_url = ?1",
                crate::args!["https://bob:hunter2@taxii.example/api/collections/c/?token=t1"],
            )
            .unwrap();
            let store = db.ensure_store("default", "intel", "taxii-feed").unwrap();
            let entries: Vec<_> = [
                "object/indicator--1/2024-01-01T00:00:00.000000000Z",
                "object/indicator--1/2024-02-01T00:00:00.000000000Z",
                "object/indicator--2/2024-01-01T00:00:00.000000000Z",
                "object/attack-pattern--1/2024-01-01T00:00:00.000000000Z",
                "state/cursor",
            ]
            .iter()
            .map(|k| (k.to_string(), b"{}".to_vec()))
            .collect();
            db.set_entries(store.id, &entries).unwrap();
            db.ensure_store("default", "orphan", "taxii-feed").unwrap();

            let stores = list_stores(&db, "default").unwrap();
            let intel = &stores[0];
            assert_eq!((intel.objects, intel.versions), (3, 4));
            let types: Vec<_> = intel.types.iter().map(|(t, n)| (t.as_str(), *n)).collect();
            assert_eq!(types, [("attack-pattern", 1), ("indicator", 2)]);
            assert_eq!(
                intel.collection_url.as_deref(),
                Some("https://taxii.example/api/collections/c/")
            );
            assert_eq!(intel.feed.as_deref(), Some("intel"));
            assert_eq!(intel.next_run.as_deref(), Some("due"), "it never ran");
            assert_eq!(stores[1].feed, None);
            assert_eq!(stores[1].next_run, None);

            let started = db
                .begin_run(&store, &crate::runs::RunStart::default())
                .unwrap();
            assert!(started > 0);
            let last = db.last_run(&store).unwrap().unwrap().started_at;
            let start = humantime::parse_rfc3339_weak(&last).unwrap();
            let expected =
                humantime::format_rfc3339_seconds(start + feed.schedule.every).to_string();
            let stores = list_stores(&db, "default").unwrap();
            assert_eq!(stores[0].next_run.as_deref(), Some(expected.as_str()));

            let mut table = Vec::new();
            write_store_table(&stores, &mut table).unwrap();
            let table = String::from_utf8(table).unwrap();
            assert!(
                !table.contains("hunter2") && !table.contains("t1"),
                "{table}"
            );
            assert!(table.contains("(removed)"), "{table}");
        });
    }
}
