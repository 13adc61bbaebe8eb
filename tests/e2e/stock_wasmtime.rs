//! The same plugin in a runtime that is not ours: the stock `wasmtime`
//! command (wasmtime-cli 48) runs `import-any-intel` against medallion with
//! no host of the project's, its key-value store in memory.

use taxii_feed_tests::fault_proxy::FaultProxy;
use taxii_feed_tests::host::{Host, bundle_objects, versions_of};
use taxii_feed_tests::medallion::Medallion;
use taxii_feed_tests::python::generated_bundle;
use taxii_feed_tests::stock_wasmtime::{import_call, invoke, wave_number, wave_text};

const PAGE_SIZE: u32 = 100;

/// The built-in plugin, written out as the component file a user would
/// hand to another runtime.
fn exported_plugin(host: &Host) -> std::path::PathBuf {
    let path = host.data_dir.path().join("taxii-feed.wasm");
    host.ok(["plugin", "export", path.to_str().unwrap()]);
    path
}

#[test]
fn the_stock_wasmtime_command_imports_a_collection_and_resumes_from_a_seeded_cursor() {
    let bundle = generated_bundle(600, 42, None);
    let expected = versions_of(&bundle_objects(&bundle).unwrap()).len() as u64;
    let server = Medallion::start(&bundle).unwrap();
    // The plugin holds no secret and this runtime adds none: a gateway in
    // front of the server does, as an operator's reverse proxy would.
    let gateway = FaultProxy::start(&server.urls.base_url).unwrap();
    gateway.authorize(&server.authorization());
    let collection = gateway.url(server.collection("intel"));
    let host = Host::new();
    let plugin = exported_plugin(&host);
    let call = import_call("intel", &collection, PAGE_SIZE);

    let printed = invoke(&plugin, &call, &[]).unwrap();
    assert!(printed.trim_start().starts_with("ok("), "{printed}");
    assert_eq!(wave_text(&printed, "taxii-version").as_deref(), Some("2.1"));
    assert_eq!(
        wave_number(&printed, "received"),
        Some(expected),
        "{printed}"
    );
    assert_eq!(wave_number(&printed, "stored"), Some(expected), "{printed}");
    assert_eq!(wave_number(&printed, "duplicates"), Some(0), "{printed}");
    assert_eq!(
        wave_number(&printed, "rejected-count"),
        Some(0),
        "{printed}"
    );
    let pages = wave_number(&printed, "pages").unwrap();
    assert!(pages >= expected.div_ceil(PAGE_SIZE.into()), "{printed}");
    let cursor = wave_text(&printed, "cursor").expect("the run ends with a cursor");
    let objects_requests = gateway
        .seen()
        .iter()
        .filter(|s| s.target.contains("/objects/"))
        .count() as u64;
    assert_eq!(objects_requests, pages, "one request per page");

    // The store lived in that process's memory: a second process starts
    // empty. Seeded with the cursor, it asks only for what is newer.
    let again = invoke(&plugin, &call, &[("state/cursor", &cursor)]).unwrap();
    assert!(again.trim_start().starts_with("ok("), "{again}");
    assert_eq!(wave_text(&again, "previous-cursor"), Some(cursor));
    assert_eq!(wave_number(&again, "received"), Some(0), "{again}");
    assert_eq!(wave_number(&again, "stored"), Some(0), "{again}");
}

#[test]
fn without_a_host_that_adds_credentials_the_server_answers_unauthorized() {
    let server = Medallion::start(&generated_bundle(600, 42, None)).unwrap();
    let host = Host::new();
    let plugin = exported_plugin(&host);
    let call = import_call("intel", server.collection("intel"), PAGE_SIZE);

    let printed = invoke(&plugin, &call, &[]).unwrap();
    assert!(
        printed
            .trim_start()
            .starts_with("err({error: unauthorized("),
        "{printed}"
    );
    assert_eq!(wave_number(&printed, "stored"), Some(0), "{printed}");
}

#[test]
fn export_keeps_an_existing_file_unless_told_to_replace_it() {
    let host = Host::new();
    let path = host.data_dir.path().join("taxii-feed.wasm");
    std::fs::write(&path, b"mine").unwrap();
    let refused = host.run(["plugin", "export", path.to_str().unwrap()]);
    assert!(!refused.success, "{refused:?}");
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    assert_eq!(std::fs::read(&path).unwrap(), b"mine", "the file was kept");

    host.ok(["plugin", "export", "--force", path.to_str().unwrap()]);
    assert!(std::fs::read(&path).unwrap().starts_with(b"\0asm"));
}
