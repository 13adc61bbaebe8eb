//! Event stores: one per feed, each a bucket of key-value entries kept in
//! insertion order (the `seq` column).
//!
//! The plugin decides the keys (see `wit/feed.wit`); the host relies on the
//! `object/{id}/{version}` layout only to answer queries.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::args;
use crate::db::{Database, Fence, Row};

/// Prefix of stored STIX object versions.
pub const OBJECT_PREFIX: &str = "object/";
/// Prefix of objects as received, when the plugin had to convert them.
pub const ORIGINAL_PREFIX: &str = "original/";
/// Prefix of rejected objects.
pub const QUARANTINE_PREFIX: &str = "quarantine/";

/// One stored object version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    /// Its place in the order entries were committed.
    pub seq: i64,
    /// `object/{id}/{version}`.
    pub key: String,
    /// When the host committed it (RFC 3339, microseconds).
    pub added_at: String,
    /// The STIX object (JSON).
    pub value: Vec<u8>,
}

impl VersionRow {
    fn from_row(row: &Row<'_>) -> Result<Self> {
        Ok(Self {
            seq: row.get("seq")?,
            key: row.get("key")?,
            added_at: row.get("added_at")?,
            // Text as well as blobs: a value an operator wrote with the
            // sqlite3 shell is text.
            value: row.get("value")?,
        })
    }

    /// The object's id.
    pub fn id(&self) -> &str {
        object_id(&self.key)
    }

    /// The `{version}` part of the key.
    pub fn version(&self) -> &str {
        self.key.rsplit_once('/').map_or("", |(_, v)| v)
    }
}

/// `object/{id}/{version}` → `{id}`.
pub fn object_id(key: &str) -> &str {
    let rest = key.strip_prefix(OBJECT_PREFIX).unwrap_or(key);
    rest.rsplit_once('/').map_or(rest, |(id, _)| id)
}

/// `object/{id}/{version}` → `object/{id}/`, where the object's versions
/// start.
pub fn object_group(key: &str) -> &str {
    key.rfind('/').map_or(key, |slash| &key[..=slash])
}

/// An event store's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreRef {
    /// Row id, used as the bucket handle.
    #[serde(skip)]
    pub id: i64,
    /// Owning tenant.
    pub tenant: String,
    /// The store's name (its feed's name).
    pub name: String,
    /// The plugin that fills it.
    pub plugin: String,
}

/// The first key after every key that starts with `prefix`.
pub fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.to_string();
    match end.pop() {
        Some(last) => end.push(char::from_u32(last as u32 + 1).unwrap_or(char::MAX)),
        None => end.push(char::MAX),
    }
    end
}

impl Database {
    /// The store of this name, created if missing.
    pub fn ensure_store(&self, tenant: &str, name: &str, plugin: &str) -> Result<StoreRef> {
        self.execute(
            "INSERT INTO stores (tenant, name, plugin, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant, name) DO NOTHING",
            args![tenant, name, plugin, crate::now_rfc3339()],
        )?;
        self.find_store(tenant, name)?
            .context("the store vanished right after it was created")
    }

    /// The store of this name, if any.
    pub fn find_store(&self, tenant: &str, name: &str) -> Result<Option<StoreRef>> {
        self.query_opt(
            "SELECT id, tenant, name, plugin FROM stores WHERE tenant = ?1 AND name = ?2",
            args![tenant, name],
            |row| {
                Ok(StoreRef {
                    id: row.at(0)?,
                    tenant: row.at(1)?,
                    name: row.at(2)?,
                    plugin: row.at(3)?,
                })
            },
        )
        .context("cannot read the list of stores")
    }

    /// The store of this name, or an error that lists the stores there are.
    pub fn require_store(&self, tenant: &str, name: &str) -> Result<StoreRef> {
        if let Some(store) = self.find_store(tenant, name)? {
            return Ok(store);
        }
        let names = self.store_names(tenant)?;
        if names.is_empty() {
            bail!("no store named {name}: there are no stores yet; `import` a feed first");
        }
        bail!("no store named {name}: the stores are {}", names.join(", "))
    }

    /// The names of a tenant's stores.
    pub fn store_names(&self, tenant: &str) -> Result<Vec<String>> {
        self.query_all(
            "SELECT name FROM stores WHERE tenant = ?1 ORDER BY name",
            args![tenant],
            |row| row.at(0),
        )
    }

