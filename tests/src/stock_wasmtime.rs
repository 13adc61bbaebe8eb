//! The plugin under the stock `wasmtime` command (wasmtime-cli 48), with no
//! host of the project's: what `wasmtime run --invoke` prints, read back.
//!
//! `scripts/wasmtime-cli` installs the command once into a cache outside
//! the clone; a test that needs it fails when it cannot be had, never
//! skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

/// The `wasmtime` binary, installed on first use.
pub fn wasmtime_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| PathBuf::from(crate::project_script("wasmtime-cli", &[])))
        .clone()
}

/// A WAVE string literal.
pub fn wave_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// The `--invoke` expression that imports `collection_url` with pages of
/// `page_size` objects.
pub fn import_call(name: &str, collection_url: &str, page_size: u32) -> String {
    format!(
        "import-any-intel({{name: {}, collection-url: {}, page-size: some({page_size}), \
         object-types: [], added-after: none, max-pages: none}})",
        wave_string(name),
        wave_string(collection_url),
    )
}

/// Runs `wasmtime run -S http -S keyvalue [-S keyvalue-in-memory-data=K=V]...
/// --invoke CALL PLUGIN` and returns what it printed on stdout.
pub fn invoke(plugin: &Path, call: &str, seeded: &[(&str, &str)]) -> Result<String> {
    let mut command = Command::new(wasmtime_binary());
    command.args(["run", "-S", "http", "-S", "keyvalue"]);
    for (key, value) in seeded {
        command
            .arg("-S")
            .arg(format!("keyvalue-in-memory-data={key}={value}"));
    }
    let output = command
        .args(["--invoke", call])
        .arg(plugin)
        .output()
        .context("cannot run wasmtime")?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "wasmtime exited with {}:\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

/// What follows `field: ` in a printed WAVE record, for the first field of
/// that whole name.
fn wave_field<'a>(printed: &'a str, field: &str) -> Option<&'a str> {
    let needle = format!("{field}: ");
    let mut searched = 0;
    while let Some(found) = printed[searched..].find(&needle) {
        let at = searched + found;
        searched = at + needle.len();
        if matches!(printed[..at].chars().next_back(), Some('{' | ' ')) {
            return Some(&printed[searched..]);
        }
    }
    None
}

/// The number a WAVE record gives `field`, for example `stored` in
/// `ok({taxii-version: "2.1", pages: 7, stored: 646, ...})`.
pub fn wave_number(printed: &str, field: &str) -> Option<u64> {
    let value = wave_field(printed, field)?;
    let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The string a WAVE record gives `field`, plain or as `some("...")` (no
/// escapes inside).
pub fn wave_text(printed: &str, field: &str) -> Option<String> {
    let value = wave_field(printed, field)?;
    let value = value.strip_prefix("some(").unwrap_or(value);
    let value = value.strip_prefix('"')?;
    Some(value[..value.find('"')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRINTED: &str = "ok({taxii-version: \"2.1\", pages: 7, received: 646, \
        stored: 640, duplicates: 6, rejected-count: 0, rejected: [], previous-cursor: none, \
        cursor: some(\"2024-06-01T00:00:00.646646Z\"), complete: true, notes: []})";

    #[test]
    fn numbers_are_read_by_their_whole_field_name() {
        assert_eq!(wave_number(PRINTED, "pages"), Some(7));
        assert_eq!(wave_number(PRINTED, "stored"), Some(640));
        assert_eq!(wave_number(PRINTED, "rejected-count"), Some(0));
        assert_eq!(wave_number(PRINTED, "count"), None);
        assert_eq!(wave_number(PRINTED, "rejected"), None);
    }

    #[test]
    fn texts_are_read_inside_some() {
        assert_eq!(wave_text(PRINTED, "taxii-version").as_deref(), Some("2.1"));
        assert_eq!(
            wave_text(PRINTED, "cursor").as_deref(),
            Some("2024-06-01T00:00:00.646646Z")
        );
        assert_eq!(wave_text(PRINTED, "previous-cursor"), None);
    }

    #[test]
    fn calls_quote_their_strings() {
        assert_eq!(wave_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        let call = import_call("feed", "http://127.0.0.1:1/c/", 50);
        assert!(
            call.starts_with("import-any-intel({name: \"feed\", "),
            "{call}"
        );
        assert!(call.contains("page-size: some(50)"), "{call}");
    }
}
