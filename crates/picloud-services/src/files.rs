//! `files::collection(name).{create,head,get,update,delete,list}` and the admin files
//! API: the bytes in the blob store, the metadata row in the database.
//!
//! The service owns a file write end to end, so no caller has a follow-up to
//! remember: bytes first (durable when `put` returns), then the row with its trigger
//! events in one transaction; bytes the row no longer names are removed after the
//! commit. A crash between the steps leaves only bytes without a row, which the orphan
//! sweeper removes once older than the upload TTL; never a row without bytes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use picloud_blob::{BlobError, BlobKey, BlobStore, ByteStream, Expected};
use picloud_core::access::Capability;
use picloud_core::config::{EventsConfig, FilesConfig};
use picloud_core::FileId;
use picloud_store::{
    EventCause, FileMeta, FileUpdate, NewBytes, NewFile, PageRequest, RetryPolicy, Store,
    StoreError,
};
use tokio::sync::Semaphore;

use crate::kv::validate_collection;
use crate::{default_retry, CallContext, ServiceError, ServiceResult};

/// Longest file name and content type, in bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// How long an upload waits for a slot before it is answered 503.
const UPLOAD_SLOT_WAIT: Duration = Duration::from_secs(10);

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct FilesPage {
    pub items: Vec<FileMeta>,
    pub cursor: Option<String>,
}

/// A file written: its metadata, and trigger events skipped at the depth limit.
#[derive(Debug, Clone)]
pub struct FileWrite {
    pub file: FileMeta,
    pub skipped_for_depth: usize,
}

/// What an update changes; `None` keeps the stored value.
#[derive(Default)]
pub struct FileChanges {
    pub name: Option<String>,
    pub content_type: Option<String>,
    pub body: Option<ByteStream>,
}

pub struct FilesService {
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    max_file_bytes: u64,
    max_depth: u32,
    default_retry: RetryPolicy,
    /// One permit per upload streaming now.
    uploads: Arc<Semaphore>,
    upload_idle_timeout: Duration,
}

/// A file's display name: 1 to 255 bytes, no control characters. It is metadata only:
/// never a path (blob keys are generated).
pub fn validate_name(name: &str) -> ServiceResult<()> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(ServiceError::Invalid(format!(
            "a file name is 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ServiceError::Invalid(
            "a file name cannot hold control characters".into(),
        ));
    }
    Ok(())
}

/// A media type like `image/png` or `text/plain; charset=utf-8`: visible ASCII and
/// spaces without `,`, quotes or backslashes, a `/` in the type, at most 255 bytes.
pub fn validate_content_type(content_type: &str) -> ServiceResult<()> {
    let (kind, rest) = content_type.split_once('/').unwrap_or(("", ""));
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let subtype = rest.split(';').next().unwrap_or("").trim_end();
    // No `,` (a header list: browsers read `image/png;a=b,text/html` as HTML), no
    // quotes or backslashes (quoted parameters that hide one).
    let ok = content_type.len() <= MAX_NAME_BYTES
        && token(kind)
        && token(subtype)
        && content_type
            .bytes()
            .all(|b| (b == b' ' || b.is_ascii_graphic()) && !b",\"\\".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!(
            "content_type must be a media type like \"image/png\" (at most {MAX_NAME_BYTES} bytes)"
        )))
    }
}

impl FilesService {
    pub fn new(
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        events: &EventsConfig,
        files: &FilesConfig,
    ) -> Self {
        Self {
            store,
            blobs,
            max_file_bytes: files.max_file_size_bytes,
            max_depth: events.max_trigger_depth,
            default_retry: default_retry(events),
            uploads: Arc::new(Semaphore::new(files.max_concurrent_uploads)),
            upload_idle_timeout: files.upload_idle_timeout,
        }
    }

    /// The largest file (`PICLOUD_FILES_MAX_FILE_SIZE_BYTES`).
    pub fn max_file_bytes(&self) -> u64 {
        self.max_file_bytes
    }

    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    fn cause(&self, ctx: &CallContext) -> EventCause {
        EventCause {
            depth: ctx.depth,
            max_depth: self.max_depth,
            default_retry: self.default_retry,
        }
    }

    /// Stores a new file. The bytes stream in under the size cap, then the row
    /// commits with the collection's `files` trigger events.
    pub async fn create(
        &self,
        ctx: &CallContext,
        collection: &str,
        name: &str,
        content_type: &str,
        body: ByteStream,
    ) -> ServiceResult<FileWrite> {
        ctx.require(Capability::DataWrite)?;
        validate_collection(collection)?;
        validate_name(name)?;
        validate_content_type(content_type)?;
        let (key, written) = self.put(ctx, body).await?;
        let new = NewFile {
            id: FileId::new(),
            collection: collection.to_owned(),
            name: name.to_owned(),
            content_type: content_type.to_owned(),
            size: written.size,
            checksum: written.sha256,
            blob_key: key.as_str().to_owned(),
        };
        match self
            .store
            .files_create(&ctx.app_id, new, &self.cause(ctx))
            .await
        {
            Ok((file, outcome)) => Ok(FileWrite {
                file,
                skipped_for_depth: outcome.skipped_for_depth,
            }),
            Err(e) => {
                self.discard(&key).await;
                Err(ServiceError::store(e, "app"))
            }
        }
    }

