//! `wasi:keyvalue` (store and batch) over the event store.
//!
//! A run's plugin sees its own feed's buckets only. The identifier `""` is
//! the feed's event store; any other identifier `x` names a bucket of the
//! feed's own, kept as the store `{feed}:{x}` of the feed's tenant. Feed
//! names cannot contain `:` and identifiers must be plain names, so no
//! identifier a plugin can pass reaches another feed's or another tenant's
//! data. `set-many` is one transaction.
//!
//! Database failures are returned to the plugin as `error::other`; misuse
//! of a resource handle traps.

use std::sync::Arc;

use anyhow::Result;
use wasmtime::component::{HasData, Resource, ResourceTable};

use crate::bindings::wasi::keyvalue::{batch, store};
use crate::db::{Database, Fence};
use crate::progress::RunProgress;
use crate::store::StoreRef;

/// Keys returned per `list-keys` call.
const LIST_KEYS_PAGE: u32 = 1000;

/// The `bucket` resource: the store it stands for.
#[derive(Debug)]
pub struct Bucket {
    store_id: i64,
}

/// What one run may touch of the event store.
pub struct BucketAccess {
    db: Option<Database>,
    store: Option<StoreRef>,
    progress: Option<Arc<RunProgress>>,
    fence: Option<Fence>,
}

impl BucketAccess {
    /// Access to a feed's store (and buckets of its own) through a database
    /// connection of the run's own.
    pub fn new(db: Database, store: StoreRef) -> Self {
        Self {
            db: Some(db),
            store: Some(store),
            progress: None,
            fence: None,
        }
    }

    /// Counts each committed batch in `progress`.
    pub fn with_progress(mut self, progress: Arc<RunProgress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Checks the run's lease in every write's transaction (see
    /// [`crate::lease`]): once another host has the feed, writes fail.
    pub fn with_fence(mut self, fence: Option<Fence>) -> Self {
        self.fence = fence;
        self
    }

    fn committed(&self, entries: &[(String, Vec<u8>)]) {
        if let Some(progress) = &self.progress {
            progress.committed(entries);
        }
    }

    /// No store at all: opening a bucket is `access-denied`.
    pub fn none() -> Self {
        Self {
            db: None,
            store: None,
            progress: None,
            fence: None,
        }
    }

    /// The store an identifier names, if the plugin may have it.
    fn resolve(&self, identifier: &str) -> Result<Option<i64>> {
        let (Some(db), Some(store)) = (&self.db, &self.store) else {
            return Ok(None);
        };
        if identifier.is_empty() {
            return Ok(Some(store.id));
        }
        if crate::feeds::check_name("bucket", identifier).is_err() {
            tracing::warn!(
                feed = %store.name, identifier,
                "the plugin asked for a bucket by a name it may not use"
            );
            return Ok(None);
        }
        let name = format!("{}:{identifier}", store.name);
        Ok(Some(
            db.ensure_store(&store.tenant, &name, &store.plugin)?.id,
        ))
    }
}

/// The view the generated bindings call into.
pub struct KeyValue<'a> {
    /// The run's resource table.
    pub table: &'a mut ResourceTable,
    /// The run's store.
    pub access: &'a mut BucketAccess,
}

/// Names [`KeyValue`] for `add_to_linker`.
pub struct HasKeyValue;

impl HasData for HasKeyValue {
    type Data<'a> = KeyValue<'a>;
}

type Answer<T> = wasmtime::Result<Result<T, store::Error>>;

fn answer<T>(result: Result<T>) -> Answer<T> {
    Ok(result.map_err(|e| {
        tracing::warn!(error = %format!("{e:#}"), "event store operation failed");
        store::Error::Other(format!("{e:#}"))
    }))
}

impl KeyValue<'_> {
    /// The database and the bucket's store; a bucket only exists when the
    /// run has a database.
    fn bucket(&mut self, bucket: &Resource<Bucket>) -> wasmtime::Result<(&mut Database, i64)> {
        let (db, id, _) = self.bucket_fenced(bucket)?;
        Ok((db, id))
    }

    /// [`KeyValue::bucket`], with the fence writes must check.
    fn bucket_fenced(
        &mut self,
        bucket: &Resource<Bucket>,
    ) -> wasmtime::Result<(&mut Database, i64, Option<&Fence>)> {
        let id = self.table.get(bucket)?.store_id;
        let db = self
            .access
            .db
            .as_mut()
            .ok_or_else(|| wasmtime::format_err!("a bucket exists without a database"))?;
        Ok((db, id, self.access.fence.as_ref()))
    }
}

impl store::Host for KeyValue<'_> {
    fn open(&mut self, identifier: String) -> Answer<Resource<Bucket>> {
        match self.access.resolve(&identifier) {
            Ok(Some(store_id)) => Ok(Ok(self.table.push(Bucket { store_id })?)),
            Ok(None) => Ok(Err(store::Error::AccessDenied)),
            Err(e) => answer(Err(e)),
        }
    }
}

impl store::HostBucket for KeyValue<'_> {
    fn get(&mut self, bucket: Resource<Bucket>, key: String) -> Answer<Option<Vec<u8>>> {
        let (db, id) = self.bucket(&bucket)?;
        answer(db.get_entry(id, &key))
    }

    fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> Answer<()> {
        let (db, id, fence) = self.bucket_fenced(&bucket)?;
        answer(db.set_entries_fenced(id, &[(key, value)], fence))
    }

    fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Answer<()> {
        let (db, id, fence) = self.bucket_fenced(&bucket)?;
        answer(db.delete_entries_fenced(id, &[key], fence))
    }

    fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Answer<bool> {
        let (db, id) = self.bucket(&bucket)?;
        answer(db.entry_exists(id, &key))
    }

    fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Answer<store::KeyResponse> {
        let (db, id) = self.bucket(&bucket)?;
        answer(
            db.list_keys(id, cursor, LIST_KEYS_PAGE)
                .map(|(keys, cursor)| store::KeyResponse { keys, cursor }),
        )
    }

    fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl batch::Host for KeyValue<'_> {
    fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Answer<Vec<Option<(String, Vec<u8>)>>> {
        let (db, id) = self.bucket(&bucket)?;
        answer(db.get_entries(id, &keys).map(|values| {
            keys.into_iter()
                .zip(values)
                .map(|(key, value)| value.map(|value| (key, value)))
                .collect()
        }))
    }

    fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Answer<()> {
        let (db, id, fence) = self.bucket_fenced(&bucket)?;
        let result = db.set_entries_fenced(id, &key_values, fence);
        if result.is_ok() {
            self.access.committed(&key_values);
        }
        answer(result)
    }

    fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> Answer<()> {
        let (db, id, fence) = self.bucket_fenced(&bucket)?;
        answer(db.delete_entries_fenced(id, &keys, fence))
    }
}
