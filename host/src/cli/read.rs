//! The commands that read stores: `retrieve query` and `query` (one query
//! written as flags or as a directive), and `serve-taxii`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};

use super::{ListFormat, Session, runtime};
use crate::directive::{self, Directive};
use crate::filter::{Filter, Op};
use crate::output::ObjectFormat;
use crate::query::{Cursor, Include, ObjectQuery, Source, Stage, VersionMatch};
use crate::retrieve;
use crate::secret::SecretSource;
use crate::serve::{self, ServeConfig};

/// `retrieve query`.
#[derive(Debug, Args)]
pub struct QueryStoreArgs {
    /// The store.
    pub name: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ObjectFormat::Bundle)]
    pub format: ObjectFormat,
    #[command(flatten)]
    pub objects: ObjectArgs,
}

/// A STIX type name, as `--type` takes it: 3 to 250 of `a-z`, `0-9` and
/// `-`, without `--` and not starting or ending with `-`. Anything else
/// could only match nothing.
fn stix_type(text: &str) -> Result<String, String> {
    let valid = (3..=250).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.contains("--")
        && !text.starts_with('-')
        && !text.ends_with('-');
    match valid {
        true => Ok(text.to_string()),
        false => Err(format!(
            "{text:?} is not a STIX type name (lowercase letters, digits and single hyphens, \
             such as indicator or x-acme-asset); separate several with commas"
        )),
    }
}

/// Which objects to read and what of them, as flags; each is the
/// directive stage of the same name.
#[derive(Debug, Default, Args)]
pub struct ObjectArgs {
    /// Only objects of these STIX types (`_filter type in ...`; repeat, or
    /// separate with commas).
    #[arg(long = "type", value_name = "TYPE", value_delimiter = ',', value_parser = stix_type)]
    pub types: Vec<String>,
    /// Only objects with these ids (`_filter id in ...`).
    #[arg(long = "id", value_name = "ID", value_delimiter = ',')]
    pub ids: Vec<String>,
    /// Only objects that match, written as after `_filter`, for example
    /// 'modified > 2024-01-01' (repeat for several).
    #[arg(long = "filter", value_name = "EXPR", value_parser = filter_flag)]
    pub filters: Vec<Filter>,
    /// Which versions of each object: last, first, all or timestamps,
    /// separated by commas (`_versions`) [default: last]
    #[arg(long, value_name = "WHICH", value_parser = versions_flag)]
    pub versions: Option<VersionMatch>,
    /// Only versions stored after this timestamp or date (`_added_after`).
    #[arg(long, value_name = "TIMESTAMP", value_parser = added_after_flag)]
    pub added_after: Option<String>,
    /// Show what is hidden by default: revoked, expired or all
    /// (`_include`).
    #[arg(long, value_name = "WHAT", value_parser = include_flag)]
    pub include: Option<Include>,
    /// Resume after the page that printed this cursor (`_cursor`).
    #[arg(long, value_name = "CURSOR", value_parser = cursor_flag)]
    pub cursor: Option<Cursor>,
    /// At most this many objects; a cursor for the next page is printed
    /// on stderr (`_limit`).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Keep only these properties; the output is then not STIX
    /// (`_fields`).
    #[arg(long, value_name = "PROPERTY", value_delimiter = ',', value_parser = property_flag)]
    pub fields: Vec<String>,
    /// Show the quarantine instead: objects rejected, with the reason.
    #[arg(long)]
    pub quarantine: bool,
    /// Show the objects as the server sent them instead, before their
    /// conversion to STIX 2.1 (only converted objects have one).
    #[arg(long, conflicts_with = "quarantine")]
    pub original: bool,
}