    pub async fn head(
        &self,
        ctx: &CallContext,
        collection: &str,
        id: &str,
    ) -> ServiceResult<Option<FileMeta>> {
        ctx.require(Capability::DataRead)?;
        validate_collection(collection)?;
        // An id that cannot be one names no file.
        let Ok(id) = FileId::parse(id) else {
            return Ok(None);
        };
        self.store
            .files_head(&ctx.app_id, collection, &id)
            .await
            .map_err(|e| ServiceError::store(e, "app"))
    }

    /// The whole file, verified against its checksum; `max` bounds what the caller can
    /// hold (a script's Blob limit).
    pub async fn read(
        &self,
        ctx: &CallContext,
        collection: &str,
        id: &str,
        max: u64,
    ) -> ServiceResult<Option<(FileMeta, Bytes)>> {
        let Some(file) = self.head(ctx, collection, id).await? else {
            return Ok(None);
        };
        if file.size > max {
            return Err(ServiceError::TooLarge(format!(
                "the file is {} bytes; this caller can read at most {max}",
                file.size
            )));
        }
        let bytes = self
            .blobs
            .read_all(&key_of(&file)?, &expected(&file), max)
            .await
            .map_err(|e| blob_error(e, &file))?;
        Ok(Some((file, bytes)))
    }

    /// The file's bytes as a stream that checks the checksum as it goes (a mismatch
    /// ends it with an error: a download is cut off, never completed).
    pub async fn open(
        &self,
        ctx: &CallContext,
        collection: &str,
        id: &str,
    ) -> ServiceResult<Option<(FileMeta, ByteStream)>> {
        let Some(file) = self.head(ctx, collection, id).await? else {
            return Ok(None);
        };
        let stream = self
            .blobs
            .get(&key_of(&file)?, &expected(&file))
            .await
            .map_err(|e| blob_error(e, &file))?;
        Ok(Some((file, stream)))
    }

    /// Changes a file's name, content type or bytes. New bytes go under a new key;
    /// the old bytes are removed once the row names the new ones.
    pub async fn update(
        &self,
        ctx: &CallContext,
        collection: &str,
        id: &str,
        changes: FileChanges,
    ) -> ServiceResult<FileWrite> {
        ctx.require(Capability::DataWrite)?;
        validate_collection(collection)?;
        if let Some(name) = &changes.name {
            validate_name(name)?;
        }
        if let Some(content_type) = &changes.content_type {
            validate_content_type(content_type)?;
        }
        let id = FileId::parse(id).map_err(|_| ServiceError::NotFound("file".into()))?;
        // Refuse a missing file before taking any bytes.
        if self
            .store
            .files_head(&ctx.app_id, collection, &id)
            .await
            .map_err(|e| ServiceError::store(e, "file"))?
            .is_none()
        {
            return Err(ServiceError::NotFound("file".into()));
        }
        let mut update = FileUpdate {
            name: changes.name,
            content_type: changes.content_type,
            bytes: None,
        };
        let mut new_key = None;
        if let Some(body) = changes.body {
            let (key, written) = self.put(ctx, body).await?;
            update.bytes = Some(NewBytes {
                size: written.size,
                checksum: written.sha256,
                blob_key: key.as_str().to_owned(),
            });
            new_key = Some(key);
        }
        match self
            .store
            .files_update(&ctx.app_id, collection, &id, &update, &self.cause(ctx))
            .await
        {
            Ok((file, prev, outcome)) => {
                if prev.blob_key != file.blob_key {
                    self.discard_stored(&prev.blob_key).await;
                }
                Ok(FileWrite {
                    file,
                    skipped_for_depth: outcome.skipped_for_depth,
                })
            }
            Err(e) => {
                if let Some(key) = &new_key {
                    self.discard(key).await;
                }
                Err(ServiceError::store(e, "file"))
            }
        }
    }

    /// Deletes a file: the row (with its events), then the bytes. Whether it existed,
    /// and events skipped at the depth limit.
    pub async fn delete(
        &self,
        ctx: &CallContext,
        collection: &str,
        id: &str,
    ) -> ServiceResult<(bool, usize)> {
        ctx.require(Capability::DataWrite)?;
        validate_collection(collection)?;
        let Ok(id) = FileId::parse(id) else {
            return Ok((false, 0));
        };
        let (gone, outcome) = self
            .store
            .files_delete(&ctx.app_id, collection, &id, &self.cause(ctx))
            .await
            .map_err(|e| ServiceError::store(e, "app"))?;
        if let Some(file) = &gone {
            self.discard_stored(&file.blob_key).await;
        }
        Ok((gone.is_some(), outcome.skipped_for_depth))
    }

