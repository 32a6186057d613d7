use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::model::{DocsOp, FilesOp, KvOp, TriggerKind};
use picloud_core::{AppId, ScriptId, TriggerId};
use picloud_store::{
    first_window, trigger_config, Change, NewTrigger, Page, PageRequest, RetryPolicy, StoreError,
    StoreResult, Target, Trigger, TriggerColumns, TriggerConfig, TriggerStore,
};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::Row;

use crate::write::commit;
use crate::{col, col_enum, col_opt_ts, col_ts, db_err, expect_row, ts, SqliteStore};

const COLUMNS: &str = "t.id, t.app_id, t.script_id, t.kind, t.enabled, t.retry_max_attempts, \
     t.retry_base_delay_ms, t.retry_max_delay_ms, t.created_at, t.updated_at, \
     k.collection AS kv_collection, k.on_set AS kv_on_set, k.on_delete AS kv_on_delete, \
     d.collection AS docs_collection, d.on_create AS docs_on_create, \
     d.on_update AS docs_on_update, d.on_delete AS docs_on_delete, \
     f.collection AS files_collection, f.on_create AS files_on_create, \
     f.on_update AS files_on_update, f.on_delete AS files_on_delete, p.topic AS pubsub_topic, \
     c.schedule AS cron_schedule, c.timezone AS cron_timezone, \
     c.next_fire_at AS cron_next_fire_at, c.last_fired_at AS cron_last_fired_at";
const FROM: &str = "triggers t LEFT JOIN kv_trigger_details k ON k.trigger_id = t.id \
     LEFT JOIN docs_trigger_details d ON d.trigger_id = t.id \
     LEFT JOIN files_trigger_details f ON f.trigger_id = t.id \
     LEFT JOIN pubsub_trigger_details p ON p.trigger_id = t.id \
     LEFT JOIN cron_trigger_details c ON c.trigger_id = t.id";

pub(crate) fn retry(row: &SqliteRow) -> StoreResult<Option<RetryPolicy>> {
    let max: Option<i64> = col(row, "retry_max_attempts")?;
    let base: Option<i64> = col(row, "retry_base_delay_ms")?;
    let cap: Option<i64> = col(row, "retry_max_delay_ms")?;
    Ok(RetryPolicy::from_columns(max, base, cap))
}

/// The row mapping [`trigger_config`] reads the detail columns through.
struct Columns<'r>(&'r SqliteRow);

impl TriggerColumns for Columns<'_> {
    fn flag(&self, name: &str) -> StoreResult<bool> {
        col(self.0, name)
    }

    fn text(&self, name: &str) -> StoreResult<String> {
        col(self.0, name)
    }

    fn time(&self, name: &str) -> StoreResult<Option<DateTime<Utc>>> {
        col_opt_ts(self.0, name)
    }
}

fn trigger(row: &SqliteRow) -> StoreResult<Trigger> {
    let kind: TriggerKind = col_enum(row, "kind")?;
    let (config, cron) = trigger_config(kind, &Columns(row))?;
    Ok(Trigger {
        id: TriggerId::from_trusted(col(row, "id")?),
        app_id: AppId::from_trusted(col(row, "app_id")?),
        script_id: ScriptId::from_trusted(col(row, "script_id")?),
        enabled: col(row, "enabled")?,
        retry: retry(row)?,
        config,
        cron,
        created_at: col_ts(row, "created_at")?,
        updated_at: col_ts(row, "updated_at")?,
    })
}

fn target(row: &SqliteRow, default_retry: RetryPolicy) -> StoreResult<Target> {
    Ok(Target {
        trigger_id: TriggerId::from_trusted(row.try_get("id").map_err(StoreError::other)?),
        script_id: ScriptId::from_trusted(row.try_get("script_id").map_err(StoreError::other)?),
        retry: retry(row)?.unwrap_or(default_retry),
    })
}

/// Enabled triggers of `kind` (whose details live in `details`, aliased `d`) of the
/// app, listening on `collection` with their `op_column` flag set.
async fn collection_targets(
    conn: &mut SqliteConnection,
    app: &AppId,
    (kind, details, op_column): (&str, &str, &str),
    collection: &str,
    default_retry: RetryPolicy,
) -> StoreResult<Vec<Target>> {
    let rows = sqlx::query(&format!(
        "SELECT t.id, t.script_id, t.retry_max_attempts, t.retry_base_delay_ms, \
         t.retry_max_delay_ms FROM triggers t JOIN {details} d ON d.trigger_id = t.id \
         WHERE t.app_id = ? AND t.kind = '{kind}' AND t.enabled = 1 AND d.collection = ? \
         AND d.{op_column} = 1 ORDER BY t.id"
    ))
    .bind(app.as_str())
    .bind(collection)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    rows.iter().map(|r| target(r, default_retry)).collect()
}

