//! Which resource a path names: discovery, API roots and collections
//! here, the object endpoints in [`super::objects`].

use anyhow::Result;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::objects::{self, Endpoint};
use super::{Reply, STIX_MEDIA_TYPE, Server, TAXII_MEDIA_TYPE};
use crate::db::Database;
use crate::store::StoreRef;

/// The collection id of a store: a UUID (version 8) made from the
/// tenant's and the store's names, so it is the same at every start.
pub fn collection_id(tenant: &str, store: &str) -> String {
    let digest = Sha256::digest(format!("taxii-host collection\0{tenant}\0{store}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The lines `serve-taxii` prints at start: discovery, then each
/// collection URL with its tenant and store.
pub(super) fn announced_urls(server: &Server, base: &str) -> Result<Vec<String>> {
    let db = server.db()?;
    let mut lines = vec![format!("{base}/taxii2/")];
    for tenant in server.tenants(&db)? {
        for store in db.stores(&tenant)? {
            let id = collection_id(&tenant, &store.name);
            lines.push(format!(
                "{tenant}/{} {base}/{tenant}/collections/{id}/",
                store.name
            ));
        }
    }
    Ok(lines)
}

/// Answers one authorized request.
pub(super) fn route(
    server: &Server,
    base: &str,
    method: &Method,
    path: &str,
    query: &str,
) -> Reply {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let reply = match (method, segments.as_slice()) {
        (&Method::POST, [_, "collections", _, "objects"]) => Ok(Reply::error(
            StatusCode::FORBIDDEN,
            "Read Only",
            "the collections of serve-taxii are read-only (can_write: false)",
        )),
        (&Method::GET, segments) => get(server, base, segments, query),
        _ => Ok(Reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed",
            "serve-taxii is read-only: use GET",
        )
        .with_header("allow", "GET".into())),
    };
    reply.unwrap_or_else(|error| {
        tracing::error!(error = %format!("{error:#}"), %path, "cannot answer");
        Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Error",
            "the store could not be read; the server's log says why",
        )
    })
}

fn get(server: &Server, base: &str, segments: &[&str], query: &str) -> Result<Reply> {
    let db = server.db()?;
    if segments == ["taxii2"] {
        return discovery(server, &db, base);
    }
    let Some((tenant, rest)) = segments.split_first() else {
        return Ok(not_found("the discovery resource is at /taxii2/"));
    };
    if !server.tenants(&db)?.iter().any(|t| t == tenant) {
        return Ok(not_found(&format!("no API root {tenant}: see /taxii2/")));
    }
    match rest {
        [] => Ok(api_root(tenant)),
        ["collections"] => collections(&db, tenant),
        ["collections", id, endpoint @ ..] => {
            let Some(store) = find_collection(&db, tenant, id)? else {
                let message = format!("no collection {id} in API root {tenant}");
                return Ok(not_found(&message));
            };
            let endpoint = match endpoint {
                [] => return Ok(Reply::json(&collection(&store))),
                ["objects"] => Endpoint::Objects,
                ["manifest"] => Endpoint::Manifest,
                ["objects", object] => Endpoint::Object(object),
                ["objects", object, "versions"] => Endpoint::Versions(object),
                _ => return Ok(not_found("no such resource in a collection")),
            };
            objects::answer(&db, &store, endpoint, query, server.max_page_size)
        }
        ["status", ..] => Ok(not_found(
            "serve-taxii is read-only and keeps no status resources",
        )),
        _ => Ok(not_found("no such resource")),
    }
}

fn not_found(description: &str) -> Reply {
    Reply::error(StatusCode::NOT_FOUND, "Not Found", description)
}

fn discovery(server: &Server, db: &Database, base: &str) -> Result<Reply> {
    let roots: Vec<String> = server
        .tenants(db)?
        .iter()
        .map(|t| format!("{base}/{t}/"))
        .collect();
    let mut body = json!({
        "title": "taxii-host",
        "description": "The event stores of this host, one API root per tenant, read-only",
        "api_roots": roots,
    });
    let default = format!("{base}/{}/", crate::feeds::DEFAULT_TENANT);
    if let Some(default) = roots.iter().find(|r| **r == default).or(roots.first()) {
        body["default"] = json!(default);
    }
    Ok(Reply::json(&body))
}

fn api_root(tenant: &str) -> Reply {
    Reply::json(&json!({
        "title": format!("taxii-host tenant {tenant}"),
        "description": "One collection per event store of this tenant",
        "versions": [TAXII_MEDIA_TYPE],
        // Nothing can be posted.
        "max_content_length": 0,
    }))
}

fn collections(db: &Database, tenant: &str) -> Result<Reply> {
    let stores: Vec<Value> = db.stores(tenant)?.iter().map(collection).collect();
    let body = if stores.is_empty() {
        json!({})
    } else {
        json!({ "collections": stores })
    };
    Ok(Reply::json(&body))
}

fn collection(store: &StoreRef) -> Value {
    json!({
        "id": collection_id(&store.tenant, &store.name),
        "title": store.name,
        "description": format!("The event store {} (plugin {}), read-only", store.name, store.plugin),
        "alias": store.name,
        "can_read": true,
        "can_write": false,
        "media_types": [STIX_MEDIA_TYPE],
    })
}

/// The store a collection id or alias names.
fn find_collection(db: &Database, tenant: &str, id: &str) -> Result<Option<StoreRef>> {
    Ok(db
        .stores(tenant)?
        .into_iter()
        .find(|s| s.name == id || collection_id(tenant, &s.name) == id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_ids_are_stable_uuids_of_the_tenant_and_store() {
        let id = collection_id("default", "feed");
        assert_eq!(id, collection_id("default", "feed"));
        assert_ne!(id, collection_id("other", "feed"));
        assert_ne!(id, collection_id("default", "feed2"));
        let uuid = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(uuid.get_version_num(), 8);
    }
}