    /// The app's files in creation order, of one collection or (`None`) all.
    pub async fn list(
        &self,
        ctx: &CallContext,
        collection: Option<&str>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ServiceResult<FilesPage> {
        ctx.require(Capability::DataRead)?;
        if let Some(collection) = collection {
            validate_collection(collection)?;
        }
        let page =
            PageRequest::parse(cursor, limit).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let page = self
            .store
            .files_list(&ctx.app_id, collection, &page)
            .await
            .map_err(|e| ServiceError::store(e, "app"))?;
        Ok(FilesPage {
            cursor: page.next_cursor.map(|c| c.as_str().to_owned()),
            items: page.items,
        })
    }

    /// Streams a body into a fresh blob of the app.
    async fn put(
        &self,
        ctx: &CallContext,
        body: ByteStream,
    ) -> ServiceResult<(BlobKey, picloud_blob::Written)> {
        // Bounded together: each upload holds a write buffer while it streams.
        let _slot = tokio::time::timeout(UPLOAD_SLOT_WAIT, self.uploads.acquire())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                ServiceError::Unavailable(
                    "too many uploads in progress; try again later \
                     (PICLOUD_FILES_MAX_CONCURRENT_UPLOADS)"
                        .into(),
                )
            })?;
        let key = BlobKey::generate(&ctx.app_id);
        let idle = self.upload_idle_timeout;
        let body: ByteStream = Box::pin(Idle::new(body, idle));
        let written = self
            .blobs
            .put(&key, body, self.max_file_bytes)
            .await
            .map_err(|e| match e {
                BlobError::TooLarge { limit } => ServiceError::TooLarge(format!(
                    "the file is larger than the limit of {limit} bytes \
                     (PICLOUD_FILES_MAX_FILE_SIZE_BYTES)"
                )),
                BlobError::Body(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    ServiceError::Invalid(format!(
                        "the upload stalled: nothing arrived for {} s \
                         (PICLOUD_FILES_UPLOAD_IDLE_TIMEOUT_SECS)",
                        idle.as_secs()
                    ))
                }
                BlobError::Body(_) => {
                    ServiceError::Invalid("the upload ended before the file was complete".into())
                }
                other => storage(other, key.as_str(), self.blobs.kind()),
            })?;
        Ok((key, written))
    }

    /// Removes bytes no row names (a write that failed after them). A failure only
    /// leaves an orphan for the sweeper.
    async fn discard(&self, key: &BlobKey) {
        if let Err(e) = self.blobs.delete(key).await {
            tracing::warn!(key = key.as_str(), error = %e, "could not remove unreferenced bytes; the orphan sweeper will");
        }
    }

    async fn discard_stored(&self, key: &str) {
        match BlobKey::parse(key) {
            Ok(key) => self.discard(&key).await,
            Err(_) => tracing::error!(key, "a file row names an invalid blob key"),
        }
    }
}

fn key_of(file: &FileMeta) -> ServiceResult<BlobKey> {
    BlobKey::parse(&file.blob_key).map_err(|e| {
        tracing::error!(
            file = file.id.as_str(),
            "a file row names an invalid blob key"
        );
        ServiceError::Store(StoreError::other(e))
    })
}

fn expected(file: &FileMeta) -> Expected {
    Expected {
        size: file.size,
        sha256: file.checksum.clone(),
    }
}

/// A failed read of a file's bytes.
fn blob_error(e: BlobError, file: &FileMeta) -> ServiceError {
    match e {
        BlobError::Corrupted { .. } => {
            tracing::error!(
                file = file.id.as_str(),
                key = file.blob_key.as_str(),
                "stored bytes do not match their checksum; left in place"
            );
            ServiceError::Corrupted
        }
        BlobError::NotFound => {
            tracing::error!(
                file = file.id.as_str(),
                key = file.blob_key.as_str(),
                "a file row names bytes that are missing"
            );
            ServiceError::Corrupted
        }
        BlobError::TooLarge { limit } => {
            ServiceError::TooLarge(format!("the file is larger than {limit} bytes"))
        }
        other => storage(other, &file.blob_key, "read"),
    }
}

/// A storage failure of the blob store (`kind`: the store's, or "read"): a full disk
/// and an unreachable object store are outages (503, retry later), named as file
/// storage, not the database; anything else is logged and reported opaquely.
fn storage(e: BlobError, key: &str, kind: &str) -> ServiceError {
    tracing::error!(key, error = %e, source = ?std::error::Error::source(&e), "blob store failure");
    match &e {
        BlobError::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => {
            ServiceError::Unavailable("file storage is out of space; try again later".into())
        }
        BlobError::Io(_) if kind == "s3" => {
            ServiceError::Unavailable("file storage cannot be reached; try again later".into())
        }
        _ => ServiceError::Store(StoreError::other(e)),
    }
}

/// A request body that fails once nothing has arrived for `after`: a stalled client
/// cannot hold an upload slot, its buffer and its temp file for ever.
struct Idle {
    inner: ByteStream,
    after: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Idle {
    fn new(inner: ByteStream, after: Duration) -> Self {
        Self {
            inner,
            after,
            timer: Box::pin(tokio::time::sleep(after)),
        }
    }
}

impl Stream for Idle {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(item) => {
                let next = tokio::time::Instant::now() + this.after;
                this.timer.as_mut().reset(next);
                Poll::Ready(item)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the upload stalled",
                )))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
