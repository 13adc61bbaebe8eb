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
    for lenient in [
        "application/json; charset=utf-8",
        "application/stix+json;version=2.1",
        "application/taxii+json;version=3.0",
    ] {
        assert!(
            matches!(classify_content_type(Some(lenient)), ContentType::Json(_)),
            "{lenient}"
        );
    }
    for taxii20 in [
        "application/vnd.oasis.taxii+json; version=2.0",
        "application/vnd.oasis.stix+json;version=2.0",
        "application/vnd.oasis.taxii+json",
        "application/taxii+json; version=2.0",
    ] {
        assert!(
            matches!(
                classify_content_type(Some(taxii20)),
                ContentType::Taxii20(_)
            ),
            "{taxii20}"
        );
    }
    assert!(matches!(
        classify_content_type(Some("text/html")),
        ContentType::Other(_)
    ));
    assert!(matches!(classify_content_type(None), ContentType::Other(_)));
}

#[test]
fn names_the_media_types_of_each_version() {
    assert_eq!(TaxiiVersion::V21.resource_accept(), TAXII_21);
    assert_eq!(TaxiiVersion::V21.objects_accept(), TAXII_21);
    assert_eq!(TaxiiVersion::V20.resource_accept(), TAXII_20);
    assert_eq!(TaxiiVersion::V20.objects_accept(), STIX_20);
    for version in [TaxiiVersion::V21, TaxiiVersion::V20] {
        assert_eq!(TaxiiVersion::parse(version.as_str()), Some(version));
        assert_eq!(version.other().other(), version);
    }
    assert_eq!(TaxiiVersion::parse("1.1"), None);
}

#[test]
fn builds_the_objects_url_with_every_filter() {
    let collection = collection_url("https://h:8443/api/collections/c1").unwrap();
    let query = ObjectsQuery {
        added_after: Some("2024-01-01T00:00:00.123456+00:00".into()),
        types: vec!["indicator".into(), "malware".into()],
    };
    let url = query.url(&collection, Some(7), Some("a b+c/="));
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
    let v20 = ObjectsQuery::default().url(&collection, None, None);
    assert_eq!(v20.query(), Some("match%5Bversion%5D=all"));
}

#[test]
fn refuses_urls_that_cannot_be_collections() {
    assert!(collection_url("not a url").is_err());
    assert!(collection_url("file:///etc/passwd").is_err());
    let err = collection_url("https://u:p@h/api/collections/c/").unwrap_err();
    assert!(err.contains("credentials") && !err.contains("u:p"));
    let err = collection_url("https://h/api/collections/c/?token=s3cret").unwrap_err();
    assert!(
        err.contains("has a query") && !err.contains("s3cret"),
        "{err}"
    );
    let url = collection_url("https://h/api/collections/c#f").unwrap();
    assert_eq!(url.as_str(), "https://h/api/collections/c/");
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
    let err =
        |status, retry: Option<&str>, body: &[u8]| error_for_status(status, retry, body, &url, now);
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
