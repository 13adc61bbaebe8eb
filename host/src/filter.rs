//! `_filter` stages: a top-level property compared with a value.
//!
//! - A missing property (or `null`) matches nothing, except `!=`, which
//!   it always matches.
//! - An array property matches when one of its elements does (`labels ==
//!   malicious-activity`); `!=` matches when none does.
//! - Numbers compare as numbers, `true`/`false` as booleans, timestamps
//!   as instants (`modified > 2024-01-01` works whatever the precision of
//!   `modified`), other strings as text.
//! - `contains` is a substring test that ignores case; `in` takes values
//!   separated by commas and matches any of them.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::timestamp;

/// STIX 2.1 properties whose values are timestamps: compared with `<`,
/// `<=`, `>` or `>=`, they take a timestamp and nothing else, since a
/// mistyped date would silently compare as text.
pub const TIMESTAMP_PROPERTIES: &[&str] = &[
    "created",
    "modified",
    "valid_from",
    "valid_until",
    "first_seen",
    "last_seen",
    "published",
    "first_observed",
    "last_observed",
    "start_time",
    "stop_time",
    "submitted",
    "analysis_started",
    "analysis_ended",
];

/// How a property is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `contains`: a substring, ignoring case.
    Contains,
    /// `in`: one of several values.
    In,
}

impl Op {
    /// Every operator, as written.
    pub const ALL: &str = "==, !=, <, <=, >, >=, contains or in";

    /// The operator written `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "==" => Self::Eq,
            "!=" => Self::Ne,
            "<" => Self::Lt,
            "<=" => Self::Le,
            ">" => Self::Gt,
            ">=" => Self::Ge,
            "contains" => Self::Contains,
            "in" => Self::In,
            _ => return None,
        })
    }

    fn accepts(self, ordering: Ordering) -> bool {
        match self {
            Self::Eq | Self::In => ordering.is_eq(),
            Self::Ne => ordering.is_ne(),
            Self::Lt => ordering.is_lt(),
            Self::Le => ordering.is_le(),
            Self::Gt => ordering.is_gt(),
            Self::Ge => ordering.is_ge(),
            Self::Contains => false,
        }
    }
}

/// A value a property is compared with, read once in every form it may
/// be compared as.
#[derive(Debug, Clone, PartialEq)]
pub struct Literal {
    /// As written (without quotes).
    pub text: String,
    lowercase: String,
    number: Option<f64>,
    timestamp: Option<String>,
}

impl Literal {
    /// A value as written.
    pub fn new(text: &str) -> Self {
        Self {
            text: text.to_string(),
            lowercase: text.to_lowercase(),
            number: text.parse().ok().filter(|n: &f64| n.is_finite()),
            timestamp: timestamp::canonical_or_date(text),
        }
    }
}

impl Literal {
    /// Whether it reads as a timestamp (or a date).
    pub fn is_timestamp(&self) -> bool {
        self.timestamp.is_some()
    }
}

impl Op {
    /// Whether it orders values (`<`, `<=`, `>`, `>=`).
    pub fn orders(self) -> bool {
        matches!(self, Self::Lt | Self::Le | Self::Gt | Self::Ge)
    }
}

/// One `_filter` stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The top-level property, for example `type` or `modified`.
    pub field: String,
    /// The comparison.
    pub op: Op,
    /// The value; several for `in`.
    pub values: Vec<Literal>,
}

impl Filter {
    /// A filter on `field`.
    pub fn new(field: &str, op: Op, values: &[&str]) -> Self {
        Self {
            field: field.to_string(),
            op,
            values: values.iter().map(|v| Literal::new(v)).collect(),
        }
    }

    /// The values this filter pins `field` to, when it is `==` or `in`
    /// (what lets a query read only part of a store).
    pub fn pinned(&self, field: &str) -> Option<Vec<&str>> {
        let pins = self.field == field && matches!(self.op, Op::Eq | Op::In);
        pins.then(|| self.values.iter().map(|v| v.text.as_str()).collect())
    }

    /// Whether the object passes.
    pub fn matches(&self, object: &Map<String, Value>) -> bool {
        match self.op {
            Op::Ne => !self.any(object, Op::Eq),
            op => self.any(object, op),
        }
    }

