//! The same collections served by nginx from files, as the issue measured
//! its taxii2-client baseline: every page pre-rendered to a file, nginx
//! (Debian's package, one worker, `sendfile`) on 127.0.0.1 answering
//! `objects/?limit=1000&next=N` with file `N.json` and that page's
//! `X-TAXII-Date-Added-*` headers from a `map`.
//!
//! nginx runs in the foreground as a child of the benchmark (no daemon, no
//! master process) and is killed when the benchmark ends.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::data::Pages;
use crate::server::{TAXII_21, api_root, date_added, discovery, info};

/// A running nginx; dropping it kills it.
pub struct Nginx {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Bytes of each collection's pages, for MB/s (nginx counts nothing
    /// for us).
    pub page_bytes: HashMap<String, u64>,
    child: Child,
}

impl Nginx {
    /// The Collection URL of `id`.
    pub fn collection_url(&self, id: &str) -> String {
        format!("{}/api/collections/{id}/", self.base)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nginx binary, if installed.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
}

/// Renders `collections` under `dir` and starts nginx on them.
pub fn start(binary: &Path, dir: &Path, collections: &[(&str, &Pages)]) -> Result<Nginx> {
    let root = dir.join("root");
    let mut page_bytes = HashMap::new();
    let mut most_pages = 0;
    // The same resources as the benchmark's own server.
    write(
        &root.join("taxii2/index.json"),
        discovery().to_string().as_bytes(),
    )?;
    write(
        &root.join("api/index.json"),
        api_root().to_string().as_bytes(),
    )?;
    for &(id, pages) in collections {
        let collection = root.join("api/collections").join(id);
        write(
            &collection.join("index.json"),
            info(id).to_string().as_bytes(),
        )?;
        let mut bytes = 0;
        for index in 0..pages.len() {
            let body = pages.page(index).context("a page went missing")?;
            bytes += body.len() as u64;
            write(&collection.join(format!("objects/{index}.json")), &body)?;
        }
        page_bytes.insert(id.to_string(), bytes);
        most_pages = most_pages.max(pages.len());
    }
    let port = free_port()?;
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config(dir, &root, port, most_pages))?;
    let child = Command::new(binary)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let mut nginx = Nginx {
        base: format!("http://127.0.0.1:{port}"),
        page_bytes,
        child,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = nginx.child.try_wait()? {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            bail!("nginx exited ({status}) before listening: {log}");
        }
        if Instant::now() > deadline {
            bail!("nginx did not listen on 127.0.0.1:{port} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(nginx)
}

fn write(path: &Path, body: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, body).with_context(|| format!("cannot write {}", path.display()))
}

/// A port that was free a moment ago (nginx binds it next).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One worker, no daemon, files under `dir`; `next` (the page index,
/// zero-padded by the page templates) picks the page file and its dates.
/// Unknown pages are 404, as TAXII wants.
fn config(dir: &Path, root: &Path, port: u16, pages: usize) -> String {
    let mut dates = String::new();
    for index in 0..pages {
        let _ = writeln!(dates, "        {index} \"{}\";", date_added(index));
    }
    let dir = dir.display();
    let root = root.display();
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    client_body_temp_path {dir}/tmp-body;
    proxy_temp_path {dir}/tmp-proxy;
    fastcgi_temp_path {dir}/tmp-fastcgi;
    uwsgi_temp_path {dir}/tmp-uwsgi;
    scgi_temp_path {dir}/tmp-scgi;
    types {{ }}
    default_type "{TAXII_21}";
    map $arg_next $page {{
        "" 0;
        "~^0*(?<index>[0-9]+)$" $index;
        default none;
    }}
    map $page $added {{
        default "";
{dates}    }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        index index.json;
        location ~ ^/api/collections/(?<collection>[^/]+)/objects/$ {{
            add_header X-TAXII-Date-Added-First $added always;
            add_header X-TAXII-Date-Added-Last $added always;
            try_files /api/collections/$collection/objects/$page.json =404;
        }}
    }}
}}
"#
    )
}
