//! The end-to-end test harness: the `taxii-host` binary (and its own TAXII
//! server), the Python peers (medallion, taxii2-client, stix2-validator),
//! generated STIX data and stores written directly, all on 127.0.0.1.
//!
//! Each test gets its own data directory and its own server; compiled
//! plugins are cached once for every test in `target/test-cache`.

pub mod attack;
pub mod canned;
pub mod fake_taxii;
pub mod fault_proxy;
pub mod fixtures;
pub mod flaky_proxy;
pub mod host;
pub mod http_server;
pub mod medallion;
pub mod pki;
pub mod postgres;
pub mod proxied;
pub mod python;
pub mod scenario;
pub mod serve;
pub mod serving;
pub mod snapshot;
pub mod stock_wasmtime;
pub mod store;

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// `target/`, where built binaries, generated data and caches live.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Runs `scripts/{name}` with `args` and returns the last line it printed
/// on stdout (the path or URL it provides); panics with what it printed on
/// stderr when it fails.
pub fn project_script(name: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(repo_root().join("scripts").join(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/{name}: {e}"));
    assert!(
        output.status.success(),
        "scripts/{name} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_else(|| panic!("scripts/{name} printed nothing"))
        .trim()
        .to_string()
}

/// Writes a file only its owner can read, as secrets must be.
pub fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("cannot write a secret file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .expect("cannot restrict a secret file");
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("no free port on 127.0.0.1")
        .port()
}

/// A random password for a test server, never a fixed string that could
/// be found in the output by chance.
pub fn random_password() -> String {
    use std::hash::{BuildHasher, Hasher};
    let part = || {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.finish()
    };
    format!("pw-{:016x}{:016x}", part(), part())
}
