//! Secrets: where a password comes from, and a type that will not print it.
//!
//! A password is never taken from the command line (it would land in the
//! shell history and in `ps`), never stored in the database (only where to
//! find it is), and never handed to a plugin: the host adds it to requests
//! itself (see [`crate::policy`]).

use std::fmt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::Serialize;

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

/// Where a feed's password is read from at each run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PasswordSource {
    /// An environment variable of the host process.
    Env(String),
    /// A file; its first line is the password.
    File(PathBuf),
}

impl PasswordSource {
    /// Reads the password now.
    pub fn read(&self) -> Result<Secret> {
        let value = match self {
            Self::Env(var) => std::env::var(var).with_context(|| {
                format!(
                    "the password variable {var} is not set in this environment: \
                     export {var} before running, or configure --password-file"
                )
            })?,
            Self::File(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!(
                        "cannot read the password file {}: check that it exists and \
                         is readable by this user",
                        path.display()
                    )
                })?;
                text.lines().next().unwrap_or_default().to_string()
            }
        };
        if value.is_empty() {
            bail!("the password from {self} is empty");
        }
        Ok(Secret(value))
    }
}

impl fmt::Display for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(var) => write!(f, "environment variable {var}"),
            Self::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let secret = Secret::new("hunter2".into());
        assert!(!format!("{secret:?} {secret}").contains("hunter2"));
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn reads_the_first_line_of_a_password_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        let secret = PasswordSource::File(path).read().unwrap();
        assert_eq!(secret.expose(), "s3cret");
    }

    #[test]
    fn a_missing_variable_names_the_variable_and_the_fix() {
        let source = PasswordSource::Env("TAXII_TEST_SURELY_UNSET_VAR".into());
        let message = format!("{:#}", source.read().unwrap_err());
        assert!(message.contains("TAXII_TEST_SURELY_UNSET_VAR"));
        assert!(message.contains("export"));
    }
}
