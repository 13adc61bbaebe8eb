//! What discovery reports, and how TAXII resources are read into it.

use serde_json::{Map, Value};
use url::Url;

use crate::report::Note;
use crate::taxii::TaxiiVersion;

/// What a URL turned out to be (mirrors `taxii:feed/types.resource-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    /// A discovery resource, listing API roots.
    Discovery,
    /// An API root.
    ApiRoot,
    /// An API root's list of collections.
    Collections,
    /// One collection.
    Collection,
}

/// What discovery found (mirrors `taxii:feed/types.discovery`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// The URL read.
    pub url: String,
    /// What it is.
    pub kind: ResourceKind,
    /// The TAXII version the server answered in.
    pub taxii_version: TaxiiVersion,
    /// The discovery resource's title.
    pub title: Option<String>,
    /// The discovery resource's description.
    pub description: Option<String>,
    /// The API roots found.
    pub api_roots: Vec<ApiRoot>,
    /// Remarks.
    pub notes: Vec<Note>,
}

/// An API root (mirrors `taxii:feed/types.api-root-info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRoot {
    /// Its URL, ending in `/`.
    pub url: String,
    /// Its title.
    pub title: Option<String>,
    /// Its description.
    pub description: Option<String>,
    /// The versions it declares.
    pub versions: Vec<String>,
    /// Whether it was read.
    pub followed: bool,
    /// Why it or its collections could not be read.
    pub problem: Option<String>,
    /// Its collections.
    pub collections: Vec<CollectionInfo>,
}

/// A collection (mirrors `taxii:feed/types.collection-info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionInfo {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: Option<String>,
    /// Its description.
    pub description: Option<String>,
    /// `can_read`.
    pub can_read: bool,
    /// `can_write`.
    pub can_write: bool,
    /// `media_types`.
    pub media_types: Vec<String>,
    /// `{api-root}/collections/{id}/`.
    pub collection_url: String,
}

impl ApiRoot {
    /// An API root known only by its URL.
    pub fn unread(url: Url) -> Self {
        Self {
            url: url.to_string(),
            title: None,
            description: None,
            versions: Vec::new(),
            followed: false,
            problem: None,
            collections: Vec::new(),
        }
    }
}

/// Tells a resource by its keys, and by its path when it has none (an
/// empty list of collections is `{}`).
pub fn classify(url: &Url, body: &Map<String, Value>) -> Option<ResourceKind> {
    let has = |key: &str| body.contains_key(key);
    let path = url.path();
    if has("api_roots") || has("default") {
        Some(ResourceKind::Discovery)
    } else if has("collections") || path.ends_with("/collections/") {
        Some(ResourceKind::Collections)
    } else if has("can_read") || has("can_write") {
        Some(ResourceKind::Collection)
    } else if has("versions") || has("max_content_length") {
        Some(ResourceKind::ApiRoot)
    } else if has("id") && path.contains("/collections/") {
        Some(ResourceKind::Collection)
    } else {
        None
    }
}

/// The API root a collections list or collection URL belongs to: the path
/// before its last `collections/` segment.
pub fn api_root_of(url: &Url) -> Url {
    let path = url.path();
    let cut = path.rfind("/collections/").map_or(path.len(), |at| at + 1);
    let mut root = url.clone();
    root.set_path(&path[..cut]);
    root
}

/// The API roots a discovery resource lists, its `default` included.
pub fn listed_roots(body: &Map<String, Value>) -> Vec<String> {
    let mut roots: Vec<String> = body
        .get("api_roots")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect();
    if let Some(default) = text(body, "default")
        && !roots.contains(&default)
    {
        roots.insert(0, default);
    }
    roots
}

/// An API root read from its information resource.
pub fn api_root_info(url: &Url, body: &Map<String, Value>) -> ApiRoot {
    ApiRoot {
        title: text(body, "title"),
        description: text(body, "description"),
        versions: strings(body, "versions"),
        followed: true,
        ..ApiRoot::unread(url.clone())
    }
}

/// The collections of a `{"collections": [...]}` resource.
pub fn collections(root: &Url, body: &Map<String, Value>) -> Vec<CollectionInfo> {
    body.get("collections")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .filter_map(|c| collection(root, c))
        .collect()
}

/// One collection resource; `None` without an `id`.
pub fn collection(root: &Url, body: &Map<String, Value>) -> Option<CollectionInfo> {
    let id = text(body, "id")?;
    let mut url = root.clone();
    url.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .extend(["collections", &id, ""]);
    Some(CollectionInfo {
        title: text(body, "title"),
        description: text(body, "description"),
        can_read: body
            .get("can_read")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        can_write: body
            .get("can_write")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        media_types: strings(body, "media_types"),
        collection_url: url.to_string(),
        id,
    })
}

/// A string property.
pub fn text(body: &Map<String, Value>, key: &str) -> Option<String> {
    body.get(key).and_then(Value::as_str).map(String::from)
}

fn strings(body: &Map<String, Value>, key: &str) -> Vec<String> {
    body.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect()
}
