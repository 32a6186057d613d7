use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::{AbandonedId, AppId, ExecutionId, ScriptId};
use picloud_store::{Abandoned, AbandonedStore, Page, PageRequest, StoreResult};
use sqlx::sqlite::SqliteRow;

use crate::{col, col_ts, db_err, ts, SqliteStore};

fn abandoned(row: &SqliteRow) -> StoreResult<Abandoned> {
    Ok(Abandoned {
        id: AbandonedId::from_trusted(col(row, "id")?),
        app_id: AppId::from_trusted(col(row, "app_id")?),
        script_id: ScriptId::from_trusted(col(row, "script_id")?),
        execution_id: ExecutionId::from_trusted(col(row, "execution_id")?),
        started_at: col_ts(row, "started_at")?,
        abandoned_at: col_ts(row, "abandoned_at")?,
        reason: col(row, "reason")?,
    })
}

#[async_trait]
impl AbandonedStore for SqliteStore {
    async fn record_abandoned(&self, e: &Abandoned) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO abandoned_executions (id, app_id, script_id, execution_id, started_at, \
             abandoned_at, reason) SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM apps WHERE id = ?)",
        )
        .bind(e.id.as_str())
        .bind(e.app_id.as_str())
        .bind(e.script_id.as_str())
        .bind(e.execution_id.as_str())
        .bind(ts(e.started_at))
        .bind(ts(e.abandoned_at))
        .bind(&e.reason)
        .bind(e.app_id.as_str())
        .execute(&self.writer)
        .await
        .map(|_| ())
        .map_err(db_err)
    }

    async fn list_abandoned(
        &self,
        app: &AppId,
        page: &PageRequest,
    ) -> StoreResult<Page<Abandoned>> {
        let rows = sqlx::query(
            "SELECT * FROM abandoned_executions WHERE app_id = ? AND (? IS NULL OR id < ?) \
             ORDER BY id DESC LIMIT ?",
        )
        .bind(app.as_str())
        .bind(page.after.as_deref())
        .bind(page.after.as_deref())
        .bind(page.fetch_limit())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        let items = rows
            .iter()
            .map(abandoned)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(items, page, |a| a.id.as_str()))
    }

    async fn delete_abandoned_before(&self, cutoff: DateTime<Utc>, limit: u32) -> StoreResult<u64> {
        sqlx::query(
            "DELETE FROM abandoned_executions WHERE id IN \
             (SELECT id FROM abandoned_executions WHERE id < ? LIMIT ?)",
        )
        .bind(AbandonedId::lower_bound(cutoff))
        .bind(i64::from(limit))
        .execute(&self.writer)
        .await
        .map(|r| r.rows_affected())
        .map_err(db_err)
    }
}
