//! A medallion (the OASIS reference TAXII 2.1 server) of a test's own, on
//! 127.0.0.1, stopped when dropped.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use crate::python::{run_script, venv_command};
use crate::{free_port, random_password};

/// How long medallion may take to start answering.
const STARTUP: Duration = Duration::from_secs(30);

/// The TAXII 2.1 media type.
pub const TAXII_21: &str = "application/taxii+json;version=2.1";

/// A running medallion.
pub struct Medallion {
    child: Child,
    /// Its files (data, config, password file, log).
    pub dir: tempfile::TempDir,
    /// The user it accepts.
    pub user: String,
    /// That user's password.
    pub password: String,
    /// Where it is.
    pub urls: Urls,
}

/// The URLs `medallion_setup.py` prints.
#[derive(Debug, Clone, Deserialize)]
pub struct Urls {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The discovery URL.
    pub discovery_url: String,
    /// The API root.
    pub api_root_url: String,
    /// Collection URLs by name: `intel`, `locked`, `empty`.
    pub collections: std::collections::HashMap<String, String>,
}

impl Medallion {
    /// Starts medallion serving the objects of `bundle` in its `intel`
    /// collection.
    pub fn start(bundle: &Path) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let password = random_password();
        let password_file = dir.path().join("password");
        crate::write_private(&password_file, &password);
        let port = free_port();
        let server_dir = dir.path().join("server");
        let printed = run_script(
            "medallion_setup.py",
            &[
                "--objects",
                &bundle.display().to_string(),
                "--port",
                &port.to_string(),
                "--out-dir",
                &server_dir.display().to_string(),
                "--user",
                "analyst",
                "--password-file",
                &password_file.display().to_string(),
            ],
        )?;
        let urls: Urls = serde_json::from_str(&printed).context("medallion_setup.py output")?;
        let log = std::fs::File::create(dir.path().join("medallion.log"))?;
        let child = venv_command("medallion")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg(server_dir.join("config.json"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start medallion")?;
        let medallion = Self {
            child,
            dir,
            user: "analyst".into(),
            password,
            urls,
        };
        medallion.wait_until_up()?;
        Ok(medallion)
    }

    fn wait_until_up(&self) -> Result<()> {
        let started = Instant::now();
        while started.elapsed() < STARTUP {
            if self.get(&self.urls.discovery_url).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "medallion did not answer within {STARTUP:?}; see {}",
            self.log_path().display()
        )
    }

    /// Its log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("medallion.log")
    }

    /// A collection's URL by name.
    pub fn collection(&self, name: &str) -> &str {
        &self.urls.collections[name]
    }

    /// A file holding the password, for `config add --password-file`.
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("password")
    }

    /// The `Authorization` header value of its user.
    pub fn authorization(&self) -> String {
        let pair = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }

    /// GETs a TAXII resource as JSON.
    pub fn get(&self, url: &str) -> Result<Value> {
        let mut response = ureq::get(url)
            .header("Accept", TAXII_21)
            .header("Authorization", &self.authorization())
            .call()?;
        Ok(serde_json::from_str(
            &response.body_mut().read_to_string()?,
        )?)
    }

    /// Adds objects to a collection (POST of an envelope); returns the
    /// status resource.
    pub fn add_objects(&self, collection: &str, objects: &[Value]) -> Result<Value> {
        let envelope = serde_json::json!({ "objects": objects });
        let mut response = ureq::post(&format!("{collection}objects/"))
            .header("Accept", TAXII_21)
            .header("Content-Type", TAXII_21)
            .header("Authorization", &self.authorization())
            .send(envelope.to_string().as_bytes())?;
        Ok(serde_json::from_str(
            &response.body_mut().read_to_string()?,
        )?)
    }

    /// What medallion logged so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.log_path()) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Medallion {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
