//! One page of a store's object versions in commit order, as TAXII's Get
//! Objects, Get Manifest and Get Object Versions list them.
//!
//! Order and `next`: versions come in `seq` order, the order the host
//! committed them, which is the order of `date_added`. `next` is the
//! `seq` of the last version of the page, so paging is exact however many
//! versions share a `date_added` (a whole plugin page commits at once and
//! shares one).
//!
//! `added_after` keeps versions whose `date_added` is strictly later. A
//! client that resumes from a page's `X-TAXII-Date-Added-Last` instead of
//! `next` would skip the rest of a commit cut by the page, so a page that
//! would end inside a commit ends before it instead, unless that commit
//! alone fills the page.

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::db::{Database, Value};
use crate::query::VersionMatch;
use crate::store::{OBJECT_PREFIX, StoreRef, VersionRow, prefix_end};

/// What a page holds.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    /// Versions after this `seq` (a `next` token); 0 from the start.
    pub after_seq: i64,
    /// Versions committed after this instant (`added_at` form).
    pub added_after: Option<String>,
    /// `match[id]`; empty means every object.
    pub ids: Vec<String>,
    /// `match[type]`; empty means every type.
    pub types: Vec<String>,
    /// `match[version]`.
    pub versions: VersionMatch,
    /// `match[spec_version]`; empty means every one (all stored objects
    /// are STIX 2.1).
    pub spec_versions: Vec<String>,
    /// At most this many versions.
    pub limit: usize,
}

/// A page of versions.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The versions, in commit order.
    pub rows: Vec<VersionRow>,
    /// Whether more versions follow.
    pub more: bool,
}

impl Page {
    /// The `next` token: the `seq` of the last version, when more follow.
    pub fn next(&self) -> Option<String> {
        let last = self.rows.last().filter(|_| self.more)?;
        Some(last.seq.to_string())
    }
}

/// Reads one page.
pub fn read_page(db: &Database, store: &StoreRef, query: &PageQuery) -> Result<Page> {
    let mut rows = Vec::new();
    let mut wanted = |row: VersionRow, first: Option<String>, last: Option<String>| {
        if keeps(query, &row, first.as_deref(), last.as_deref())? {
            rows.push(row);
        }
        Ok(rows.len() <= query.limit)
    };
    scan(db, store, query, &mut wanted)?;
    let mut page = Page {
        more: rows.len() > query.limit,
        rows,
    };
    if page.more
        && let Some(following) = page.rows.pop()
    {
        end_at_a_commit(&mut page.rows, &following.added_at);
    }
    Ok(page)
}

/// Whether an object with this id is in the store at all.
pub fn has_object(db: &Database, store: &StoreRef, id: &str) -> Result<bool> {
    let prefix = format!("{OBJECT_PREFIX}{id}/");
    let mut found = false;
    db.for_each_version(store, &prefix, &prefix_end(&prefix), |_| {
        found = true;
        Ok(false)
    })?;
    Ok(found)
}

/// Drops the versions at the end of the page that share their commit
/// with the version that follows, unless every version does.
fn end_at_a_commit(rows: &mut Vec<VersionRow>, following: &str) {
    let keep = rows
        .iter()
        .rposition(|r| r.added_at != following)
        .map_or(rows.len(), |i| i + 1);
    rows.truncate(keep);
}

type Visit<'a> = dyn FnMut(VersionRow, Option<String>, Option<String>) -> Result<bool> + 'a;

/// Visits the store's versions after `after_seq` in commit order, with
/// the first and last version keys of each object when the version match
/// needs them, while `visit` says to go on.
fn scan(db: &Database, store: &StoreRef, query: &PageQuery, visit: &mut Visit<'_>) -> Result<()> {
    // The versions of the row's object run from `object/{id}/` to
    // `object/{id}0`: its first and last versions are one index seek each.
    let slash = db.strpos("substr(e.key, 8)", "'/'");
    let group = format!("substr(e.key, 1, 7 + {slash})");
    let group_end = format!("substr(e.key, 1, 6 + {slash}) || '0'");
    let neighbours = if query.versions.is_all() {
        ", NULL, NULL".to_string()
    } else {
        let bound = |order: &str| {
            format!(
                "(SELECT k.key FROM entries k WHERE k.store_id = e.store_id AND k.key >= \
                 {group} AND k.key < {group_end} ORDER BY k.key {order} LIMIT 1)"
            )
        };
        format!(", {}, {}", bound("ASC"), bound("DESC"))
    };
    let mut args: Vec<Value> = vec![
        store.id.into(),
        query.after_seq.into(),
        OBJECT_PREFIX.into(),
        prefix_end(OBJECT_PREFIX).into(),
    ];
    let mut filter = String::new();
    if let Some(after) = &query.added_after {
        args.push(after.clone().into());
        filter.push_str(&format!(" AND e.added_at > ?{}", args.len()));
    }
    // With ids, the key index finds their few versions; without, the
    // (store, seq) index walks the store in commit order (PostgreSQL's
    // planner takes no hint; it picks that index by itself).
    let index = if query.ids.is_empty() {
        if db.is_postgres() {
            ""
        } else {
            "INDEXED BY entries_by_store_seq"
        }
    } else {
        let mut ranges = Vec::new();
        for id in &query.ids {
            let prefix = format!("{OBJECT_PREFIX}{id}/");
            let end = prefix_end(&prefix);
            args.push(prefix.into());
            args.push(end.into());
            ranges.push(format!(
                "(e.key >= ?{} AND e.key < ?{})",
                args.len() - 1,
                args.len()
            ));
        }
        filter.push_str(&format!(" AND ({})", ranges.join(" OR ")));
        ""
    };
    let sql = format!(
        "SELECT e.seq, e.key, e.value, e.added_at{neighbours} FROM entries e {index}
         WHERE e.store_id = ?1 AND e.seq > ?2 AND e.key >= ?3 AND e.key < ?4{filter}
         ORDER BY e.seq"
    );
    db.query_each(&sql, &args, |row| {
        let version = VersionRow {
            seq: row.at(0)?,
            key: row.at(1)?,
            value: row.at(2)?,
            added_at: row.at(3)?,
        };
        visit(version, row.at(4)?, row.at(5)?)
    })
    .context("cannot read the store")
}

/// Whether a version passes the type, version and spec version matches.
fn keeps(
    query: &PageQuery,
    row: &VersionRow,
    first: Option<&str>,
    last: Option<&str>,
) -> Result<bool> {
    let kind = row.id().split_once("--").map_or("", |(t, _)| t);
    if !query.types.is_empty() && !query.types.iter().any(|t| t == kind) {
        return Ok(false);
    }
    let selected = query.versions.selects(
        row.version(),
        version_of(first.unwrap_or_default()),
        version_of(last.unwrap_or_default()),
    );
    if !selected {
        return Ok(false);
    }
    if query.spec_versions.is_empty() {
        return Ok(true);
    }
    #[derive(Deserialize)]
    struct Spec {
        spec_version: Option<String>,
    }
    let spec: Spec = serde_json::from_slice(&row.value)
        .with_context(|| format!("the store holds an entry that is not JSON: {}", row.key))?;
    let spec = spec.spec_version.unwrap_or_else(|| "2.1".into());
    Ok(query.spec_versions.contains(&spec))
}

/// `object/{id}/{version}` → `{version}`.
fn version_of(key: &str) -> &str {
    key.rsplit_once('/').map_or("", |(_, v)| v)
}

#[cfg(test)]
mod tests;