impl ObjectArgs {
    /// The query the flags describe: filters, then the limit, then the
    /// projection.
    pub fn to_query(&self) -> ObjectQuery {
        let mut stages = Vec::new();
        let pin = |field: &str, values: &[String]| {
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            Stage::Filter(Filter::new(field, Op::In, &values))
        };
        if !self.types.is_empty() {
            stages.push(pin("type", &self.types));
        }
        if !self.ids.is_empty() {
            stages.push(pin("id", &self.ids));
        }
        stages.extend(self.filters.iter().cloned().map(Stage::Filter));
        stages.extend(self.limit.map(Stage::Limit));
        if !self.fields.is_empty() {
            stages.push(Stage::Fields(self.fields.clone()));
        }
        ObjectQuery {
            source: Source {
                versions: self.versions.clone(),
                added_after: self.added_after.clone(),
                include: self.include,
                cursor: self.cursor.clone(),
                quarantine: self.quarantine,
                original: self.original,
            },
            stages,
        }
    }
}

fn filter_flag(text: &str) -> Result<Filter, String> {
    directive::parse_filter(text).map_err(|e| format!("\n{e}"))
}

fn versions_flag(text: &str) -> Result<VersionMatch, String> {
    VersionMatch::parse(text).map_err(|item| format!("{item:?} is not {}", VersionMatch::EXPECTED))
}

fn added_after_flag(text: &str) -> Result<String, String> {
    crate::timestamp::canonical_or_date(text)
        .ok_or_else(|| "expected a timestamp such as 2024-01-31 or 2024-01-31T12:00:00Z".into())
}

fn include_flag(text: &str) -> Result<Include, String> {
    Include::parse(text).map_err(|item| format!("{item:?} is not {}", Include::EXPECTED))
}

fn cursor_flag(text: &str) -> Result<Cursor, String> {
    Cursor::decode(text).ok_or_else(|| format!("expected {}", Cursor::EXPECTED))
}

fn property_flag(text: &str) -> Result<String, String> {
    match directive::is_property(text) {
        true => Ok(text.to_string()),
        false => Err("expected a property name (letters, digits, `_` and `-`)".into()),
    }
}

/// `query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The directive, for example '_retrieve query feed1 | _filter type ==
    /// indicator | _limit 50'.
    pub directive: String,
    /// Output format: table or json for `_retrieve list` [default: table],
    /// bundle, envelope or jsonl for `_retrieve query` [default: bundle]
    #[arg(long, value_enum)]
    pub format: Option<QueryFormat>,
    /// Flags add to the directive: their filters, limit and projection
    /// run after its stages.
    #[command(flatten)]
    pub objects: ObjectArgs,
}

/// The output formats of `query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryFormat {
    /// `_retrieve list` as columns.
    Table,
    /// `_retrieve list` as JSON.
    Json,
    /// Objects as a STIX 2.1 bundle.
    Bundle,
    /// Objects as a TAXII 2.1 envelope.
    Envelope,
    /// Objects as JSON lines.
    Jsonl,
}

/// `serve-taxii`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen (port 0 picks a free one).
    #[arg(long, value_name = "ADDR:PORT", default_value = serve::DEFAULT_LISTEN)]
    pub listen: std::net::SocketAddr,
    /// The user clients authenticate as (HTTP Basic).
    #[arg(long, value_name = "USER")]
    pub user: String,
    /// Read that user's password from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "password_file")]
    pub password_env: Option<String>,
    /// Read that user's password from the first line of this file.
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
    /// Refused: a password on the command line ends up in the shell history.
    #[arg(long, hide = true, value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Serve only these tenants (one API root each; repeat, or separate
    /// with commas) [default: every tenant with stores]
    #[arg(long = "api-root", value_name = "TENANT", value_delimiter = ',')]
    pub tenants: Vec<String>,
    /// The largest page served, whatever `limit` a client asks.
    #[arg(long, value_name = "N", default_value_t = serve::DEFAULT_MAX_PAGE_SIZE)]
    pub max_page_size: usize,
}