/// Enabled docs triggers of the app listening to `op` on `collection`.
pub(crate) async fn docs_targets(
    conn: &mut SqliteConnection,
    app: &AppId,
    collection: &str,
    op: DocsOp,
    default_retry: RetryPolicy,
) -> StoreResult<Vec<Target>> {
    let op_column = match op {
        DocsOp::Create => "on_create",
        DocsOp::Update => "on_update",
        DocsOp::Delete => "on_delete",
    };
    let table = ("docs", "docs_trigger_details", op_column);
    collection_targets(conn, app, table, collection, default_retry).await
}

/// Enabled files triggers of the app listening to `op` on `collection`.
pub(crate) async fn files_targets(
    conn: &mut SqliteConnection,
    app: &AppId,
    collection: &str,
    op: FilesOp,
    default_retry: RetryPolicy,
) -> StoreResult<Vec<Target>> {
    let op_column = match op {
        FilesOp::Create => "on_create",
        FilesOp::Update => "on_update",
        FilesOp::Delete => "on_delete",
    };
    let table = ("files", "files_trigger_details", op_column);
    collection_targets(conn, app, table, collection, default_retry).await
}

/// Enabled pubsub triggers of the app whose pattern matches `topic`.
pub(crate) async fn pubsub_targets(
    conn: &mut SqliteConnection,
    app: &AppId,
    topic: &str,
    default_retry: RetryPolicy,
) -> StoreResult<Vec<Target>> {
    let rows = sqlx::query(
        "SELECT t.id, t.script_id, t.retry_max_attempts, t.retry_base_delay_ms, \
         t.retry_max_delay_ms, p.topic FROM triggers t \
         JOIN pubsub_trigger_details p ON p.trigger_id = t.id \
         WHERE t.app_id = ? AND t.kind = 'pubsub' AND t.enabled = 1 ORDER BY t.id",
    )
    .bind(app.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    let mut targets = Vec::new();
    for row in &rows {
        let pattern: String = col(row, "topic")?;
        if picloud_store::pubsub::matches_stored(&pattern, topic) {
            targets.push(target(row, default_retry)?);
        }
    }
    Ok(targets)
}

/// Enabled dead-letter triggers of the app.
pub(crate) async fn dead_letter_targets(
    conn: &mut SqliteConnection,
    app: &AppId,
) -> StoreResult<Vec<Target>> {
    let rows = sqlx::query(
        "SELECT id, script_id, retry_max_attempts, retry_base_delay_ms, retry_max_delay_ms \
         FROM triggers WHERE app_id = ? AND kind = 'dead_letter' AND enabled = 1 ORDER BY id",
    )
    .bind(app.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    rows.iter().map(|r| target(r, RetryPolicy::ONCE)).collect()
}

/// A cron trigger coming back on waits for its first window after `now`, so the
/// windows it missed while off do not fire. Other kinds have no details row to touch.
async fn restart_cron(
    conn: &mut SqliteConnection,
    id: &TriggerId,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let row =
        sqlx::query("SELECT schedule, timezone FROM cron_trigger_details WHERE trigger_id = ?")
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
    let Some(row) = row else { return Ok(()) };
    let schedule: String = col(&row, "schedule")?;
    let timezone: String = col(&row, "timezone")?;
    // A schedule that no longer evaluates is parked rather than failing the switch.
    let next = first_window(&schedule, &timezone, now).unwrap_or(None);
    sqlx::query("UPDATE cron_trigger_details SET next_fire_at = ? WHERE trigger_id = ?")
        .bind(next.map(ts))
        .bind(id.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl TriggerStore for SqliteStore {
    async fn create_trigger(&self, new: NewTrigger) -> StoreResult<Trigger> {
        new.config.check()?;
        let id = TriggerId::new();
        let now = picloud_core::now();
        let mut tx = self.begin_write().await?;
        // Inserted only if the script is an endpoint of this very app.
        let inserted = sqlx::query(
            "INSERT INTO triggers (id, app_id, script_id, kind, enabled, retry_max_attempts, \
             retry_base_delay_ms, retry_max_delay_ms, created_at, updated_at) \
             SELECT ?, app_id, id, ?, 1, ?, ?, ?, ?, ? FROM scripts \
             WHERE id = ? AND app_id = ? AND kind = 'endpoint'",
        )
        .bind(id.as_str())
        .bind(new.config.kind().as_str())
        .bind(new.retry.map(|r| i64::from(r.max_attempts)))
        .bind(
            new.retry
                .map(|r| i64::try_from(r.base_delay_ms).unwrap_or(i64::MAX)),
        )
        .bind(
            new.retry
                .map(|r| i64::try_from(r.max_delay_ms).unwrap_or(i64::MAX)),
        )
        .bind(ts(now))
        .bind(ts(now))
        .bind(new.script_id.as_str())
        .bind(new.app_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        expect_row(inserted.rows_affected())?;
        match &new.config {
            TriggerConfig::Kv { collection, ops } => {
                sqlx::query(
                    "INSERT INTO kv_trigger_details (trigger_id, collection, on_set, on_delete) \
                     VALUES (?, ?, ?, ?)",
                )
                .bind(id.as_str())
                .bind(collection)
                .bind(ops.contains(&KvOp::Set))
                .bind(ops.contains(&KvOp::Delete))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            TriggerConfig::Docs { collection, ops } => {
                sqlx::query(
                    "INSERT INTO docs_trigger_details (trigger_id, collection, on_create, \
                     on_update, on_delete) VALUES (?, ?, ?, ?, ?)",
                )
                .bind(id.as_str())
                .bind(collection)
                .bind(ops.contains(&DocsOp::Create))
                .bind(ops.contains(&DocsOp::Update))
                .bind(ops.contains(&DocsOp::Delete))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            TriggerConfig::Files { collection, ops } => {
                sqlx::query(
                    "INSERT INTO files_trigger_details (trigger_id, collection, on_create, \
                     on_update, on_delete) VALUES (?, ?, ?, ?, ?)",
                )
                .bind(id.as_str())
                .bind(collection)
                .bind(ops.contains(&FilesOp::Create))
                .bind(ops.contains(&FilesOp::Update))
                .bind(ops.contains(&FilesOp::Delete))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            TriggerConfig::Pubsub { topic } => {
                sqlx::query("INSERT INTO pubsub_trigger_details (trigger_id, topic) VALUES (?, ?)")
                    .bind(id.as_str())
                    .bind(topic)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
            TriggerConfig::Cron { schedule, timezone } => {
                let next = first_window(schedule, timezone, now)?;
                sqlx::query(
                    "INSERT INTO cron_trigger_details (trigger_id, schedule, timezone, \
                     next_fire_at) VALUES (?, ?, ?, ?)",
                )
                .bind(id.as_str())
                .bind(schedule)
                .bind(timezone)
                .bind(next.map(ts))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            TriggerConfig::DeadLetter => {}
        }
        commit(tx).await?;
        self.changed(Change::trigger(new.config.kind()).as_slice());
        self.get_trigger(&new.app_id, &id).await
    }

    async fn get_trigger(&self, app: &AppId, id: &TriggerId) -> StoreResult<Trigger> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE t.id = ? AND t.app_id = ?"
        ))
        .bind(id.as_str())
        .bind(app.as_str())
        .fetch_one(&self.writer)
        .await
        .map_err(db_err)?;
        trigger(&row)
    }

    async fn list_triggers(&self, app: &AppId, page: &PageRequest) -> StoreResult<Page<Trigger>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE t.app_id = ? AND t.id > ? ORDER BY t.id LIMIT ?"
        ))
        .bind(app.as_str())
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(page.fetch_limit())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        let triggers = rows.iter().map(trigger).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(triggers, page, |t| t.id.as_str()))
    }

    async fn set_trigger_enabled(
        &self,
        app: &AppId,
        id: &TriggerId,
        enabled: bool,
    ) -> StoreResult<Trigger> {
        let now = picloud_core::now();
        let mut tx = self.begin_write().await?;
        let was: Option<bool> =
            sqlx::query_scalar("SELECT enabled FROM triggers WHERE id = ? AND app_id = ?")
                .bind(id.as_str())
                .bind(app.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        let Some(was) = was else {
            return Err(StoreError::NotFound);
        };
        sqlx::query("UPDATE triggers SET enabled = ?, updated_at = ? WHERE id = ?")
            .bind(enabled)
            .bind(ts(now))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if enabled && !was {
            restart_cron(&mut tx, id, now).await?;
        }
        commit(tx).await?;
        let updated = self.get_trigger(app, id).await;
        if let Ok(trigger) = &updated {
            self.changed(Change::trigger(trigger.config.kind()).as_slice());
        }
        updated
    }

    async fn delete_trigger(&self, app: &AppId, id: &TriggerId) -> StoreResult<()> {
        let kind: Option<String> =
            sqlx::query_scalar("DELETE FROM triggers WHERE id = ? AND app_id = ? RETURNING kind")
                .bind(id.as_str())
                .bind(app.as_str())
                .fetch_optional(&self.writer)
                .await
                .map_err(db_err)?;
        let kind: TriggerKind = kind
            .ok_or(StoreError::NotFound)?
            .parse()
            .map_err(StoreError::other)?;
        self.changed(Change::trigger(kind).as_slice());
        Ok(())
    }
}
