//! Reading stores back: the list of stores, and a store's objects as STIX.
//!
//! Objects stream from the database to the output one at a time, so a
//! store of any size starts printing at once and is never held in memory.

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

use crate::db::Database;
use crate::runs::RunStatus;
use crate::store::{OBJECT_PREFIX, QUARANTINE_PREFIX, StoreRef};

/// Which versions of each object to return, as TAXII's `match[version]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Versions {
    /// The newest version of each object.
    #[default]
    Last,
    /// The oldest version of each object.
    First,
    /// Every version.
    All,
}

/// How objects are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ObjectFormat {
    /// One STIX 2.1 bundle.
    #[default]
    Bundle,
    /// One JSON object per line.
    Jsonl,
}

/// What to read from a store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectQuery {
    /// Only these STIX types; empty means all.
    pub types: Vec<String>,
    /// At most this many objects.
    pub limit: Option<u64>,
    /// Which versions.
    pub versions: Versions,
    /// Read the quarantine (rejected objects with reasons) instead.
    pub quarantine: bool,
}

/// One line of `retrieve list`.
#[derive(Debug, Clone, Serialize)]
pub struct StoreSummary {
    /// The store (and feed) name.
    pub name: String,
    /// The tenant.
    pub tenant: String,
    /// The plugin that fills it.
    pub plugin: String,
    /// The feed's Collection URL, if the feed is still configured.
    pub collection_url: Option<String>,
    /// Distinct objects.
    pub objects: u64,
    /// Object versions.
    pub versions: u64,
    /// When the last run started.
    pub last_run: Option<String>,
    /// How it ended.
    pub last_status: Option<RunStatus>,
    /// Its error, if it failed.
    pub last_error: Option<String>,
}

