//! The objects of a store as the server sent them, before their conversion
//! to STIX 2.1: `retrieve query NAME --original`.
//!
//! The plugin keeps an object's original under `original/{id}/{version}`
//! when it had to convert it (see `wit/feed.wit`); today that is every
//! STIX 2.0 object, so the bundle written is a STIX 2.0 bundle.

use std::io::Write;

use anyhow::Result;

use crate::db::Database;
use crate::retrieve::ObjectFormat;
use crate::store::StoreRef;

/// Prefix of objects as received, when conversion changed them.
pub const ORIGINAL_PREFIX: &str = "original/";

/// Streams the originals of `store` (of `types`, all when empty), at most
/// `limit`; returns how many were written.
pub fn write_originals(
    db: &Database,
    store: &StoreRef,
    types: &[String],
    limit: Option<u64>,
    format: ObjectFormat,
    out: &mut impl Write,
) -> Result<u64> {
    if format == ObjectFormat::Bundle {
        let id = uuid::Uuid::new_v4();
        write!(
            out,
            r#"{{"type":"bundle","id":"bundle--{id}","spec_version":"2.0","objects":["#
        )?;
    }
    let mut prefixes: Vec<String> = types
        .iter()
        .map(|t| format!("{ORIGINAL_PREFIX}{t}--"))
        .collect();
    prefixes.sort();
    prefixes.dedup();
    if prefixes.is_empty() {
        prefixes.push(ORIGINAL_PREFIX.into());
    }
    let mut written = 0;
    for prefix in prefixes {
        db.for_each_entry(store, &prefix, |_, value| {
            if limit.is_some_and(|l| written >= l) {
                return Ok(false);
            }
            match format {
                ObjectFormat::Bundle if written > 0 => out.write_all(b",\n")?,
                ObjectFormat::Bundle => out.write_all(b"\n")?,
                ObjectFormat::Jsonl => {}
            }
            out.write_all(value)?;
            if format == ObjectFormat::Jsonl {
                out.write_all(b"\n")?;
            }
            written += 1;
            Ok(true)
        })?;
    }
    if format == ObjectFormat::Bundle {
        out.write_all(b"\n]}\n")?;
    }
    out.flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_originals_of_the_types_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Database::open(dir.path()).unwrap();
        let store = db.ensure_store("default", "s", "taxii-feed").unwrap();
        let entries: Vec<(String, Vec<u8>)> = [
            (
                "object/malware--1/v",
                r#"{"id":"malware--1","spec_version":"2.1"}"#,
            ),
            ("original/malware--1/v", r#"{"id":"malware--1"}"#),
            ("original/tool--2/v", r#"{"id":"tool--2"}"#),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
        db.set_entries(store.id, &entries).unwrap();

        let mut out = Vec::new();
        let n = write_originals(&db, &store, &[], None, ObjectFormat::Bundle, &mut out).unwrap();
        let bundle: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(n, 2);
        assert_eq!(bundle["spec_version"], "2.0");
        assert_eq!(bundle["objects"][0]["id"], "malware--1");

        let mut out = Vec::new();
        let tools = ["tool".to_string()];
        write_originals(&db, &store, &tools, Some(5), ObjectFormat::Jsonl, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "{\"id\":\"tool--2\"}\n");
    }
}