impl Session {
    pub(super) fn query_store(
        &self,
        name: &str,
        query: &ObjectQuery,
        format: ObjectFormat,
    ) -> Result<ExitCode> {
        let db = self.existing_db()?;
        let store = db.require_store(&self.tenant, name)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        let outcome = retrieve::write_objects(&db, &store, query, format, &mut out)?;
        drop(out);
        if self.quiet {
            return Ok(ExitCode::SUCCESS);
        }
        if let (Some(note), ObjectFormat::Jsonl) = (&outcome.note, format) {
            eprintln!("note: {note}");
        }
        match (&outcome.next, outcome.more) {
            (Some(next), _) => eprintln!(
                "more objects: for the next page add `| _cursor {next}` to the directive, \
                 or --cursor {next}"
            ),
            (None, true) => eprintln!("more records follow: raise the limit to see them"),
            (None, false) => {}
        }
        Ok(ExitCode::SUCCESS)
    }

    /// `query '<directive>'`: the directive's stages, then the flags'.
    pub(super) fn directive(&self, args: &QueryArgs) -> Result<ExitCode> {
        let directive = match directive::parse(&args.directive) {
            Ok(directive) => directive,
            Err(error) => {
                eprintln!("error: the directive does not parse: {error}");
                return Ok(ExitCode::from(2));
            }
        };
        let flags = args.objects.to_query();
        match directive {
            Directive::List => {
                if flags != ObjectQuery::default() {
                    bail!("object flags apply to `_retrieve query`, not to `_retrieve list`");
                }
                let format = match args.format {
                    None | Some(QueryFormat::Table) => ListFormat::Table,
                    Some(QueryFormat::Json) => ListFormat::Json,
                    Some(other) => {
                        bail!("`_retrieve list` prints --format table or json, not {other:?}")
                    }
                };
                self.list(format)
            }
            Directive::Query { store, mut query } => {
                let format = match args.format {
                    None | Some(QueryFormat::Bundle) => ObjectFormat::Bundle,
                    Some(QueryFormat::Envelope) => ObjectFormat::Envelope,
                    Some(QueryFormat::Jsonl) => ObjectFormat::Jsonl,
                    Some(other) => bail!(
                        "`_retrieve query` prints --format bundle, envelope or jsonl, not {other:?}"
                    ),
                };
                query
                    .source
                    .merge(flags.source)
                    .map_err(anyhow::Error::msg)?;
                query.stages.extend(flags.stages);
                self.query_store(&store, &query, format)
            }
        }
    }

    pub(super) fn serve_taxii(&self, args: ServeArgs) -> Result<ExitCode> {
        if args.password.is_some() {
            return Err(super::connection::password_refused());
        }
        for tenant in &args.tenants {
            crate::feeds::check_name("tenant", tenant)?;
            if tenant == "taxii2" {
                bail!("the tenant taxii2 cannot be served: /taxii2/ is the discovery resource");
            }
        }
        if args.max_page_size == 0 {
            bail!("--max-page-size must be at least 1");
        }
        let source = match (args.password_env, args.password_file) {
            (Some(var), _) => SecretSource::Env(var),
            (None, Some(path)) => SecretSource::File(path),
            (None, None) => {
                bail!("give the server's password with --password-env or --password-file")
            }
        };
        let config = ServeConfig {
            location: self.location.clone(),
            listen: args.listen,
            user: args.user,
            password: source.read(&self.runner.secrets_file)?,
            tenants: args.tenants,
            max_page_size: args.max_page_size,
        };
        runtime()?.block_on(serve::serve(config, |urls| {
            // The collections first, then the line that says it is ready.
            let mut lines = urls.iter();
            let discovery = lines.next();
            for line in lines {
                println!("collection {line}");
            }
            if let Some(discovery) = discovery {
                println!("serving TAXII 2.1 at {discovery} (Ctrl-C stops)");
            }
        }))?;
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::stix_type;

    #[test]
    fn type_flags_take_stix_type_names_only() {
        for good in ["indicator", "attack-pattern", "x-acme-asset", "ipv4-addr"] {
            assert_eq!(stix_type(good).as_deref(), Ok(good));
        }
        for bad in [
            "",
            "Indicator",
            "indicator malware",
            "a",
            "x--y",
            "-x-",
            "ind/icator",
        ] {
            let message = stix_type(bad).unwrap_err();
            assert!(
                message.contains("not a STIX type name"),
                "{bad:?}: {message}"
            );
        }
    }
}
