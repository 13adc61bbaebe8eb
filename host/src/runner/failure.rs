//! Why a run failed, said so that the operator knows what to do.

use std::time::Duration;

use serde::Serialize;

use crate::bindings::types::ImportError;
use crate::feeds::{Auth, Feed};
use crate::limits::LimitHit;

/// Why a run failed, and what to do about it.
#[derive(Debug, Clone, Serialize)]
pub struct RunFailure {
    /// A stable name for the cause, such as `unauthorized` or `limit`.
    pub kind: String,
    /// What happened.
    pub message: String,
    /// What to do.
    pub fix: String,
    /// For `rate-limited`: how long the server asked to wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

/// The fix for a feed whose server is on a private address.
pub(super) const PRIVATE_ADDRESS_FIX: &str = "the feed's server is on a private, loopback or \
    link-local address, which feeds may not reach by default; if that server is meant, give \
    the feed --allow-private (`config add NAME --replace ... --allow-private`)";

/// A run ended by a stop request: after its last committed page, or
/// (`abandoned`) wherever it was.
pub(super) fn stopped(abandoned: bool) -> RunFailure {
    let message = if abandoned {
        "the host was stopped and abandoned the run before it ended; the pages it \
         committed are kept, a page being read was dropped"
    } else {
        "the host was asked to stop; the run ended after its last committed page"
    };
    RunFailure {
        kind: "interrupted".into(),
        message: message.into(),
        fix: "nothing: the next run resumes from the stored cursor".into(),
        retry_after_seconds: None,
    }
}

/// A run stopped because its host lost the feed's lease on a shared store.
pub(super) fn lease_lost(feed: &Feed, ttl: std::time::Duration) -> RunFailure {
    RunFailure {
        kind: "lease-lost".into(),
        message: format!(
            "this host lost the lease of feed {}: it could not renew it within {} (the \
             database was unreachable or this host stalled), so another host may run the \
             feed; the run stopped, keeping the pages it committed",
            feed.name,
            humantime::format_duration(ttl)
        ),
        fix: "nothing if it is rare: the next run resumes from the stored cursor; if it \
              recurs, check the connection to the PostgreSQL store or raise --lease-ttl"
            .into(),
        retry_after_seconds: None,
    }
}

/// A run stopped by one of its limits.
pub(super) fn limit(feed: &Feed, hit: LimitHit) -> RunFailure {
    let own_deadline = feed.deadline_secs.map(Duration::from_secs);
    let fix = match hit {
        LimitHit::RunTime(limit) if own_deadline == Some(limit) => format!(
            "the next run continues from the cursor; to give this feed more time, raise its \
             deadline with `taxii-host config add {} --replace --deadline ...`",
            feed.name
        ),
        _ => format!(
            "if this feed needs more, raise the limit with {} (see `taxii-host import --help`)",
            hit.flag()
        ),
    };
    RunFailure {
        kind: "limit".into(),
        message: format!(
            "feed {}: the run was stopped by {hit}; pages committed before it are kept",
            feed.name
        ),
        fix,
        retry_after_seconds: None,
    }
}

/// A run whose TLS connection failed.
pub(super) fn tls(feed: &Feed, detail: &str) -> RunFailure {
    RunFailure {
        kind: "tls".into(),
        message: format!("feed {}: {detail}", feed.name),
        fix: "if the server's certificate comes from a private CA, give the feed its \
              certificate with --ca-file; if the server asks for a client certificate, \
              give --client-cert and --client-key; check that the URL names the server's \
              own host"
            .into(),
        retry_after_seconds: None,
    }
}

/// A failure of the host itself (configuration, plugin trap, database).
pub(super) fn host(error: &anyhow::Error) -> RunFailure {
    let trapped = error.downcast_ref::<wasmtime::Trap>().is_some();
    RunFailure {
        kind: if trapped { "trap" } else { "host" }.into(),
        message: format!("{error:#}"),
        fix: if trapped {
            "the plugin crashed or hit a limit; nothing after its last committed page was \
             stored; run with --verbose to see the plugin's own messages"
                .into()
        } else {
            "see the message; nothing was lost from the store".into()
        },
        retry_after_seconds: None,
    }
}

/// A plugin's failure, with the fix spelled out for this feed.
pub fn explain(error: &ImportError, feed: &Feed) -> RunFailure {
    let name = &feed.name;
    let change = format!("`taxii-host config add {name} --replace ...`");
    let (kind, message, fix) = match error {
        ImportError::InvalidConfig(m) => (
            "invalid-config",
            m,
            format!("correct the feed with {change}"),
        ),
        ImportError::Unauthorized(m) => (
            "unauthorized",
            m,
            match &feed.auth {
                Auth::Basic { username, password } => format!(
                    "check the username {username:?} and the password in the {password}; \
                     change them with {change}"
                ),
                Auth::Bearer { token } => {
                    format!("check the token in the {token}; change it with {change}")
                }
                Auth::Header { name, value } => {
                    format!("check the {name} value in the {value}; change it with {change}")
                }
                Auth::None => format!(
                    "the server wants credentials: give the feed --username and a \
                     --password-* option (or a token) with {change}"
                ),
            },
        ),
        ImportError::Forbidden(m) => (
            "forbidden",
            m,
            "ask the server's operator for read access, or use a collection these \
             credentials may read"
                .into(),
        ),
        ImportError::NotFound(m) => (
            "not-found",
            m,
            format!(
                "check the Collection URL; it has the form \
                 https://host/<api-root>/collections/<id>/ (change it with {change})"
            ),
        ),
        ImportError::RateLimited(limit) => (
            "rate-limited",
            &limit.message,
            match limit.retry_after_seconds {
                Some(s) => format!("the server asks to wait {s} s; import again after that"),
                None => "the server asks to slow down; import again later".into(),
            },
        ),
        ImportError::Unavailable(m) => (
            "unavailable",
            m,
            "check that the server is up and reachable, then import again; pages \
             already committed are kept"
                .into(),
        ),
        ImportError::MalformedResponse(m) => (
            "malformed-response",
            m,
            "the server's answer is not the TAXII expected; pages already committed are \
             kept; report it to the server's operator"
                .into(),
        ),
        ImportError::UnsupportedVersion(m) => (
            "unsupported-version",
            m,
            "the server does not speak a TAXII version this plugin reads".into(),
        ),
        ImportError::Denied(m) => (
            "denied",
            m,
            "the host's egress policy refused a request (another origin than the feed's, \
             for example after a redirect, or a private address): if that server is \
             trusted, allow it with `config add NAME --replace ... --allow-origin URL` \
             (or --allow-private for an address on this network)"
                .into(),
        ),
        ImportError::Store(m) => (
            "store",
            m,
            "check free disk space and the permissions of the data directory".into(),
        ),
        ImportError::Other(m) => ("other", m, "see the message".into()),
    };
    let retry_after_seconds = match error {
        ImportError::RateLimited(limit) => limit.retry_after_seconds,
        _ => None,
    };
    RunFailure {
        kind: kind.into(),
        message: format!("feed {name}: {message}"),
        fix,
        retry_after_seconds,
    }
}
