//! A store's objects, streamed in key order (by id, then version) from
//! the database through the query to the output, one object at a time: a
//! store of any size starts printing at once and is never held in memory.
//! Only the versions of the one object being read are held, to choose
//! among them.
//!
//! A page that a `_limit` ends looks ahead for one more object the query
//! would give; if there is one, the page ends with a cursor (the key of
//! the last version it went through) that the next page resumes after.

use std::io::Write;

use anyhow::{Context, Result};
use serde_json::{Map, Value};

use crate::db::Database;
use crate::filter::Filter;
use crate::output::{Content, ObjectFormat, ObjectWriter};
use crate::query::{Cursor, Include, ObjectQuery, Pipeline, Stage, Verdict, VersionMatch};
use crate::store::{
    OBJECT_PREFIX, ORIGINAL_PREFIX, QUARANTINE_PREFIX, StoreRef, VersionRow, object_group,
    prefix_end,
};
use crate::timestamp;

/// What a query wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryOutcome {
    /// Objects written.
    pub written: u64,
    /// Whether more objects follow this page.
    pub more: bool,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
    /// Why the output is not STIX, when it is not.
    pub note: Option<String>,
}

/// Streams a store's objects to `out`.
pub fn write_objects(
    db: &Database,
    store: &StoreRef,
    query: &ObjectQuery,
    format: ObjectFormat,
    out: &mut impl Write,
) -> Result<QueryOutcome> {
    query
        .source
        .check_quarantine()
        .map_err(anyhow::Error::msg)?;
    // The key ranges already keep only the pinned types or ids; the filter
    // that pins them would only parse every object to agree.
    let implied = implied_filter(query);
    let stages: Vec<Stage> = (query.stages.iter().enumerate())
        .filter(|(at, _)| Some(*at) != implied)
        .map(|(_, stage)| stage.clone())
        .collect();
    let pipeline = Pipeline::new(&stages);
    let content = match (query.source.quarantine, pipeline.fields()) {
        (true, _) => Content::Quarantine,
        (false, None) if query.source.original => Content::Original,
        (false, Some(fields)) => Content::Projection(fields.to_vec()),
        (false, None) => Content::Stix,
    };
    let writer = ObjectWriter::new(format, &content, out)?;
    let mut scan = Scan::new(query, pipeline, writer);
    if query.source.quarantine {
        db.for_each_entry(store, QUARANTINE_PREFIX, |key, value| {
            scan.consider(key, value)?;
            Ok(!scan.done)
        })?;
    } else {
        for (from, to) in key_ranges(query) {
            db.for_each_version(store, &from, &to, |row| scan.push(row))?;
            scan.flush_group()?;
            if scan.done {
                break;
            }
        }
    }
    let more = scan.more;
    let next = scan.next_cursor();
    let written = scan.writer.finish(more, next.as_deref())?;
    Ok(QueryOutcome {
        written,
        more,
        next,
        note: content.note(),
    })
}

/// The leading filters: those before any `_limit` or `_fields`, which the
/// key ranges may serve.
fn leading_filters(query: &ObjectQuery) -> impl Iterator<Item = (usize, &Filter)> {
    query
        .stages
        .iter()
        .map_while(|stage| match stage {
            Stage::Filter(f) => Some(f),
            _ => None,
        })
        .enumerate()
}

/// Which stage the key ranges of [`key_ranges`] do the work of: the first
/// leading filter that pins ids, else the first that pins types. An
/// object's key holds its id, and a STIX id starts with its type (the
/// plugin refuses an object whose id does not), so every object in those
/// ranges passes that filter.
fn implied_filter(query: &ObjectQuery) -> Option<usize> {
    let pins = |field: &str| {
        leading_filters(query)
            .find(|(_, f)| f.pinned(field).is_some())
            .map(|(at, _)| at)
    };
    pins("id").or_else(|| pins("type"))
}

/// The key ranges to read, in key order: the whole store, or only the
/// types or ids that the first filters pin, from the cursor on.
fn key_ranges(query: &ObjectQuery) -> Vec<(String, String)> {
    let leading = || leading_filters(query).map(|(_, f)| f);
    let base = if query.source.original {
        ORIGINAL_PREFIX
    } else {
        OBJECT_PREFIX
    };
    let ids = leading().find_map(|f| f.pinned("id"));
    let types = leading().find_map(|f| f.pinned("type"));
    let mut prefixes: Vec<String> = match (ids, types) {
        (Some(ids), _) => ids.iter().map(|id| format!("{base}{id}/")).collect(),
        (None, Some(types)) => types.iter().map(|t| format!("{base}{t}--")).collect(),
        (None, None) => vec![base.to_string()],
    };
    prefixes.sort();
    prefixes.dedup();
    let start = query.source.cursor.as_ref().map(|c| object_group(&c.0));
    prefixes
        .into_iter()
        .filter_map(|prefix| {
            let end = prefix_end(&prefix);
            match start {
                Some(start) if end.as_str() <= start => None,
                Some(start) if prefix.as_str() < start => Some((start.to_string(), end)),
                _ => Some((prefix, end)),
            }
        })
        .collect()
}

