//! The data of one plugin run: its WASI context (no files, no environment,
//! no sockets), its HTTP policy and its bucket.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::keyvalue::{BucketAccess, KeyValue};
use crate::limits::MemoryLimiter;
use crate::policy::OutgoingPolicy;

/// What a run's `Store` holds.
pub struct RunState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    policy: OutgoingPolicy,
    bucket: BucketAccess,
    /// Caps the plugin's memory; the store's limiter.
    pub limiter: MemoryLimiter,
}

impl RunState {
    /// A run that may send what `policy` allows and touch only `bucket`.
    /// With `guest_stderr`, the plugin's stderr (panic messages) is shown.
    pub fn new(
        policy: OutgoingPolicy,
        bucket: BucketAccess,
        limiter: MemoryLimiter,
        guest_stderr: bool,
    ) -> Self {
        let mut wasi = WasiCtx::builder();
        if guest_stderr {
            wasi.inherit_stderr();
        }
        Self {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            policy,
            bucket,
            limiter,
        }
    }

    /// The key-value view for the generated bindings.
    pub fn keyvalue(&mut self) -> KeyValue<'_> {
        KeyValue {
            table: &mut self.table,
            access: &mut self.bucket,
        }
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RunState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.policy,
        }
    }
}