    /// The tenants that have stores.
    pub fn tenants(&self) -> Result<Vec<String>> {
        self.query_all(
            "SELECT DISTINCT tenant FROM stores ORDER BY tenant",
            args![],
            |row| row.at(0),
        )
    }

    /// Every event store of a tenant (not the buckets plugins keep for
    /// themselves, whose names hold a `:`).
    pub fn stores(&self, tenant: &str) -> Result<Vec<StoreRef>> {
        self.store_names(tenant)?
            .iter()
            .filter(|name| !name.contains(':'))
            .map(|name| self.require_store(tenant, name))
            .collect()
    }

    /// SQL for the `{id}` of an `object/{id}/{version}` key.
    fn object_id_sql(&self) -> String {
        format!(
            "substr(key, 8, {} - 1)",
            self.strpos("substr(key, 8)", "'/'")
        )
    }

    /// (distinct objects, object versions) in a store.
    pub fn object_counts(&self, store: &StoreRef) -> Result<(u64, u64)> {
        let sql = format!(
            "SELECT COUNT(DISTINCT {}), COUNT(*)
             FROM entries WHERE store_id = ?1 AND key >= ?2 AND key < ?3",
            self.object_id_sql()
        );
        let counts = self.query_opt(
            &sql,
            args![store.id, OBJECT_PREFIX, prefix_end(OBJECT_PREFIX)],
            |row| Ok((row.at(0)?, row.at(1)?)),
        )?;
        Ok(counts.unwrap_or_default())
    }

    /// Objects per STIX type (distinct ids, not versions).
    pub fn type_counts(&self, store: &StoreRef) -> Result<BTreeMap<String, u64>> {
        let sql = format!(
            "SELECT substr(key, 8, {} - 8), COUNT(DISTINCT {})
             FROM entries WHERE store_id = ?1 AND key >= ?2 AND key < ?3 GROUP BY 1",
            self.strpos("key", "'--'"),
            self.object_id_sql()
        );
        let counts = self.query_all(
            &sql,
            args![store.id, OBJECT_PREFIX, prefix_end(OBJECT_PREFIX)],
            |row| Ok((row.at(0)?, row.at(1)?)),
        )?;
        Ok(counts.into_iter().collect())
    }

