//! Run start-up, measured in this process through the host's library: the
//! engine and linker, loading the compiled plugin from the on-disk cache
//! (`Component::deserialize_file` and `instantiate_pre`, what
//! `PluginEngine::load` does in a new process), and instantiating it for a
//! run (a `Store` with the run's state and memory limiter, then
//! `InstancePre::instantiate_async`, what every run does).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use taxii_host::engine::{PluginEngine, PluginSource};
use taxii_host::keyvalue::BucketAccess;
use taxii_host::limits::{MemoryLimiter, RunWatch};
use taxii_host::policy::OutgoingPolicy;
use taxii_host::state::RunState;
use wasmtime::Store;

/// Times of one start-up measurement.
#[derive(Debug, Clone)]
pub struct Startup {
    /// Compiling the component the first time (empty cache), once.
    pub first_compile: Duration,
    /// A new engine and linker, median.
    pub engine: Duration,
    /// Loading the cached component and pre-linking it, median.
    pub load_cached: Duration,
    /// Instantiating for one run, median.
    pub instantiate: Duration,
    /// Instantiations per second over the loop.
    pub instantiations_per_second: f64,
    /// Iterations of each loop.
    pub iterations: usize,
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn run_state() -> RunState {
    let limiter = MemoryLimiter::new(256 << 20, Arc::new(RunWatch::default()));
    RunState::new(
        OutgoingPolicy::deny_all(),
        BucketAccess::none(),
        limiter,
        false,
    )
}

/// Measures start-up with `cache_dir` as the compiled-plugin cache (it is
/// emptied first).
pub fn measure(cache_dir: &Path, iterations: usize) -> Result<Startup> {
    let _ = std::fs::remove_dir_all(cache_dir);
    let started = Instant::now();
    PluginEngine::new(Some(cache_dir.to_path_buf()))?.load(&PluginSource::Builtin)?;
    let first_compile = started.elapsed();

    let (mut engines, mut loads) = (Vec::new(), Vec::new());
    for _ in 0..iterations.min(200) {
        let t0 = Instant::now();
        let engine = PluginEngine::new(Some(cache_dir.to_path_buf()))?;
        let t1 = Instant::now();
        engine.load(&PluginSource::Builtin)?;
        loads.push(t1.elapsed());
        engines.push(t1 - t0);
    }

    let engine = PluginEngine::new(Some(cache_dir.to_path_buf()))?;
    let pre = engine.load(&PluginSource::Builtin)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut instantiations = Vec::with_capacity(iterations);
    let loop_start = Instant::now();
    runtime.block_on(async {
        for _ in 0..iterations {
            let t0 = Instant::now();
            let mut store = Store::new(engine.engine(), run_state());
            store.limiter(|state| &mut state.limiter);
            store.set_epoch_deadline(1000);
            pre.instantiate_async(&mut store)
                .await
                .map_err(anyhow::Error::from)
                .context("instantiating the plugin")?;
            instantiations.push(t0.elapsed());
        }
        anyhow::Ok(())
    })?;
    let total = loop_start.elapsed();
    // One call, so that the loop is known to have made working instances.
    runtime.block_on(async {
        let mut store = Store::new(engine.engine(), run_state());
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1000);
        let plugin = pre
            .instantiate_async(&mut store)
            .await
            .map_err(anyhow::Error::from)?;
        let info = plugin
            .taxii_feed_importer()
            .call_describe(&mut store)
            .await
            .map_err(anyhow::Error::from)?;
        anyhow::ensure!(info.name == "taxii-feed", "describe said {:?}", info.name);
        anyhow::Ok(())
    })?;
    Ok(Startup {
        first_compile,
        engine: median(engines),
        load_cached: median(loads),
        instantiate: median(instantiations),
        instantiations_per_second: iterations as f64 / total.as_secs_f64(),
        iterations,
    })
}
