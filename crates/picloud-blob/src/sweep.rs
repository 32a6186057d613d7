//! The orphan sweep: partial uploads and blobs that no metadata row names.
//!
//! A file is written bytes first, row second, so a crash (or a failed row write)
//! between the two leaves bytes nobody can reach. They are removed once older than
//! the TTL (`PICLOUD_FILES_TMP_TTL_SEC`). The TTL is what makes the sweep safe while
//! writes are in flight: a blob whose row is not committed yet is younger than the TTL
//! and is not looked at. **The TTL must therefore exceed the longest upload plus the
//! row write** (on S3 an object's age counts from the start of its upload).

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{BlobError, BlobKey, BlobStore};

/// Keys asked about per round trip to the metadata store.
pub const PAGE: usize = 500;

/// Which blob keys have a metadata row; implemented over the metadata store.
#[async_trait]
pub trait KnownKeys: Send + Sync {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The subset of `keys` (as [`BlobKey::as_str`]) that some row names.
    async fn known(&self, keys: &[BlobKey]) -> Result<HashSet<String>, Self::Error>;
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub temp_removed: u64,
    pub orphans_removed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError<E: std::error::Error + 'static> {
    #[error("blob store: {0}")]
    Blob(#[from] BlobError),
    #[error("metadata: {0}")]
    Known(#[source] E),
}

/// One pass: partial uploads older than `ttl`, then blobs older than `ttl` without a
/// row, page by page in key order. A row committed between the listing and the check
/// is seen by the check; a blob is never rewritten under its key, so one found without
/// a row past the TTL stays without one.
pub async fn sweep_once<K: KnownKeys + ?Sized>(
    blobs: &dyn BlobStore,
    known: &K,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<SweepReport, SweepError<K::Error>> {
    sweep_pages(blobs, known, now, ttl, PAGE).await
}

async fn sweep_pages<K: KnownKeys + ?Sized>(
    blobs: &dyn BlobStore,
    known: &K,
    now: DateTime<Utc>,
    ttl: Duration,
    page_size: usize,
) -> Result<SweepReport, SweepError<K::Error>> {
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    let cutoff = now
        .checked_sub_signed(ttl)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut report = SweepReport {
        temp_removed: blobs.sweep_temp(cutoff).await?,
        orphans_removed: 0,
    };
    let mut after: Option<BlobKey> = None;
    loop {
        let page = blobs.list_older(cutoff, after.as_ref(), page_size).await?;
        if page.is_empty() {
            break;
        }
        let rows = known.known(&page).await.map_err(SweepError::Known)?;
        for key in &page {
            if rows.contains(key.as_str()) {
                continue;
            }
            if blobs.delete(key).await? {
                tracing::info!(key = %key, "blob sweeper: removed a blob without a file row");
                report.orphans_removed += 1;
            }
        }
        if page.len() < page_size {
            break;
        }
        after = page.last().cloned();
    }
    if report != SweepReport::default() {
        tracing::info!(
            kind = blobs.kind(),
            temp_removed = report.temp_removed,
            orphans_removed = report.orphans_removed,
            "blob sweep done"
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{put_bytes, FsStore};
    use bytes::Bytes;

    struct Rows(HashSet<String>);

    #[async_trait]
    impl KnownKeys for Rows {
        type Error = std::io::Error;
        async fn known(&self, keys: &[BlobKey]) -> Result<HashSet<String>, Self::Error> {
            Ok(keys
                .iter()
                .map(|k| k.as_str().to_owned())
                .filter(|k| self.0.contains(k))
                .collect())
        }
    }

    #[tokio::test]
    async fn pages_through_every_blob() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FsStore::open(dir.path()).expect("store");
        let app = picloud_core::AppId::new();
        let mut keys = Vec::new();
        for _ in 0..7 {
            let key = BlobKey::generate(&app);
            put_bytes(&store, &key, Bytes::from_static(b"x"), 1)
                .await
                .expect("put");
            keys.push(key);
        }
        keys.sort();
        // Rows for every other key, so each page of 2 has kept and removed ones.
        let kept: HashSet<String> = keys
            .iter()
            .step_by(2)
            .map(|k| k.as_str().to_owned())
            .collect();
        let later = Utc::now() + chrono::Duration::hours(2);
        let report = sweep_pages(
            &store,
            &Rows(kept.clone()),
            later,
            Duration::from_secs(3600),
            2,
        )
        .await
        .expect("sweep");
        assert_eq!(report.orphans_removed, 3);
        let left = store.list_older(later, None, 100).await.expect("list");
        let left: HashSet<String> = left.iter().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(left, kept);
    }
}
