//! The object endpoints of a collection: Get Objects, Get an Object, Get
//! Object Versions and Get Manifest, with their query parameters.

use anyhow::Result;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::page::{self, Page, PageQuery};
use super::{Reply, STIX_MEDIA_TYPE};
use crate::db::Database;
use crate::query::VersionMatch;
use crate::store::{StoreRef, VersionRow};
use crate::timestamp;

/// An object endpoint of a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint<'a> {
    /// `objects/`: an envelope of objects.
    Objects,
    /// `manifest/`: what `objects/` would give, described.
    Manifest,
    /// `objects/{id}/`: an envelope of one object's versions.
    Object(&'a str),
    /// `objects/{id}/versions/`: the version timestamps of one object.
    Versions(&'a str),
}

impl Endpoint<'_> {
    /// The query parameters the endpoint takes (TAXII 2.1, section 5).
    fn parameters(self) -> &'static [&'static str] {
        const ALL: &[&str] = &[
            "limit",
            "next",
            "added_after",
            "match[id]",
            "match[type]",
            "match[version]",
            "match[spec_version]",
        ];
        match self {
            Self::Objects | Self::Manifest => ALL,
            Self::Object(_) => &[
                "limit",
                "next",
                "added_after",
                "match[version]",
                "match[spec_version]",
            ],
            Self::Versions(_) => &["limit", "next", "added_after", "match[spec_version]"],
        }
    }
}

/// A request's parameters that are wrong, as a TAXII error.
struct BadRequest(String);

/// Answers a request to an object endpoint of `store`.
pub(super) fn answer(
    db: &Database,
    store: &StoreRef,
    endpoint: Endpoint<'_>,
    query: &str,
    max_page_size: usize,
) -> Result<Reply> {
    let mut request = match parse_query(endpoint, query, max_page_size) {
        Ok(request) => request,
        Err(BadRequest(description)) => {
            return Ok(Reply::error(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                &description,
            ));
        }
    };
    if let Endpoint::Object(id) | Endpoint::Versions(id) = endpoint {
        if !page::has_object(db, store, id)? {
            let description = format!("no object {id} in the collection {}", store.name);
            return Ok(Reply::error(
                StatusCode::NOT_FOUND,
                "Not Found",
                &description,
            ));
        }
        request.ids = vec![id.to_string()];
        if let Endpoint::Versions(_) = endpoint {
            request.versions = VersionMatch {
                all: true,
                ..VersionMatch::default()
            };
        }
    }
    let page = page::read_page(db, store, &request)?;
    let body = match endpoint {
        Endpoint::Objects | Endpoint::Object(_) => envelope(&page),
        Endpoint::Manifest => listing(&page, "objects", manifest_record),
        Endpoint::Versions(_) => listing(&page, "versions", |row| json!(version(row))),
    };
    Ok(with_dates(Reply::taxii(body), &page))
}

/// `X-TAXII-Date-Added-First` and `-Last`: the page's first and last
/// `date_added`, when it has versions.
fn with_dates(reply: Reply, page: &Page) -> Reply {
    match (page.rows.first(), page.rows.last()) {
        (Some(first), Some(last)) => reply
            .with_header("x-taxii-date-added-first", first.added_at.clone())
            .with_header("x-taxii-date-added-last", last.added_at.clone()),
        _ => reply,
    }
}