    fn any(&self, object: &Map<String, Value>, op: Op) -> bool {
        match object.get(&self.field) {
            None | Some(Value::Null) => false,
            Some(Value::Array(items)) => items.iter().any(|item| self.scalar(item, op)),
            Some(value) => self.scalar(value, op),
        }
    }

    fn scalar(&self, value: &Value, op: Op) -> bool {
        self.values.iter().any(|literal| match op {
            Op::Contains => contains(value, literal),
            op => compare(value, literal).is_some_and(|o| op.accepts(o)),
        })
    }
}

fn contains(value: &Value, literal: &Literal) -> bool {
    let text = match value {
        Value::String(s) => s.to_lowercase(),
        Value::Number(_) | Value::Bool(_) => value.to_string(),
        _ => return false,
    };
    text.contains(&literal.lowercase)
}

/// How `value` compares with `literal`, when they can be compared.
fn compare(value: &Value, literal: &Literal) -> Option<Ordering> {
    match value {
        Value::Number(n) => n.as_f64()?.partial_cmp(&literal.number?),
        Value::Bool(b) => match literal.text.as_str() {
            "true" => Some(b.cmp(&true)),
            "false" => Some(b.cmp(&false)),
            _ => None,
        },
        Value::String(s) => match (&literal.timestamp, timestamp::canonical(s)) {
            (Some(wanted), Some(have)) => Some(have.cmp(wanted)),
            _ => Some(s.as_str().cmp(&literal.text)),
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object() -> Map<String, Value> {
        serde_json::from_str(
            r#"{"type":"indicator","id":"indicator--1","name":"Evil Corp C2",
                "modified":"2024-03-05T10:00:00.123Z","confidence":70,"revoked":false,
                "labels":["malicious-activity","c2"],"external_references":[{"a":1}]}"#,
        )
        .unwrap()
    }

    fn passes(field: &str, op: &str, values: &[&str]) -> bool {
        Filter::new(field, Op::parse(op).unwrap(), values).matches(&object())
    }

    #[test]
    fn compares_strings_numbers_booleans_and_timestamps() {
        assert!(passes("type", "==", &["indicator"]));
        assert!(!passes("type", "==", &["malware"]));
        assert!(passes("type", "!=", &["malware"]));
        assert!(passes("confidence", ">", &["50"]));
        assert!(passes("confidence", "<=", &["70"]));
        assert!(!passes("confidence", "<", &["70"]));
        assert!(!passes("confidence", ">", &["high"]), "not a number");
        assert!(passes("revoked", "==", &["false"]));
        assert!(!passes("revoked", "==", &["true"]));
        assert!(passes("modified", ">", &["2024-01-01"]));
        assert!(passes("modified", "==", &["2024-03-05T10:00:00.123000Z"]));
        assert!(passes("modified", "<", &["2024-03-05T10:00:00.124Z"]));
        assert!(!passes("modified", ">=", &["2024-03-06"]));
        assert!(passes("name", ">", &["Evil"]), "text order");
    }

    #[test]
    fn contains_ignores_case_and_in_takes_several_values() {
        assert!(passes("name", "contains", &["corp c2"]));
        assert!(!passes("name", "contains", &["apt"]));
        assert!(passes("confidence", "contains", &["7"]));
        assert!(passes("type", "in", &["malware", "indicator"]));
        assert!(!passes("type", "in", &["malware", "tool"]));
    }

    #[test]
    fn arrays_match_by_element_and_missing_properties_only_by_not_equal() {
        assert!(passes("labels", "==", &["c2"]));
        assert!(passes("labels", "contains", &["MALICIOUS"]));
        assert!(!passes("labels", "!=", &["c2"]));
        assert!(passes("labels", "!=", &["benign"]));
        assert!(!passes("external_references", "==", &["1"]));
        assert!(!passes("valid_until", "<", &["2030-01-01"]));
        assert!(!passes("valid_until", "==", &["x"]));
        assert!(passes("valid_until", "!=", &["x"]));
    }

    #[test]
    fn pins_only_equality_on_the_field() {
        let f = Filter::new("type", Op::In, &["a", "b"]);
        assert_eq!(f.pinned("type"), Some(vec!["a", "b"]));
        assert_eq!(f.pinned("id"), None);
        assert_eq!(Filter::new("type", Op::Ne, &["a"]).pinned("type"), None);
    }
}
