//! Periodic clean-up: execution records, dead letters and abandoned-run records past
//! their retention, and expired sessions. Deletes go
//! in small batches so that a large backlog never holds the (SQLite) writer for long;
//! every statement is idempotent, so several nodes sweeping at once is harmless.

use std::sync::Arc;
use std::time::Duration;

use picloud_store::Store;
use tokio::sync::watch;

const BATCH: u32 = 1_000;

pub struct SweeperConfig {
    pub execution_retention: Duration,
    pub dead_letter_retention: Duration,
    pub abandoned_retention: Duration,
    pub interval: Duration,
}

/// Sweeps once now and then every `interval`, until `shutdown` turns true.
pub fn spawn(store: Arc<dyn Store>, config: SweeperConfig, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            sweep_once(&store, &config).await;
            tokio::select! {
                _ = tokio::time::sleep(config.interval) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    });
}

fn cutoff(retention: Duration) -> chrono::DateTime<chrono::Utc> {
    picloud_core::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(7))
}

/// Deletes in batches until a batch comes back short; returns the total.
async fn drain<F, Fut>(what: &str, delete: F) -> u64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = picloud_store::StoreResult<u64>>,
{
    let mut total = 0;
    loop {
        match delete().await {
            Ok(n) => {
                total += n;
                if n < u64::from(BATCH) {
                    break;
                }
                tokio::task::yield_now().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "{what} sweep failed");
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!(deleted = total, "{what} past retention swept");
    }
    total
}

/// One pass; returns how many execution records were deleted.
pub async fn sweep_once(store: &Arc<dyn Store>, config: &SweeperConfig) -> u64 {
    let executions = cutoff(config.execution_retention);
    let total = drain("execution records", || {
        store.delete_executions_before(executions, BATCH)
    })
    .await;
    let dead_letters = cutoff(config.dead_letter_retention);
    drain("dead letters", || {
        store.delete_dead_letters_before(dead_letters, BATCH)
    })
    .await;
    let abandoned = cutoff(config.abandoned_retention);
    drain("abandoned-run records", || {
        store.delete_abandoned_before(abandoned, BATCH)
    })
    .await;
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
        let config = SweeperConfig {
            execution_retention: Duration::from_secs(7 * 86_400),
            dead_letter_retention: Duration::from_secs(30 * 86_400),
            abandoned_retention: Duration::from_secs(7 * 86_400),
            interval: Duration::from_secs(3600),
        };
        let deleted = sweep_once(&store, &config).await;
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
