//! Blobs as objects in an S3-compatible bucket, through `object_store`; object names
//! are the keys themselves.
//!
//! A body under [`PART_SIZE`] is one `PUT` (atomic by S3's rules); a longer one is a
//! multipart upload whose parts are sent while the body streams in, completed only
//! after the last byte, and aborted on any error or when the future is dropped, so an
//! object appears whole or not at all.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, PutPayloadMut, RetryConfig, WriteMultipart};

use crate::verify::{verified, Meter};
use crate::{BlobError, BlobKey, BlobStore, ByteStream, Expected, Written};

/// S3's smallest part (but the last): bodies shorter than this go in one `PUT`, longer
/// ones in parts of this size.
const PART_SIZE: usize = 5 << 20;
/// Parts in flight per upload, so memory per upload stays near (1 + this) × PART_SIZE.
const PARTS_IN_FLIGHT: usize = 2;

pub struct S3Store {
    store: Arc<AmazonS3>,
    bucket: String,
}

/// A storage failure, logged in full here (the error's `Display` says only that).
fn os_error(what: &str, key: &str, e: object_store::Error) -> BlobError {
    if matches!(e, object_store::Error::NotFound { .. }) {
        return BlobError::NotFound;
    }
    tracing::error!(key, error = %e, "blob store (s3): {what} failed");
    BlobError::Io(std::io::Error::other(e))
}

/// Aborts a multipart upload that did not finish, including when `put`'s future is
/// dropped half-way (the client went away): parts of an unfinished upload are never
/// readable, but they are billed until aborted.
struct UploadGuard(Option<WriteMultipart>);

impl Drop for UploadGuard {
    fn drop(&mut self) {
        if let Some(upload) = self.0.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if let Err(e) = upload.abort().await {
                        tracing::warn!(error = %e, "blob store (s3): aborting an upload failed");
                    }
                });
            }
        }
    }
}

impl UploadGuard {
    fn writer(&mut self) -> Result<&mut WriteMultipart, BlobError> {
        self.0.as_mut().ok_or_else(finished)
    }

    /// The upload, no longer aborted on drop: the caller finishes it.
    fn disarm(&mut self) -> Result<WriteMultipart, BlobError> {
        self.0.take().ok_or_else(finished)
    }
}

/// Unreachable by construction (the guard is only disarmed once, at the end).
fn finished() -> BlobError {
    BlobError::Io(std::io::Error::other("upload already finished"))
}

impl S3Store {
    pub fn new(config: &picloud_core::config::S3Config) -> Result<Self, BlobError> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_retry(RetryConfig {
                max_retries: 4,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            })
            // The default 30 s covers a whole response: a large download to a slow
            // client would be cut off. Stalled connections still end.
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(600)),
            );
        builder = match &config.endpoint {
            // Custom endpoints (MinIO, Garage, …) mostly lack per-bucket host names.
            Some(endpoint) => builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false)
                .with_allow_http(endpoint.to_ascii_lowercase().starts_with("http://")),
            // AWS itself: `{bucket}.s3.{region}.amazonaws.com`, the style AWS keeps for
            // every bucket, except that a dotted name would not match its certificate.
            None => builder.with_virtual_hosted_style_request(!config.bucket.contains('.')),
        };
        let store = builder.build().map_err(|e| {
            // object_store's message names settings, never the secret.
            BlobError::Config(format!("PICLOUD_FILES_S3_*: {e}"))
        })?;
        Ok(Self {
            store: Arc::new(store),
            bucket: config.bucket.clone(),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn path_of(key: &BlobKey) -> Path {
        Path::from(key.as_str())
    }

    async fn upload(
        &self,
        key: &BlobKey,
        mut body: ByteStream,
        max_size: u64,
    ) -> Result<Written, BlobError> {
        let path = Self::path_of(key);
        let mut meter = Meter::new(max_size);
        // Small bodies: gathered (without copying) up to one part, then one PUT.
        let mut first = PutPayloadMut::new();
        let mut more = false;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(BlobError::Body)?;
            meter.take(&chunk)?;
            first.push(chunk);
            if first.content_length() >= PART_SIZE {
                more = true;
                break;
            }
        }
        if !more {
            self.store
                .put(&path, first.freeze())
                .await
                .map_err(|e| os_error("put", key.as_str(), e))?;
            return Ok(meter.finish());
        }

        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| os_error("starting an upload", key.as_str(), e))?;
        let mut guard = UploadGuard(Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)));
        let writer = guard.writer()?;
        for part in first.freeze().iter() {
            writer.put(part.clone());
        }
        loop {
            writer
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(|e| os_error("uploading a part", key.as_str(), e))?;
            let Some(chunk) = body.next().await else {
                break;
            };
            let chunk = chunk.map_err(BlobError::Body)?;
            meter.take(&chunk)?;
            writer.put(chunk);
        }
        // Every full part sent while the guard still aborts on failure; `finish` aborts
        // by itself only when the completion fails, not when the last part does (that
        // one is left to the bucket's lifecycle rule).
        guard
            .writer()?
            .wait_for_capacity(0)
            .await
            .map_err(|e| os_error("uploading a part", key.as_str(), e))?;
        let writer = guard.disarm()?;
        writer
            .finish()
            .await
            .map_err(|e| os_error("completing an upload", key.as_str(), e))?;
        Ok(meter.finish())
    }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn put(
        &self,
        key: &BlobKey,
        body: ByteStream,
        max_size: u64,
    ) -> Result<Written, BlobError> {
        self.upload(key, body, max_size).await
    }

    async fn get(&self, key: &BlobKey, expect: &Expected) -> Result<ByteStream, BlobError> {
        let result = self
            .store
            .get(&Self::path_of(key))
            .await
            .map_err(|e| os_error("get", key.as_str(), e))?;
        let k = key.to_string();
        let raw = result.into_stream().map_err(move |e| {
            tracing::error!(key = %k, error = %e, "blob store (s3): reading failed");
            std::io::Error::other(e)
        });
        Ok(verified(Box::pin(raw), key, expect))
    }

    async fn delete(&self, key: &BlobKey) -> Result<bool, BlobError> {
        let path = Self::path_of(key);
        // S3 deletes are idempotent and do not say whether there was anything.
        match self.store.head(&path).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(os_error("head", key.as_str(), e)),
        }
        self.store
            .delete(&path)
            .await
            .map_err(|e| os_error("delete", key.as_str(), e))?;
        Ok(true)
    }

    async fn list_older(
        &self,
        cutoff: DateTime<Utc>,
        after: Option<&BlobKey>,
        limit: usize,
    ) -> Result<Vec<BlobKey>, BlobError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        // Listings come in key order (S3 sorts by the name's UTF-8 bytes), from just
        // after `after`. Unfinished multipart uploads are not objects and never appear.
        let mut listing = match after {
            Some(a) => self.store.list_with_offset(None, &Self::path_of(a)),
            None => self.store.list(None),
        };
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| os_error("list", "", e))?;
            // Anything else in the bucket is not ours to judge.
            let Ok(key) = BlobKey::parse(meta.location.as_ref()) else {
                continue;
            };
            if meta.last_modified < cutoff {
                out.push(key);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Multipart uploads are aborted on every failure and on a dropped `put`; one cut
    /// short by a crash is left to the bucket's lifecycle rule
    /// (`AbortIncompleteMultipartUpload`, docs/operations.md): `object_store` cannot
    /// list unfinished uploads. Never readable either way.
    async fn sweep_temp(&self, _cutoff: DateTime<Utc>) -> Result<u64, BlobError> {
        Ok(0)
    }

    fn kind(&self) -> &'static str {
        "s3"
    }
}