/// The state of one query's pass over the store.
struct Scan<'q, 'w, W: Write> {
    versions: VersionMatch,
    added_after: Option<String>,
    include: Include,
    cursor: Option<&'q str>,
    now: String,
    pipeline: Pipeline<'q>,
    writer: ObjectWriter<'w, W>,
    /// The versions of the object being read.
    group: Vec<VersionRow>,
    /// The key of the last version the page went through.
    last: Option<String>,
    /// A `_limit` ended the page; looking for one more object.
    stopped: bool,
    more: bool,
    done: bool,
}

impl<'q, 'w, W: Write> Scan<'q, 'w, W> {
    fn new(query: &'q ObjectQuery, pipeline: Pipeline<'q>, writer: ObjectWriter<'w, W>) -> Self {
        let source = &query.source;
        let now = crate::now_rfc3339();
        Self {
            versions: source.versions.clone().unwrap_or_default(),
            added_after: source.added_after.as_deref().map(timestamp::to_micros),
            include: source.include.unwrap_or_default(),
            cursor: source.cursor.as_ref().map(|c: &Cursor| c.0.as_str()),
            now: timestamp::canonical(&now).unwrap_or(now),
            pipeline,
            writer,
            group: Vec::new(),
            last: None,
            stopped: false,
            more: false,
            done: false,
        }
    }

    /// Takes the next version in key order; false means stop reading.
    fn push(&mut self, row: VersionRow) -> Result<bool> {
        let other_object = self.group.first().is_some_and(|g| g.id() != row.id());
        if other_object {
            self.flush_group()?;
        }
        if self.done {
            return Ok(false);
        }
        self.group.push(row);
        Ok(true)
    }

    /// Chooses among the versions of the object read so far.
    fn flush_group(&mut self) -> Result<()> {
        let group = std::mem::take(&mut self.group);
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            return Ok(());
        };
        let (first, last) = (first.version().to_string(), last.version().to_string());
        for row in group {
            if self.done {
                break;
            }
            if self.versions.selects(row.version(), &first, &last) {
                self.consider_version(row)?;
            }
        }
        Ok(())
    }

    fn consider_version(&mut self, row: VersionRow) -> Result<()> {
        let resumed = self.cursor.is_some_and(|c| row.key.as_str() <= c);
        let too_old = (self.added_after.as_deref()).is_some_and(|t| row.added_at.as_str() <= t);
        if resumed || too_old {
            return Ok(());
        }
        let hidden = (self.include.hides(&row.value, &self.now))
            .with_context(|| format!("the store holds an entry that is not JSON: {}", row.key))?;
        if hidden {
            return Ok(());
        }
        self.consider(&row.key, &row.value)
    }

    /// Runs one object through the stages and writes it if it comes out.
    fn consider(&mut self, key: &str, value: &[u8]) -> Result<()> {
        let object = match self.pipeline.reads_objects() {
            true => Some(parse(key, value)?),
            false => None,
        };
        if self.stopped {
            self.look_ahead(object.as_ref());
            return Ok(());
        }
        match self.pipeline.run(object.as_ref()) {
            Verdict::Emit(None) => self.writer.write(value)?,
            Verdict::Emit(Some(projected)) => self.writer.write(projected.as_bytes())?,
            Verdict::Skip => {}
            Verdict::Stop => {
                self.stopped = true;
                self.look_ahead(object.as_ref());
                return Ok(());
            }
        }
        self.last = Some(key.to_string());
        Ok(())
    }

    fn look_ahead(&mut self, object: Option<&Map<String, Value>>) {
        if self.pipeline.would_emit(object) {
            self.more = true;
            self.done = true;
        }
    }

    /// The cursor of the next page: only object versions have one.
    fn next_cursor(&self) -> Option<String> {
        let last = self.last.as_ref().filter(|_| self.more)?;
        last.starts_with(OBJECT_PREFIX)
            .then(|| Cursor(last.clone()).encode())
    }
}

fn parse(key: &str, value: &[u8]) -> Result<Map<String, Value>> {
    serde_json::from_slice(value)
        .with_context(|| format!("the store holds an entry that is not a JSON object: {key}"))
}

#[cfg(test)]
mod tests;
