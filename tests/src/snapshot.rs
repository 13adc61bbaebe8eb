//! A store read straight from the host's SQLite file, the server's manifest,
//! and the checks that no crash or stop may break: the file is intact, no
//! object version is stored twice, nothing is stored that the server does
//! not have, and the cursor is never ahead of the stored data.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::medallion::Medallion;

/// A version: an object id and its `modified` (else `created`) instant;
/// `None` for an object with neither (a cyber-observable), stored under
/// the version `-`. medallion lists such an object's one version in its
/// manifest as the object's `date_added`.
pub type Version = (String, Option<SystemTime>);

/// What a store holds, read from the database file.
#[derive(Debug, Clone)]
pub struct StoreSnapshot {
    /// Every stored object version, one per `object/` entry.
    pub versions: Vec<Version>,
    /// The stored cursor (`state/cursor`).
    pub cursor: Option<String>,
    /// `PRAGMA integrity_check`.
    pub integrity: String,
}

/// An entry of the server's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The version.
    pub version: Version,
    /// When the server added it.
    pub date_added: SystemTime,
}

/// A timestamp, whatever its number of fraction digits.
pub fn instant(timestamp: &str) -> Result<SystemTime> {
    humantime::parse_rfc3339(timestamp)
        .with_context(|| format!("{timestamp:?} is not an RFC 3339 timestamp"))
}

