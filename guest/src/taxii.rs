//! TAXII protocol pieces shared by both versions: URLs, media types,
//! timestamps, statuses. Paging lives in [`page`] (envelopes and bundles)
//! and [`range`] (TAXII 2.0 item ranges).

use std::time::{Duration, SystemTime};

use url::Url;

use crate::report::ImportError;

pub mod page;
pub mod range;

/// The TAXII 2.1 media type, sent in `Accept`. Some servers (medallion)
/// accept only this exact spelling.
pub const TAXII_21: &str = "application/taxii+json;version=2.1";

/// The TAXII 2.0 media type of resources (discovery, API roots,
/// collections).
pub const TAXII_20: &str = "application/vnd.oasis.taxii+json; version=2.0";

/// The STIX 2.0 media type: what a TAXII 2.0 Get Objects answers with.
pub const STIX_20: &str = "application/vnd.oasis.stix+json; version=2.0";

/// Header holding the `date_added` of a page's last object.
pub const DATE_ADDED_LAST: &str = "x-taxii-date-added-last";

/// Largest error body excerpt quoted in a message.
const MAX_EXCERPT: usize = 200;

/// A TAXII version this plugin speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaxiiVersion {
    /// TAXII 2.1: envelopes, `limit` and `next`.
    V21,
    /// TAXII 2.0: bundles, `Range: items a-b`.
    V20,
}

impl TaxiiVersion {
    /// `2.1` or `2.0`, as reported and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V21 => "2.1",
            Self::V20 => "2.0",
        }
    }

    /// Reads [`Self::as_str`] back.
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim() {
            "2.1" => Some(Self::V21),
            "2.0" => Some(Self::V20),
            _ => None,
        }
    }

    /// The other version, tried when a server refuses this one.
    pub fn other(self) -> Self {
        match self {
            Self::V21 => Self::V20,
            Self::V20 => Self::V21,
        }
    }

    /// `Accept` for discovery, API root and collection resources.
    pub fn resource_accept(self) -> &'static str {
        match self {
            Self::V21 => TAXII_21,
            Self::V20 => TAXII_20,
        }
    }

    /// `Accept` for Get Objects: an envelope (2.1) or a bundle (2.0).
    pub fn objects_accept(self) -> &'static str {
        match self {
            Self::V21 => TAXII_21,
            Self::V20 => STIX_20,
        }
    }
}

/// Parses a URL given by a user: http or https, a host, no credentials,
/// no query; the fragment dropped.
pub fn server_url(input: &str) -> Result<Url, String> {
    let mut url = Url::parse(input.trim())
        .map_err(|e| format!("{input:?} is not a URL ({e}): give the full URL"))?;
    // Checked first, so that no message below repeats what may be a token.
    if url.query().is_some() {
        return Err(format!(
            "{} has a query (`?...`): TAXII URLs have none, and the plugin would not send it; \
             if it holds a token, give the token to the host as credentials instead",
            redact_query(&url)
        ));
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{input:?} uses {}: a TAXII URL starts with https:// or http://",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{input:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the URL contains credentials: remove them from the URL and give \
                    them to the host as a username and password instead"
                .into(),
        );
    }
    url.set_fragment(None);
    Ok(url)
}

/// Parses a Collection URL given by a user: a [`server_url`] whose path
/// ends with `/`.
pub fn collection_url(input: &str) -> Result<Url, String> {
    let mut url = server_url(input)?;
    with_trailing_slash(&mut url);
    Ok(url)
}

/// Adds the `/` that TAXII resource URLs end with, when missing.
pub fn with_trailing_slash(url: &mut Url) {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
}

/// The filters of a Get Objects request. All of them are sent on every
/// page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectsQuery {
    /// `added_after`, sent exactly as stored.
    pub added_after: Option<String>,
    /// `match[type]`.
    pub types: Vec<String>,
}

impl ObjectsQuery {
    /// The Get Objects URL: the filters, every version (`match[version]=all`),
    /// and for TAXII 2.1 `limit` and the previous page's `next`.
    pub fn url(&self, collection: &Url, limit: Option<u32>, next: Option<&str>) -> Url {
        let mut url = collection.clone();
        url.set_path(&format!("{}objects/", collection.path()));
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(limit) = limit {
                pairs.append_pair("limit", &limit.to_string());
            }
            if let Some(after) = &self.added_after {
                pairs.append_pair("added_after", after);
            }
            if !self.types.is_empty() {
                pairs.append_pair("match[type]", &self.types.join(","));
            }
            pairs.append_pair("match[version]", "all");
            if let Some(next) = next {
                pairs.append_pair("next", next);
            }
        }
        url
    }
}

