//! Real STIX data for the tests: MITRE ATT&CK from the shared data folder
//! when it is there, and the small sample of it committed in
//! `tests/fixtures/` (made by `tests/python/attack_sample.py`).
//!
//! The shared folder is `$TAXII_SHARED_DATA`, else `../shared/data` beside
//! the repository. Tests that need it skip with a note when it is absent.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

use crate::python::venv_command;
use crate::repo_root;

/// The environment variable naming the shared data folder.
pub const SHARED_DATA_ENV: &str = "TAXII_SHARED_DATA";

/// ATT&CK Enterprise, STIX 2.0 (about 24,800 objects).
pub const ENTERPRISE_20: &str = "enterprise-attack-2.0.json";
/// ATT&CK for ICS, STIX 2.1 (about 1,800 objects).
pub const ICS_21: &str = "ics-attack-2.1.json";

/// Types whose conversion to STIX 2.1 changes more than `spec_version`.
pub const CHANGED_TYPES: [&str; 6] = [
    "indicator",
    "malware",
    "observed-data",
    "report",
    "threat-actor",
    "tool",
];

/// A file of the shared data folder, or `None` (with a printed note) when
/// it is not there.
pub fn shared_data_file(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(SHARED_DATA_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("..").join("shared").join("data"));
    let path = dir.join(name);
    if path.is_file() {
        return Some(path);
    }
    println!(
        "note: skipped: {} is absent (set {SHARED_DATA_ENV} to the shared data folder)",
        path.display()
    );
    None
}

/// The objects of a bundle file.
pub fn bundle_file_objects(path: &Path) -> Vec<Value> {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let bundle: Value = serde_json::from_slice(&text).expect("a JSON bundle");
    bundle["objects"]
        .as_array()
        .cloned()
        .expect("a bundle has objects")
}

/// ATT&CK Enterprise as STIX 2.0, when the shared data is there.
pub fn enterprise_attack() -> Option<Vec<Value>> {
    shared_data_file(ENTERPRISE_20).map(|path| bundle_file_objects(&path))
}

/// ATT&CK for ICS as STIX 2.1, when the shared data is there.
pub fn ics_attack() -> Option<Vec<Value>> {
    shared_data_file(ICS_21).map(|path| bundle_file_objects(&path))
}

/// The committed sample: 49 real ATT&CK STIX 2.0 objects of 15 types.
pub fn sample() -> Vec<Value> {
    bundle_file_objects(&repo_root().join("tests/fixtures/attack-enterprise-2.0-sample.json"))
}

/// The test's own STIX 2.0 to 2.1 conversion of an object, written from the
/// STIX 2.1 specification independently of the plugin's, for the types
/// ATT&CK holds (and indicators): `spec_version`, the `labels` of the
/// five types that got a `*_types` vocabulary, malware's `is_family`,
/// indicators' `pattern_type`, `created`/`modified` to the millisecond.
pub fn to_stix21(object: &Value) -> Value {
    let mut out: Map<String, Value> = object.as_object().cloned().expect("an object");
    out.insert("spec_version".into(), json!("2.1"));
    let kind = out["type"].as_str().unwrap_or_default().to_string();
    if ["indicator", "malware", "report", "threat-actor", "tool"].contains(&kind.as_str())
        && let Some(labels) = out.remove("labels")
    {
        out.insert(format!("{}_types", kind.replace('-', "_")), labels);
    }
    if kind == "malware" {
        out.entry("is_family").or_insert(json!(true));
    }
    if kind == "indicator" {
        out.entry("pattern_type").or_insert(json!("stix"));
    }
    for name in ["created", "modified"] {
        if let Some(Value::String(stamp)) = out.get_mut(name)
            && !stamp.contains('.')
        {
            *stamp = stamp.replace('Z', ".000Z");
        }
    }
    Value::Object(out)
}

/// What `stix2-validator` is given for a large store: every object of the
/// types whose conversion changes more than `spec_version`, and the first
/// `per_type` objects (by id) of every other type. Deterministic.
pub fn validation_sample(objects: &[Value], per_type: usize) -> Vec<Value> {
    let mut sorted: Vec<&Value> = objects.iter().collect();
    sorted.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    let mut taken: std::collections::HashMap<&str, usize> = Default::default();
    sorted
        .into_iter()
        .filter(|o| {
            let kind = o["type"].as_str().unwrap_or_default();
            let count = taken.entry(kind).or_default();
            *count += 1;
            CHANGED_TYPES.contains(&kind) || *count <= per_type
        })
        .cloned()
        .collect()
}

/// The types of objects.
pub fn types_of(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .filter_map(|o| o["type"].as_str().map(String::from))
        .collect()
}

/// Runs `stix2-validator` for STIX 2.1 over `objects` in one process,
/// silently; on errors runs it again to report them.
pub fn validate_21(objects: &[Value], dir: &Path) -> Result<()> {
    let path = dir.join("to-validate.json");
    let bundle = json!({
        "type": "bundle",
        "id": "bundle--2b7e4c0a-5d3f-4e1b-9a6c-8f0d1e2a3b4c",
        "objects": objects,
    });
    std::fs::write(&path, bundle.to_string())?;
    let status = venv_command("stix2_validator")
        .args(["--version", "2.1", "--silent"])
        .arg(&path)
        .status()
        .context("cannot run stix2_validator")?;
    if status.success() {
        return Ok(());
    }
    let report = venv_command("stix2_validator")
        .args(["--version", "2.1"])
        .arg(&path)
        .output()
        .context("cannot run stix2_validator")?;
    let text = String::from_utf8_lossy(&report.stdout);
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("[X]"))
        .take(20)
        .collect();
    bail!("stix2-validator rejects objects:\n{}", errors.join("\n"))
}
