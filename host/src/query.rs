//! What a query asks of a store, whichever way it was written (directive
//! stages or `retrieve query` flags): what is read from the store (the
//! [`Source`]), then the [`Stage`]s each object goes through in order.
//!
//! The source picks object versions (`last`, `first`, `all` or given
//! timestamps, as TAXII's `match[version]`), keeps those stored after
//! `added_after`, hides revoked and expired objects unless asked, and
//! resumes after a [`Cursor`]. Stages then filter, limit and project.

use std::borrow::Cow;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::filter::Filter;
use crate::timestamp;

/// A query of a store's objects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectQuery {
    /// What is read from the store.
    pub source: Source,
    /// What each object then goes through, in order.
    pub stages: Vec<Stage>,
}

/// What is read from the store, before any stage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Source {
    /// Which versions of each object; `None` means the last.
    pub versions: Option<VersionMatch>,
    /// Only versions stored after this instant (canonical, see
    /// [`timestamp::canonical`]).
    pub added_after: Option<String>,
    /// Which hidden objects to show.
    pub include: Option<Include>,
    /// Resume after the page that printed this cursor.
    pub cursor: Option<Cursor>,
    /// Read the quarantine (rejected objects with reasons) instead.
    pub quarantine: bool,
    /// Read the objects as the server sent them, before their conversion
    /// to STIX 2.1 (only converted objects have one).
    pub original: bool,
}

impl Source {
    /// Adds the settings of `other`; a setting given on both sides is an
    /// error that names it.
    pub fn merge(&mut self, other: Source) -> Result<(), String> {
        fn one<T>(mine: &mut Option<T>, theirs: Option<T>, name: &str) -> Result<(), String> {
            match (mine.is_some(), theirs) {
                (true, Some(_)) => Err(format!(
                    "{name} is given both in the directive and as a flag: keep one"
                )),
                (_, Some(value)) => {
                    *mine = Some(value);
                    Ok(())
                }
                (_, None) => Ok(()),
            }
        }
        one(
            &mut self.versions,
            other.versions,
            "`_versions`/`--versions`",
        )?;
        one(
            &mut self.added_after,
            other.added_after,
            "`_added_after`/`--added-after`",
        )?;
        one(&mut self.include, other.include, "`_include`/`--include`")?;
        one(&mut self.cursor, other.cursor, "`_cursor`/`--cursor`")?;
        self.quarantine |= other.quarantine;
        self.original |= other.original;
        Ok(())
    }

    /// The quarantine holds records, not versions: refuses version settings.
    pub fn check_quarantine(&self) -> Result<(), String> {
        if self.quarantine && self.original {
            return Err("--quarantine and --original read different things: give one".into());
        }
        let versioned = self.versions.is_some()
            || self.added_after.is_some()
            || self.include.is_some()
            || self.cursor.is_some();
        if self.quarantine && versioned {
            return Err(
                "the quarantine holds rejected objects, not versions: leave out \
                        versions, added-after, include and cursor with --quarantine"
                    .into(),
            );
        }
        Ok(())
    }
}

/// One stage of the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// `_filter`: drop objects that do not match.
    Filter(Filter),
    /// `_limit`: let this many objects through, then end the page.
    Limit(u64),
    /// `_fields`: keep only these properties (the result is no longer STIX).
    Fields(Vec<String>),
}

/// Which versions of an object to read, as TAXII's `match[version]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionMatch {
    /// The oldest version.
    pub first: bool,
    /// The newest version.
    pub last: bool,
    /// Every version.
    pub all: bool,
    /// Versions with these timestamps (canonical).
    pub at: Vec<String>,
}

impl Default for VersionMatch {
    /// The last version, as TAXII's default.
    fn default() -> Self {
        Self {
            last: true,
            ..Self::none()
        }
    }
}

impl VersionMatch {
    /// What `_versions`, `--versions` and `match[version]` accept.
    pub const EXPECTED: &str = "`last`, `first`, `all` or a timestamp, separated by commas";

    /// Parses `last`, `first`, `all` or timestamps, separated by commas.
    /// The error is the item that is none of these.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut found = Self::none();
        for item in text.split(',') {
            match item {
                "first" => found.first = true,
                "last" => found.last = true,
                "all" => found.all = true,
                _ => match timestamp::canonical(item) {
                    Some(t) => found.at.push(t),
                    None => return Err(item.to_string()),
                },
            }
        }
        Ok(found)
    }

    fn none() -> Self {
        Self {
            first: false,
            last: false,
            all: false,
            at: Vec::new(),
        }
    }

    /// True when only `all` is asked (no version needs its neighbours).
    pub fn is_all(&self) -> bool {
        self.all
    }

    /// Whether `version` is selected, among versions running from `first`
    /// to `last`. Versions are `{version}` parts of object keys.
    pub fn selects(&self, version: &str, first: &str, last: &str) -> bool {
        self.all
            || (self.first && version == first)
            || (self.last && version == last)
            || self.at.iter().any(|t| t == version)
    }
}

/// Which objects that are hidden by default to show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Include {
    /// Objects with `revoked: true`.
    pub revoked: bool,
    /// Objects whose `valid_until` has passed.
    pub expired: bool,
}

impl Include {
    /// What `_include` and `--include` accept.
    pub const EXPECTED: &str = "`revoked`, `expired` or `all`, separated by commas";

