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

fn converted(value: serde_json::Value) -> serde_json::Value {
    let normalized = normalize(&raw(value)).unwrap();
    assert!(normalized.original.is_some(), "the original is kept");
    serde_json::from_slice(&normalized.json).unwrap()
}

#[test]
fn moves_the_labels_of_each_type_to_its_21_vocabulary() {
    for (kind, property) in [
        ("indicator", "indicator_types"),
        ("malware", "malware_types"),
        ("report", "report_types"),
        ("threat-actor", "threat_actor_types"),
        ("tool", "tool_types"),
    ] {
        let object = json!({
            "type": kind,
            "id": format!("{kind}--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"),
            "created": "2017-01-01T00:00:00.000Z",
            "modified": "2017-01-01T00:00:00.000Z",
            "name": "n", "labels": ["a-label"], "pattern": "[file:name = 'x']",
            "valid_from": "2017-01-01T00:00:00Z", "published": "2017-01-01T00:00:00Z",
            "object_refs": ["malware--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"]
        });
        let out = converted(object);
        assert_eq!(out[property], json!(["a-label"]), "{kind}");
        assert!(out.get("labels").is_none(), "{kind}");
        assert_eq!(out["spec_version"], "2.1");
    }
    let campaign = converted(json!({
        "type": "campaign", "id": "campaign--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "created": "2017-01-01T00:00:00.000Z", "modified": "2017-01-01T00:00:00.000Z",
        "name": "c", "labels": ["kept"]
    }));
    assert_eq!(
        campaign["labels"],
        json!(["kept"]),
        "other types keep labels"
    );
}

#[test]
fn converts_an_indicator_and_its_pattern() {
    let out = converted(json!({
        "type": "indicator", "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "created": "2017-01-01T00:00:00Z", "modified": "2017-01-01T00:00:00.5Z",
        "labels": ["malicious-activity"], "valid_from": "2017-01-01T00:00:00Z",
        "pattern": "[file:hashes.ssdeep = 'x' AND file:created > t'2016-01-01T00:00:00Z']"
    }));
    assert_eq!(out["pattern_type"], "stix");
    assert_eq!(out["indicator_types"], json!(["malicious-activity"]));
    assert_eq!(
        out["pattern"],
        "[file:hashes.SSDEEP = 'x' AND file:ctime > t'2016-01-01T00:00:00Z']"
    );
    assert_eq!(out["created"], "2017-01-01T00:00:00.000Z");
    assert_eq!(out["modified"], "2017-01-01T00:00:00.500Z");
    assert_eq!(
        out["valid_from"], "2017-01-01T00:00:00Z",
        "only created/modified padded"
    );
}

#[test]
fn converts_the_observables_embedded_in_observed_data() {
    let out = converted(json!({
        "type": "observed-data", "id": "observed-data--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "created": "2017-01-01T00:00:00.000Z", "modified": "2017-01-01T00:00:00.000Z",
        "first_observed": "2017-01-01T00:00:00Z", "last_observed": "2017-01-01T00:00:00Z",
        "number_observed": 1,
        "objects": {
            "0": {"type": "file", "name": "a.exe", "created": "2016-01-01T00:00:00Z",
                  "is_encrypted": false, "hashes": {"ssdeep": "3:a:b"}},
            "1": {"type": "process", "name": "a", "binary_ref": "0", "pid": 4},
            "2": {"type": "user-account", "user_id": "u",
                  "password_last_changed": "2016-01-01T00:00:00Z"}
        },
        "external_references": [{"source_name": "s", "hashes": {"ssdeep": "3:c:d"}}]
    }));
    let objects = &out["objects"];
    assert_eq!(
        objects["0"],
        json!({"type": "file", "name": "a.exe", "ctime": "2016-01-01T00:00:00Z",
               "hashes": {"SSDEEP": "3:a:b"}})
    );
    assert_eq!(
        objects["1"],
        json!({"type": "process", "image_ref": "0", "pid": 4})
    );
    assert_eq!(
        objects["2"]["credential_last_changed"],
        "2016-01-01T00:00:00Z"
    );
    assert_eq!(
        out["external_references"][0]["hashes"],
        json!({"SSDEEP": "3:c:d"})
    );
}

#[test]
fn an_object_of_a_20_bundle_is_20_even_without_created() {
    let object = raw(json!({
        "type": "x-custom", "id": "x-custom--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f", "x": 1
    }));
    assert!(normalize(&object).unwrap().original.is_none());
    let in_bundle = normalize_from(&object, Some("2.0")).unwrap();
    assert!(in_bundle.original.is_some());
    let out: serde_json::Value = serde_json::from_slice(&in_bundle.json).unwrap();
    assert_eq!(out["spec_version"], "2.1");
}
