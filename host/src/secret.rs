//! Secrets: where they come from, and a type that will not print them.
//!
//! A secret (password, bearer token, API key) is never taken from the
//! command line (it would land in the shell history and in `ps`) and never
//! stored in the database: only where to find it is stored, as
//! `env:VAR`, `file:/path` or `secret:KEY`. Files holding secrets must be
//! readable by their owner only. The host reads the secret at each run and
//! adds it to requests itself (see [`crate::policy`]); plugins never see it.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Environment variable naming the secrets file.
pub const SECRETS_FILE_ENV: &str = "TAXII_HOST_SECRETS_FILE";
/// The secrets file's name in the data directory, when none is given.
pub const DEFAULT_SECRETS_FILE: &str = "secrets.env";

/// A secret value. `Debug` and `Display` print a marker, never the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a secret is read from at each run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable of the host process.
    Env(String),
    /// A file readable by its owner only; its first line is the secret.
    File(PathBuf),
    /// A key of the host's secrets file (`KEY=value` lines, owner-only).
    Stored(String),
}

impl SecretSource {
    /// Parses `env:VAR`, `file:PATH` or `secret:KEY`.
    pub fn parse(text: &str) -> Result<Self> {
        match text.split_once(':') {
            Some(("env", var)) if !var.is_empty() => Ok(Self::Env(var.into())),
            Some(("file", path)) if !path.is_empty() => Ok(Self::File(path.into())),
            Some(("secret", key)) if !key.is_empty() => Ok(Self::Stored(key.into())),
            _ => bail!("a secret source is env:VAR, file:PATH or secret:KEY, not {text:?}"),
        }
    }

    /// The stored form, as [`SecretSource::parse`] reads it.
    pub fn encode(&self) -> String {
        match self {
            Self::Env(var) => format!("env:{var}"),
            Self::File(path) => format!("file:{}", path.display()),
            Self::Stored(key) => format!("secret:{key}"),
        }
    }

    /// Reads the secret now; `secrets_file` is the host's secrets file.
    pub fn read(&self, secrets_file: &Path) -> Result<Secret> {
        let value = match self {
            Self::Env(var) => std::env::var(var).with_context(|| {
                format!(
                    "the environment variable {var} is not set: export {var} before running, \
                     or give the secret another source"
                )
            })?,
            Self::File(path) => {
                check_private_file(path)?;
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!(
                        "cannot read the secret file {}: check that it exists and is \
                         readable by this user",
                        path.display()
                    )
                })?;
                text.lines().next().unwrap_or_default().to_string()
            }
            Self::Stored(key) => read_secrets_file(secrets_file, key)?,
        };
        if value.is_empty() {
            bail!("the secret from {self} is empty");
        }
        // It travels in an HTTP header, where a control character would
        // make the request fail or the header vanish: refuse it here, by
        // position, never quoting the value.
        if let Some(at) = value.chars().position(|c| c.is_control() && c != '\t') {
            bail!(
                "the secret from {self} has a control character at position {}: a secret \
                 must be one line of printable text; write it again without it",
                at + 1
            );
        }
        Ok(Secret(value))
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(var) => write!(f, "environment variable {var}"),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Stored(key) => write!(f, "secrets-file key {key}"),
        }
    }
}

impl Serialize for SecretSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A parse error of the secrets file that names the file and the place,
/// and quotes nothing of it.
fn secrets_file_error(path: &Path, error: &dotenvy::Error) -> anyhow::Error {
    let place = match error {
        dotenvy::Error::LineParse(_, index) => format!(" near byte {index} of its lines"),
        _ => String::new(),
    };
    anyhow::anyhow!(
        "{} is not KEY=value lines{place}: check its quoting (a value with spaces or quotes \
         needs 'single quotes'); the line is not shown, since it may hold a secret",
        path.display()
    )
}

