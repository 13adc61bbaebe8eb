use std::collections::HashMap;

use serde_json::json;

use super::*;
use crate::taxii::{TAXII_20, TAXII_21};

/// Resources by URL: (status, Content-Type, body); records what was asked.
#[derive(Default)]
struct Site {
    pages: HashMap<String, (u16, &'static str, String)>,
    asked: Vec<(String, String)>,
}

impl Site {
    fn serve(&mut self, url: &str, media: &'static str, body: serde_json::Value) {
        self.pages
            .insert(url.into(), (200, media, body.to_string()));
    }

    fn urls(&self) -> Vec<&str> {
        self.asked.iter().map(|(u, _)| u.as_str()).collect()
    }
}

impl Transport for Site {
    fn get(&mut self, request: &Request) -> Result<Response, TransportError> {
        let accept = request.headers[0].1.clone();
        self.asked.push((request.url.to_string(), accept.clone()));
        let Some((status, media, body)) = self.pages.get(request.url.as_str()) else {
            return Ok(Response {
                status: 404,
                ..Response::default()
            });
        };
        let speaks_20 = *media == TAXII_20;
        if speaks_20 != (accept == TAXII_20) {
            return Ok(Response {
                status: 406,
                ..Response::default()
            });
        }
        Ok(Response {
            status: *status,
            headers: vec![("content-type".into(), (*media).into())],
            body: body.clone().into_bytes(),
            redirected_to: None,
        })
    }
}

fn root_info(title: &str) -> serde_json::Value {
    json!({"title": title, "versions": [TAXII_21], "max_content_length": 1000})
}

fn collections(ids: &[&str]) -> serde_json::Value {
    let list: Vec<_> = ids
        .iter()
        .map(|id| {
            json!({"id": id, "title": format!("T {id}"), "can_read": true,
                         "can_write": false, "media_types": ["application/stix+json;version=2.1"]})
        })
        .collect();
    json!({ "collections": list })
}

fn site_21() -> Site {
    let mut site = Site::default();
    site.serve(
        "http://h:8/taxii2/",
        TAXII_21,
        json!({"title": "Server", "default": "/api1/",
               "api_roots": ["/api1/", "../api2", "https://other.example/api3/"]}),
    );
    site.serve("http://h:8/api1/", TAXII_21, root_info("One"));
    site.serve(
        "http://h:8/api1/collections/",
        TAXII_21,
        collections(&["c1", "c2"]),
    );
    site.serve("http://h:8/api2/", TAXII_21, root_info("Two"));
    site.serve("http://h:8/api2/collections/", TAXII_21, json!({}));
    site.serve("https://other.example/api3/", TAXII_21, root_info("Three"));
    site.serve(
        "https://other.example/api3/collections/",
        TAXII_21,
        collections(&["x"]),
    );
    site
}

#[test]
fn resolves_relative_roots_and_leaves_other_origins_unread() {
    let mut site = site_21();
    let found = discover("http://h:8/taxii2", false, &mut site).unwrap();

    assert_eq!(found.kind, ResourceKind::Discovery);
    assert_eq!(found.title.as_deref(), Some("Server"));
    let urls: Vec<_> = found.api_roots.iter().map(|r| r.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "http://h:8/api1/",
            "http://h:8/api2/",
            "https://other.example/api3/"
        ]
    );
    let one = &found.api_roots[0];
    assert_eq!(one.title.as_deref(), Some("One"));
    let collection_urls: Vec<_> = one
        .collections
        .iter()
        .map(|c| c.collection_url.as_str())
        .collect();
    assert_eq!(
        collection_urls,
        [
            "http://h:8/api1/collections/c1/",
            "http://h:8/api1/collections/c2/"
        ]
    );
    assert!(found.api_roots[1].followed && found.api_roots[1].collections.is_empty());
    let other = &found.api_roots[2];
    assert!(!other.followed);
    assert!(other.problem.as_deref().unwrap().contains("another origin"));
    assert!(
        site.urls().iter().all(|u| !u.contains("other.example")),
        "{:?}",
        site.urls()
    );
}

#[test]
fn follows_other_origins_when_asked() {
    let mut site = site_21();
    let found = discover("http://h:8/taxii2/", true, &mut site).unwrap();
    let other = &found.api_roots[2];
    assert!(other.followed && other.problem.is_none());
    assert_eq!(
        other.collections[0].collection_url,
        "https://other.example/api3/collections/x/"
    );
}

#[test]
fn a_bare_origin_finds_a_20_discovery_at_taxii() {
    let mut site = Site::default();
    site.serve(
        "http://h:8/taxii/",
        TAXII_20,
        json!({"title": "Old", "api_roots": ["http://h:8/root/"]}),
    );
    site.serve(
        "http://h:8/root/",
        TAXII_20,
        json!({"title": "R", "versions": ["taxii-2.0"]}),
    );
    site.serve(
        "http://h:8/root/collections/",
        TAXII_20,
        collections(&["c"]),
    );
    let found = discover("http://h:8", false, &mut site).unwrap();

    assert_eq!(found.url, "http://h:8/taxii/");
    assert_eq!(found.taxii_version, TaxiiVersion::V20);
    assert_eq!(found.api_roots[0].versions, ["taxii-2.0"]);
    assert_eq!(
        found.api_roots[0].collections[0].collection_url,
        "http://h:8/root/collections/c/"
    );
    let first_two: Vec<_> = site.asked[..3]
        .iter()
        .map(|(u, a)| (u.as_str(), a.as_str()))
        .collect();
    assert_eq!(
        first_two,
        [
            ("http://h:8/taxii2/", TAXII_21),
            ("http://h:8/taxii/", TAXII_21),
            ("http://h:8/taxii/", TAXII_20)
        ]
    );
}

#[test]
fn a_collection_url_shows_that_collection() {
    let mut site = site_21();
    site.serve(
        "http://h:8/api1/collections/c1/",
        TAXII_21,
        json!({"id": "c1", "title": "Intel", "can_read": true, "can_write": true}),
    );
    let found = discover("http://h:8/api1/collections/c1", false, &mut site).unwrap();
    assert_eq!(found.kind, ResourceKind::Collection);
    let root = &found.api_roots[0];
    assert_eq!(root.url, "http://h:8/api1/");
    assert_eq!(root.collections.len(), 1);
    assert!(root.collections[0].can_write);
    assert_eq!(
        root.collections[0].collection_url,
        "http://h:8/api1/collections/c1/"
    );
}

#[test]
fn an_api_root_url_lists_its_collections() {
    let mut site = site_21();
    let found = discover("http://h:8/api1/", false, &mut site).unwrap();
    assert_eq!(found.kind, ResourceKind::ApiRoot);
    assert_eq!(found.api_roots.len(), 1);
    assert_eq!(found.api_roots[0].collections.len(), 2);
    assert_eq!(found.title, None);
}

#[test]
fn refuses_what_is_not_taxii() {
    let mut site = Site::default();
    site.serve("http://h:8/x/", TAXII_21, json!({"hello": "world"}));
    let error = discover("http://h:8/x/", false, &mut site).unwrap_err();
    assert!(
        matches!(error, ImportError::MalformedResponse(_)),
        "{error:?}"
    );
    let error = discover("ftp://h/x", false, &mut site).unwrap_err();
    assert!(matches!(error, ImportError::InvalidConfig(_)));
    let error = discover("http://h:8/", false, &mut site).unwrap_err();
    assert!(matches!(error, ImportError::NotFound(_)));
}
