//! Builds the TAXII feed plugin for `wasm32-wasip2` and hands its path to
//! the host, which embeds it as the built-in plugin.
//!
//! Set `TAXII_FEED_PLUGIN_WASM` to a component file to embed that instead
//! (for example one built elsewhere); nothing is built then.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const PLUGIN_ENV: &str = "TAXII_FEED_PLUGIN_WASM";

fn main() {
    println!("cargo:rerun-if-env-changed={PLUGIN_ENV}");
    let path = match env::var_os(PLUGIN_ENV) {
        Some(path) => PathBuf::from(path),
        None => build_plugin(),
    };
    println!("cargo:rustc-env={PLUGIN_ENV}={}", path.display());
}

fn build_plugin() -> PathBuf {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.parent().expect("host/ sits in the workspace");
    for watched in ["guest/src", "guest/Cargo.toml", "wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    // A target directory of its own: the outer build holds the lock on
    // `target/`, and a nested build waiting for it would never start.
    let target_dir = root.join("target").join("plugin");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--locked", "--package", "taxii-feed-guest"])
        .args([
            "--target",
            "wasm32-wasip2",
            "--profile",
            "guest",
            "--target-dir",
        ])
        .arg(&target_dir)
        // Flags and wrappers meant for the host build (clippy, coverage)
        // must not leak into the guest build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("failed to run cargo to build the plugin");
    assert!(
        status.success(),
        "building the plugin failed; is the target installed? \
         `rustup target add wasm32-wasip2`"
    );
    target_dir.join("wasm32-wasip2/guest/taxii_feed_guest.wasm")
}
