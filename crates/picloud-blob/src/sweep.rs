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
        let page = blobs.list_older(cutoff, after.as_ref(), PAGE).await?;
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
        if page.len() < PAGE {
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
