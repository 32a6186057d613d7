use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;
use picloud_core::{AppId, ExecutionId, ScriptId};
use picloud_store::page::Gathered;
use picloud_store::{
    Execution, ExecutionFilter, ExecutionStore, LogLine, Page, PageRequest, StoreError, StoreResult,
};
use sqlx::postgres::PgRow;

use crate::{col, col_enum, db_err, stored_len, without_nul, PostgresStore};

/// `logs` is read as text: sqlx's `json` feature is not enabled, and serde_json
/// parses it as well as it wrote it.
const COLUMNS: &str = "id, app_id, script_id, source, status, started_at, duration_ms, \
                       logs::text AS logs, error, error_line";

fn execution(row: &PgRow) -> StoreResult<Execution> {
    let logs: String = col(row, "logs")?;
    let duration: i64 = col(row, "duration_ms")?;
    let line: Option<i32> = col(row, "error_line")?;
    Ok(Execution {
        id: ExecutionId::from_trusted(col(row, "id")?),
        app_id: AppId::from_trusted(col(row, "app_id")?),
        script_id: ScriptId::from_trusted(col(row, "script_id")?),
        source: col_enum(row, "source")?,
        status: col_enum(row, "status")?,
        started_at: col(row, "started_at")?,
        duration_ms: u64::try_from(duration).unwrap_or(0),
        logs: serde_json::from_str(&logs).map_err(StoreError::other)?,
        error: col(row, "error")?,
        error_line: line.and_then(|l| u32::try_from(l).ok()),
    })
}

fn logs_json(logs: &[LogLine]) -> StoreResult<String> {
    let json = if logs.iter().any(|l| l.message.contains('\0')) {
        let cleaned: Vec<LogLine> = logs
            .iter()
            .map(|l| LogLine {
                message: without_nul(&l.message).into_owned(),
                ..l.clone()
            })
            .collect();
        serde_json::to_string(&cleaned)
    } else {
        serde_json::to_string(logs)
    };
    json.map_err(StoreError::other)
}

/// One array per column, for a single `INSERT … SELECT FROM UNNEST(…)`.
#[derive(Default)]
struct Columns<'a> {
    id: Vec<&'a str>,
    app_id: Vec<&'a str>,
    script_id: Vec<&'a str>,
    source: Vec<&'static str>,
    status: Vec<&'static str>,
    started_at: Vec<DateTime<Utc>>,
    duration_ms: Vec<i64>,
    logs: Vec<String>,
    error: Vec<Option<String>>,
    error_line: Vec<Option<i32>>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, e: &'a Execution) -> StoreResult<()> {
        self.id.push(e.id.as_str());
        self.app_id.push(e.app_id.as_str());
        self.script_id.push(e.script_id.as_str());
        self.source.push(e.source.as_str());
        self.status.push(e.status.as_str());
        self.started_at.push(e.started_at);
        self.duration_ms
            .push(i64::try_from(e.duration_ms).unwrap_or(i64::MAX));
        self.logs.push(logs_json(&e.logs)?);
        self.error
            .push(e.error.as_deref().map(|t| without_nul(t).into_owned()));
        self.error_line
            .push(e.error_line.map(|l| i32::try_from(l).unwrap_or(i32::MAX)));
        Ok(())
    }
}

#[async_trait]
impl ExecutionStore for PostgresStore {
    async fn insert_executions(&self, batch: &[Execution]) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut columns = Columns::default();
        for e in batch {
            columns.push(e)?;
        }
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // Key-share locks keep the batch's apps from being deleted until we commit, so
        // the foreign key cannot fail half-way; apps already gone are simply absent.
        let live_apps: Vec<String> =
            sqlx::query_scalar("SELECT id FROM apps WHERE id = ANY($1) ORDER BY id FOR KEY SHARE")
                .bind(&columns.app_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
        if live_apps.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO executions (id, app_id, script_id, source, status, started_at, \
             duration_ms, logs, error, error_line) \
             SELECT t.id, t.app_id, t.script_id, t.source, t.status, t.started_at, \
             t.duration_ms, t.logs::jsonb, t.error, t.error_line \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::timestamptz[], $7::bigint[], $8::text[], $9::text[], $10::integer[]) \
             AS t(id, app_id, script_id, source, status, started_at, duration_ms, logs, \
             error, error_line) \
             WHERE t.app_id = ANY($11) \
             ON CONFLICT (app_id, id) DO NOTHING",
        )
        .bind(&columns.id)
        .bind(&columns.app_id)
        .bind(&columns.script_id)
        .bind(&columns.source)
        .bind(&columns.status)
        .bind(&columns.started_at)
        .bind(&columns.duration_ms)
        .bind(&columns.logs)
        .bind(&columns.error)
        .bind(&columns.error_line)
        .bind(&live_apps)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn get_execution(&self, app: &AppId, id: &ExecutionId) -> StoreResult<Execution> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM executions WHERE id = $1 AND app_id = $2"
        ))
        .bind(id.as_str())
        .bind(app.as_str())
        .fetch_one(&self.pool)
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
            "SELECT {COLUMNS} FROM executions WHERE app_id = $1 \
             AND ($2::text IS NULL OR id < $2) AND ($3::text IS NULL OR script_id = $3) \
             AND ($4::text IS NULL OR status = $4) AND ($5::text IS NULL OR source = $5) \
             ORDER BY id DESC LIMIT $6"
        );
        let rows = sqlx::query(&sql)
            .bind(app.as_str())
            .bind(page.after.as_deref())
            .bind(filter.script_id.as_ref().map(|s| s.as_str()))
            .bind(filter.status.map(|s| s.as_str()))
            .bind(filter.source.map(|s| s.as_str()))
            .bind(page.fetch_limit())
            .fetch(&self.pool)
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
        sqlx::query(
            // Keyed by app: the oldest records are found app by app, each a range
            // scan of its own part of the key, and deleted by their row addresses (a
            // TID scan; records are never updated, so an address cannot move, and
            // joining back on the key made the planner scan the whole table).
            "DELETE FROM executions WHERE ctid = ANY(ARRAY( \
             SELECT e.ctid FROM apps a \
             CROSS JOIN LATERAL (SELECT ctid FROM executions \
               WHERE app_id = a.id AND id < $1 LIMIT $2) e \
             LIMIT $2))",
        )
        .bind(ExecutionId::lower_bound(cutoff))
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map(|r| r.rows_affected())
        .map_err(db_err)
    }
}