    /// Parses `revoked`, `expired` or `all`, separated by commas. The
    /// error is the item that is none of these.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut include = Self::default();
        for item in text.split(',') {
            match item {
                "revoked" => include.revoked = true,
                "expired" => include.expired = true,
                "all" => (include.revoked, include.expired) = (true, true),
                other => return Err(other.to_string()),
            }
        }
        Ok(include)
    }

    /// Whether a stored object version (JSON) is hidden, at `now`
    /// (canonical).
    pub fn hides(&self, raw: &[u8], now: &str) -> Result<bool, serde_json::Error> {
        if self.revoked && self.expired {
            return Ok(false);
        }
        #[derive(Deserialize)]
        struct Lifecycle {
            revoked: Option<Value>,
            valid_until: Option<Value>,
        }
        let life: Lifecycle = serde_json::from_slice(raw)?;
        let revoked = life.revoked == Some(Value::Bool(true));
        let expired = life
            .valid_until
            .as_ref()
            .and_then(Value::as_str)
            .and_then(timestamp::canonical)
            .is_some_and(|until| until.as_str() < now);
        Ok((revoked && !self.revoked) || (expired && !self.expired))
    }
}

/// Where a page ended: the key of the last version it went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub String);

impl Cursor {
    /// What `_cursor` and `--cursor` accept.
    pub const EXPECTED: &str = "a cursor printed with an earlier page";

    /// The cursor as printed: one word, safe in a directive and a URL.
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0.as_bytes())
    }

    /// Reads a printed cursor.
    pub fn decode(text: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        let key = String::from_utf8(bytes).ok()?;
        key.starts_with(crate::store::OBJECT_PREFIX)
            .then_some(Self(key))
    }
}

/// What the pipeline does with one object.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Write it: as stored (`None`) or projected (`Some`, JSON).
    Emit(Option<String>),
    /// Leave it out.
    Skip,
    /// A `_limit` is reached: the page ends before this object.
    Stop,
}

/// The stages of a query with the counters of its `_limit`s.
pub struct Pipeline<'q> {
    stages: &'q [Stage],
    counts: Vec<u64>,
    fields: Option<Vec<String>>,
}

impl<'q> Pipeline<'q> {
    /// A fresh pipeline.
    pub fn new(stages: &'q [Stage]) -> Self {
        let fields = stages
            .iter()
            .fold(None, |kept: Option<Vec<String>>, stage| match stage {
                Stage::Fields(names) => Some(match kept {
                    None => names.clone(),
                    Some(kept) => names.iter().filter(|n| kept.contains(n)).cloned().collect(),
                }),
                _ => kept,
            });
        Self {
            stages,
            counts: vec![0; stages.len()],
            fields,
        }
    }

    /// Whether the stages look inside objects (otherwise `run` may be
    /// given `None`).
    pub fn reads_objects(&self) -> bool {
        self.stages.iter().any(|s| !matches!(s, Stage::Limit(_)))
    }

    /// The properties a projected object keeps, if the stages project.
    pub fn fields(&self) -> Option<&[String]> {
        self.fields.as_deref()
    }

    /// Runs one object through the stages.
    pub fn run(&mut self, object: Option<&Map<String, Value>>) -> Verdict {
        let mut current = object.map(Cow::Borrowed);
        for (stage, count) in self.stages.iter().zip(&mut self.counts) {
            match stage {
                Stage::Limit(n) if *count >= *n => return Verdict::Stop,
                Stage::Limit(_) => *count += 1,
                Stage::Filter(f) if !current.as_ref().is_some_and(|o| f.matches(o)) => {
                    return Verdict::Skip;
                }
                Stage::Filter(_) => {}
                Stage::Fields(names) => current = current.map(|o| Cow::Owned(project(&o, names))),
            }
        }
        let projected = self
            .fields()
            .map(|f| write_projection(current.as_deref(), f));
        Verdict::Emit(projected)
    }

    /// Whether the object would come out of a fresh pipeline: what tells
    /// that a page that stopped has more after it.
    pub fn would_emit(&self, object: Option<&Map<String, Value>>) -> bool {
        let mut current = object.map(Cow::Borrowed);
        for stage in self.stages {
            match stage {
                Stage::Limit(n) if *n == 0 => return false,
                Stage::Limit(_) => {}
                Stage::Filter(f) if !current.as_ref().is_some_and(|o| f.matches(o)) => {
                    return false;
                }
                Stage::Filter(_) => {}
                Stage::Fields(names) => current = current.map(|o| Cow::Owned(project(&o, names))),
            }
        }
        true
    }
}

fn project(object: &Map<String, Value>, names: &[String]) -> Map<String, Value> {
    names
        .iter()
        .filter_map(|n| Some((n.clone(), object.get(n)?.clone())))
        .collect()
}

/// The kept properties in the order they were asked for.
fn write_projection(object: Option<&Map<String, Value>>, fields: &[String]) -> String {
    let members: Vec<String> = fields
        .iter()
        .filter_map(|name| {
            let value = object?.get(name)?;
            Some(format!("{}:{value}", Value::String(name.clone())))
        })
        .collect();
    format!("{{{}}}", members.join(","))
}

#[cfg(test)]
mod tests;
