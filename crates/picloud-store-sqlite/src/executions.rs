use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;
use picloud_core::{AppId, ExecutionId, ScriptId};
use picloud_store::page::Gathered;
use picloud_store::{
    Execution, ExecutionFilter, ExecutionStore, Page, PageRequest, StoreError, StoreResult,
};
use sqlx::sqlite::SqliteRow;

use crate::write::commit;
use crate::{col, col_enum, col_ts, db_err, stored_len, ts, SqliteStore};

/// Rows per INSERT, largest first, each a quarter of the one before: a batch of n rows
/// takes at most 3 statements per size, and only these few statement shapes exist, so
/// each stays in the connection's prepared-statement cache (a shape per batch size
/// would thrash it). Every statement is a round trip to the connection's worker
/// thread, which costs more than SQLite's own work for a row. 256 rows × 10
/// parameters is far under SQLite's 32,766-parameter limit.
const ROWS_PER_INSERT: [usize; 5] = [256, 64, 16, 4, 1];

/// The INSERT of each size in [`ROWS_PER_INSERT`], in the same order, built once.
static INSERT_SQL: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    ROWS_PER_INSERT
        .iter()
        .map(|&n| {
            let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; n].join(", ");
            format!(
                "INSERT INTO executions ({COLUMNS}) \
                 SELECT v.* FROM (VALUES {values}) AS v \
                 WHERE v.column2 IN (SELECT id FROM apps) ON CONFLICT DO NOTHING"
            )
        })
        .collect()
});

/// Splits a batch into chunks of the sizes above, each with its INSERT.
fn chunks<T>(mut rows: &[T]) -> Vec<(&'static str, &[T])> {
    let mut out = Vec::new();
    for (size, sql) in ROWS_PER_INSERT.into_iter().zip(INSERT_SQL.iter()) {
        while rows.len() >= size {
            let (chunk, rest) = rows.split_at(size);
            out.push((sql.as_str(), chunk));
            rows = rest;
        }
    }
    out
}

const COLUMNS: &str =
    "id, app_id, script_id, source, status, started_at, duration_ms, logs, error, error_line";

fn execution(row: &SqliteRow) -> StoreResult<Execution> {
    let logs: String = col(row, "logs")?;
    let duration: i64 = col(row, "duration_ms")?;
    let line: Option<i64> = col(row, "error_line")?;
    Ok(Execution {
        id: ExecutionId::from_trusted(col(row, "id")?),
        app_id: AppId::from_trusted(col(row, "app_id")?),
        script_id: ScriptId::from_trusted(col(row, "script_id")?),
        source: col_enum(row, "source")?,
        status: col_enum(row, "status")?,
        started_at: col_ts(row, "started_at")?,
        duration_ms: u64::try_from(duration).unwrap_or(0),
        logs: serde_json::from_str(&logs).map_err(StoreError::other)?,
        error: col(row, "error")?,
        error_line: line.and_then(|l| u32::try_from(l).ok()),
    })
}

#[async_trait]
impl ExecutionStore for SqliteStore {
    async fn insert_executions(&self, batch: &[Execution]) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (sql, chunk) in chunks(batch) {
            let mut query = sqlx::query(sql);
            for e in chunk {
                let logs = serde_json::to_string(&e.logs).map_err(StoreError::other)?;
                query = query
                    .bind(e.id.as_str())
                    .bind(e.app_id.as_str())
                    .bind(e.script_id.as_str())
                    .bind(e.source.as_str())
                    .bind(e.status.as_str())
                    .bind(ts(e.started_at))
                    .bind(i64::try_from(e.duration_ms).unwrap_or(i64::MAX))
                    .bind(logs)
                    .bind(&e.error)
                    .bind(e.error_line.map(i64::from));
            }
            query.execute(&mut *tx).await.map_err(db_err)?;
        }
        commit(tx).await
    }

    async fn get_execution(&self, app: &AppId, id: &ExecutionId) -> StoreResult<Execution> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM executions WHERE id = ? AND app_id = ?"
        ))
        .bind(id.as_str())
        .bind(app.as_str())
        .fetch_one(&self.reader)
        .await
        .map_err(db_err)?;
        execution(&row)
    }

    async fn list_executions(
        &self,
        app: &AppId,
        filter: &ExecutionFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Execution>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM executions WHERE app_id = ? AND (? IS NULL OR id < ?) \
             AND (? IS NULL OR script_id = ?) AND (? IS NULL OR status = ?) \
             AND (? IS NULL OR source = ?) ORDER BY id DESC LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(app.as_str())
            .bind(page.after.as_deref())
            .bind(page.after.as_deref())
            .bind(filter.script_id.as_ref().map(|s| s.as_str()))
            .bind(filter.script_id.as_ref().map(|s| s.as_str()))
            .bind(filter.status.map(|s| s.as_str()))
            .bind(filter.status.map(|s| s.as_str()))
            .bind(filter.source.map(|s| s.as_str()))
            .bind(filter.source.map(|s| s.as_str()))
            .bind(page.fetch_limit())
            .fetch(&self.reader)
            .map_err(db_err);
        let items = Gathered::read(
            rows,
            |row| stored_len(row, "logs") + stored_len(row, "error"),
            execution,
        )
        .await?;
        Ok(Page::from_gathered(items, page, |e| e.id.as_str()))
    }

    async fn delete_executions_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64> {
        // Records are clustered by app, so the oldest are found app by app (apps is
        // the outer loop), each a range scan of its own key.
        sqlx::query(
            "DELETE FROM executions WHERE (app_id, id) IN \
             (SELECT e.app_id, e.id FROM apps a CROSS JOIN executions e \
              WHERE e.app_id = a.id AND e.id < ? LIMIT ?)",
        )
        .bind(ExecutionId::lower_bound(cutoff))
        .bind(i64::from(limit))
        .execute(&self.writer)
        .await
        .map(|r| r.rows_affected())
        .map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn batches_split_into_few_statement_shapes() {
        let rows: Vec<u32> = (0..150).collect();
        let chunks = super::chunks(&rows);
        let sizes: Vec<usize> = chunks.iter().map(|(_, c)| c.len()).collect();
        assert_eq!(sizes, vec![64, 64, 16, 4, 1, 1]);
        for (sql, chunk) in chunks {
            assert_eq!(sql.matches("(?,").count(), chunk.len());
        }
        assert_eq!(sizes.iter().sum::<usize>(), 150);
    }
}
