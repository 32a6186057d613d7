//! Where file bytes live: one [`BlobStore`] trait, a local-filesystem store (the
//! default) and an S3-compatible one, chosen once at start-up by [`from_config`].
//!
//! The store knows keys, bytes, sizes and SHA-256 digests, nothing of files, apps'
//! names or rows: the files service writes the bytes first ([`BlobStore::put`] is
//! durable when it returns), then the metadata row holding the key, size and digest,
//! and reads verify against that row. Bytes without a row (a crash between the two
//! steps) are removed by [`sweep::sweep_once`].

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;

mod fs;
mod key;
mod s3;
pub mod sweep;
mod verify;

#[cfg(any(test, feature = "testing"))]
pub mod fault;

pub use fs::FsStore;
pub use key::BlobKey;
pub use s3::S3Store;

/// Bytes flowing into or out of a store. An `Err` item ends the stream.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// What [`BlobStore::put`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// What a read must find: the size and digest recorded when the blob was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

impl From<Written> for Expected {
    fn from(w: Written) -> Self {
        Self {
            size: w.size,
            sha256: w.sha256,
        }
    }
}

/// A blob store failure. `Display` never names a file path, a bucket URL or a
/// credential: those go to the `tracing` logs only.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The body passed `limit` bytes; nothing was kept.
    #[error("too large: the limit is {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("not found")]
    NotFound,
    /// The stored bytes do not match the size or SHA-256 recorded at write time. The
    /// blob is left in place for an operator to look at.
    #[error("corrupted")]
    Corrupted { key: String },
    /// The incoming body failed (the client went away, a bad chunk): not our storage.
    #[error("the upload stream failed")]
    Body(#[source] std::io::Error),
    /// The storage failed (disk full, permissions, the object store unreachable).
    #[error("storage failed")]
    Io(#[source] std::io::Error),
    /// Not a key this crate generated (or could have).
    #[error("invalid blob key")]
    InvalidKey,
    /// The store cannot be set up as configured.
    #[error("{0}")]
    Config(String),
}

impl BlobError {
    /// The error behind a read stream's `io::Error`: a verification failure comes back
    /// as itself ([`BlobError::Corrupted`]), anything else is a storage failure.
    pub fn from_stream(e: std::io::Error) -> Self {
        if !e.get_ref().is_some_and(|inner| inner.is::<BlobError>()) {
            return Self::Io(e);
        }
        let kind = e.kind();
        match e.into_inner().map(|inner| inner.downcast::<BlobError>()) {
            Some(Ok(blob)) => *blob,
            Some(Err(other)) => Self::Io(std::io::Error::new(kind, other)),
            None => Self::Io(kind.into()),
        }
    }

    /// Whether a read stream's error is a verification failure.
    pub fn is_corrupted(e: &std::io::Error) -> bool {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<BlobError>())
            .is_some_and(|b| matches!(b, BlobError::Corrupted { .. }))
    }
}

/// Blob storage: write-once blobs under generated keys.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Streams `body` into the blob `key` (a freshly generated key, never one in use),
    /// refusing with [`BlobError::TooLarge`] at the first byte past `max_size`, without
    /// buffering the whole body, and computing SHA-256 in the same pass. The blob is
    /// durable when this returns `Ok`. On any `Err` nothing readable is left under
    /// `key`. A future dropped half-way leaves nothing either, except when dropped
    /// after the bytes were in place: then they are a blob without a row, which
    /// [`sweep::sweep_once`] removes.
    async fn put(
        &self,
        key: &BlobKey,
        body: ByteStream,
        max_size: u64,
    ) -> Result<Written, BlobError>;

    /// The blob's bytes as a stream that checks size and SHA-256 as it goes. A mismatch
    /// ends the stream with an `io::Error` wrapping [`BlobError::Corrupted`] (see
    /// [`BlobError::from_stream`]) after logging the key; nothing is deleted. Bytes
    /// before the mismatch have been yielded: a consumer must treat the error as fatal
    /// for everything it received (an HTTP download is cut off, not completed).
    async fn get(&self, key: &BlobKey, expect: &Expected) -> Result<ByteStream, BlobError>;

    /// The whole blob in memory, verified; [`BlobError::TooLarge`] when `expect.size`
    /// is above `max`, before anything is read.
    async fn read_all(
        &self,
        key: &BlobKey,
        expect: &Expected,
        max: u64,
    ) -> Result<Bytes, BlobError> {
        if expect.size > max {
            return Err(BlobError::TooLarge { limit: max });
        }
        let stream = self.get(key, expect).await?;
        verify::collect(stream, expect.size).await
    }

    /// Removes the blob; whether it existed.
    async fn delete(&self, key: &BlobKey) -> Result<bool, BlobError>;

    /// Complete blobs (never partial uploads) last modified before `cutoff`, in key
    /// order, strictly after `after`, at most `limit`: what the orphan sweeper checks
    /// against the metadata rows.
    async fn list_older(
        &self,
        cutoff: DateTime<Utc>,
        after: Option<&BlobKey>,
        limit: usize,
    ) -> Result<Vec<BlobKey>, BlobError>;

    /// Removes partial uploads older than `cutoff`; how many.
    async fn sweep_temp(&self, cutoff: DateTime<Utc>) -> Result<u64, BlobError>;

    /// `"fs"` or `"s3"`, for logs and metrics.
    fn kind(&self) -> &'static str;
}

/// A shared store is a store, so wrappers like `fault::Faulty` take either.
#[async_trait]
impl<T: BlobStore + ?Sized> BlobStore for Arc<T> {
    async fn put(
        &self,
        key: &BlobKey,
        body: ByteStream,
        max_size: u64,
    ) -> Result<Written, BlobError> {
        (**self).put(key, body, max_size).await
    }
    async fn get(&self, key: &BlobKey, expect: &Expected) -> Result<ByteStream, BlobError> {
        (**self).get(key, expect).await
    }
    async fn read_all(
        &self,
        key: &BlobKey,
        expect: &Expected,
        max: u64,
    ) -> Result<Bytes, BlobError> {
        (**self).read_all(key, expect, max).await
    }
    async fn delete(&self, key: &BlobKey) -> Result<bool, BlobError> {
        (**self).delete(key).await
    }
    async fn list_older(
        &self,
        cutoff: DateTime<Utc>,
        after: Option<&BlobKey>,
        limit: usize,
    ) -> Result<Vec<BlobKey>, BlobError> {
        (**self).list_older(cutoff, after, limit).await
    }
    async fn sweep_temp(&self, cutoff: DateTime<Utc>) -> Result<u64, BlobError> {
        (**self).sweep_temp(cutoff).await
    }
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
}

/// A body that is already in memory.
pub fn stream_of(bytes: Bytes) -> ByteStream {
    Box::pin(futures_util::stream::once(async move { Ok(bytes) }))
}

/// [`BlobStore::put`] of bytes already in memory.
pub async fn put_bytes(
    store: &dyn BlobStore,
    key: &BlobKey,
    bytes: Bytes,
    max_size: u64,
) -> Result<Written, BlobError> {
    store.put(key, stream_of(bytes), max_size).await
}

/// The store the configuration names: S3 when a bucket is set, else the filesystem
/// under `files_root` (created, 0700, when missing).
pub fn from_config(config: &picloud_core::config::Config) -> Result<Arc<dyn BlobStore>, BlobError> {
    match &config.files.s3 {
        Some(s3) => Ok(Arc::new(S3Store::new(s3)?)),
        None => Ok(Arc::new(FsStore::open(&config.files_root)?)),
    }
}
