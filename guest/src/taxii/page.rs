//! Get Objects answers, read leniently: TAXII 2.1 envelopes
//! (`{"more", "next", "objects"}`) and TAXII 2.0 STIX bundles
//! (`{"type": "bundle", "id", "spec_version", "objects"}`).

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;

/// One page of objects.
#[derive(Debug, Default)]
pub struct Page<'a> {
    /// `more`; missing means false.
    pub more: bool,
    /// `next`; missing, `null` or empty means none.
    pub next: Option<String>,
    /// `objects`, each kept as raw JSON; missing means none.
    pub objects: Vec<&'a RawValue>,
    /// True when the body was a STIX bundle rather than an envelope.
    pub is_bundle: bool,
    /// A bundle's `spec_version` (STIX 2.0 bundles carry it).
    pub bundle_spec_version: Option<String>,
    /// Top-level keys that neither an envelope nor a bundle has, sorted.
    pub unexpected: Vec<UnexpectedKey>,
}

/// A top-level key a page should not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnexpectedKey {
    /// The key.
    pub name: String,
    /// How many entries of its value look like STIX objects (a JSON
    /// object with `type` and `id`), when it is a list.
    pub stix_like: usize,
}

/// Parses a page. An empty body or `{}` is an empty page.
pub fn parse_page(body: &[u8]) -> Result<Page<'_>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Page::default());
    }
    let top: HashMap<String, &RawValue> =
        serde_json::from_slice(body).map_err(|e| format!("the body is not a JSON object ({e})"))?;
    let mut page = Page {
        is_bundle: top
            .get("type")
            .is_some_and(|t| t.get().trim() == "\"bundle\""),
        ..Page::default()
    };
    for (key, value) in top {
        match key.as_str() {
            "more" => page.more = flag(value)?,
            "next" => page.next = token(value)?,
            "objects" => page.objects = list(value)?,
            "type" if page.is_bundle => {}
            "id" if page.is_bundle => {}
            "spec_version" if page.is_bundle => {
                page.bundle_spec_version = serde_json::from_str(value.get()).ok();
            }
            _ => page.unexpected.push(UnexpectedKey {
                stix_like: count_stix_like(value),
                name: key,
            }),
        }
    }
    page.unexpected.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(page)
}

fn flag(value: &RawValue) -> Result<bool, String> {
    serde_json::from_str::<Option<bool>>(value.get())
        .map(Option::unwrap_or_default)
        .map_err(|_| format!("`more` is {} instead of true or false", value.get()))
}

fn list(value: &RawValue) -> Result<Vec<&RawValue>, String> {
    serde_json::from_str::<Option<Vec<&RawValue>>>(value.get())
        .map(Option::unwrap_or_default)
        .map_err(|e| format!("`objects` is not a list ({e})"))
}

/// Reads `next`: a string, or a number some servers send instead.
fn token(value: &RawValue) -> Result<Option<String>, String> {
    match serde_json::from_str::<serde_json::Value>(value.get()) {
        Ok(serde_json::Value::Null) => Ok(None),
        Ok(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Ok(serde_json::Value::String(s)) => Ok(Some(s)),
        Ok(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        _ => Err(format!("`next` is {} instead of a string", value.get())),
    }
}

fn count_stix_like(value: &RawValue) -> usize {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "type")]
        kind: Option<String>,
        id: Option<String>,
    }
    let Ok(entries) = serde_json::from_str::<Vec<&RawValue>>(value.get()) else {
        return 0;
    };
    entries
        .iter()
        .filter_map(|entry| serde_json::from_str::<Probe>(entry.get()).ok())
        .filter(|probe| probe.kind.is_some() && probe.id.is_some())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_envelopes_leniently() {
        let empty = parse_page(b"{}").unwrap();
        assert!(!empty.more && empty.next.is_none() && empty.objects.is_empty());
        assert!(parse_page(b"").unwrap().objects.is_empty());
        assert!(parse_page(br#"{"more":null,"next":null}"#).is_ok());

        let page = parse_page(br#"{"more":true,"next":12,"objects":[{"a":1}],"data":[]}"#).unwrap();
        assert!(page.more && !page.is_bundle);
        assert_eq!(page.next.as_deref(), Some("12"));
        assert_eq!(page.objects.len(), 1);
        let names: Vec<_> = page.unexpected.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["data"]);

        assert!(parse_page(br#"{"objects":{}}"#).is_err());
        assert!(parse_page(br#"{"more":"yes"}"#).is_err());
        assert!(parse_page(br#"{"next":[1]}"#).is_err());
        assert!(parse_page(b"<html>").is_err());
    }

    #[test]
    fn reads_a_stix_20_bundle() {
        let body = br#"{"type":"bundle","id":"bundle--1","spec_version":"2.0",
                        "objects":[{"type":"x","id":"x--1"},{"type":"x","id":"x--2"}]}"#;
        let page = parse_page(body).unwrap();
        assert!(page.is_bundle && !page.more);
        assert_eq!(page.objects.len(), 2);
        assert_eq!(page.bundle_spec_version.as_deref(), Some("2.0"));
        assert!(page.unexpected.is_empty());
    }

    #[test]
    fn counts_objects_put_under_another_key() {
        let body = br#"{"type":"collection","data":[{"type":"x","id":"x--1"},{"id":"y"},3]}"#;
        let page = parse_page(body).unwrap();
        assert!(!page.is_bundle);
        assert_eq!(
            page.unexpected,
            [
                UnexpectedKey {
                    name: "data".into(),
                    stix_like: 1
                },
                UnexpectedKey {
                    name: "type".into(),
                    stix_like: 0
                },
            ]
        );
    }
}