impl StoreSnapshot {
    /// Reads the store named `store` in the host's data directory.
    pub fn read(data_dir: &Path, store: &str) -> Result<Self> {
        let conn = rusqlite::Connection::open(data_dir.join("taxii-host.db"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        let store_id: Option<i64> = conn
            .query_row("SELECT id FROM stores WHERE name = ?1", [store], |r| {
                r.get(0)
            })
            .ok();
        let Some(store_id) = store_id else {
            return Ok(Self {
                versions: Vec::new(),
                cursor: None,
                integrity,
            });
        };
        let mut statement = conn.prepare(
            "SELECT key, value FROM entries WHERE store_id = ?1 AND key LIKE 'object/%'",
        )?;
        let rows = statement.query_map([store_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut versions = Vec::new();
        for row in rows {
            let (key, value) = row?;
            let object: Value = serde_json::from_slice(&value)
                .with_context(|| format!("{key} does not hold JSON"))?;
            versions.push(version_of(&object).with_context(|| format!("in {key}"))?);
        }
        let cursor = conn
            .query_row(
                "SELECT value FROM entries WHERE store_id = ?1 AND key = 'state/cursor'",
                [store_id],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .ok()
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        Ok(Self {
            versions,
            cursor,
            integrity,
        })
    }

    /// The distinct versions stored.
    pub fn version_set(&self) -> BTreeSet<Version> {
        self.versions.iter().cloned().collect()
    }

    /// Checks what must hold after any crash or stop, against the server's
    /// manifest.
    pub fn check_consistent(&self, manifest: &[ManifestEntry]) -> Result<()> {
        ensure!(
            self.integrity == "ok",
            "the database is damaged: {}",
            self.integrity
        );
        let stored = self.version_set();
        ensure!(
            stored.len() == self.versions.len(),
            "{} object versions are stored more than once",
            self.versions.len() - stored.len()
        );
        let known: BTreeSet<Version> = manifest.iter().map(|e| stored_as(e, &stored)).collect();
        if let Some(foreign) = stored.iter().find(|v| !known.contains(v)) {
            bail!("the store holds {foreign:?}, which the server's manifest does not list");
        }
        let Some(cursor) = &self.cursor else {
            return Ok(());
        };
        let cursor = instant(cursor)?;
        ensure!(
            manifest.iter().any(|e| e.date_added == cursor),
            "the cursor {cursor:?} is no date_added of the server"
        );
        let missing: Vec<_> = manifest
            .iter()
            .filter(|e| e.date_added <= cursor && !stored.contains(&stored_as(e, &stored)))
            .collect();
        ensure!(
            missing.is_empty(),
            "the cursor is ahead of its data: {} versions added up to it are not stored, \
             the first {:?}",
            missing.len(),
            missing.first()
        );
        Ok(())
    }

    /// Checks that the store equals the server's collection exactly.
    pub fn check_complete(&self, manifest: &[ManifestEntry]) -> Result<()> {
        self.check_consistent(manifest)?;
        let stored = self.version_set();
        let expected: BTreeSet<Version> = manifest.iter().map(|e| stored_as(e, &stored)).collect();
        ensure!(
            stored == expected,
            "the store holds {} versions, the server {}; {} missing",
            stored.len(),
            expected.len(),
            expected.difference(&stored).count()
        );
        let last = manifest.iter().map(|e| e.date_added).max();
        let cursor = self.cursor.as_deref().map(instant).transpose()?;
        ensure!(
            cursor == last,
            "the cursor {cursor:?} is not the last date_added {last:?}"
        );
        Ok(())
    }
}

/// `(id, modified or created)` of a STIX object.
pub fn version_of(object: &Value) -> Result<Version> {
    let id = object["id"].as_str().context("an object without id")?;
    let version = object["modified"].as_str().or(object["created"].as_str());
    Ok((id.to_string(), version.map(instant).transpose()?))
}

/// The version a manifest entry is stored as: an object stored without a
/// version (`None`) has one manifest entry, whose `version` medallion
/// made up.
fn stored_as(entry: &ManifestEntry, stored: &BTreeSet<Version>) -> Version {
    let unversioned = (entry.version.0.clone(), None);
    if stored.contains(&unversioned) {
        unversioned
    } else {
        entry.version.clone()
    }
}

/// The whole manifest of a medallion collection, every version, paged.
pub fn manifest(server: &Medallion, collection: &str) -> Result<Vec<ManifestEntry>> {
    let base = format!("{collection}manifest/?match[version]=all&limit=200");
    let mut entries = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let url = match &next {
            Some(token) => format!("{base}&next={token}"),
            None => base.clone(),
        };
        let page = server.get(&url)?;
        for entry in page["objects"].as_array().into_iter().flatten() {
            let id = entry["id"]
                .as_str()
                .context("a manifest entry without id")?;
            let version = entry["version"].as_str().context("without version")?;
            let added = entry["date_added"].as_str().context("without date_added")?;
            entries.push(ManifestEntry {
                version: (id.to_string(), Some(instant(version)?)),
                date_added: instant(added)?,
            });
        }
        match (page["more"].as_bool(), page["next"].as_str()) {
            (Some(true), Some(token)) => next = Some(token.to_string()),
            _ => break,
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        instant(s).unwrap()
    }

    fn entry(id: &str, version: &str, added: &str) -> ManifestEntry {
        ManifestEntry {
            version: (id.into(), Some(at(version))),
            date_added: at(added),
        }
    }

    fn manifest() -> Vec<ManifestEntry> {
        vec![
            entry("a", "2020-01-01T00:00:00Z", "2024-01-01T00:00:00.000001Z"),
            entry("a", "2021-01-01T00:00:00Z", "2024-01-01T00:00:00.000002Z"),
            entry(
                "ip",
                "2024-01-01T00:00:00.000003Z",
                "2024-01-01T00:00:00.000003Z",
            ),
        ]
    }

    fn snapshot(versions: &[(&str, Option<&str>)], cursor: Option<&str>) -> StoreSnapshot {
        StoreSnapshot {
            versions: versions
                .iter()
                .map(|(id, v)| (id.to_string(), v.map(at)))
                .collect(),
            cursor: cursor.map(String::from),
            integrity: "ok".into(),
        }
    }

    #[test]
    fn a_store_at_the_end_of_a_page_is_consistent_and_the_whole_is_complete() {
        let first = snapshot(
            &[("a", Some("2020-01-01T00:00:00Z"))],
            Some("2024-01-01T00:00:00.000001Z"),
        );
        first.check_consistent(&manifest()).unwrap();
        assert!(first.check_complete(&manifest()).is_err());
        let all = snapshot(
            &[
                ("a", Some("2020-01-01T00:00:00Z")),
                ("a", Some("2021-01-01T00:00:00Z")),
                ("ip", None),
            ],
            Some("2024-01-01T00:00:00.000003Z"),
        );
        all.check_complete(&manifest()).unwrap();
    }

    #[test]
    fn a_cursor_ahead_a_version_twice_or_a_stranger_is_caught() {
        let ahead = snapshot(
            &[("a", Some("2020-01-01T00:00:00Z"))],
            Some("2024-01-01T00:00:00.000002Z"),
        );
        let message = ahead.check_consistent(&manifest()).unwrap_err().to_string();
        assert!(message.contains("ahead of its data"), "{message}");
        let twice = snapshot(
            &[
                ("a", Some("2020-01-01T00:00:00Z")),
                ("a", Some("2020-01-01T00:00:00.000Z")),
            ],
            None,
        );
        assert!(
            twice
                .check_consistent(&manifest())
                .unwrap_err()
                .to_string()
                .contains("more than once")
        );
        let stranger = snapshot(&[("b", Some("2020-01-01T00:00:00Z"))], None);
        assert!(stranger.check_consistent(&manifest()).is_err());
        let mut damaged = snapshot(&[], None);
        damaged.integrity = "page 3: btree damaged".into();
        assert!(damaged.check_consistent(&manifest()).is_err());
    }
}