/// An envelope of the stored objects, as stored (byte for byte).
fn envelope(page: &Page) -> Vec<u8> {
    if page.rows.is_empty() && !page.more {
        return b"{}".to_vec();
    }
    let mut body = format!(r#"{{"more":{}"#, page.more).into_bytes();
    if let Some(next) = page.next() {
        body.extend(format!(r#","next":{}"#, json!(next)).bytes());
    }
    body.extend(br#","objects":["#);
    for (i, row) in page.rows.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend(&row.value);
    }
    body.extend(b"]}");
    body
}

/// `{"more", "next", key: [...]}` with one item per version.
fn listing(page: &Page, key: &str, item: impl Fn(&VersionRow) -> Value) -> Vec<u8> {
    if page.rows.is_empty() && !page.more {
        return b"{}".to_vec();
    }
    let mut body = json!({ "more": page.more });
    if let Some(next) = page.next() {
        body["next"] = json!(next);
    }
    body[key] = page.rows.iter().map(item).collect();
    body.to_string().into_bytes()
}

fn manifest_record(row: &VersionRow) -> Value {
    json!({
        "id": row.id(),
        "date_added": row.added_at,
        "version": version(row),
        "media_type": STIX_MEDIA_TYPE,
    })
}

/// A version as TAXII names it: `modified`, else `created`, else the
/// `date_added` (objects that are not versioned), as the object has it.
fn version(row: &VersionRow) -> String {
    #[derive(Deserialize)]
    struct Stamps {
        modified: Option<String>,
        created: Option<String>,
    }
    serde_json::from_slice::<Stamps>(&row.value)
        .ok()
        .and_then(|s| s.modified.or(s.created))
        .unwrap_or_else(|| row.added_at.clone())
}

/// Reads the query string of a request to `endpoint`.
fn parse_query(
    endpoint: Endpoint<'_>,
    query: &str,
    max_page_size: usize,
) -> Result<PageQuery, BadRequest> {
    let mut request = PageQuery {
        limit: max_page_size,
        ..PageQuery::default()
    };
    let mut seen = Vec::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let allowed = endpoint.parameters();
        if !allowed.contains(&name.as_ref()) {
            return Err(BadRequest(format!(
                "unknown parameter {name}: this endpoint takes {}",
                allowed.join(", ")
            )));
        }
        if seen.contains(&name) {
            return Err(BadRequest(format!("{name} is given twice")));
        }
        seen.push(name.clone());
        read_parameter(&mut request, &name, &value, max_page_size)?;
    }
    Ok(request)
}

fn read_parameter(
    request: &mut PageQuery,
    name: &str,
    value: &str,
    max_page_size: usize,
) -> Result<(), BadRequest> {
    let list = || value.split(',').map(String::from).collect::<Vec<_>>();
    match name {
        "limit" => {
            let limit: usize = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                BadRequest(format!("limit {value:?} is not a positive whole number"))
            })?;
            request.limit = limit.min(max_page_size);
        }
        "next" => {
            request.after_seq = value.parse().ok().filter(|n| *n >= 0).ok_or_else(|| {
                BadRequest(format!("next {value:?} is not a token this server gave"))
            })?;
        }
        "added_after" => {
            let after = timestamp::canonical(value).ok_or_else(|| {
                BadRequest(format!(
                    "added_after {value:?} is not a timestamp such as 2024-01-31T12:00:00.000000Z"
                ))
            })?;
            request.added_after = Some(timestamp::to_micros(&after));
        }
        "match[id]" => request.ids = list(),
        "match[type]" => request.types = list(),
        "match[version]" => {
            request.versions = VersionMatch::parse(value).map_err(|item| {
                BadRequest(format!(
                    "match[version] {item:?} is not {}",
                    VersionMatch::EXPECTED
                ))
            })?;
        }
        _ => request.spec_versions = list(),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(endpoint: Endpoint<'_>, query: &str) -> Result<PageQuery, String> {
        parse_query(endpoint, query, 100).map_err(|BadRequest(m)| m)
    }

    #[test]
    fn reads_every_parameter_of_get_objects() {
        let q = parsed(
            Endpoint::Objects,
            "limit=500&next=42&added_after=2024-01-01T00:00:00.1234567Z&match%5Bid%5D=a--1,b--2\
             &match[type]=indicator&match[version]=first,last&match[spec_version]=2.1",
        )
        .unwrap();
        assert_eq!(q.limit, 100, "capped at the largest page");
        assert_eq!(q.after_seq, 42);
        assert_eq!(
            q.added_after.as_deref(),
            Some("2024-01-01T00:00:00.123456Z")
        );
        assert_eq!(q.ids, ["a--1", "b--2"]);
        assert_eq!(q.types, ["indicator"]);
        assert!(q.versions.first && q.versions.last && !q.versions.all);
        assert_eq!(q.spec_versions, ["2.1"]);
        let default = parsed(Endpoint::Objects, "").unwrap();
        assert_eq!(
            (default.limit, default.versions),
            (100, VersionMatch::default())
        );
    }

    #[test]
    fn refuses_wrong_parameters_with_a_message() {
        for (endpoint, query, says) in [
            (
                Endpoint::Objects,
                "limit=0",
                "limit \"0\" is not a positive",
            ),
            (
                Endpoint::Objects,
                "limit=ten",
                "not a positive whole number",
            ),
            (
                Endpoint::Objects,
                "next=abc",
                "not a token this server gave",
            ),
            (
                Endpoint::Objects,
                "added_after=2024-01-01",
                "is not a timestamp",
            ),
            (
                Endpoint::Objects,
                "match[version]=newest",
                "\"newest\" is not `last`",
            ),
            (
                Endpoint::Objects,
                "match[color]=red",
                "unknown parameter match[color]",
            ),
            (Endpoint::Objects, "limit=1&limit=2", "limit is given twice"),
            (
                Endpoint::Versions("x--1"),
                "match[version]=all",
                "unknown parameter",
            ),
            (
                Endpoint::Object("x--1"),
                "match[type]=x",
                "unknown parameter",
            ),
        ] {
            let message = parsed(endpoint, query).err().unwrap_or_default();
            assert!(message.contains(says), "{query}: {message}");
        }
    }

    #[test]
    fn an_envelope_holds_the_stored_bytes() {
        let row = |seq, value: &str| VersionRow {
            seq,
            key: format!("object/x--{seq}/-"),
            added_at: "2024-01-01T00:00:00.000001Z".into(),
            value: value.as_bytes().to_vec(),
        };
        let page = Page {
            rows: vec![
                row(3, r#"{"id":"x--3", "b":1}"#),
                row(7, r#"{"id":"x--7"}"#),
            ],
            more: true,
        };
        let body = String::from_utf8(envelope(&page)).unwrap();
        assert_eq!(
            body,
            r#"{"more":true,"next":"7","objects":[{"id":"x--3", "b":1},{"id":"x--7"}]}"#
        );
        assert_eq!(envelope(&Page::default()), b"{}");
        let manifest: Value =
            serde_json::from_slice(&listing(&page, "objects", manifest_record)).unwrap();
        assert_eq!(
            manifest["objects"][1]["version"],
            "2024-01-01T00:00:00.000001Z"
        );
        assert_eq!(manifest["objects"][0]["media_type"], STIX_MEDIA_TYPE);
    }
}
