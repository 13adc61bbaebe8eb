//! Host bindings of the `taxii:feed/feed-plugin` world.
//!
//! `wasi:http` comes from `wasmtime-wasi-http`; `wasi:keyvalue` is generated
//! here and implemented in [`crate::keyvalue`] over the event store.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "taxii:feed/feed-plugin",
    imports: { default: trappable },
    exports: { default: async },
    additional_derives: [serde::Serialize],
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:keyvalue/store.bucket": crate::keyvalue::Bucket,
    },
});

pub use exports::taxii::feed::importer;
pub use taxii::feed::types;
