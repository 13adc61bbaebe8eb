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
        Ok(())
    }

    /// The quarantine holds records, not versions: refuses version settings.
    pub fn check_quarantine(&self) -> Result<(), String> {
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
mod tests {
    use super::*;
    use crate::filter::Op;

    fn obj(text: &str) -> Map<String, Value> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn version_match_reads_taxii_values() {
        let m = VersionMatch::parse("first,2024-01-01T00:00:00Z").unwrap();
        assert!(m.first && !m.last && !m.all);
        let t = "2024-01-01T00:00:00.000000000Z";
        assert!(m.selects(t, "2023", "2025"));
        assert!(m.selects("2023", "2023", "2025"));
        assert!(!m.selects("2025", "2023", "2025"));
        assert_eq!(VersionMatch::parse("newest"), Err("newest".into()));
        assert_eq!(VersionMatch::parse("last,"), Err("".into()));
        assert_eq!(
            VersionMatch::default(),
            VersionMatch::parse("last").unwrap()
        );
    }

    #[test]
    fn revoked_and_expired_objects_are_hidden_unless_included() {
        let now = timestamp::canonical("2025-01-01T00:00:00Z").unwrap();
        let revoked = br#"{"revoked":true}"#;
        let expired = br#"{"valid_until":"2024-12-31T23:59:59Z"}"#;
        let valid = br#"{"revoked":false,"valid_until":"2025-01-01T00:00:01Z"}"#;
        let none = Include::default();
        assert!(none.hides(revoked, &now).unwrap());
        assert!(none.hides(expired, &now).unwrap());
        assert!(!none.hides(valid, &now).unwrap());
        let r = Include::parse("revoked").unwrap();
        assert!(!r.hides(revoked, &now).unwrap() && r.hides(expired, &now).unwrap());
        let all = Include::parse("all").unwrap();
        assert!(!all.hides(expired, &now).unwrap());
        assert_eq!(Include::parse("revoked,old"), Err("old".into()));
    }

    #[test]
    fn cursors_round_trip_and_refuse_other_words() {
        let c = Cursor("object/indicator--1/2024-01-01T00:00:00.000000000Z".into());
        let word = c.encode();
        assert!(
            word.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        );
        assert_eq!(Cursor::decode(&word), Some(c));
        assert_eq!(Cursor::decode("not a cursor"), None);
        assert_eq!(Cursor::decode("c3RhdGUvY3Vyc29y"), None, "state/cursor");
    }

    #[test]
    fn stages_run_in_order_and_limits_stop_the_page() {
        let stages = vec![
            Stage::Filter(Filter::new("type", Op::Eq, &["indicator"])),
            Stage::Limit(1),
            Stage::Fields(vec!["name".into(), "id".into()]),
        ];
        let mut pipeline = Pipeline::new(&stages);
        let malware = obj(r#"{"type":"malware","id":"malware--1"}"#);
        let first = obj(r#"{"type":"indicator","id":"indicator--1","name":"a"}"#);
        let second = obj(r#"{"type":"indicator","id":"indicator--2"}"#);
        assert_eq!(pipeline.run(Some(&malware)), Verdict::Skip);
        assert_eq!(
            pipeline.run(Some(&first)),
            Verdict::Emit(Some(r#"{"name":"a","id":"indicator--1"}"#.into()))
        );
        assert_eq!(pipeline.run(Some(&second)), Verdict::Stop);
        assert!(pipeline.would_emit(Some(&second)));
        assert!(!pipeline.would_emit(Some(&malware)));
        let kept = ["name".to_string(), "id".to_string()];
        assert_eq!(pipeline.fields(), Some(&kept[..]));
    }

    #[test]
    fn filters_after_a_projection_see_the_projection() {
        let stages = vec![
            Stage::Fields(vec!["id".into()]),
            Stage::Filter(Filter::new("type", Op::Eq, &["indicator"])),
        ];
        let mut pipeline = Pipeline::new(&stages);
        let object = obj(r#"{"type":"indicator","id":"indicator--1"}"#);
        assert_eq!(pipeline.run(Some(&object)), Verdict::Skip);
        let zero = [Stage::Limit(0)];
        assert_eq!(Pipeline::new(&zero).run(None), Verdict::Stop);
        assert!(!Pipeline::new(&zero).would_emit(None));
        assert!(!Pipeline::new(&zero).reads_objects());
    }

    #[test]
    fn a_setting_given_twice_is_refused_by_name() {
        let mut mine = Source {
            versions: Some(VersionMatch::default()),
            ..Source::default()
        };
        let theirs = Source {
            versions: Some(VersionMatch::parse("all").unwrap()),
            ..Source::default()
        };
        let error = mine.clone().merge(theirs).unwrap_err();
        assert!(error.contains("`_versions`/`--versions`"), "{error}");
        let cursor = Source {
            cursor: Some(Cursor("object/x/1".into())),
            ..Source::default()
        };
        mine.merge(cursor).unwrap();
        assert!(mine.cursor.is_some() && mine.versions.is_some());
    }
}
