//! A fake TAXII server and a host with one feed on it: the setting of the
//! tests of how the product copes with each kind of server.

use serde_json::{Value, json};

use crate::fake_taxii::{FakeTaxii, Recorded, Script};
use crate::host::Host;

/// The feed's (and its store's) name.
pub const FEED: &str = "feed";

/// A fake server and a host whose feed `feed` reads its collection.
pub struct Scenario {
    /// The server.
    pub server: FakeTaxii,
    /// The host.
    pub host: Host,
}

impl Scenario {
    /// Starts `script` and configures the feed with `config add` options
    /// `extra` (besides the Collection URL and `--allow-private`).
    pub fn new(script: Script, extra: &[&str]) -> Self {
        let server = FakeTaxii::start(script);
        let host = Host::new();
        let url = server.collection_url();
        let mut args = vec![
            "config",
            "add",
            FEED,
            "--collection-url",
            &url,
            "--allow-private",
        ];
        args.extend(extra);
        host.ok(args);
        Self { server, host }
    }

    /// Imports the feed; returns its JSON outcome, failed or not.
    pub fn import(&self) -> Value {
        self.import_with(&[])
    }

    /// Imports the feed with extra `import` flags; returns the outcome.
    pub fn import_with(&self, flags: &[&str]) -> Value {
        let mut args = vec!["import", FEED, "--format", "json"];
        args.extend(flags);
        let run = self.host.run(args);
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("import printed no JSON ({e}):\n{run:?}"))
    }

    /// Imports the feed, which must succeed; returns the run report.
    pub fn import_ok(&self) -> Value {
        self.host.import_ok(FEED)
    }

    /// Every original the plugin kept (objects it converted), as received.
    pub fn originals(&self) -> Vec<Value> {
        self.host.jsonl([
            "retrieve",
            "query",
            FEED,
            "--original",
            "--include",
            "all",
            "--versions",
            "all",
            "--format",
            "jsonl",
        ])
    }

    /// Every object version stored.
    pub fn stored(&self) -> Vec<Value> {
        self.host.objects(FEED)
    }

    /// The ids of every object version stored, sorted.
    pub fn stored_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .stored()
            .iter()
            .map(|o| o["id"].as_str().unwrap_or_default().to_string())
            .collect();
        ids.sort();
        ids
    }

    /// The objects requests the server got.
    pub fn objects_requests(&self) -> Vec<Recorded> {
        self.server.objects_requests()
    }
}

/// The ids of objects, sorted.
pub fn ids_of(objects: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = objects
        .iter()
        .map(|o| o["id"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    ids
}

/// A valid STIX 2.1 indicator, numbered.
pub fn indicator(n: usize) -> Value {
    json!({
        "type": "indicator",
        "spec_version": "2.1",
        "id": format!("indicator--6e8f4a1c-0000-4000-8000-{n:012}"),
        "created": "2024-01-01T00:00:00.000Z",
        "modified": "2024-01-01T00:00:00.000Z",
        "name": format!("Indicator {n}"),
        "pattern": format!("[ipv4-addr:value = '198.51.100.{}']", n % 250),
        "pattern_type": "stix",
        "valid_from": "2024-01-01T00:00:00Z"
    })
}

/// `count` indicators.
pub fn indicators(count: usize) -> Vec<Value> {
    (0..count).map(indicator).collect()
}

/// A valid STIX 2.0 malware object, numbered.
pub fn malware_20(n: usize) -> Value {
    json!({
        "type": "malware",
        "id": format!("malware--0f1e2d3c-0000-4000-8000-{n:012}"),
        "created": "2017-05-31T21:31:00.000Z",
        "modified": "2017-05-31T21:31:00.000Z",
        "name": format!("Malware {n}"),
        "labels": ["remote-access-trojan"]
    })
}
