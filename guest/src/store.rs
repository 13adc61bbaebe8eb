//! The plugin's view of its event store, and the keys it writes.
//!
//! The key layout is part of the WIT contract (see `wit/feed.wit`): hosts
//! may index `object/` keys to answer queries.

/// Prefix of stored STIX object versions.
pub const OBJECT_PREFIX: &str = "object/";
/// Prefix of objects as received, when conversion changed them.
pub const ORIGINAL_PREFIX: &str = "original/";
/// Prefix of rejected objects.
pub const QUARANTINE_PREFIX: &str = "quarantine/";
/// The `added_after` cursor for the next run.
pub const CURSOR_KEY: &str = "state/cursor";
/// The TAXII version the server spoke last (`2.1` or `2.0`), so that later
/// runs ask in that version first.
pub const TAXII_VERSION_KEY: &str = "state/taxii-version";

/// A failed store operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The feed's event store: a key-value bucket with atomic batches.
pub trait EventStore {
    /// Reads one value.
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Tells whether a key is present.
    fn exists(&mut self, key: &str) -> Result<bool, StoreError>;

    /// Tells which of `keys` are present, in order. A page's keys are
    /// asked about together, so that a store that can answer them in one
    /// round trip (a batch read, one transaction) does; this default asks
    /// one key at a time.
    fn exists_many(&mut self, keys: &[String]) -> Result<Vec<bool>, StoreError> {
        keys.iter().map(|key| self.exists(key)).collect()
    }

    /// Writes all entries or none.
    fn set_many(&mut self, entries: Vec<(String, Vec<u8>)>) -> Result<(), StoreError>;
}

impl<T: EventStore + ?Sized> EventStore for &mut T {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(key)
    }
    fn exists(&mut self, key: &str) -> Result<bool, StoreError> {
        (**self).exists(key)
    }
    fn exists_many(&mut self, keys: &[String]) -> Result<Vec<bool>, StoreError> {
        (**self).exists_many(keys)
    }
    fn set_many(&mut self, entries: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        (**self).set_many(entries)
    }
}

/// The key of one object version.
pub fn object_key(id: &str, version: &str) -> String {
    format!("{OBJECT_PREFIX}{id}/{version}")
}

/// An in-memory store for tests and the native benchmark driver.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    /// The entries, sorted by key.
    pub entries: std::collections::BTreeMap<String, Vec<u8>>,
    /// Number of `set_many` calls, one per committed page.
    pub commits: usize,
    /// When set, the `set_many` call with this index fails.
    pub fail_commit: Option<usize>,
    /// Number of `exists` calls (one key each).
    pub exists_calls: usize,
    /// Number of `exists_many` calls.
    pub exists_many_calls: usize,
}

impl MemoryStore {
    /// Keys under a prefix.
    pub fn keys_with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> {
        self.entries
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.as_str())
    }
}

impl EventStore for MemoryStore {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.entries.get(key).cloned())
    }

    fn exists(&mut self, key: &str) -> Result<bool, StoreError> {
        self.exists_calls += 1;
        Ok(self.entries.contains_key(key))
    }

    fn exists_many(&mut self, keys: &[String]) -> Result<Vec<bool>, StoreError> {
        self.exists_many_calls += 1;
        Ok(keys.iter().map(|k| self.entries.contains_key(k)).collect())
    }

    fn set_many(&mut self, entries: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        if self.fail_commit == Some(self.commits) {
            return Err(StoreError("injected failure".into()));
        }
        self.commits += 1;
        self.entries.extend(entries);
        Ok(())
    }
}
