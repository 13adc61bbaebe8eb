//! Plugin components built as test fixtures (see `tests/fixtures/`).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::{repo_root, target_dir};

/// The hostile plugin (`tests/fixtures/hostile-plugin`), built for
/// `wasm32-wasip2` once per test process.
pub fn hostile_plugin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = target_dir().join("fixtures");
            let status = Command::new(env!("CARGO"))
                .current_dir(repo_root())
                .args(["build", "--locked", "-p", "hostile-plugin"])
                .args(["--target", "wasm32-wasip2", "--target-dir"])
                .arg(&dir)
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .status()
                .expect("cannot run cargo to build the hostile plugin");
            assert!(status.success(), "building the hostile plugin failed");
            dir.join("wasm32-wasip2/debug/hostile_plugin.wasm")
        })
        .clone()
}
