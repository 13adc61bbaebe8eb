//! `taxii-host serve-taxii` of a test's own on 127.0.0.1, stopped when
//! dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Stdio};

use anyhow::{Context, Result, bail};
use base64::Engine as _;

use crate::host::Host;
use crate::random_password;

/// The TAXII 2.1 media type.
pub const TAXII_21: &str = "application/taxii+json;version=2.1";

/// A running `serve-taxii`.
pub struct TaxiiServer {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    /// Its password file and its log (stderr).
    _dir: tempfile::TempDir,
    /// The user it accepts.
    pub user: String,
    /// That user's password.
    pub password: String,
    /// A file holding the password.
    pub password_file: std::path::PathBuf,
    /// The discovery URL.
    pub discovery_url: String,
    /// Collection URLs by `tenant/store`.
    pub collections: HashMap<String, String>,
}

impl TaxiiServer {
    /// Serves the stores of `host` on a free port of 127.0.0.1.
    pub fn start(host: &Host, extra: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let password = random_password();
        let password_file = dir.path().join("serve-password");
        crate::write_private(&password_file, &password);
        let mut child = host
            .command(["serve-taxii", "--listen", "127.0.0.1:0", "--user", "reader"])
            .arg("--password-file")
            .arg(&password_file)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("serve.log"))?)
            .spawn()
            .context("cannot start serve-taxii")?;
        let mut stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        // `collection TENANT/STORE URL` lines, then `serving TAXII 2.1 at URL`.
        let mut collections = HashMap::new();
        let mut line = String::new();
        let discovery_url = loop {
            line.clear();
            if stdout.read_line(&mut line)? == 0 {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(dir.path().join("serve.log"));
                bail!("serve-taxii did not start: {}", log.unwrap_or_default());
            }
            if let Some(rest) = line.strip_prefix("collection ")
                && let Some((name, url)) = rest.trim().split_once(' ')
            {
                collections.insert(name.to_string(), url.to_string());
            }
            if let Some(rest) = line.strip_prefix("serving TAXII 2.1 at ") {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
            }
        };
        Ok(Self {
            child,
            _stdout: stdout,
            _dir: dir,
            user: "reader".into(),
            password,
            password_file,
            discovery_url,
            collections,
        })
    }

    /// The collection URL of a store of the default tenant.
    pub fn collection(&self, store: &str) -> &str {
        &self.collections[&format!("default/{store}")]
    }

    /// `Basic ...` for the server's user.
    pub fn authorization(&self) -> String {
        let pair = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }

    /// GETs a URL with the server's credentials and TAXII's media type.
    pub fn get(&self, url: &str) -> Result<Answer> {
        get(url, Some(&self.authorization()), TAXII_21)
    }
}

impl Drop for TaxiiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer, whatever its status.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Headers by lower-case name.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// GETs a URL with an optional `Authorization` and an `Accept`.
pub fn get(url: &str, authorization: Option<&str>, accept: &str) -> Result<Answer> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(url).header("Accept", accept);
    if let Some(authorization) = authorization {
        request = request.header("Authorization", authorization);
    }
    let mut response = request.call()?;
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            let value = v.to_str().unwrap_or_default().to_string();
            (k.as_str().to_ascii_lowercase(), value)
        })
        .collect();
    Ok(Answer {
        status: response.status().as_u16(),
        headers,
        body: response.body_mut().read_to_string()?,
    })
}
