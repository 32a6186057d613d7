//! The files orphan sweeper: partial uploads, and bytes no file row names (a crash
//! between writing the bytes and committing the row, a failed delete, a deleted app),
//! once older than `PICLOUD_FILES_TMP_TTL_SEC`. The rule itself lives in
//! `picloud_blob::sweep`; this runs it on a timer against the metadata store.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use picloud_blob::sweep::{sweep_once, KnownKeys, SweepReport};
use picloud_blob::{BlobKey, BlobStore};
use picloud_store::{Store, StoreError};
use tokio::sync::watch;

/// The metadata store as the sweep asks it: which of these keys a file row names.
struct Rows<'a>(&'a dyn Store);

#[async_trait]
impl KnownKeys for Rows<'_> {
    type Error = StoreError;

    async fn known(&self, keys: &[BlobKey]) -> Result<HashSet<String>, StoreError> {
        let keys: Vec<String> = keys.iter().map(|k| k.as_str().to_owned()).collect();
        self.0.files_known_blobs(&keys).await
    }
}

/// One sweep now; what it removed. Failures are logged and reported as nothing done:
/// the next pass tries again.
pub async fn sweep_files(store: &dyn Store, blobs: &dyn BlobStore, ttl: Duration) -> SweepReport {
    match sweep_once(blobs, &Rows(store), picloud_core::now(), ttl).await {
        Ok(report) => {
            if report.temp_removed + report.orphans_removed > 0 {
                tracing::info!(
                    partial_uploads = report.temp_removed,
                    orphans = report.orphans_removed,
                    store = blobs.kind(),
                    "files orphan sweep removed unreferenced bytes"
                );
            }
            report
        }
        Err(e) => {
            tracing::warn!(error = %e, "files orphan sweep failed; it runs again next interval");
            SweepReport::default()
        }
    }
}

/// Sweeps every `interval` (the first pass one interval after start: at start-up the
/// uploads cut off by the previous stop are younger than the TTL anyway), until
/// `shutdown` turns true.
pub fn spawn(
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    interval: Duration,
    ttl: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            sweep_files(store.as_ref(), blobs.as_ref(), ttl).await;
        }
    });
}
