//! TLS to a server on 127.0.0.1 whose certificates the test makes, and the
//! ways credentials reach a server without ever reaching an output, a log,
//! a run record or the database.

use taxii_feed_tests::canned::{Canned, indicators, taxii_collection};
use taxii_feed_tests::host::{Host, files_containing};
use taxii_feed_tests::pki::Pki;
use taxii_feed_tests::{random_password, write_private};

const COLLECTION: &str = "/api/collections/c1/";

fn https_server(pki: &Pki, require_client: bool) -> Canned {
    Canned::https(
        taxii_collection(indicators(3)),
        pki.server_config(require_client),
    )
}

fn add(host: &Host, name: &str, url: &str, extra: &[String]) {
    let mut args: Vec<String> = [
        "config",
        "add",
        name,
        "--collection-url",
        url,
        "--allow-private",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().cloned());
    host.ok(args);
}

fn path_arg(flag: &str, path: &std::path::Path) -> [String; 2] {
    [flag.to_string(), path.display().to_string()]
}

fn import(host: &Host, name: &str) -> serde_json::Value {
    host.import(name).unwrap()
}

#[test]
fn https_works_with_the_feeds_ca_and_fails_clearly_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let server = https_server(&pki, false);
    let url = format!("{}{COLLECTION}", server.base);
    let host = Host::new();
    add(&host, "trusted", &url, &path_arg("--ca-file", &pki.ca));
    add(&host, "untrusted", &url, &[]);

    let trusted = import(&host, "trusted");
    assert_eq!(trusted["status"], "ok", "{trusted:#}");
    assert_eq!(host.objects("trusted").len(), 3);

    let untrusted = import(&host, "untrusted");
    assert_eq!(untrusted["error"]["kind"], "tls", "{untrusted:#}");
    let message = untrusted["error"]["message"].as_str().unwrap();
    assert!(message.contains("certificate"), "{message}");
    assert!(
        untrusted["error"]["fix"]
            .as_str()
            .unwrap()
            .contains("--ca-file")
    );
    assert!(host.objects("untrusted").is_empty());
}

#[test]
fn mutual_tls_works_with_the_client_certificate_and_fails_clearly_without() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let server = https_server(&pki, true);
    let url = format!("{}{COLLECTION}", server.base);
    let host = Host::new();
    let mut with_cert = path_arg("--ca-file", &pki.ca).to_vec();
    with_cert.extend(path_arg("--client-cert", &pki.client_cert));
    with_cert.extend(path_arg("--client-key", &pki.client_key));
    add(&host, "mtls", &url, &with_cert);
    add(&host, "no-cert", &url, &path_arg("--ca-file", &pki.ca));

    let ok = import(&host, "mtls");
    assert_eq!(ok["status"], "ok", "{ok:#}");
    assert_eq!(host.objects("mtls").len(), 3);

    let served = server.seen().len();
    let refused = import(&host, "no-cert");
    assert_eq!(refused["error"]["kind"], "tls", "{refused:#}");
    assert!(
        refused["error"]["fix"]
            .as_str()
            .unwrap()
            .contains("--client-cert")
    );
    assert!(
        server.handshake_failures() > 0,
        "the server saw no refused handshake"
    );
    assert_eq!(
        server.seen().len(),
        served,
        "a request got through without a certificate"
    );
    assert!(host.objects("no-cert").is_empty());
}

#[test]
fn a_client_key_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    std::fs::set_permissions(&pki.client_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let host = Host::new();
    let mut args: Vec<String> = [
        "config",
        "add",
        "f",
        "--collection-url",
        "https://127.0.0.1:1/c/",
    ]
    .map(String::from)
    .to_vec();
    args.extend(path_arg("--client-cert", &pki.client_cert));
    args.extend(path_arg("--client-key", &pki.client_key));
    let run = host.run(args);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("chmod 600"), "{}", run.stderr);
}

#[test]
fn skipping_verification_works_and_says_so_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(dir.path());
    let server = https_server(&pki, false);
    let host = Host::new();
    let url = format!("{}{COLLECTION}", server.base);
    add(
        &host,
        "unverified",
        &url,
        &["--insecure-skip-tls-verify".to_string()],
    );
    let run = host.run(["import", "unverified"]);
    assert!(run.success, "{run:?}");
    assert!(
        run.stderr.contains("TLS certificate verification is OFF"),
        "{}",
        run.stderr
    );
    let listed = host.ok(["config", "list"]);
    assert!(listed.contains("TLS NOT VERIFIED"), "{listed}");
}

#[test]
fn every_kind_of_credential_reaches_the_server_and_nothing_else() {
    let server = Canned::http(taxii_collection(indicators(3)));
    let url = format!("{}{COLLECTION}", server.base);
    let mut host = Host::new();
    let (password, token, key) = (random_password(), random_password(), random_password());
    let password_file = host.data_dir.path().join("password");
    write_private(&password_file, &password);
    let secrets = host.data_dir.path().join("secrets.env");
    write_private(&secrets, &format!("other=x\nacme_token={token}\n"));
    host.env.push(("ACME_KEY".into(), key.clone()));

    add(
        &host,
        "basic",
        &url,
        &[
            "--username".into(),
            "alice".into(),
            "--password-file".into(),
            password_file.display().to_string(),
        ],
    );
    add(
        &host,
        "bearer",
        &url,
        &["--token-secret".into(), "acme_token".into()],
    );
    add(
        &host,
        "apikey",
        &url,
        &[
            "--header".into(),
            "X-API-Key".into(),
            "--header-env".into(),
            "ACME_KEY".into(),
        ],
    );
    let mut seen = String::new();
    for args in [
        vec!["-vv", "import", "basic", "bearer", "apikey"],
        vec!["import", "basic", "bearer", "apikey", "--format", "json"],
        vec!["config", "list"],
        vec!["config", "list", "--format", "json"],
        vec!["retrieve", "list", "--format", "json"],
    ] {
        let mut command = host.command(&args);
        command.env("RUST_LOG", "trace");
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        seen.push_str(&String::from_utf8_lossy(&output.stdout));
        seen.push_str(&String::from_utf8_lossy(&output.stderr));
    }

    let sent: Vec<String> = server
        .seen()
        .iter()
        .flat_map(|request| request.headers.clone())
        .filter(|(name, _)| name == "authorization" || name == "x-api-key")
        .map(|(name, value)| format!("{name}: {value}"))
        .collect();
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"));
    for expected in [
        format!("authorization: Basic {basic}"),
        format!("authorization: Bearer {token}"),
        format!("x-api-key: {key}"),
    ] {
        assert!(
            sent.contains(&expected),
            "the server never got {expected:?}"
        );
    }
    for secret in [&password, &token, &key, &basic] {
        assert!(
            !seen.contains(secret.as_str()),
            "a secret reached the output"
        );
        let skip = [password_file.as_path(), secrets.as_path()];
        let leaked = files_containing(host.data_dir.path(), secret, &skip);
        assert!(leaked.is_empty(), "a secret reached {leaked:?}");
    }
}

#[test]
fn credentials_over_plain_http_to_another_machine_are_refused() {
    let host = Host::new();
    let run = host.run([
        "config",
        "add",
        "remote",
        "--collection-url",
        "http://taxii.example/api/collections/c/",
        "--token-env",
        "SOME_TOKEN",
    ]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("--allow-insecure-auth"),
        "{}",
        run.stderr
    );
}
