//! The options that say how to reach a server: credentials and network
//! settings, shared by `config add` and `discover`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use super::absolute;
use crate::feeds::{Auth, NetworkOptions};
use crate::secret::SecretSource;

/// One kind of credentials, each secret read from a source at each use.
#[derive(Debug, Args)]
// `password` is in the group so that `--username U --password P` reaches
// the refusal below, which says why, instead of clap's "missing option".
#[command(group = clap::ArgGroup::new("password_source").args(["password_env", "password_file", "password_secret", "password"]))]
#[command(group = clap::ArgGroup::new("token_source").args(["token_env", "token_file", "token_secret"]))]
#[command(group = clap::ArgGroup::new("header_source").args(["header_env", "header_file", "header_secret"]))]
pub struct CredentialArgs {
    /// Username for HTTP Basic authentication (with one --password-* option).
    #[arg(long, help_heading = "Credentials", requires = "password_source")]
    pub username: Option<String>,
    /// Read the password from this environment variable at each run.
    #[arg(
        long,
        value_name = "VAR",
        help_heading = "Credentials",
        requires = "username"
    )]
    pub password_env: Option<String>,
    /// Read the password from the first line of this file (mode 600) at each run.
    #[arg(
        long,
        value_name = "PATH",
        help_heading = "Credentials",
        requires = "username"
    )]
    pub password_file: Option<PathBuf>,
    /// Read the password from this key of the secrets file at each run.
    #[arg(
        long,
        value_name = "KEY",
        help_heading = "Credentials",
        requires = "username"
    )]
    pub password_secret: Option<String>,
    /// Refused: a password on the command line ends up in the shell history.
    #[arg(long, hide = true, value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Send `Authorization: Bearer` with the token from this variable.
    #[arg(long, value_name = "VAR", help_heading = "Credentials", conflicts_with_all = ["username", "header"])]
    pub token_env: Option<String>,
    /// ... with the token from this file (mode 600).
    #[arg(long, value_name = "PATH", help_heading = "Credentials", conflicts_with_all = ["username", "header"])]
    pub token_file: Option<PathBuf>,
    /// ... with the token from this key of the secrets file.
    #[arg(long, value_name = "KEY", help_heading = "Credentials", conflicts_with_all = ["username", "header"])]
    pub token_secret: Option<String>,
    /// Send the secret in this header instead (for example X-API-Key),
    /// with one --header-* option.
    #[arg(
        long,
        value_name = "NAME",
        help_heading = "Credentials",
        requires = "header_source",
        conflicts_with = "username"
    )]
    pub header: Option<String>,
    /// The header's value from this variable.
    #[arg(
        long,
        value_name = "VAR",
        help_heading = "Credentials",
        requires = "header"
    )]
    pub header_env: Option<String>,
    /// The header's value from this file (mode 600).
    #[arg(
        long,
        value_name = "PATH",
        help_heading = "Credentials",
        requires = "header"
    )]
    pub header_file: Option<PathBuf>,
    /// The header's value from this key of the secrets file.
    #[arg(
        long,
        value_name = "KEY",
        help_heading = "Credentials",
        requires = "header"
    )]
    pub header_secret: Option<String>,
}

/// Why `--password` is refused wherever it is offered (exit code 2); the
/// value is never repeated.
pub(crate) fn password_refused() -> anyhow::Error {
    crate::cli::UsageError(
        "--password is not accepted: a password on the command line is kept in the shell \
         history and visible to other users; use --password-env VAR or --password-file PATH"
            .into(),
    )
    .into()
}

impl CredentialArgs {
    /// The credentials these options describe.
    pub fn auth(&self) -> Result<Auth> {
        if self.password.is_some() {
            return Err(password_refused());
        }
        let source = |env: &Option<String>, file: &Option<PathBuf>, key: &Option<String>| {
            Ok::<_, anyhow::Error>(match (env, file, key) {
                (Some(var), _, _) => Some(SecretSource::Env(var.clone())),
                (_, Some(path), _) => Some(SecretSource::File(absolute(path.clone())?)),
                (_, _, Some(key)) => Some(SecretSource::Stored(key.clone())),
                _ => None,
            })
        };
        let password = source(
            &self.password_env,
            &self.password_file,
            &self.password_secret,
        )?;
        let token = source(&self.token_env, &self.token_file, &self.token_secret)?;
        let value = source(&self.header_env, &self.header_file, &self.header_secret)?;
        Ok(
            match (&self.username, password, token, &self.header, value) {
                (Some(username), Some(password), None, None, None) => Auth::Basic {
                    username: username.clone(),
                    password,
                },
                (None, None, Some(token), None, None) => Auth::Bearer { token },
                (None, None, None, Some(name), Some(value)) => Auth::Header {
                    name: name.clone(),
                    value,
                },
                (None, None, None, None, None) => Auth::None,
                _ => bail!(
                    "give one kind of credentials: --username with a --password-* option, \
                 a --token-* option, or --header with a --header-* option"
                ),
            },
        )
    }
}

/// What may be reached, and how TLS is checked.
#[derive(Debug, Args)]
pub struct NetworkArgs {
    /// Let runs reach this origin too (https://host:port); repeat as needed.
    #[arg(long, value_name = "URL", help_heading = "Network")]
    pub allow_origin: Vec<String>,
    /// Let runs reach private, loopback and link-local addresses (a server
    /// on this machine or the local network).
    #[arg(long, help_heading = "Network")]
    pub allow_private: bool,
    /// Let credentials go over plain http:// to another machine.
    #[arg(long, help_heading = "Network")]
    pub allow_insecure_auth: bool,
    /// Trust only the certificate authorities in this PEM file.
    #[arg(long, value_name = "PATH", help_heading = "Network")]
    pub ca_file: Option<PathBuf>,
    /// Present this client certificate (PEM) to the server (mTLS).
    #[arg(
        long,
        value_name = "PATH",
        help_heading = "Network",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM, mode 600).
    #[arg(
        long,
        value_name = "PATH",
        help_heading = "Network",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
    /// DANGEROUS: do not verify the server's certificate.
    #[arg(long, help_heading = "Network")]
    pub insecure_skip_tls_verify: bool,
}

impl NetworkArgs {
    /// The network settings these options describe.
    pub fn network(&self) -> Result<NetworkOptions> {
        Ok(NetworkOptions {
            allowed_origins: self.allow_origin.clone(),
            allow_private: self.allow_private,
            allow_insecure_auth: self.allow_insecure_auth,
            ca_file: self.ca_file.clone().map(absolute).transpose()?,
            client_cert: self.client_cert.clone().map(absolute).transpose()?,
            client_key: self.client_key.clone().map(absolute).transpose()?,
            insecure_skip_tls_verify: self.insecure_skip_tls_verify,
        })
    }
}
