//! What `import` shows while it runs: a progress bar (pages, objects, rate)
//! on a terminal, one plain line per committed page otherwise.

use std::process::Command;
use std::time::Duration;

use taxii_feed_tests::fault_proxy::{Fault, Rule};
use taxii_feed_tests::host::host_binary;
use taxii_feed_tests::proxied::ProxiedServer;

/// 40 objects in pages of 10, each request slowed down so that a bar has
/// time to be drawn.
fn slow_server() -> ProxiedServer {
    let setup = ProxiedServer::start(40, 45);
    setup
        .proxy
        .add(Rule::new("/", Fault::Delay(Duration::from_millis(300))));
    setup.add_feed("feed", &["--page-size", "10"]);
    setup
}

#[test]
fn import_not_on_a_terminal_logs_one_plain_line_per_page() {
    let setup = slow_server();
    let run = setup.host.run(["import", "feed"]);
    assert!(run.success, "{run:?}");
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains(" committed: "))
        .collect();
    let versions = setup.manifest.len();
    assert_eq!(lines.len(), versions.div_ceil(10), "{}", run.stderr);
    assert!(lines[0].contains("page 1 committed: 10 new objects, 10 in this run"));
    let last = format!("page {} committed: ", lines.len());
    assert!(lines.last().unwrap().contains(&last), "{lines:?}");
    assert!(
        lines
            .last()
            .unwrap()
            .contains(&format!(", {versions} in this run"))
    );
    assert!(
        !run.stderr.contains('\u{1b}'),
        "no terminal codes: {:?}",
        run.stderr
    );
    assert!(
        run.stdout.contains(&format!("stored {versions}")),
        "{}",
        run.stdout
    );
}

#[test]
fn import_on_a_terminal_shows_a_progress_bar() {
    if Command::new("script").arg("--version").output().is_err() {
        println!("skipped: `script` (util-linux) is not installed to give import a terminal");
        return;
    }
    let setup = slow_server();
    let command = setup.host.command(["import", "feed"]);
    let env: Vec<String> = command
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_str()?, v?.to_str()?)))
        .collect();
    let line = format!(
        "env -u RUST_LOG {} {} import feed",
        env.join(" "),
        host_binary().display()
    );
    // `script` runs the command on a pseudo-terminal and copies what it
    // writes there (stdout and stderr both) to our stdout.
    let output = Command::new("script")
        .args(["-qefc", &line, "/dev/null"])
        .env("TERM", "xterm")
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{screen}");
    assert!(
        screen.contains("objects/s"),
        "a bar with the rate: {screen:?}"
    );
    assert!(screen.contains("pages "), "{screen:?}");
    assert!(screen.contains("HTTP 200×"), "{screen:?}");
    assert!(
        !screen.contains(" committed: "),
        "no per-page lines: {screen:?}"
    );
    let stored = format!("stored {}", setup.manifest.len());
    assert!(screen.contains(&stored), "then the report: {screen:?}");
    assert!(
        screen.contains("\u{1b}[2Kfeed feed → store feed: ok"),
        "the bar is cleared before the report: {screen:?}"
    );
    // What stays on screen of each line: the text after its last return.
    for line in screen.split('\n') {
        let shown = line.split('\r').rfind(|s| !s.is_empty()).unwrap_or("");
        let log = shown.contains("import started") || shown.contains("import finished");
        assert!(
            !(log && shown.contains("objects/s")),
            "a log line inside the bar: {shown:?}"
        );
    }
}