/// A media type, compared by its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    /// `type/subtype`, lower case.
    pub essence: String,
    /// The `version` parameter, if any.
    pub version: Option<String>,
}

/// Parses `type/subtype; param=value`, ignoring case and spaces.
pub fn parse_media_type(value: &str) -> Option<MediaType> {
    let mut parts = value.split(';');
    let essence = parts.next()?.trim().to_ascii_lowercase();
    if !essence.contains('/') {
        return None;
    }
    let version = parts.find_map(|param| {
        let (name, value) = param.split_once('=')?;
        let value = value.trim().trim_matches('"');
        name.trim()
            .eq_ignore_ascii_case("version")
            .then(|| value.to_string())
    });
    Some(MediaType { essence, version })
}

/// What a response's `Content-Type` says about the TAXII version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentType {
    /// `application/taxii+json`, version 2.1 or none.
    Taxii21,
    /// A TAXII 2.0 type (`application/vnd.oasis.taxii+json` or
    /// `application/vnd.oasis.stix+json`, version 2.0 or none).
    Taxii20(String),
    /// A JSON type that names no TAXII version (accepted leniently).
    Json(String),
    /// Missing or not JSON.
    Other(String),
}

/// Classifies a `Content-Type` header value.
pub fn classify_content_type(value: Option<&str>) -> ContentType {
    let Some(value) = value else {
        return ContentType::Other("no Content-Type".into());
    };
    let Some(media) = parse_media_type(value) else {
        return ContentType::Other(value.into());
    };
    let version = media.version.as_deref();
    match media.essence.as_str() {
        "application/taxii+json" if matches!(version, None | Some("2.1")) => ContentType::Taxii21,
        "application/vnd.oasis.taxii+json" | "application/vnd.oasis.stix+json"
            if matches!(version, None | Some("2.0")) =>
        {
            ContentType::Taxii20(value.into())
        }
        "application/taxii+json" if version == Some("2.0") => ContentType::Taxii20(value.into()),
        "application/json"
        | "application/stix+json"
        | "application/taxii+json"
        | "application/vnd.oasis.taxii+json"
        | "application/vnd.oasis.stix+json" => ContentType::Json(value.into()),
        _ => ContentType::Other(value.into()),
    }
}

/// True for an RFC 3339 timestamp such as `2024-01-31T12:00:00.123456Z`.
pub fn is_rfc3339(value: &str) -> bool {
    let b = value.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    let date_time = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !date_time {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

/// Seconds to wait from a `Retry-After` value: delta-seconds or an HTTP
/// date, measured from `now`.
pub fn retry_after_seconds(value: &str, now: SystemTime) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds);
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO).as_secs())
}

/// The error for a response whose status is not a success.
pub fn error_for_status(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    url: &Url,
    now: SystemTime,
) -> ImportError {
    let said = server_said(body);
    let at = redact_query(url);
    match status {
        401 => ImportError::Unauthorized(format!(
            "{at} answered 401: the credentials are missing or wrong{said}"
        )),
        403 => ImportError::Forbidden(format!(
            "{at} answered 403: these credentials may not read it{said}"
        )),
        404 => ImportError::NotFound(format!(
            "{at} answered 404: no such API root or collection; check the URL{said}"
        )),
        406 | 415 => ImportError::UnsupportedVersion(format!(
            "{at} answered {status}: it does not serve the media type asked for{said}"
        )),
        429 | 503 if status == 429 || retry_after.is_some() => ImportError::RateLimited {
            retry_after_seconds: retry_after.and_then(|v| retry_after_seconds(v, now)),
            message: format!("{at} answered {status}{said}"),
        },
        500..=599 => ImportError::Unavailable(format!("{at} answered {status}{said}")),
        _ => ImportError::Other(format!("{at} answered {status}{said}")),
    }
}

/// The URL without its query, which may hold opaque tokens.
pub fn redact_query(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.to_string()
}

/// `: <title>: <description>` from a TAXII error message, or an excerpt.
fn server_said(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct TaxiiError {
        title: Option<String>,
        description: Option<String>,
    }
    let text = match serde_json::from_slice::<TaxiiError>(body) {
        Ok(e) => [e.title, e.description]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": "),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let text: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_EXCERPT)
        .collect();
    if text.is_empty() {
        String::new()
    } else {
        format!(" (the server said: {text})")
    }
}

#[cfg(test)]
mod tests;