    /// Object versions with keys from `from` (included) to `to` (not), in
    /// key order, while `f` says to go on.
    pub fn for_each_version(
        &self,
        store: &StoreRef,
        from: &str,
        to: &str,
        mut f: impl FnMut(VersionRow) -> Result<bool>,
    ) -> Result<()> {
        self.query_each(
            "SELECT seq, key, value, added_at FROM entries
             WHERE store_id = ?1 AND key >= ?2 AND key < ?3 ORDER BY key",
            args![store.id, from, to],
            |row| f(VersionRow::from_row(row)?),
        )
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn for_each_entry(
        &self,
        store: &StoreRef,
        prefix: &str,
        mut f: impl FnMut(&str, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        self.query_each(
            "SELECT key, value FROM entries
             WHERE store_id = ?1 AND key >= ?2 AND key < ?3 ORDER BY key",
            args![store.id, prefix, prefix_end(prefix)],
            |row| {
                let key: String = row.at(0)?;
                let value: Vec<u8> = row.at(1)?;
                f(&key, &value)
            },
        )
    }

    /// One entry's value.
    pub fn get_entry(&self, store_id: i64, key: &str) -> Result<Option<Vec<u8>>> {
        self.query_opt(
            "SELECT value FROM entries WHERE store_id = ?1 AND key = ?2",
            args![store_id, key],
            |row| row.at(0),
        )
    }

    /// The values of `keys`, in order, `None` where a key is absent: one
    /// read for all of them (a plugin asks about a page's keys at once).
    pub fn get_entries(&self, store_id: i64, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        if self.is_postgres() {
            return self.postgres_get_entries(store_id, keys);
        }
        self.read(|| {
            keys.iter()
                .map(|key| self.get_entry(store_id, key))
                .collect()
        })
    }

    /// Whether an entry exists.
    pub fn entry_exists(&self, store_id: i64, key: &str) -> Result<bool> {
        Ok(self
            .query_opt(
                "SELECT 1 FROM entries WHERE store_id = ?1 AND key = ?2",
                args![store_id, key],
                |_| Ok(()),
            )?
            .is_some())
    }

    /// Writes entries in one transaction: all of them or none. A key that
    /// exists keeps its place in the insertion order. With a fence (a run
    /// under a lease, see [`crate::lease`]), the transaction first checks
    /// that the lease is still held, and writes nothing if it is not.
    ///
    /// Each new entry gets an `added_at` of its own, one microsecond after
    /// the one before it in the store (see [`Database::added_at_from`]).
    pub fn set_entries(&mut self, store_id: i64, entries: &[(String, Vec<u8>)]) -> Result<()> {
        self.set_entries_fenced(store_id, entries, None)
    }

    /// [`Database::set_entries`], checking `fence` in the same transaction.
    pub fn set_entries_fenced(
        &mut self,
        store_id: i64,
        entries: &[(String, Vec<u8>)],
        fence: Option<&Fence>,
    ) -> Result<()> {
        let now = SystemTime::now();
        self.transaction(|| {
            if let Some(fence) = fence {
                self.check_fence(fence)?;
            }
            let first = self.added_at_from(store_id, now)?;
            let added_at: Vec<String> = (0..entries.len() as u64)
                .map(|i| humantime::format_rfc3339_micros(first + Duration::from_micros(i)))
                .map(|t| t.to_string())
                .collect();
            if self.is_postgres() {
                return self.postgres_upsert_entries(store_id, entries, &added_at);
            }
            for ((key, value), added_at) in entries.iter().zip(&added_at) {
                self.execute(
                    "INSERT INTO entries (store_id, key, value, added_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (store_id, key) DO UPDATE SET value = excluded.value",
                    args![store_id, key, value, added_at],
                )?;
            }
            Ok(())
        })
    }

    /// The `added_at` of the next entry of a store: now, or one microsecond
    /// after the store's last entry if that is later. Entries of one store
    /// thus never share an `added_at` (nor go back in time), so that a
    /// TAXII client reading them through `serve-taxii` can resume after
    /// any of them from `X-TAXII-Date-Added-Last` alone: with a time shared
    /// by a whole commit, a page ending inside the commit would make it
    /// skip the commit's rest.
    fn added_at_from(&self, store_id: i64, now: SystemTime) -> Result<SystemTime> {
        let last: Option<String> = self.query_opt(
            "SELECT added_at FROM entries WHERE store_id = ?1 ORDER BY seq DESC LIMIT 1",
            args![store_id],
            |row| row.at(0),
        )?;
        let after_last = last
            .and_then(|t| humantime::parse_rfc3339(&t).ok())
            .map(|t| t + Duration::from_micros(1));
        Ok(after_last.map_or(now, |t| t.max(now)))
    }

    /// Deletes entries in one transaction.
    pub fn delete_entries(&mut self, store_id: i64, keys: &[String]) -> Result<()> {
        self.delete_entries_fenced(store_id, keys, None)
    }

    /// [`Database::delete_entries`], checking `fence` in the same transaction.
    pub fn delete_entries_fenced(
        &mut self,
        store_id: i64,
        keys: &[String],
        fence: Option<&Fence>,
    ) -> Result<()> {
        self.transaction(|| {
            if let Some(fence) = fence {
                self.check_fence(fence)?;
            }
            for key in keys {
                self.execute(
                    "DELETE FROM entries WHERE store_id = ?1 AND key = ?2",
                    args![store_id, key],
                )?;
            }
            Ok(())
        })
    }

    /// Up to `limit` keys after the cursor (a `seq`), and the next cursor.
    pub fn list_keys(
        &self,
        store_id: i64,
        after: Option<u64>,
        limit: u32,
    ) -> Result<(Vec<String>, Option<u64>)> {
        let rows: Vec<(i64, String)> = self.query_all(
            "SELECT seq, key FROM entries WHERE store_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            args![store_id, after.unwrap_or(0), limit],
            |row| Ok((row.at(0)?, row.at(1)?)),
        )?;
        let next = (rows.len() == limit as usize)
            .then(|| rows.last().map(|(seq, _)| *seq as u64))
            .flatten();
        Ok((rows.into_iter().map(|(_, key)| key).collect(), next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::each_backend;

    #[test]
    fn prefix_end_bounds_exactly_the_prefix() {
        assert_eq!(prefix_end("object/"), "object0");
        assert_eq!(prefix_end("object/indicator--"), "object/indicator-.");
        let end = prefix_end("object/");
        assert!("object/zzz" < end.as_str() && "object0" >= end.as_str());
    }

    #[test]
    fn entries_are_written_all_or_nothing_and_read_back() {
        each_backend(|backend| {
            let mut db = backend.open();
            let store = db.ensure_store("default", "intel", "taxii-feed").unwrap();
            let entries = vec![
                ("object/a/1".to_string(), b"{}".to_vec()),
                ("state/cursor".to_string(), b"t1".to_vec()),
            ];
            db.set_entries(store.id, &entries).unwrap();
            assert!(db.entry_exists(store.id, "object/a/1").unwrap());
            assert_eq!(
                db.get_entry(store.id, "state/cursor").unwrap(),
                Some(b"t1".to_vec())
            );

            db.set_entries(store.id, &[("state/cursor".into(), b"t2".to_vec())])
                .unwrap();
            let (keys, next) = db.list_keys(store.id, None, 10).unwrap();
            assert_eq!(
                keys,
                ["object/a/1", "state/cursor"],
                "an update keeps its place"
            );
            assert_eq!(next, None);
            assert_eq!(db.object_counts(&store).unwrap(), (1, 1));

            let other = db.ensure_store("default", "other", "taxii-feed").unwrap();
            assert!(!db.entry_exists(other.id, "object/a/1").unwrap());
            assert_eq!(db.ensure_store("default", "intel", "x").unwrap(), store);
            assert_eq!(db.store_names("default").unwrap(), ["intel", "other"]);
            assert_eq!(db.tenants().unwrap(), ["default"]);
        });
    }

    #[test]
    fn every_entry_of_a_store_gets_an_added_at_of_its_own_in_commit_order() {
        each_backend(|backend| {
            let mut db = backend.open();
            let store = db.ensure_store("default", "intel", "taxii-feed").unwrap();
            let batch = |keys: &[&str]| -> Vec<(String, Vec<u8>)> {
                keys.iter()
                    .map(|k| (k.to_string(), b"{}".to_vec()))
                    .collect()
            };
            db.set_entries(
                store.id,
                &batch(&["object/b/1", "object/a/1", "state/cursor"]),
            )
            .unwrap();
            db.set_entries(store.id, &batch(&["object/c/1", "state/cursor"]))
                .unwrap();
            let mut rows = Vec::new();
            db.query_each(
                "SELECT key, added_at FROM entries WHERE store_id = ?1 ORDER BY seq",
                crate::args![store.id],
                |row| {
                    rows.push((row.at::<String>(0)?, row.at::<String>(1)?));
                    Ok(true)
                },
            )
            .unwrap();
            let keys: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                keys,
                ["object/b/1", "object/a/1", "state/cursor", "object/c/1"]
            );
            let times: Vec<&str> = rows.iter().map(|(_, t)| t.as_str()).collect();
            assert!(
                times.windows(2).all(|w| w[0] < w[1]),
                "strictly increasing, the rewritten cursor keeping its own: {times:?}"
            );
        });
    }

    #[test]
    fn a_batch_read_answers_every_key_in_order() {
        each_backend(|backend| {
            let mut db = backend.open();
            let store = db.ensure_store("default", "intel", "taxii-feed").unwrap();
            let other = db.ensure_store("default", "other", "taxii-feed").unwrap();
            db.set_entries(store.id, &[("object/a/1".into(), b"A".to_vec())])
                .unwrap();
            db.set_entries(other.id, &[("object/b/1".into(), b"B".to_vec())])
                .unwrap();
            let keys: Vec<String> = ["object/b/1", "object/a/1", "object/c/1", "object/a/1"]
                .map(String::from)
                .into();
            assert_eq!(
                db.get_entries(store.id, &keys).unwrap(),
                [None, Some(b"A".to_vec()), None, Some(b"A".to_vec())],
                "another store's key is absent here; a repeated key is answered twice"
            );
            assert_eq!(
                db.get_entries(store.id, &[]).unwrap(),
                Vec::<Option<Vec<u8>>>::new()
            );
            // The read ended: a write may follow on the same connection.
            db.set_entries(store.id, &[("object/c/1".into(), b"C".to_vec())])
                .unwrap();
        });
    }

    #[test]
    fn a_failed_batch_leaves_nothing_behind() {
        each_backend(|backend| {
            let mut db = backend.open();
            let missing_store = 999;
            let entries = vec![("object/a/1".to_string(), b"{}".to_vec())];
            assert!(db.set_entries(missing_store, &entries).is_err());
            let count: Option<i64> = db
                .query_opt("SELECT COUNT(*) FROM entries", args![], |r| r.at(0))
                .unwrap();
            assert_eq!(count, Some(0), "{}", backend.name);
        });
    }

    /// `set-many` is one transaction: a batch that fails at its third
    /// entry leaves none of them, and the store as it was.
    #[test]
    fn a_batch_failing_midway_writes_none_of_it() {
        each_backend(|backend| {
            let mut db = backend.open();
            let store = db.ensure_store("default", "intel", "taxii-feed").unwrap();
            db.set_entries(store.id, &[("state/cursor".into(), b"t1".to_vec())])
                .unwrap();
            // A trigger that refuses one key, as a full disk or a lost
            // connection would refuse a write in the middle of a batch.
            let refuse = if db.is_postgres() {
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
                     $$ BEGIN RAISE EXCEPTION 'refused'; END $$;
                 CREATE TRIGGER refuse BEFORE INSERT ON entries FOR EACH ROW
                     WHEN (NEW.key = 'object/poison/1') EXECUTE FUNCTION refuse()"
            } else {
                "CREATE TRIGGER refuse BEFORE INSERT ON entries
                     WHEN NEW.key = 'object/poison/1' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            };
            db.execute_batch(refuse).unwrap();
            let batch = vec![
                ("object/a/1".to_string(), b"{}".to_vec()),
                ("state/cursor".to_string(), b"t2".to_vec()),
                ("object/poison/1".to_string(), b"{}".to_vec()),
                ("object/b/1".to_string(), b"{}".to_vec()),
            ];
            let error = db.set_entries(store.id, &batch).unwrap_err();
            assert!(format!("{error:#}").contains("refused"), "{error:#}");
            let (keys, _) = db.list_keys(store.id, None, 10).unwrap();
            assert_eq!(keys, ["state/cursor"], "{}", backend.name);
            assert_eq!(
                db.get_entry(store.id, "state/cursor").unwrap(),
                Some(b"t1".to_vec())
            );
            // The connection is usable after the failed transaction.
            db.set_entries(store.id, &batch[..2]).unwrap();
            assert_eq!(db.object_counts(&store).unwrap(), (1, 1));
        });
    }

    #[test]
    fn reads_keys_in_byte_order_and_counts_objects_by_type() {
        each_backend(|backend| {
            let mut db = backend.open();
            let store = db.ensure_store("default", "intel", "taxii-feed").unwrap();
            let keys = [
                "object/indicator--1/2024-01-01T00:00:00.000Z",
                "object/indicator--1/2024-02-01T00:00:00.000Z",
                "object/indicator--2/2024-01-01T00:00:00.000Z",
                "object/attack-pattern--1/2024-01-01T00:00:00.000Z",
                "object/Zeta--1/1",
                "quarantine/x",
                "state/cursor",
            ];
            let entries: Vec<_> = keys
                .iter()
                .map(|k| (k.to_string(), k.as_bytes().to_vec()))
                .collect();
            db.set_entries(store.id, &entries).unwrap();
            assert_eq!(
                db.object_counts(&store).unwrap(),
                (4, 5),
                "{}",
                backend.name
            );
            let types = db.type_counts(&store).unwrap();
            assert_eq!(
                types.into_iter().collect::<Vec<_>>(),
                [
                    ("Zeta".to_string(), 1),
                    ("attack-pattern".to_string(), 1),
                    ("indicator".to_string(), 2)
                ]
            );
            let mut seen = Vec::new();
            db.for_each_version(&store, OBJECT_PREFIX, &prefix_end(OBJECT_PREFIX), |row| {
                assert_eq!(row.value, row.key.as_bytes());
                seen.push(row.key);
                Ok(seen.len() < 4)
            })
            .unwrap();
            // Byte order: upper case before lower case, whatever the locale.
            assert_eq!(seen, [keys[4], keys[3], keys[0], keys[1]]);
            let mut quarantined = Vec::new();
            db.for_each_entry(&store, QUARANTINE_PREFIX, |key, _| {
                quarantined.push(key.to_string());
                Ok(true)
            })
            .unwrap();
            assert_eq!(quarantined, ["quarantine/x"]);
            db.delete_entries(store.id, &["quarantine/x".into(), "state/cursor".into()])
                .unwrap();
            let (left, next) = db.list_keys(store.id, None, 2).unwrap();
            assert_eq!(left, keys[..2]);
            let (rest, _) = db.list_keys(store.id, next, 10).unwrap();
            assert_eq!(rest, keys[2..5]);
        });
    }
}
