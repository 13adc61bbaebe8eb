//! The feed configuration as the plugin sees it, and its validation.

use url::Url;

use crate::taxii;

/// Page size used when the configuration gives none.
pub const DEFAULT_PAGE_SIZE: u32 = 1000;

/// Largest page size the plugin asks for; bigger pages only cost memory.
pub const MAX_PAGE_SIZE: u32 = 10_000;

/// One feed (mirrors `taxii:feed/types.feed-config`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedConfig {
    /// The configuration's name, used in messages only.
    pub name: String,
    /// The TAXII Collection URL.
    pub collection_url: String,
    /// Objects per page; `None` means [`DEFAULT_PAGE_SIZE`].
    pub page_size: Option<u32>,
    /// STIX types to import; empty means all.
    pub object_types: Vec<String>,
    /// Where the first run starts when the store has no cursor.
    pub added_after: Option<String>,
    /// Pages fetched at most in one run.
    pub max_pages: Option<u32>,
}

/// One thing wrong with a configuration, naming its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The field at fault, spelled as in the WIT record.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl FeedConfig {
    /// The page size to ask for.
    pub fn page_size(&self) -> u32 {
        self.page_size.unwrap_or(DEFAULT_PAGE_SIZE)
    }

    /// Checks the configuration without any I/O. On success returns the
    /// parsed Collection URL, normalized to end with `/`.
    pub fn validate(&self) -> Result<Url, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let url = taxii::collection_url(&self.collection_url)
            .map_err(|message| problems.push(problem("collection-url", message)))
            .ok();
        if let Some(size) = self.page_size
            && !(1..=MAX_PAGE_SIZE).contains(&size)
        {
            let message = format!("page size {size} is out of range: use 1 to {MAX_PAGE_SIZE}");
            problems.push(problem("page-size", message));
        }
        for object_type in &self.object_types {
            if !crate::stix::is_valid_type_name(object_type) {
                let message = format!(
                    "{object_type:?} is not a STIX type name: use lower-case letters, \
                     digits and hyphens, for example `indicator`"
                );
                problems.push(problem("object-types", message));
            }
        }
        if let Some(after) = &self.added_after
            && !taxii::is_rfc3339(after)
        {
            let message = format!(
                "{after:?} is not an RFC 3339 timestamp: write it like 2024-01-31T00:00:00Z"
            );
            problems.push(problem("added-after", message));
        }
        if self.max_pages == Some(0) {
            problems.push(problem("max-pages", "max pages must be at least 1".into()));
        }
        match url {
            Some(url) if problems.is_empty() => Ok(url),
            _ => Err(problems),
        }
    }
}

fn problem(field: &'static str, message: String) -> ConfigProblem {
    ConfigProblem { field, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> FeedConfig {
        FeedConfig {
            name: "feed".into(),
            collection_url: url.into(),
            ..FeedConfig::default()
        }
    }

    #[test]
    fn accepts_a_collection_url_with_or_without_the_slash() {
        let with = config("http://h/api/collections/abc/").validate().unwrap();
        let without = config("http://h/api/collections/abc").validate().unwrap();
        assert_eq!(with, without);
        assert_eq!(with.as_str(), "http://h/api/collections/abc/");
    }

    #[test]
    fn reports_every_problem_with_its_field() {
        let mut bad = config("ftp://h/x");
        bad.page_size = Some(0);
        bad.object_types = vec!["Indicator".into()];
        bad.added_after = Some("yesterday".into());
        bad.max_pages = Some(0);
        let fields: Vec<_> = bad
            .validate()
            .unwrap_err()
            .iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            [
                "collection-url",
                "page-size",
                "object-types",
                "added-after",
                "max-pages"
            ]
        );
    }

    #[test]
    fn defaults_the_page_size() {
        assert_eq!(config("http://h/c/x/").page_size(), DEFAULT_PAGE_SIZE);
    }
}
