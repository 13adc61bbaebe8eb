use serde_json::json;

use super::*;

fn raw(value: serde_json::Value) -> Box<RawValue> {
    RawValue::from_string(value.to_string()).unwrap()
}

fn indicator() -> serde_json::Value {
    json!({
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "created": "2024-01-01T00:00:00.000Z",
        "modified": "2024-02-01T00:00:00.5Z",
        "pattern": "[ipv4-addr:value = '203.0.113.1']",
        "pattern_type": "stix",
        "valid_from": "2024-01-01T00:00:00Z"
    })
}

fn reason(value: serde_json::Value) -> String {
    normalize(&raw(value)).unwrap_err().reason
}

#[test]
fn keeps_a_valid_21_object_byte_for_byte() {
    let object = raw(indicator());
    let normalized = normalize(&object).unwrap();
    assert_eq!(normalized.json, object.get().as_bytes());
    assert_eq!(
        normalized.id,
        "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"
    );
    assert_eq!(normalized.version, "2024-02-01T00:00:00.500000000Z");
    assert!(normalized.original.is_none());
}

#[test]
fn rejects_objects_missing_what_their_type_requires() {
    let mut no_pattern = indicator();
    no_pattern.as_object_mut().unwrap().remove("pattern");
    assert_eq!(reason(no_pattern), "indicator without `pattern`");

    let mut no_modified = indicator();
    no_modified.as_object_mut().unwrap().remove("modified");
    assert_eq!(reason(no_modified), "indicator without `modified`");

    let relationship = json!({
        "type": "relationship", "spec_version": "2.1",
        "id": "relationship--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "created": "2024-01-01T00:00:00Z", "modified": "2024-01-01T00:00:00Z",
        "relationship_type": "uses", "source_ref": "malware--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"
    });
    assert_eq!(reason(relationship), "relationship without `target_ref`");
}

#[test]
fn rejects_bad_identity_and_versions() {
    let mut wrong_prefix = indicator();
    wrong_prefix["id"] = json!("malware--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f");
    assert!(reason(wrong_prefix).contains("does not start with `indicator--`"));

    let mut bad_uuid = indicator();
    bad_uuid["id"] = json!("indicator--1234");
    assert!(reason(bad_uuid).contains("UUID"));

    let mut bad_type = indicator();
    bad_type["type"] = json!("Indicator");
    assert!(reason(bad_type).contains("not a STIX type name"));

    let mut bad_time = indicator();
    bad_time["modified"] = json!("yesterday");
    assert!(reason(bad_time).contains("not a STIX timestamp"));

    let mut bad_spec = indicator();
    bad_spec["spec_version"] = json!("3.0");
    assert!(reason(bad_spec).contains("unsupported `spec_version`"));

    assert_eq!(reason(json!({"id": "x"})), "no `type`");
    assert!(reason(json!([1, 2])).contains("not a JSON object"));
    assert!(reason(json!("text")).contains("not a JSON object"));
}

#[test]
fn converts_stix_20_objects_and_keeps_the_original() {
    let object = raw(json!({
        "type": "malware",
        "id": "malware--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "created": "2017-01-01T00:00:00.000Z",
        "modified": "2017-01-01T00:00:00.000Z",
        "name": "Poison Ivy",
        "labels": ["remote-access-trojan"]
    }));
    let normalized = normalize(&object).unwrap();
    let converted: serde_json::Value = serde_json::from_slice(&normalized.json).unwrap();
    assert_eq!(converted["spec_version"], "2.1");
    assert_eq!(converted["is_family"], true);
    assert_eq!(converted["malware_types"], json!(["remote-access-trojan"]));
    assert!(converted.get("labels").is_none());
    assert_eq!(
        normalized.original.as_deref(),
        Some(object.get().as_bytes())
    );
}

#[test]
fn treats_observables_without_created_as_21() {
    let object = raw(json!({
        "type": "ipv4-addr",
        "id": "ipv4-addr--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "value": "203.0.113.1"
    }));
    let normalized = normalize(&object).unwrap();
    assert_eq!(normalized.version, "-");
    assert!(normalized.original.is_none());
}

#[test]
fn canonical_timestamps_sort_in_time_order() {
    let a = canonical_timestamp("2024-01-01T00:00:00Z").unwrap();
    let b = canonical_timestamp("2024-01-01T00:00:00.5Z").unwrap();
    let c = canonical_timestamp("2024-01-01T00:00:00.123456789123Z").unwrap();
    assert_eq!(a, "2024-01-01T00:00:00.000000000Z");
    assert_eq!(c, "2024-01-01T00:00:00.123456789Z");
    assert!(a < c && c < b);
    for bad in [
        "2024-01-01T00:00:00",
        "2024-01-01T00:00:00.Z",
        "2024-01-01 00:00:00Z",
    ] {
        assert_eq!(canonical_timestamp(bad), None, "{bad}");
    }
}

#[test]
fn type_names_follow_the_specification() {
    for ok in ["indicator", "x-mitre-tactic", "ipv4-addr"] {
        assert!(is_valid_type_name(ok), "{ok}");
    }
    for bad in ["ab", "Indicator", "x--y", "-x-y", "x_y", ""] {
        assert!(!is_valid_type_name(bad), "{bad}");
    }
}
