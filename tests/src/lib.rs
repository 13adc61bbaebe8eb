//! The end-to-end test harness: the `taxii-host` binary, the Python peers
//! (medallion, taxii2-client, stix2-validator) and generated STIX data, all
//! on 127.0.0.1.
//!
//! Each test gets its own data directory and its own server; compiled
//! plugins are cached once for every test in `target/test-cache`.

pub mod fault_proxy;
pub mod host;
pub mod medallion;
pub mod proxied;
pub mod python;
pub mod serve;
pub mod snapshot;

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
