//! Event stores: one per feed, each a bucket of key-value entries kept in
//! insertion order (the `seq` column).
//!
//! The plugin decides the keys (see `wit/feed.wit`); the host relies on the
//! `object/{id}/{version}` layout only to answer queries.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::db::Database;

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
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            seq: row.get("seq")?,
            key: row.get("key")?,
            added_at: row.get("added_at")?,
            // Text as well as blobs: a value an operator wrote with the
            // sqlite3 shell is text.
            value: row.get_ref("value")?.as_bytes()?.to_vec(),
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
        self.conn.execute(
            "INSERT INTO stores (tenant, name, plugin, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant, name) DO NOTHING",
            params![tenant, name, plugin, crate::now_rfc3339()],
        )?;
        self.find_store(tenant, name)?
            .context("the store vanished right after it was created")
    }

    /// The store of this name, if any.
    pub fn find_store(&self, tenant: &str, name: &str) -> Result<Option<StoreRef>> {
        self.conn
            .query_row(
                "SELECT id, tenant, name, plugin FROM stores WHERE tenant = ?1 AND name = ?2",
                params![tenant, name],
                |row| {
                    Ok(StoreRef {
                        id: row.get(0)?,
                        tenant: row.get(1)?,
                        name: row.get(2)?,
                        plugin: row.get(3)?,
                    })
                },
            )
            .optional()
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
        let mut statement = self
            .conn
            .prepare("SELECT name FROM stores WHERE tenant = ?1 ORDER BY name")?;
        let names = statement
            .query_map([tenant], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(names)
    }

    /// The tenants that have stores.
    pub fn tenants(&self) -> Result<Vec<String>> {
        let mut statement = self
            .conn
            .prepare("SELECT DISTINCT tenant FROM stores ORDER BY tenant")?;
        let tenants = statement
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(tenants)
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

    /// (distinct objects, object versions) in a store.
    pub fn object_counts(&self, store: &StoreRef) -> Result<(u64, u64)> {
        let counts = self.conn.query_row(
            "SELECT COUNT(DISTINCT substr(key, 8, instr(substr(key, 8), '/') - 1)), COUNT(*)
             FROM entries WHERE store_id = ?1 AND key >= ?2 AND key < ?3",
            params![store.id, OBJECT_PREFIX, prefix_end(OBJECT_PREFIX)],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        Ok(counts)
    }

    /// Objects per STIX type (distinct ids, not versions).
    pub fn type_counts(&self, store: &StoreRef) -> Result<BTreeMap<String, u64>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT substr(key, 8, instr(key, '--') - 8),
                    COUNT(DISTINCT substr(key, 8, instr(substr(key, 8), '/') - 1))
             FROM entries WHERE store_id = ?1 AND key >= ?2 AND key < ?3 GROUP BY 1",
        )?;
        let counts = statement
            .query_map(
                params![store.id, OBJECT_PREFIX, prefix_end(OBJECT_PREFIX)],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?
            .collect::<rusqlite::Result<_>>()?;
        Ok(counts)
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
        let mut statement = self.conn.prepare_cached(
            "SELECT seq, key, value, added_at FROM entries
             WHERE store_id = ?1 AND key >= ?2 AND key < ?3 ORDER BY key",
        )?;
        let mut rows = statement.query(params![store.id, from, to])?;
        while let Some(row) = rows.next()? {
            if !f(VersionRow::from_row(row)?)? {
                break;
            }
        }
        Ok(())
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn for_each_entry(
        &self,
        store: &StoreRef,
        prefix: &str,
        mut f: impl FnMut(&str, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut statement = self.conn.prepare_cached(
            "SELECT key, value FROM entries
             WHERE store_id = ?1 AND key >= ?2 AND key < ?3 ORDER BY key",
        )?;
        let mut rows = statement.query(params![store.id, prefix, prefix_end(prefix)])?;
        while let Some(row) = rows.next()? {
            let key = row.get_ref(0)?.as_str()?;
            let value = row.get_ref(1)?.as_bytes()?;
            if !f(key, value)? {
                break;
            }
        }
        Ok(())
    }

    /// One entry's value.
    pub fn get_entry(&self, store_id: i64, key: &str) -> Result<Option<Vec<u8>>> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT value FROM entries WHERE store_id = ?1 AND key = ?2")?;
        Ok(statement
            .query_row(params![store_id, key], |row| row.get(0))
            .optional()?)
    }

    /// Whether an entry exists.
    pub fn entry_exists(&self, store_id: i64, key: &str) -> Result<bool> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT 1 FROM entries WHERE store_id = ?1 AND key = ?2")?;
        Ok(statement.exists(params![store_id, key])?)
    }

    /// Writes entries in one transaction: all of them or none. A key that
    /// exists keeps its place in the insertion order.
    pub fn set_entries(&mut self, store_id: i64, entries: &[(String, Vec<u8>)]) -> Result<()> {
        let now = crate::now_rfc3339();
        let tx = self.conn.transaction()?;
        {
            let mut statement = tx.prepare_cached(
                "INSERT INTO entries (store_id, key, value, added_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (store_id, key) DO UPDATE SET value = excluded.value",
            )?;
            for (key, value) in entries {
                statement.execute(params![store_id, key, value, now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes entries in one transaction.
    pub fn delete_entries(&mut self, store_id: i64, keys: &[String]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut statement =
                tx.prepare_cached("DELETE FROM entries WHERE store_id = ?1 AND key = ?2")?;
            for key in keys {
                statement.execute(params![store_id, key])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Up to `limit` keys after the cursor (a `seq`), and the next cursor.
    pub fn list_keys(
        &self,
        store_id: i64,
        after: Option<u64>,
        limit: u32,
    ) -> Result<(Vec<String>, Option<u64>)> {
        let mut statement = self.conn.prepare_cached(
            "SELECT seq, key FROM entries WHERE store_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows: Vec<(i64, String)> = statement
            .query_map(params![store_id, after.unwrap_or(0), limit], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let next = (rows.len() == limit as usize)
            .then(|| rows.last().map(|(seq, _)| *seq as u64))
            .flatten();
        Ok((rows.into_iter().map(|(_, key)| key).collect(), next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bounds_exactly_the_prefix() {
        assert_eq!(prefix_end("object/"), "object0");
        assert_eq!(prefix_end("object/indicator--"), "object/indicator-.");
        let end = prefix_end("object/");
        assert!("object/zzz" < end.as_str() && "object0" >= end.as_str());
    }

    #[test]
    fn entries_are_written_all_or_nothing_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Database::open(dir.path()).unwrap();
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
    }

    #[test]
    fn a_failed_batch_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Database::open(dir.path()).unwrap();
        let missing_store = 999;
        let entries = vec![("object/a/1".to_string(), b"{}".to_vec())];
        assert!(db.set_entries(missing_store, &entries).is_err());
        let count: i64 = db
            .conn
            .query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 0);
    }
}
