use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::{AbandonedId, AppId, ExecutionId, ScriptId};
use picloud_store::{Abandoned, AbandonedStore, Page, PageRequest, StoreResult};
use sqlx::postgres::PgRow;

use crate::{col, db_err, without_nul, PostgresStore};

const COLUMNS: &str = "id, app_id, script_id, execution_id, started_at, abandoned_at, reason";

fn abandoned(row: &PgRow) -> StoreResult<Abandoned> {
    Ok(Abandoned {
        id: AbandonedId::from_trusted(col(row, "id")?),
        app_id: AppId::from_trusted(col(row, "app_id")?),
        script_id: ScriptId::from_trusted(col(row, "script_id")?),
        execution_id: ExecutionId::from_trusted(col(row, "execution_id")?),
        started_at: col(row, "started_at")?,
        abandoned_at: col(row, "abandoned_at")?,
        reason: col(row, "reason")?,
    })
}

#[async_trait]
impl AbandonedStore for PostgresStore {
    async fn record_abandoned(&self, e: &Abandoned) -> StoreResult<()> {
        // The record of a deleted app is dropped: selecting the app skips it when it is
        // already gone, and a delete racing the insert fails the foreign key, which
        // means the same.
        let result = sqlx::query(
            "INSERT INTO abandoned_executions (id, app_id, script_id, execution_id, \
             started_at, abandoned_at, reason) \
             SELECT $1, id, $3, $4, $5, $6, $7 FROM apps WHERE id = $2",
        )
        .bind(e.id.as_str())
        .bind(e.app_id.as_str())
        .bind(e.script_id.as_str())
        .bind(e.execution_id.as_str())
        .bind(e.started_at)
        .bind(e.abandoned_at)
        .bind(without_nul(&e.reason).as_ref())
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => Ok(()),
            Err(err) => Err(db_err(err)),
        }
    }

    async fn list_abandoned(
        &self,
        app: &AppId,
        page: &PageRequest,
    ) -> StoreResult<Page<Abandoned>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM abandoned_executions WHERE app_id = $1 \
             AND ($2::text IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(app.as_str())
        .bind(page.after.as_deref())
        .bind(page.fetch_limit())
        .fetch_all(&self.pool)
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
             (SELECT id FROM abandoned_executions WHERE id < $1 LIMIT $2)",
        )
        .bind(AbandonedId::lower_bound(cutoff))
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map(|r| r.rows_affected())
        .map_err(db_err)
    }
}
