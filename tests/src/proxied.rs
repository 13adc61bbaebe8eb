//! A medallion behind a [`FaultProxy`], and a host whose feeds read it
//! through the proxy: the setup of the politeness and scheduler tests.

use std::path::PathBuf;

use serde_json::Value;

use crate::fault_proxy::FaultProxy;
use crate::host::Host;
use crate::medallion::Medallion;
use crate::python::generated_bundle;
use crate::snapshot::{ManifestEntry, StoreSnapshot, manifest};

/// medallion, a proxy in front of it, and a host.
pub struct ProxiedServer {
    /// The server.
    pub server: Medallion,
    /// The proxy every feed goes through.
    pub proxy: FaultProxy,
    /// The host, with its own data directory.
    pub host: Host,
    /// The server's `intel` collection, as its manifest lists it.
    pub manifest: Vec<ManifestEntry>,
}

impl ProxiedServer {
    /// medallion serving `objects` generated objects (with `seed`).
    pub fn start(objects: u32, seed: u32) -> Self {
        let bundle: PathBuf = generated_bundle(objects, seed, None);
        let server = Medallion::start(&bundle).expect("medallion did not start");
        let proxy = FaultProxy::start(&server.urls.base_url).expect("the proxy did not start");
        let manifest = manifest(&server, server.collection("intel")).expect("no manifest");
        Self {
            server,
            proxy,
            host: Host::new(),
            manifest,
        }
    }

    /// The `intel` collection's URL through the proxy.
    pub fn url(&self) -> String {
        self.proxy.url(self.server.collection("intel"))
    }

    /// The path of the collection resource, as the proxy sees it.
    pub fn collection_path(&self) -> String {
        let url = self.url();
        let rest = url.trim_start_matches("http://");
        rest[rest.find('/').unwrap_or(0)..].to_string()
    }

    /// Adds feed `name` on the collection through the proxy, with `extra`
    /// `config add` flags.
    pub fn add_feed(&self, name: &str, extra: &[&str]) {
        let password_file = self.server.password_file().display().to_string();
        let mut args = vec!["config", "add", name, "--collection-url"];
        let url = self.url();
        args.push(&url);
        args.extend([
            "--username",
            &self.server.user,
            "--password-file",
            &password_file,
            "--allow-private",
        ]);
        args.extend(extra);
        self.host.ok(args);
    }

    /// Runs `import name` with `extra` flags; returns its JSON outcome.
    pub fn import(&self, name: &str, extra: &[&str]) -> Value {
        let mut args = vec!["import", name, "--format", "json"];
        args.extend(extra);
        let run = self.host.run(args);
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
            panic!(
                "import printed no JSON ({e}):\n{}\n{}",
                run.stdout, run.stderr
            )
        })
    }

    /// A store read from the database file.
    pub fn snapshot(&self, store: &str) -> StoreSnapshot {
        StoreSnapshot::read(self.host.data_dir.path(), store).expect("cannot read the store")
    }

    /// A store's run history, oldest first.
    pub fn runs(&self, store: &str) -> Vec<Value> {
        let out = self
            .host
            .ok(["runs", store, "--limit", "1000", "--format", "json"]);
        let mut runs: Vec<Value> = serde_json::from_str(&out).expect("runs prints JSON");
        runs.reverse();
        runs
    }
}
