//! The wasmtime engine, the linker, and compiled plugins.
//!
//! The engine and linker are built once per process. A plugin is compiled
//! once per version: the compiled form is cached on disk, keyed by the
//! component's SHA-256 and the engine's settings, so later processes load
//! it in well under a millisecond instead of compiling it again.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use crate::bindings::FeedPluginPre;
use crate::bindings::wasi::keyvalue::{batch, store};
use crate::keyvalue::HasKeyValue;
use crate::state::RunState;

/// The built-in TAXII plugin, built from `guest/` by `build.rs`.
pub const BUILTIN_PLUGIN: &[u8] = include_bytes!(env!("TAXII_FEED_PLUGIN_WASM"));

/// The built-in plugin's name; stores of unnamed feeds are named after it.
pub const BUILTIN_PLUGIN_NAME: &str = "taxii-feed";

/// How often the engine's epoch advances; run deadlines count in these.
pub const EPOCH_TICK: Duration = Duration::from_millis(100);

/// Where a plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// The TAXII plugin built into this host.
    Builtin,
    /// A component file.
    File(PathBuf),
}

impl PluginSource {
    /// `None` means built in.
    pub fn from_path(path: Option<&Path>) -> Self {
        path.map_or(Self::Builtin, |p| Self::File(p.to_path_buf()))
    }
}

/// Compiles, caches and pre-links plugins.
pub struct PluginEngine {
    engine: Engine,
    linker: Linker<RunState>,
    cache_dir: Option<PathBuf>,
    loaded: Mutex<HashMap<[u8; 32], FeedPluginPre<RunState>>>,
}

impl PluginEngine {
    /// An engine that caches compiled plugins in `cache_dir`, if given.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        // Runs carry a deadline measured in epochs, so that a plugin that
        // spins cannot hold a worker thread forever.
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(anyhow::Error::from)?;
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        store::add_to_linker::<_, HasKeyValue>(&mut linker, RunState::keyvalue)?;
        batch::add_to_linker::<_, HasKeyValue>(&mut linker, RunState::keyvalue)?;
        Ok(Self {
            engine,
            linker,
            cache_dir,
            loaded: Mutex::default(),
        })
    }

    /// The engine, for building stores.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A plugin compiled and linked, ready to instantiate.
    pub fn load(&self, source: &PluginSource) -> Result<FeedPluginPre<RunState>> {
        let file_bytes;
        let bytes = match source {
            PluginSource::Builtin => BUILTIN_PLUGIN,
            PluginSource::File(path) => {
                file_bytes = std::fs::read(path).with_context(|| {
                    format!(
                        "cannot read the plugin {}: check the --plugin path",
                        path.display()
                    )
                })?;
                // wasmtime's own complaint about a file that is no wasm at
                // all quotes its first bytes, which may be anything (a
                // password file given by mistake).
                if !file_bytes.starts_with(b"\0asm") {
                    anyhow::bail!(
                        "{} is not a WebAssembly component (it does not begin with the wasm \
                         magic bytes): check the --plugin path",
                        path.display()
                    );
                }
                &file_bytes[..]
            }
        };
        let digest = match source {
            // Hashed once per process: a run's start-up should not pay for
            // half a megabyte of SHA-256 each time.
            PluginSource::Builtin => {
                static BUILTIN_DIGEST: OnceLock<[u8; 32]> = OnceLock::new();
                *BUILTIN_DIGEST.get_or_init(|| Sha256::digest(BUILTIN_PLUGIN).into())
            }
            PluginSource::File(_) => Sha256::digest(bytes).into(),
        };
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pre) = loaded.get(&digest) {
            return Ok(pre.clone());
        }
        let component = self.compile(bytes, &digest)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(FeedPluginPre::new)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("the plugin {source:?} does not fit the taxii:feed/feed-plugin world")
            })?;
        loaded.insert(digest, pre.clone());
        Ok(pre)
    }

    /// Loads the compiled component from the cache, or compiles and caches.
    fn compile(&self, bytes: &[u8], digest: &[u8; 32]) -> Result<Component> {
        let Some(dir) = &self.cache_dir else {
            return Component::new(&self.engine, bytes).map_err(anyhow::Error::from);
        };
        let path = dir.join(format!("{}.cwasm", self.cache_key(digest)));
        if path.exists() {
            // SAFETY: the file is one this host wrote into its own cache
            // directory with `Component::serialize`; wasmtime checks that
            // it matches this engine's version and settings.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "cache entry unusable")
                }
            }
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(anyhow::Error::from)
            .context("cannot compile the plugin")?;
        if let Err(e) = write_atomically(dir, &path, &component) {
            tracing::debug!(error = %format!("{e:#}"), "cannot cache the compiled plugin");
        }
        Ok(component)
    }

    fn cache_key(&self, digest: &[u8; 32]) -> String {
        let mut hasher = DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        let engine = hasher.finish();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{hex}-{engine:016x}")
    }
}

/// Writes the serialized component next to its final name, then renames,
/// so that a concurrent reader never sees half a file.
fn write_atomically(dir: &Path, path: &Path, component: &Component) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize().map_err(anyhow::Error::from)?;
    let temporary = dir.join(format!(".{}.tmp", std::process::id()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_no_component_is_named_and_not_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "hunter2-secret\n").unwrap();
        let engine = PluginEngine::new(None).unwrap();
        let Err(error) = engine.load(&PluginSource::File(path.clone())) else {
            panic!("a text file loaded as a plugin");
        };
        let message = format!("{error:#} {error:?}");
        assert!(
            message.contains("is not a WebAssembly component"),
            "{message}"
        );
        assert!(message.contains(&path.display().to_string()), "{message}");
        for leaked in ["hunter2", "0x68, 0x75"] {
            assert!(!message.contains(leaked), "{message}");
        }
    }
}
