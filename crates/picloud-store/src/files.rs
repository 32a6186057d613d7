//! File metadata: one row per stored file, naming the blob that holds its bytes.
//!
//! The bytes live in a blob store (`picloud-blob`), written and made durable before
//! the row that points at them commits; the row and the outbox rows of the `files`
//! triggers it matches commit in one transaction. A blob whose row never committed is
//! an orphan, removed by the sweeper once older than the upload TTL.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::model::FilesOp;
use picloud_core::{AppId, FileId};
use serde_json::{json, Value};

use crate::{EventCause, Page, PageRequest, StoreResult, WriteOutcome};

/// A stored file's metadata. `blob_key` is internal: it never reaches a script or a
/// client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub id: FileId,
    pub collection: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the bytes.
    pub checksum: String,
    pub blob_key: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl FileMeta {
    /// The metadata map scripts, events and the admin API show (SCRIPTING.md:
    /// `meta = #{id, name, content_type, size, checksum, created_at, updated_at}`).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id.as_str(),
            "collection": self.collection,
            "name": self.name,
            "content_type": self.content_type,
            "size": self.size,
            "checksum": self.checksum,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        })
    }
}

/// A file whose bytes are already durable under `blob_key`.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub id: FileId,
    pub collection: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub checksum: String,
    pub blob_key: String,
}

/// New bytes for a file, already durable under their own (fresh) key.
#[derive(Debug, Clone)]
pub struct NewBytes {
    pub size: u64,
    pub checksum: String,
    pub blob_key: String,
}

/// What an update changes; `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct FileUpdate {
    pub name: Option<String>,
    pub content_type: Option<String>,
    pub bytes: Option<NewBytes>,
}

impl FileUpdate {
    /// The file after this update, stamped `now`: every backend applies it to the row
    /// it read locked, the same way.
    pub fn apply(&self, prev: &FileMeta, now: DateTime<Utc>) -> FileMeta {
        let mut next = prev.clone();
        if let Some(name) = &self.name {
            next.name.clone_from(name);
        }
        if let Some(content_type) = &self.content_type {
            next.content_type.clone_from(content_type);
        }
        if let Some(bytes) = &self.bytes {
            next.size = bytes.size;
            next.checksum.clone_from(&bytes.checksum);
            next.blob_key.clone_from(&bytes.blob_key);
        }
        next.updated_at = now;
        next
    }
}

/// The event a file write emits (SCRIPTING.md "Events"): metadata only, never bytes.
pub fn files_event(
    op: FilesOp,
    collection: &str,
    file: &FileMeta,
    prev: Option<&FileMeta>,
) -> Value {
    json!({
        "source": "files",
        "op": op.as_str(),
        "files": {
            "collection": collection,
            "file": file.to_json(),
            "prev": prev.map(FileMeta::to_json),
        },
    })
}

#[async_trait]
pub trait FilesStore {
    /// Writes the row and queues the `files` triggers' events, atomically. `Conflict`
    /// if the id or the blob key is taken; `NotFound` if the app is gone.
    async fn files_create(
        &self,
        app: &AppId,
        new: NewFile,
        cause: &EventCause,
    ) -> StoreResult<(FileMeta, WriteOutcome)>;
    async fn files_head(
        &self,
        app: &AppId,
        collection: &str,
        id: &FileId,
    ) -> StoreResult<Option<FileMeta>>;
    /// Applies the update to the locked row; returns the file after and before.
    /// `NotFound` if there is no such file.
    async fn files_update(
        &self,
        app: &AppId,
        collection: &str,
        id: &FileId,
        update: &FileUpdate,
        cause: &EventCause,
    ) -> StoreResult<(FileMeta, FileMeta, WriteOutcome)>;
    /// Deletes the row; the deleted file, if there was one. Its blob is the caller's
    /// to remove after this commits.
    async fn files_delete(
        &self,
        app: &AppId,
        collection: &str,
        id: &FileId,
        cause: &EventCause,
    ) -> StoreResult<(Option<FileMeta>, WriteOutcome)>;
    /// The app's files in id order (creation order), of one collection or all.
    async fn files_list(
        &self,
        app: &AppId,
        collection: Option<&str>,
        page: &PageRequest,
    ) -> StoreResult<Page<FileMeta>>;
    /// Which of `keys` a file row names, across all apps: what the orphan sweeper
    /// keeps.
    async fn files_known_blobs(&self, keys: &[String]) -> StoreResult<HashSet<String>>;
}
