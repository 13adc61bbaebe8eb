//! TAXII 2.1 protocol pieces: URLs, media types, envelopes, statuses.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde_json::value::RawValue;
use url::Url;

use crate::report::ImportError;

/// The TAXII 2.1 media type, sent in `Accept`. Some servers (medallion)
/// accept only this exact spelling.
pub const TAXII_21: &str = "application/taxii+json;version=2.1";

/// Header holding the `date_added` of a page's last object.
pub const DATE_ADDED_LAST: &str = "x-taxii-date-added-last";

/// Largest error body excerpt quoted in a message.
const MAX_EXCERPT: usize = 200;

/// Parses a Collection URL given by a user: http or https, a host, no
/// credentials, and a path that ends with `/`.
pub fn collection_url(input: &str) -> Result<Url, String> {
    let mut url = Url::parse(input.trim())
        .map_err(|e| format!("{input:?} is not a URL ({e}): give the collection's full URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{input:?} uses {}: a Collection URL starts with https:// or http://",
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
    url.set_query(None);
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// The filters of a Get Objects request. All of them are sent on every
/// page, with `next` added after the first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectsQuery {
    /// `limit`.
    pub limit: u32,
    /// `added_after`, sent exactly as stored.
    pub added_after: Option<String>,
    /// `match[type]`.
    pub types: Vec<String>,
    /// `next`, from the previous page.
    pub next: Option<String>,
}

impl ObjectsQuery {
    /// The Get Objects URL for this query. Always asks for every version.
    pub fn url(&self, collection: &Url) -> Url {
        let mut url = collection.clone();
        url.set_path(&format!("{}objects/", collection.path()));
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("limit", &self.limit.to_string());
            if let Some(after) = &self.added_after {
                pairs.append_pair("added_after", after);
            }
            if !self.types.is_empty() {
                pairs.append_pair("match[type]", &self.types.join(","));
            }
            pairs.append_pair("match[version]", "all");
            if let Some(next) = &self.next {
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

/// How a response's `Content-Type` relates to TAXII 2.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentType {
    /// `application/taxii+json`, version 2.1 or none.
    Taxii21,
    /// A JSON type that is not TAXII's own (accepted leniently).
    Json(String),
    /// A TAXII 2.0 type.
    Taxii20(String),
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
        "application/vnd.oasis.taxii+json" | "application/vnd.oasis.stix+json" => {
            ContentType::Taxii20(value.into())
        }
        "application/taxii+json" if version == Some("2.0") => ContentType::Taxii20(value.into()),
        "application/json" | "application/stix+json" | "application/taxii+json" => {
            ContentType::Json(value.into())
        }
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

/// A Get Objects answer: an envelope.
#[derive(Debug, Default)]
pub struct Envelope<'a> {
    /// `more`; missing means false.
    pub more: bool,
    /// `next`; missing means none.
    pub next: Option<String>,
    /// `objects`, each kept as raw JSON; missing means none.
    pub objects: Vec<&'a RawValue>,
    /// Top-level keys that are not part of an envelope.
    pub unexpected_keys: Vec<String>,
}

/// Parses an envelope. An empty body or `{}` is an empty page.
pub fn parse_envelope(body: &[u8]) -> Result<Envelope<'_>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Envelope::default());
    }
    let top: HashMap<String, &RawValue> =
        serde_json::from_slice(body).map_err(|e| format!("the body is not a JSON object ({e})"))?;
    let mut envelope = Envelope::default();
    for (key, value) in top {
        match key.as_str() {
            "more" => {
                envelope.more = serde_json::from_str::<Option<bool>>(value.get())
                    .map_err(|_| format!("`more` is {} instead of true or false", value.get()))?
                    .unwrap_or(false)
            }
            "next" => envelope.next = token(value)?,
            "objects" => {
                envelope.objects = serde_json::from_str::<Option<Vec<&RawValue>>>(value.get())
                    .map_err(|e| format!("`objects` is not a list ({e})"))?
                    .unwrap_or_default()
            }
            _ => envelope.unexpected_keys.push(key),
        }
    }
    envelope.unexpected_keys.sort();
    Ok(envelope)
}

/// Reads `next`: a string, or a number some servers send instead.
fn token(value: &RawValue) -> Result<Option<String>, String> {
    match serde_json::from_str::<serde_json::Value>(value.get()) {
        Ok(serde_json::Value::Null) => Ok(None),
        Ok(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Ok(serde_json::Value::String(s)) => Ok(Some(s)),
        Ok(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        _ => Err(format!("`next` is {} instead of a string", value.get())),
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
            "{at} answered 404: no such API root or collection; check the Collection URL{said}"
        )),
        406 | 415 => ImportError::UnsupportedVersion(format!(
            "{at} answered {status} to TAXII 2.1 ({TAXII_21}){said}"
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
mod tests {
    use super::*;

    #[test]
    fn compares_media_types_by_their_parts() {
        for spelling in [
            "application/taxii+json;version=2.1",
            "application/taxii+json; version=2.1",
            "Application/TAXII+JSON ; Version=\"2.1\"",
            "application/taxii+json",
        ] {
            assert_eq!(classify_content_type(Some(spelling)), ContentType::Taxii21);
        }
        assert!(matches!(
            classify_content_type(Some("application/json; charset=utf-8")),
            ContentType::Json(_)
        ));
        assert!(matches!(
            classify_content_type(Some("application/stix+json;version=2.1")),
            ContentType::Json(_)
        ));
        assert!(matches!(
            classify_content_type(Some("application/vnd.oasis.taxii+json; version=2.0")),
            ContentType::Taxii20(_)
        ));
        assert!(matches!(
            classify_content_type(Some("text/html")),
            ContentType::Other(_)
        ));
        assert!(matches!(classify_content_type(None), ContentType::Other(_)));
    }

    #[test]
    fn builds_the_objects_url_with_every_filter() {
        let collection = collection_url("https://h:8443/api/collections/c1").unwrap();
        let query = ObjectsQuery {
            limit: 7,
            added_after: Some("2024-01-01T00:00:00.123456+00:00".into()),
            types: vec!["indicator".into(), "malware".into()],
            next: Some("a b+c/=".into()),
        };
        let url = query.url(&collection);
        assert_eq!(url.path(), "/api/collections/c1/objects/");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                ("limit", "7"),
                ("added_after", "2024-01-01T00:00:00.123456+00:00"),
                ("match[type]", "indicator,malware"),
                ("match[version]", "all"),
                ("next", "a b+c/="),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn refuses_urls_that_cannot_be_collections() {
        assert!(collection_url("not a url").is_err());
        assert!(collection_url("file:///etc/passwd").is_err());
        let err = collection_url("https://u:p@h/api/collections/c/").unwrap_err();
        assert!(err.contains("credentials") && !err.contains("u:p"));
    }

    #[test]
    fn reads_envelopes_leniently() {
        let empty = parse_envelope(b"{}").unwrap();
        assert!(!empty.more && empty.next.is_none() && empty.objects.is_empty());
        assert!(parse_envelope(b"").unwrap().objects.is_empty());

        let env =
            parse_envelope(br#"{"more":true,"next":12,"objects":[{"a":1}],"data":[]}"#).unwrap();
        assert!(env.more);
        assert_eq!(env.next.as_deref(), Some("12"));
        assert_eq!(env.objects.len(), 1);
        assert_eq!(env.unexpected_keys, ["data"]);

        assert!(parse_envelope(br#"{"objects":{}}"#).is_err());
        assert!(parse_envelope(br#"{"more":"yes"}"#).is_err());
        assert!(parse_envelope(b"<html>").is_err());
    }

    #[test]
    fn recognizes_rfc3339_timestamps() {
        for ok in [
            "2024-01-31T12:00:00Z",
            "2024-01-31T12:00:00.123456Z",
            "2024-01-31T12:00:00.1+01:00",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "",
            "2024-01-31",
            "2024-01-31 12:00:00Z",
            "2024-01-31T12:00:00.Z",
            "2024-01-31T12:00:00",
            "Wed, 31 Jan 2024 12:00:00 GMT",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn reads_retry_after_in_both_forms() {
        let now = httpdate::parse_http_date("Wed, 31 Jan 2024 12:00:00 GMT").unwrap();
        assert_eq!(retry_after_seconds("120", now), Some(120));
        assert_eq!(
            retry_after_seconds("Wed, 31 Jan 2024 12:01:30 GMT", now),
            Some(90)
        );
        assert_eq!(
            retry_after_seconds("Wed, 31 Jan 2024 11:00:00 GMT", now),
            Some(0)
        );
        assert_eq!(retry_after_seconds("soon", now), None);
    }

    #[test]
    fn maps_statuses_to_errors_the_host_can_act_on() {
        let url = Url::parse("http://h/api/collections/c/objects/?next=secret").unwrap();
        let now = SystemTime::UNIX_EPOCH;
        let err = |status, retry: Option<&str>, body: &[u8]| {
            error_for_status(status, retry, body, &url, now)
        };
        assert!(matches!(
            err(401, None, b"<html/>"),
            ImportError::Unauthorized(_)
        ));
        assert!(matches!(err(403, None, b""), ImportError::Forbidden(_)));
        assert!(matches!(err(404, None, b""), ImportError::NotFound(_)));
        assert!(matches!(
            err(406, None, b""),
            ImportError::UnsupportedVersion(_)
        ));
        assert!(matches!(
            err(429, Some("7"), b""),
            ImportError::RateLimited {
                retry_after_seconds: Some(7),
                ..
            }
        ));
        assert!(matches!(
            err(503, Some("3"), b""),
            ImportError::RateLimited { .. }
        ));
        assert!(matches!(err(503, None, b""), ImportError::Unavailable(_)));
        let ImportError::Other(message) = err(
            400,
            None,
            br#"{"title":"Bad","description":"next expired"}"#,
        ) else {
            panic!("400 is not a known failure");
        };
        assert!(message.contains("Bad: next expired"), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }
}