fn read_secrets_file(path: &Path, key: &str) -> Result<String> {
    check_private_file(path)?;
    let entries = dotenvy::from_path_iter(path).with_context(|| {
        format!(
            "cannot read the secrets file {}: create it with lines KEY=value and \
             `chmod 600` it, or point --secrets-file at it",
            path.display()
        )
    })?;
    for entry in entries {
        // The parser's own error quotes the offending line, which may hold
        // a secret (or, after an unclosed quote, the next line's): say
        // where, never what.
        let (name, value) = entry.map_err(|e| secrets_file_error(path, &e))?;
        if name == key {
            return Ok(value);
        }
    }
    bail!("the secrets file {} has no key {key}", path.display())
}

/// Refuses a secret-holding file that others than its owner can read.
pub fn check_private_file(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let metadata = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}: check that it exists", path.display()))?;
        let mode = metadata.permissions().mode();
        if mode & 0o077 != 0 {
            bail!(
                "{} holds a secret but others can read it (mode {:o}): run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private_file(dir: &Path, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    #[test]
    fn a_secret_never_prints() {
        let secret = Secret::new("hunter2".into());
        assert!(!format!("{secret:?} {secret}").contains("hunter2"));
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn sources_round_trip_through_their_stored_form() {
        for text in ["env:PW", "file:/run/secrets/pw", "secret:acme.password"] {
            assert_eq!(SecretSource::parse(text).unwrap().encode(), text);
        }
        for bad in ["PW", "env:", "vault:x", ""] {
            assert!(SecretSource::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_the_first_line_of_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = private_file(dir.path(), "pw", "s3cret\n");
        let secret = SecretSource::File(path)
            .read(Path::new("/nonexistent"))
            .unwrap();
        assert_eq!(secret.expose(), "s3cret");
    }

    #[test]
    fn refuses_a_secret_file_others_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = private_file(dir.path(), "pw", "s3cret\n");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let message = format!(
            "{:#}",
            SecretSource::File(path).read(Path::new("/x")).unwrap_err()
        );
        assert!(message.contains("chmod 600"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }

    #[test]
    fn reads_a_key_of_the_secrets_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = private_file(dir.path(), "secrets.env", "a=1\nacme_token=tok-123\n");
        let secret = SecretSource::Stored("acme_token".into())
            .read(&file)
            .unwrap();
        assert_eq!(secret.expose(), "tok-123");
        let missing = SecretSource::Stored("other".into())
            .read(&file)
            .unwrap_err();
        assert!(missing.to_string().contains("no key other"), "{missing}");
    }

    #[test]
    fn a_malformed_secrets_file_is_placed_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        // An unclosed quote runs into the next line, which holds a secret.
        let file = private_file(
            dir.path(),
            "secrets.env",
            "other='abc\"def\\' leaked-value\nacme=real-secret\nplain typo-secret\n",
        );
        let error = SecretSource::Stored("acme".into()).read(&file).unwrap_err();
        let message = format!("{error:#} {error:?}");
        assert!(message.contains("secrets.env"), "{message}");
        assert!(message.contains("not KEY=value"), "{message}");
        for secret in ["leaked-value", "real-secret", "typo-secret"] {
            assert!(!message.contains(secret), "{message}");
        }
    }

    #[test]
    fn a_secret_with_a_control_character_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = private_file(dir.path(), "token", "tokA\u{1}tokB\n");
        let error = SecretSource::File(path).read(Path::new("/x")).unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains("control character at position 5"),
            "{message}"
        );
        assert!(
            !message.contains("tokA") && !message.contains("tokB"),
            "{message}"
        );
    }

    #[test]
    fn a_missing_variable_names_the_variable_and_the_fix() {
        let source = SecretSource::Env("TAXII_TEST_SURELY_UNSET_VAR".into());
        let message = format!("{:#}", source.read(Path::new("/x")).unwrap_err());
        assert!(message.contains("TAXII_TEST_SURELY_UNSET_VAR"));
        assert!(message.contains("export"));
    }
}
