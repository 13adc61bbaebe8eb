//! `discover URL`: what a TAXII URL points at (a discovery resource, an API
//! root, a list of collections or one collection), with the exact
//! Collection URL of each collection, ready for `config add`.
//!
//! The built-in plugin does the TAXII work (both 2.1 and 2.0). The host
//! lets it reach the origin of the URL given and adds the credentials
//! there only. API roots listed on another origin are shown unread; with
//! `--follow-other-origins` the host reads each of them in a call of its
//! own, allowed that origin alone and given no credentials.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use url::Url;

use crate::bindings::types::{ApiRootInfo, Discovery, ImportError, ResourceKind};
use crate::cli::{CredentialArgs, ListFormat, NetworkArgs};
use crate::feeds::{NetworkOptions, check_transport};
use crate::runner::{Runner, credential};

/// `discover`.
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// A discovery URL (https://host/taxii2/), an API root, a collection,
    /// or only the server (https://host), under which /taxii2/ and /taxii/
    /// are tried.
    pub url: String,
    #[command(flatten)]
    pub credentials: CredentialArgs,
    /// Read API roots listed on other origins too (without credentials).
    #[arg(long)]
    pub follow_other_origins: bool,
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

/// Runs `discover` and prints what it found.
pub async fn run(
    runner: &Runner,
    args: &DiscoverArgs,
    secrets_file: &std::path::Path,
) -> Result<ExitCode> {
    let auth = args.credentials.auth()?;
    let url = Url::parse(args.url.trim())
        .with_context(|| format!("{:?} is not a URL: give the server's full URL", args.url))?;
    let network = args.network.network()?;
    check_transport(&url, &auth, &network)?;
    let credential = credential(&auth, secrets_file)?;
    let mut found = match runner
        .discover(url.as_str(), false, credential, &network)
        .await?
    {
        Ok(found) => found,
        Err(error) => bail!("{}", explain(&error)),
    };
    if args.follow_other_origins {
        follow(runner, &mut found, &network).await?;
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        ListFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&found)?)?,
        ListFormat::Table => write_discovery(&found, &mut out)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the API roots left unread because they are on another origin,
/// each allowed its own origin and sent without credentials.
async fn follow(runner: &Runner, found: &mut Discovery, network: &NetworkOptions) -> Result<()> {
    for root in found.api_roots.iter_mut().filter(|r| !r.followed) {
        let read = runner.discover(&root.url, false, None, network).await?;
        match read {
            Ok(mut other) if other.kind == ResourceKind::ApiRoot && !other.api_roots.is_empty() => {
                *root = other.api_roots.remove(0);
            }
            Ok(other) => {
                root.problem = Some(format!("{} is not an API root", other.url));
            }
            Err(error) => root.problem = Some(explain(&error)),
        }
    }
    Ok(())
}

fn explain(error: &ImportError) -> String {
    match error {
        ImportError::Unauthorized(m) => {
            format!("{m}; give credentials with --username and --password-file (or --password-env)")
        }
        ImportError::Denied(m) => {
            format!("{m}; for a server on this machine or the local network, pass --allow-private")
        }
        ImportError::InvalidConfig(m)
        | ImportError::Forbidden(m)
        | ImportError::NotFound(m)
        | ImportError::Unavailable(m)
        | ImportError::MalformedResponse(m)
        | ImportError::UnsupportedVersion(m)
        | ImportError::Store(m)
        | ImportError::Other(m) => m.clone(),
        ImportError::RateLimited(limit) => limit.message.clone(),
    }
}

/// Writes what was found, one table of collections per API root.
pub fn write_discovery(found: &Discovery, out: &mut impl Write) -> Result<()> {
    let what = match found.kind {
        ResourceKind::Discovery => "discovery",
        ResourceKind::ApiRoot => "API root",
        ResourceKind::Collections => "collections of",
        ResourceKind::Collection => "collection",
    };
    let title = found
        .title
        .as_deref()
        .map_or(String::new(), |t| format!(": {t}"));
    writeln!(
        out,
        "{what} {} (TAXII {}){title}",
        found.url, found.taxii_version
    )?;
    for root in &found.api_roots {
        write_api_root(root, out)?;
    }
    let readable = found
        .api_roots
        .iter()
        .flat_map(|r| &r.collections)
        .any(|c| c.can_read);
    if readable {
        writeln!(
            out,
            "\nadd a feed with: taxii-host config add NAME --collection-url <COLLECTION URL> ..."
        )?;
    }
    Ok(())
}

fn write_api_root(root: &ApiRootInfo, out: &mut impl Write) -> Result<()> {
    let title = root
        .title
        .as_deref()
        .map_or(String::new(), |t| format!(": {t}"));
    writeln!(out, "\nAPI root {}{title}", root.url)?;
    if !root.versions.is_empty() {
        writeln!(out, "  versions: {}", root.versions.join(", "))?;
    }
    if let Some(problem) = &root.problem {
        let hint = if root.followed {
            ""
        } else {
            " (pass --follow-other-origins to read it)"
        };
        writeln!(out, "  not read: {problem}{hint}")?;
    }
    if root.collections.is_empty() {
        if root.followed && root.problem.is_none() {
            writeln!(out, "  no collections")?;
        }
        return Ok(());
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(["TITLE", "ID", "READ", "WRITE", "COLLECTION URL"]);
    let yes = |b: bool| if b { "yes" } else { "no" };
    for c in &root.collections {
        table.add_row([
            c.title.clone().unwrap_or_else(|| "-".into()),
            c.id.clone(),
            yes(c.can_read).into(),
            yes(c.can_write).into(),
            c.collection_url.clone(),
        ]);
    }
    writeln!(out, "{table}")?;
    Ok(())
}
