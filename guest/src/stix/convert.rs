//! STIX 2.0 to STIX 2.1, following the changes between the two
//! specifications. Every change is listed here; nothing else is touched,
//! and the object as received is kept beside the converted one.
//!
//! - `spec_version: "2.1"` on every object (2.1 makes it a required
//!   common property; 2.0 put it on the bundle only).
//! - `created` and `modified` with less than millisecond precision are
//!   padded to milliseconds (2.1 requires at least that precision).
//! - The `labels` of indicator, malware, report, threat-actor and tool move
//!   to `indicator_types`, `malware_types`, `report_types`,
//!   `threat_actor_types` and `tool_types`: 2.0 drew those labels from the
//!   `*-label-ov` vocabularies that 2.1 renamed `*-type-ov`.
//! - Indicators gain the required `pattern_type: "stix"`; their pattern's
//!   object paths follow the observable property renames below.
//! - Malware gains the required `is_family`: a 2.0 malware object
//!   described a kind of malware, so `true`.
//! - Cyber observables embedded in observed-data (`objects`, deprecated
//!   but valid in 2.1) follow the 2.1 observable changes: file and
//!   directory `created`/`modified`/`accessed` become
//!   `ctime`/`mtime`/`atime`; process `binary_ref` becomes `image_ref` and
//!   `name`/`arguments` are dropped; user-account `password_last_changed`
//!   becomes `credential_last_changed`; file `is_encrypted`,
//!   `encryption_algorithm`, `decryption_key`, the raster-image
//!   extension's `image_compression_algorithm` and the socket extension's
//!   `protocol_family` are dropped (2.1 has no such properties).
//! - In every `hashes` dictionary, `ssdeep` becomes `SSDEEP`
//!   (`hash-algorithm-ov` of 2.1).

use serde_json::{Map, Value};

mod pattern;

/// The 2.0 observable property renames of 2.1: (type, 2.0 name, 2.1 name).
const OBSERVABLE_RENAMES: &[(&str, &str, &str)] = &[
    ("file", "created", "ctime"),
    ("file", "modified", "mtime"),
    ("file", "accessed", "atime"),
    ("directory", "created", "ctime"),
    ("directory", "modified", "mtime"),
    ("directory", "accessed", "atime"),
    ("process", "binary_ref", "image_ref"),
    (
        "user-account",
        "password_last_changed",
        "credential_last_changed",
    ),
];

/// Observable properties 2.0 had and 2.1 dropped: (type, name).
const OBSERVABLE_DROPS: &[(&str, &str)] = &[
    ("file", "is_encrypted"),
    ("file", "encryption_algorithm"),
    ("file", "decryption_key"),
    ("process", "name"),
    ("process", "arguments"),
];

/// Extension properties 2.0 had and 2.1 dropped: (extension, name).
const EXTENSION_DROPS: &[(&str, &str)] = &[
    ("raster-image-ext", "image_compression_algorithm"),
    ("socket-ext", "protocol_family"),
];

/// Converts a STIX 2.0 object of type `kind` in place.
pub fn stix20_to_21(kind: &str, object: &mut Map<String, Value>) {
    object.insert("spec_version".into(), "2.1".into());
    for name in ["created", "modified"] {
        if let Some(Value::String(stamp)) = object.get_mut(name) {
            pad_to_milliseconds(stamp);
        }
    }
    if let Some(property) = labels_vocabulary(kind)
        && !object.contains_key(property)
        && let Some(labels) = object.remove("labels")
    {
        object.insert(property.into(), labels);
    }
    match kind {
        "indicator" => {
            object
                .entry("pattern_type")
                .or_insert_with(|| "stix".into());
            if let Some(Value::String(text)) = object.get_mut("pattern") {
                *text = pattern::step(text, OBSERVABLE_RENAMES);
            }
        }
        "malware" => {
            object.entry("is_family").or_insert(Value::Bool(true));
        }
        "observed-data" => {
            if let Some(Value::Object(observables)) = object.get_mut("objects") {
                observables.values_mut().for_each(step_observable);
            }
        }
        _ => {}
    }
    rename_hashes(object);
}

/// The 2.1 property that took over a 2.0 type's `labels`.
fn labels_vocabulary(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "indicator" => "indicator_types",
        "malware" => "malware_types",
        "report" => "report_types",
        "threat-actor" => "threat_actor_types",
        "tool" => "tool_types",
        _ => return None,
    })
}

/// `2017-01-01T00:00:00Z` → `2017-01-01T00:00:00.000Z`; `.5Z` → `.500Z`.
fn pad_to_milliseconds(stamp: &mut String) {
    let Some(body) = stamp.strip_suffix('Z') else {
        return;
    };
    let digits = body
        .rsplit_once('.')
        .map_or(0, |(_, fraction)| fraction.len());
    if digits >= 3 || body.len() < 19 {
        return;
    }
    let mut padded = body.to_string();
    if digits == 0 {
        padded.push('.');
    }
    padded.extend(std::iter::repeat_n('0', 3 - digits));
    padded.push('Z');
    *stamp = padded;
}

/// Applies the 2.1 observable changes to one embedded observable.
fn step_observable(observable: &mut Value) {
    let Value::Object(fields) = observable else {
        return;
    };
    let kind = fields
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    for (of, from, to) in OBSERVABLE_RENAMES {
        if *of == kind
            && !fields.contains_key(*to)
            && let Some(value) = fields.remove(*from)
        {
            fields.insert((*to).into(), value);
        }
    }
    for (of, name) in OBSERVABLE_DROPS {
        if *of == kind {
            fields.remove(*name);
        }
    }
    if let Some(Value::Object(extensions)) = fields.get_mut("extensions") {
        for (extension, name) in EXTENSION_DROPS {
            if let Some(Value::Object(fields)) = extensions.get_mut(*extension) {
                fields.remove(*name);
            }
        }
    }
}

/// Renames `ssdeep` to `SSDEEP` in every `hashes` dictionary, at any depth.
fn rename_hashes(object: &mut Map<String, Value>) {
    for (key, value) in object.iter_mut() {
        match value {
            Value::Object(inner) if key == "hashes" => {
                if !inner.contains_key("SSDEEP")
                    && let Some(hash) = inner.remove("ssdeep")
                {
                    inner.insert("SSDEEP".into(), hash);
                }
            }
            Value::Object(inner) => rename_hashes(inner),
            Value::Array(items) => items
                .iter_mut()
                .filter_map(Value::as_object_mut)
                .for_each(rename_hashes),
            _ => {}
        }
    }
}
