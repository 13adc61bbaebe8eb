//! STIX objects: the checks an object must pass to be stored, its version
//! key, and its normalization to STIX 2.1.
//!
//! A STIX 2.1 object that passes its checks is stored byte for byte as the
//! server sent it. Only objects that need converting (STIX 2.0) are parsed
//! in full and written anew.

use std::borrow::Cow;
use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

mod convert;

/// A checked object, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// `id`.
    pub id: String,
    /// The version key: `modified`, else `created`, else `-`, canonical.
    pub version: String,
    /// The STIX 2.1 object as JSON.
    pub json: Vec<u8>,
    /// The object as received, when conversion changed it.
    pub original: Option<Vec<u8>>,
}

/// Why an object was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// `id`, when it was a usable one.
    pub id: Option<String>,
    /// `type`, when it was a string.
    pub object_type: Option<String>,
    /// The failed check.
    pub reason: String,
}

/// Checks and normalizes one object received from a server.
pub fn normalize(raw: &RawValue) -> Result<Normalized, Rejection> {
    normalize_from(raw, None)
}

/// Like [`normalize`], for an object that came in a bundle declaring
/// `bundle_spec_version` (STIX 2.0 bundles do): objects without their own
/// `spec_version` are of that version.
pub fn normalize_from(
    raw: &RawValue,
    bundle_spec_version: Option<&str>,
) -> Result<Normalized, Rejection> {
    let fields = Fields::parse(raw.get()).map_err(|reason| Rejection {
        id: None,
        object_type: None,
        reason,
    })?;
    let object_type = fields.string("type").map(Cow::into_owned);
    let id = fields.string("id").map(Cow::into_owned);
    let reject = |reason: String| Rejection {
        id: id.clone(),
        object_type: object_type.clone(),
        reason,
    };
    let Some(kind) = object_type.as_deref() else {
        return Err(reject("no `type`".into()));
    };
    check_identity(kind, id.as_deref()).map_err(reject)?;
    if spec_version(&fields, bundle_spec_version).map_err(reject)? == "2.1" {
        check_properties(kind, |name| fields.has(name)).map_err(reject)?;
        let version = version_key(&fields).map_err(reject)?;
        return Ok(Normalized {
            id: id.clone().unwrap_or_default(),
            version,
            json: raw.get().as_bytes().to_vec(),
            original: None,
        });
    }
    let mut object: Map<String, Value> =
        serde_json::from_str(raw.get()).map_err(|e| reject(e.to_string()))?;
    convert::stix20_to_21(kind, &mut object);
    let json = Value::Object(object).to_string();
    let converted = Fields::parse(&json).map_err(reject)?;
    check_properties(kind, |name| converted.has(name)).map_err(reject)?;
    let version = version_key(&converted).map_err(reject)?;
    Ok(Normalized {
        id: id.clone().unwrap_or_default(),
        version,
        json: json.into_bytes(),
        original: Some(raw.get().as_bytes().to_vec()),
    })
}

