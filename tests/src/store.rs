//! Stores written straight into a host's SQLite file, in the key layout
//! of `wit/feed.wit`: for volume, and for exact control of which versions
//! share a commit (`added_at`). Imports through the plugin are what the
//! other tests use.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rusqlite::{Connection, params};
use serde_json::Value;

use crate::host::Host;

/// One commit: its `added_at` and the object versions it holds.
pub type Commit = (String, Vec<Value>);

/// The `added_at` of the `n`th commit: 2024-06-01, one millisecond apart.
pub fn commit_time(n: usize) -> String {
    format!("2024-06-01T00:00:{:02}.{:03}000Z", n / 1000, n % 1000)
}

/// `objects` cut into commits of `size` versions, in order.
pub fn commits_of(objects: &[Value], size: usize) -> Vec<Commit> {
    objects
        .chunks(size)
        .enumerate()
        .map(|(n, chunk)| (commit_time(n + 1), chunk.to_vec()))
        .collect()
}

/// The `{version}` of an object's key: `modified`, else `created`, else
/// `-`, with nine fractional digits.
pub fn version_key(object: &Value) -> String {
    let Some(stamp) = object["modified"]
        .as_str()
        .or_else(|| object["created"].as_str())
    else {
        return "-".into();
    };
    let body = stamp.trim_end_matches('Z');
    let (seconds, fraction) = body.split_once('.').unwrap_or((body, ""));
    format!("{seconds}.{fraction:0<9}Z")
}

/// The key of an object version.
pub fn object_key(object: &Value) -> String {
    let id = object["id"].as_str().expect("an object with an id");
    format!("object/{id}/{}", version_key(object))
}

fn database(host: &Host) -> PathBuf {
    let file = host.data_dir.path().join("taxii-host.db");
    if !file.exists() {
        // Commands that write create the database with its schema; those
        // that only read refuse a data directory without one.
        let url = "https://taxii.invalid/api/collections/x/";
        host.ok(["config", "add", "schema", "--collection-url", url]);
        host.ok(["config", "remove", "schema"]);
    }
    file
}

/// Writes a store of the default tenant with these commits.
pub fn seed_store(host: &Host, name: &str, commits: &[Commit]) {
    seed_tenant_store(host, "default", name, commits);
}

/// Writes a store of `tenant` with these commits.
pub fn seed_tenant_store(host: &Host, tenant: &str, name: &str, commits: &[Commit]) {
    let mut conn = Connection::open(database(host)).expect("cannot open the host's database");
    let tx = conn.transaction().expect("cannot begin");
    tx.execute(
        "INSERT INTO stores (tenant, name, plugin, created_at) VALUES (?1, ?2, 'taxii-feed', ?3)",
        params![tenant, name, commit_time(0)],
    )
    .expect("cannot add the store");
    let store = tx.last_insert_rowid();
    {
        let mut insert = tx
            .prepare("INSERT INTO entries (store_id, key, value, added_at) VALUES (?1, ?2, ?3, ?4)")
            .expect("cannot prepare");
        for (added_at, objects) in commits {
            for object in objects {
                insert
                    .execute(params![
                        store,
                        object_key(object),
                        object.to_string().into_bytes(),
                        added_at
                    ])
                    .expect("cannot add an entry");
            }
        }
    }
    tx.commit().expect("cannot commit");
}

/// Every entry of a store but its plugin state (`state/`), key → value.
pub fn store_entries(host: &Host, name: &str) -> BTreeMap<String, Vec<u8>> {
    let conn = Connection::open(database(host)).expect("cannot open the host's database");
    let mut statement = conn
        .prepare(
            "SELECT key, value FROM entries JOIN stores ON stores.id = entries.store_id
             WHERE stores.name = ?1 AND key NOT LIKE 'state/%'",
        )
        .expect("cannot prepare");
    statement
        .query_map([name], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("cannot read the store")
        .collect::<rusqlite::Result<_>>()
        .expect("cannot read an entry")
}
