//! STIX 2.0 to STIX 2.1, following the changes the STIX 2.1 specification
//! lists: `spec_version` on every object, `labels` on some types replaced by
//! a type-specific vocabulary, indicators gaining `pattern_type`, malware
//! gaining `is_family`.

use serde_json::{Map, Value};

/// Converts a STIX 2.0 object of type `kind` in place.
pub fn stix20_to_21(kind: &str, object: &mut Map<String, Value>) {
    object.insert("spec_version".into(), "2.1".into());
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
        }
        "malware" => {
            object.entry("is_family").or_insert(Value::Bool(true));
        }
        _ => {}
    }
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