/// True for a STIX type name: 3 to 250 of `a-z`, `0-9` and `-`, with no
/// `--` (the separator in identifiers) and no leading or trailing `-`.
pub fn is_valid_type_name(name: &str) -> bool {
    (3..=250).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.contains("--")
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Checks that `id` is `{type}--{uuid}` for this type.
fn check_identity(kind: &str, id: Option<&str>) -> Result<(), String> {
    if !is_valid_type_name(kind) {
        return Err(format!("`type` {kind:?} is not a STIX type name"));
    }
    let id = id.ok_or("no `id`")?;
    let uuid = id
        .strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix("--"))
        .ok_or_else(|| format!("`id` {id:?} does not start with `{kind}--`"))?;
    if is_uuid(uuid) {
        Ok(())
    } else {
        Err(format!("`id` {id:?} does not end with a UUID"))
    }
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `2.1` or `2.0`. Objects without `spec_version` are of their bundle's
/// version when it says; else STIX 2.0 if they have `created` (SDOs, SROs,
/// markings), else 2.1 cyber observables.
fn spec_version(fields: &Fields<'_>, bundle: Option<&str>) -> Result<&'static str, String> {
    match fields.string("spec_version").as_deref() {
        Some("2.1") => Ok("2.1"),
        Some("2.0") => Ok("2.0"),
        Some(other) => Err(format!("unsupported `spec_version` {other:?}")),
        None if fields.has("spec_version") => Err("`spec_version` is not a string".into()),
        None if bundle == Some("2.0") => Ok("2.0"),
        None if fields.has("created") => Ok("2.0"),
        None => Ok("2.1"),
    }
}

/// The version key: `modified`, else `created`, else `-`.
fn version_key(fields: &Fields<'_>) -> Result<String, String> {
    for name in ["modified", "created"] {
        if !fields.has(name) {
            continue;
        }
        let value = fields
            .string(name)
            .ok_or_else(|| format!("`{name}` is not a string"))?;
        return canonical_timestamp(&value)
            .ok_or_else(|| format!("`{name}` {value:?} is not a STIX timestamp"));
    }
    Ok("-".into())
}

/// Writes a STIX timestamp (`YYYY-MM-DDTHH:MM:SS[.s+]Z`) with exactly nine
/// fractional digits, so that keys sort in time order.
pub fn canonical_timestamp(value: &str) -> Option<String> {
    let body = value.strip_suffix('Z')?;
    let (seconds, fraction) = match body.split_once('.') {
        Some((s, f)) if !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit()) => (s, f),
        Some(_) => return None,
        None => (body, ""),
    };
    let shape = seconds.len() == 19
        && seconds.bytes().enumerate().all(|(i, c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    let digits: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(9)
        .collect();
    Some(format!("{seconds}.{digits}Z"))
}

/// Required properties beyond `type` and `id`, by type (STIX 2.1).
fn check_properties(kind: &str, has: impl Fn(&str) -> bool) -> Result<(), String> {
    let missing = |names: &[&str]| -> Result<(), String> {
        match names.iter().find(|n| !has(n)) {
            Some(name) => Err(format!("{kind} without `{name}`")),
            None => Ok(()),
        }
    };
    let one_of = |names: &[&str]| -> Result<(), String> {
        if names.iter().any(|n| has(n)) {
            Ok(())
        } else {
            Err(format!("{kind} without any of `{}`", names.join("`, `")))
        }
    };
    if is_domain_or_relationship(kind) {
        missing(&["created", "modified"])?;
    }
    match kind {
        "attack-pattern" | "campaign" | "course-of-action" | "identity" | "incident"
        | "infrastructure" | "intrusion-set" | "threat-actor" | "tool" | "vulnerability" => {
            missing(&["name"])
        }
        "grouping" => missing(&["context", "object_refs"]),
        "indicator" => missing(&["pattern", "pattern_type", "valid_from"]),
        "location" => one_of(&["region", "country", "latitude"]),
        "malware" => missing(&["is_family"]),
        "malware-analysis" => {
            missing(&["product"])?;
            one_of(&["result", "analysis_sco_refs"])
        }
        "note" => missing(&["content", "object_refs"]),
        "observed-data" => {
            missing(&["first_observed", "last_observed", "number_observed"])?;
            one_of(&["object_refs", "objects"])
        }
        "opinion" => missing(&["opinion", "object_refs"]),
        "report" => missing(&["name", "published", "object_refs"]),
        "relationship" => missing(&["relationship_type", "source_ref", "target_ref"]),
        "sighting" => missing(&["sighting_of_ref"]),
        "marking-definition" => {
            missing(&["created"])?;
            one_of(&["definition", "extensions", "name"])
        }
        "language-content" => missing(&["created", "modified", "object_ref", "contents"]),
        "extension-definition" => missing(&[
            "created",
            "modified",
            "created_by_ref",
            "name",
            "schema",
            "version",
            "extension_types",
        ]),
        "autonomous-system" => missing(&["number"]),
        "directory" => missing(&["path"]),
        "domain-name" | "email-addr" | "ipv4-addr" | "ipv6-addr" | "mac-addr" | "url" => {
            missing(&["value"])
        }
        "email-message" => missing(&["is_multipart"]),
        "mutex" | "software" => missing(&["name"]),
        "network-traffic" => missing(&["protocols"]),
        _ => Ok(()),
    }
}

/// STIX domain objects and relationship objects, which are versioned.
fn is_domain_or_relationship(kind: &str) -> bool {
    matches!(
        kind,
        "attack-pattern"
            | "campaign"
            | "course-of-action"
            | "grouping"
            | "identity"
            | "incident"
            | "indicator"
            | "infrastructure"
            | "intrusion-set"
            | "location"
            | "malware"
            | "malware-analysis"
            | "note"
            | "observed-data"
            | "opinion"
            | "report"
            | "threat-actor"
            | "tool"
            | "vulnerability"
            | "relationship"
            | "sighting"
    )
}

/// FNV-1a, 64 bits: names quarantined objects by their bytes.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// An object's top-level properties, each kept as raw JSON: one pass over
/// the bytes, no copy of the values.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Fields<'a> {
    fn parse(json: &'a str) -> Result<Self, String> {
        let mut de = serde_json::Deserializer::from_str(json);
        de.deserialize_map(FieldsVisitor)
            .map_err(|e| format!("not a JSON object ({e})"))
    }

    /// True when the property is present and not `null`.
    fn has(&self, name: &str) -> bool {
        self.raw(name).is_some_and(|v| v.get() != "null")
    }

    fn raw(&self, name: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }

    /// The property's value if it is a string.
    fn string(&self, name: &str) -> Option<Cow<'a, str>> {
        let raw = self.raw(name)?;
        let mut de = serde_json::Deserializer::from_str(raw.get());
        de::Deserializer::deserialize_str(&mut de, StrVisitor).ok()
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut fields = Vec::with_capacity(16);
        while let Some(key) = map.next_key_seed(KeySeed)? {
            fields.push((key, map.next_value::<&'de RawValue>()?));
        }
        Ok(Fields(fields))
    }
}

struct KeySeed;

impl<'de> de::DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(StrVisitor)
    }
}

/// Borrows a string when it has no escapes, copies it otherwise.
struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

#[cfg(test)]
mod tests;