/// Every store of a tenant with its counts and last run.
pub fn list_stores(db: &Database, tenant: &str) -> Result<Vec<StoreSummary>> {
    db.stores(tenant)?
        .into_iter()
        .map(|store| {
            let (objects, versions) = db.object_counts(&store)?;
            let last = db.last_run(&store)?;
            let feed = db.feed(tenant, &store.name)?;
            Ok(StoreSummary {
                collection_url: feed.map(|f| f.collection_url),
                objects,
                versions,
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
        "PLUGIN",
        "OBJECTS",
        "VERSIONS",
        "LAST RUN",
        "STATUS",
        "COLLECTION",
    ]);
    for s in stores {
        table.add_row([
            s.name.clone(),
            s.plugin.clone(),
            s.objects.to_string(),
            s.versions.to_string(),
            s.last_run.clone().unwrap_or_else(|| "never".into()),
            s.last_status
                .map_or_else(|| "-".into(), |st| st.to_string()),
            s.collection_url
                .clone()
                .unwrap_or_else(|| "(feed removed)".into()),
        ]);
    }
    writeln!(out, "{table}")?;
    Ok(())
}

/// Streams a store's objects to `out`; returns how many were written.
pub fn write_objects(
    db: &Database,
    store: &StoreRef,
    query: &ObjectQuery,
    format: ObjectFormat,
    out: &mut impl Write,
) -> Result<u64> {
    let mut writer = ObjectWriter::new(format, out)?;
    if query.quarantine {
        db.for_each_entry(store, QUARANTINE_PREFIX, |_, value| {
            writer.write(value, query.limit)
        })?;
        return writer.finish();
    }
    let prefixes: Vec<String> = if query.types.is_empty() {
        vec![OBJECT_PREFIX.to_string()]
    } else {
        let mut types = query.types.clone();
        types.sort();
        types.dedup();
        types
            .iter()
            .map(|t| format!("{OBJECT_PREFIX}{t}--"))
            .collect()
    };
    for prefix in prefixes {
        let mut held: Option<(String, Vec<u8>)> = None;
        let mut go_on = true;
        db.for_each_entry(store, &prefix, |key, value| {
            let id = object_id(key);
            let same = held.as_ref().is_some_and(|(held_id, _)| held_id == id);
            go_on = match query.versions {
                Versions::All => writer.write(value, query.limit)?,
                Versions::First if same => true,
                Versions::First => {
                    held = Some((id.to_string(), Vec::new()));
                    writer.write(value, query.limit)?
                }
                Versions::Last => {
                    let keep_going = match held.take() {
                        Some((_, previous)) if !same => writer.write(&previous, query.limit)?,
                        _ => true,
                    };
                    held = Some((id.to_string(), value.to_vec()));
                    keep_going
                }
            };
            Ok(go_on)
        })?;
        if let (Versions::Last, Some((_, value)), true) = (query.versions, held, go_on) {
            writer.write(&value, query.limit)?;
        }
    }
    writer.finish()
}

/// `object/{id}/{version}` → `{id}`.
fn object_id(key: &str) -> &str {
    let rest = key.strip_prefix(OBJECT_PREFIX).unwrap_or(key);
    rest.rsplit_once('/').map_or(rest, |(id, _)| id)
}

struct ObjectWriter<'w, W: Write> {
    format: ObjectFormat,
    out: &'w mut W,
    written: u64,
}

impl<'w, W: Write> ObjectWriter<'w, W> {
    fn new(format: ObjectFormat, out: &'w mut W) -> Result<Self> {
        if format == ObjectFormat::Bundle {
            let id = uuid::Uuid::new_v4();
            write!(out, r#"{{"type":"bundle","id":"bundle--{id}","objects":["#)?;
        }
        Ok(Self {
            format,
            out,
            written: 0,
        })
    }

    /// Writes one object unless the limit is reached; false means stop.
    fn write(&mut self, value: &[u8], limit: Option<u64>) -> Result<bool> {
        if limit.is_some_and(|l| self.written >= l) {
            return Ok(false);
        }
        match self.format {
            ObjectFormat::Bundle if self.written > 0 => self.out.write_all(b",\n")?,
            ObjectFormat::Bundle => self.out.write_all(b"\n")?,
            ObjectFormat::Jsonl => {}
        }
        self.out.write_all(value)?;
        if self.format == ObjectFormat::Jsonl {
            self.out.write_all(b"\n")?;
        }
        self.written += 1;
        Ok(limit.is_none_or(|l| self.written < l))
    }

    fn finish(self) -> Result<u64> {
        if self.format == ObjectFormat::Bundle {
            self.out.write_all(b"\n]}\n")?;
        }
        self.out.flush()?;
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(db: &mut Database, keys: &[(&str, &str)]) -> StoreRef {
        let store = db.ensure_store("default", "s", "taxii-feed").unwrap();
        let entries: Vec<_> = keys
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        db.set_entries(store.id, &entries).unwrap();
        store
    }

    fn lines(db: &Database, store: &StoreRef, query: &ObjectQuery) -> Vec<String> {
        let mut out = Vec::new();
        write_objects(db, store, query, ObjectFormat::Jsonl, &mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn selects_versions_types_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Database::open(dir.path()).unwrap();
        let store = store_with(
            &mut db,
            &[
                ("object/indicator--1/2024-01", "i1v1"),
                ("object/indicator--1/2024-02", "i1v2"),
                ("object/indicator--2/2024-01", "i2v1"),
                ("object/malware--1/2024-01", "m1v1"),
                ("state/cursor", "c"),
                ("quarantine/00ff", "q"),
            ],
        );
        let query = |versions, types: &[&str], limit| ObjectQuery {
            versions,
            types: types.iter().map(|t| t.to_string()).collect(),
            limit,
            quarantine: false,
        };
        assert_eq!(
            lines(&db, &store, &query(Versions::Last, &[], None)),
            ["i1v2", "i2v1", "m1v1"]
        );
        assert_eq!(
            lines(&db, &store, &query(Versions::First, &[], None)),
            ["i1v1", "i2v1", "m1v1"]
        );
        assert_eq!(
            lines(&db, &store, &query(Versions::All, &[], None)).len(),
            4
        );
        assert_eq!(
            lines(&db, &store, &query(Versions::Last, &["malware"], None)),
            ["m1v1"]
        );
        assert_eq!(
            lines(&db, &store, &query(Versions::Last, &[], Some(2))),
            ["i1v2", "i2v1"]
        );
        assert_eq!(
            lines(&db, &store, &query(Versions::All, &[], Some(1))),
            ["i1v1"]
        );
        let quarantine = ObjectQuery {
            quarantine: true,
            ..ObjectQuery::default()
        };
        assert_eq!(lines(&db, &store, &quarantine), ["q"]);
    }

    #[test]
    fn writes_a_bundle_that_parses() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Database::open(dir.path()).unwrap();
        let store = store_with(
            &mut db,
            &[
                ("object/x-a--1/1", r#"{"id":"x-a--1"}"#),
                ("object/x-a--2/1", r#"{"id":"x-a--2"}"#),
            ],
        );
        let mut out = Vec::new();
        let n = write_objects(
            &db,
            &store,
            &ObjectQuery::default(),
            ObjectFormat::Bundle,
            &mut out,
        )
        .unwrap();
        let bundle: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(n, 2);
        assert_eq!(bundle["type"], "bundle");
        assert_eq!(bundle["objects"].as_array().unwrap().len(), 2);
        assert!(bundle["id"].as_str().unwrap().starts_with("bundle--"));
    }
}
