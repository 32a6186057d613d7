//! Periodic clean-up: execution records past retention, expired sessions. Deletes go
//! in small batches so that a large backlog never holds the (SQLite) writer for long;
//! every statement is idempotent, so several nodes sweeping at once is harmless.

use std::sync::Arc;
use std::time::Duration;

use picloud_store::Store;
use tokio::sync::watch;

const BATCH: u32 = 1_000;

pub struct SweeperConfig {
    pub execution_retention: Duration,
    pub interval: Duration,
}

/// Sweeps once now and then every `interval`, until `shutdown` turns true.
pub fn spawn(store: Arc<dyn Store>, config: SweeperConfig, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            sweep_once(&store, config.execution_retention).await;
            tokio::select! {
                _ = tokio::time::sleep(config.interval) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    });
}

/// One pass; returns how many execution records were deleted.
pub async fn sweep_once(store: &Arc<dyn Store>, retention: Duration) -> u64 {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(7));
    let cutoff = picloud_core::now() - retention;
    let mut total = 0;
    loop {
        match store.delete_executions_before(cutoff, BATCH).await {
            Ok(n) => {
                total += n;
                if n < u64::from(BATCH) {
                    break;
                }
                tokio::task::yield_now().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "execution retention sweep failed");
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!(deleted = total, "old execution records swept");
    }
    if let Err(e) = store.delete_expired_sessions(picloud_core::now()).await {
        tracing::warn!(error = %e, "expired-session sweep failed");
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use picloud_core::model::{ExecutionSource, ExecutionStatus};
    use picloud_core::{ExecutionId, ScriptId};
    use picloud_store::{Execution, ExecutionFilter, NewApp, PageRequest};
    use picloud_store_sqlite::SqliteStore;

    #[tokio::test]
    async fn deletes_old_records_in_batches_and_keeps_recent_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&dir.path().join("t.db"))
                .await
                .expect("open"),
        );
        let app = store
            .create_app(NewApp {
                slug: "shop".into(),
                name: "shop".into(),
            })
            .await
            .expect("app");
        let old = picloud_core::now() - chrono::Duration::days(30);
        let records: Vec<Execution> = (0..2_500)
            .map(|i| if i < 2_499 { old } else { picloud_core::now() })
            .map(|started_at| Execution {
                id: ExecutionId::at(started_at),
                app_id: app.id.clone(),
                script_id: ScriptId::new(),
                source: ExecutionSource::Http,
                status: ExecutionStatus::Ok,
                started_at,
                duration_ms: 1,
                logs: Vec::new(),
                error: None,
                error_line: None,
            })
            .collect();
        store.insert_executions(&records).await.expect("insert");
        let deleted = sweep_once(&store, Duration::from_secs(7 * 86_400)).await;
        assert_eq!(deleted, 2_499);
        let left = store
            .list_executions(
                &app.id,
                &ExecutionFilter::default(),
                &PageRequest::default(),
            )
            .await
            .expect("list");
        assert_eq!(left.items.len(), 1);
    }
}
