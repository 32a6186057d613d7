use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::model::{DocsOp, FilesOp, KvOp, TriggerKind};
use picloud_core::{AppId, ScriptId, TriggerId};
use picloud_store::{
    first_window, trigger_config, Change, NewTrigger, Page, PageRequest, RetryPolicy, StoreError,
    StoreResult, Target, Trigger, TriggerColumns, TriggerConfig, TriggerStore,
};
use sqlx::postgres::{PgConnection, PgRow};

use crate::changes::announce_in;
use crate::{
    big, col, col_enum, db_err, expect_row, int, map_insert_err, without_nul, PostgresStore,
};

const COLUMNS: &str = "t.id, t.app_id, t.script_id, t.kind, t.enabled, t.retry_max_attempts, \
     t.retry_base_delay_ms, t.retry_max_delay_ms, t.created_at, t.updated_at, \
     k.collection AS kv_collection, k.on_set AS kv_on_set, k.on_delete AS kv_on_delete, \
     d.collection AS docs_collection, d.on_create AS docs_on_create, \
     d.on_update AS docs_on_update, d.on_delete AS docs_on_delete, \
     f.collection AS files_collection, f.on_create AS files_on_create, \
     f.on_update AS files_on_update, f.on_delete AS files_on_delete, p.topic AS pubsub_topic, \
     c.schedule AS cron_schedule, c.timezone AS cron_timezone, \
     c.next_fire_at AS cron_next_fire_at, c.last_fired_at AS cron_last_fired_at";
/// The details tables of every kind, joined to a `triggers` relation named `t`.
const DETAILS: &str = "LEFT JOIN kv_trigger_details k ON k.trigger_id = t.id \
     LEFT JOIN docs_trigger_details d ON d.trigger_id = t.id \
     LEFT JOIN files_trigger_details f ON f.trigger_id = t.id \
     LEFT JOIN pubsub_trigger_details p ON p.trigger_id = t.id \
     LEFT JOIN cron_trigger_details c ON c.trigger_id = t.id";

pub(crate) fn retry(row: &PgRow) -> StoreResult<Option<RetryPolicy>> {
    let max: Option<i32> = col(row, "retry_max_attempts")?;
    let base: Option<i64> = col(row, "retry_base_delay_ms")?;
    let cap: Option<i64> = col(row, "retry_max_delay_ms")?;
    Ok(RetryPolicy::from_columns(max.map(i64::from), base, cap))
}

/// The row mapping [`trigger_config`] reads the detail columns through.
struct Columns<'r>(&'r PgRow);

impl TriggerColumns for Columns<'_> {
    fn flag(&self, name: &str) -> StoreResult<bool> {
        col(self.0, name)
    }

    fn text(&self, name: &str) -> StoreResult<String> {
        col(self.0, name)
    }

    fn time(&self, name: &str) -> StoreResult<Option<DateTime<Utc>>> {
        col(self.0, name)
    }
}

fn trigger(row: &PgRow) -> StoreResult<Trigger> {
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
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
    })
}

fn target(row: &PgRow, default_retry: RetryPolicy) -> StoreResult<Target> {
    Ok(Target {
        trigger_id: TriggerId::from_trusted(col(row, "id")?),
        script_id: ScriptId::from_trusted(col(row, "script_id")?),
        retry: retry(row)?.unwrap_or(default_retry),
    })
}

/// Enabled KV triggers of the app listening to `op` on `collection`.
///
/// Key-share locks on the app, the scripts and the triggers (in that order: an `OF`
/// list is locked left to right) keep them from being deleted until the caller's
/// transaction commits, so inserting the deliveries can neither fail a foreign key nor
/// deadlock with a delete. With no targets nothing is inserted and the app needs no
/// lock. Disabling a trigger is not blocked.
pub(crate) async fn kv_targets(
    conn: &mut PgConnection,
    app: &AppId,
    collection: &str,
    op: KvOp,
    default_retry: RetryPolicy,
) -> StoreResult<Vec<Target>> {
    let op_column = match op {
        KvOp::Set => "k.on_set",
        KvOp::Delete => "k.on_delete",
    };
    let rows = sqlx::query(&format!(
        "SELECT t.id, t.script_id, t.retry_max_attempts, t.retry_base_delay_ms, \
         t.retry_max_delay_ms FROM apps a JOIN triggers t ON t.app_id = a.id \
         JOIN kv_trigger_details k ON k.trigger_id = t.id JOIN scripts s ON s.id = t.script_id \
         WHERE a.id = $1 AND t.kind = 'kv' AND t.enabled AND k.collection = $2 \
         AND {op_column} ORDER BY t.id FOR KEY SHARE OF a, s, t"
    ))
    .bind(app.as_str())
    .bind(without_nul(collection).as_ref())
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    rows.iter().map(|r| target(r, default_retry)).collect()
}

/// Enabled triggers of `kind` (whose details live in `details`, aliased `d`) of the
/// app, listening on `collection` with their `op_column` flag set, locked like
/// [`kv_targets`].
async fn collection_targets(
    conn: &mut PgConnection,
    app: &AppId,
    (kind, details, op_column): (&str, &str, &str),
    collection: &str,
    default_retry: RetryPolicy,
) -> StoreResult<Vec<Target>> {
    let rows = sqlx::query(&format!(
        "SELECT t.id, t.script_id, t.retry_max_attempts, t.retry_base_delay_ms, \
         t.retry_max_delay_ms FROM apps a JOIN triggers t ON t.app_id = a.id \
         JOIN {details} d ON d.trigger_id = t.id JOIN scripts s ON s.id = t.script_id \
         WHERE a.id = $1 AND t.kind = '{kind}' AND t.enabled AND d.collection = $2 \
         AND d.{op_column} ORDER BY t.id FOR KEY SHARE OF a, s, t"
    ))
    .bind(app.as_str())
    .bind(without_nul(collection).as_ref())
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    rows.iter().map(|r| target(r, default_retry)).collect()
}

/// Enabled docs triggers of the app listening to `op` on `collection`.
pub(crate) async fn docs_targets(
    conn: &mut PgConnection,
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
    conn: &mut PgConnection,
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

/// Enabled pubsub triggers of the app whose pattern matches `topic`, locked like
/// [`kv_targets`] (every pubsub trigger of the app is read and locked; the patterns
/// are matched here, by the one rule in `picloud_store::pubsub`).
pub(crate) async fn pubsub_targets(
    conn: &mut PgConnection,
    app: &AppId,
    topic: &str,
    default_retry: RetryPolicy,
) -> StoreResult<Vec<Target>> {
    let rows = sqlx::query(
        "SELECT t.id, t.script_id, t.retry_max_attempts, t.retry_base_delay_ms, \
         t.retry_max_delay_ms, p.topic FROM apps a JOIN triggers t ON t.app_id = a.id \
         JOIN pubsub_trigger_details p ON p.trigger_id = t.id JOIN scripts s ON s.id = t.script_id \
         WHERE a.id = $1 AND t.kind = 'pubsub' AND t.enabled ORDER BY t.id \
         FOR KEY SHARE OF a, s, t",
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

/// Enabled dead-letter triggers of the app, key-share locked like [`kv_targets`]
/// (the caller has locked the app).
pub(crate) async fn dead_letter_targets(
    conn: &mut PgConnection,
    app: &AppId,
) -> StoreResult<Vec<Target>> {
    let rows = sqlx::query(
        "SELECT t.id, t.script_id, t.retry_max_attempts, t.retry_base_delay_ms, \
         t.retry_max_delay_ms FROM triggers t JOIN scripts s ON s.id = t.script_id \
         WHERE t.app_id = $1 AND t.kind = 'dead_letter' AND t.enabled ORDER BY t.id \
         FOR KEY SHARE OF s, t",
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
    conn: &mut PgConnection,
    id: &TriggerId,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let row =
        sqlx::query("SELECT schedule, timezone FROM cron_trigger_details WHERE trigger_id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
    let Some(row) = row else { return Ok(()) };
    let schedule: String = col(&row, "schedule")?;
    let timezone: String = col(&row, "timezone")?;
    // A schedule that no longer evaluates is parked rather than failing the switch.
    let next = first_window(&schedule, &timezone, now).unwrap_or(None);
    sqlx::query("UPDATE cron_trigger_details SET next_fire_at = $1 WHERE trigger_id = $2")
        .bind(next)
        .bind(id.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl TriggerStore for PostgresStore {
    async fn create_trigger(&self, new: NewTrigger) -> StoreResult<Trigger> {
        new.config.check()?;
        let id = TriggerId::new();
        let now = picloud_core::now();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // Inserted only if the script is an endpoint of this very app; a script deleted
        // meanwhile fails the foreign key instead, also `NotFound`.
        let inserted = sqlx::query(
            "INSERT INTO triggers (id, app_id, script_id, kind, enabled, retry_max_attempts, \
             retry_base_delay_ms, retry_max_delay_ms, created_at, updated_at) \
             SELECT $1, app_id, id, $2, TRUE, $3, $4, $5, $6, $6 FROM scripts \
             WHERE id = $7 AND app_id = $8 AND kind = 'endpoint'",
        )
        .bind(id.as_str())
        .bind(new.config.kind().as_str())
        .bind(new.retry.map(|r| int(r.max_attempts)))
        .bind(new.retry.map(|r| big(r.base_delay_ms)))
        .bind(new.retry.map(|r| big(r.max_delay_ms)))
        .bind(now)
        .bind(new.script_id.as_str())
        .bind(new.app_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| map_insert_err(e, "that trigger already exists"))?;
        expect_row(inserted.rows_affected())?;
        match &new.config {
            TriggerConfig::Kv { collection, ops } => {
                sqlx::query(
                    "INSERT INTO kv_trigger_details (trigger_id, collection, on_set, on_delete) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(id.as_str())
                .bind(without_nul(collection).as_ref())
                .bind(ops.contains(&KvOp::Set))
                .bind(ops.contains(&KvOp::Delete))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            TriggerConfig::Docs { collection, ops } => {
                sqlx::query(
                    "INSERT INTO docs_trigger_details (trigger_id, collection, on_create, \
                     on_update, on_delete) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id.as_str())
                .bind(without_nul(collection).as_ref())
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
                     on_update, on_delete) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id.as_str())
                .bind(without_nul(collection).as_ref())
                .bind(ops.contains(&FilesOp::Create))
                .bind(ops.contains(&FilesOp::Update))
                .bind(ops.contains(&FilesOp::Delete))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            TriggerConfig::Pubsub { topic } => {
                sqlx::query(
                    "INSERT INTO pubsub_trigger_details (trigger_id, topic) VALUES ($1, $2)",
                )
                .bind(id.as_str())
                .bind(without_nul(topic).as_ref())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            TriggerConfig::Cron { schedule, timezone } => {
                let next = first_window(schedule, timezone, now)?;
                sqlx::query(
                    "INSERT INTO cron_trigger_details (trigger_id, schedule, timezone, \
                     next_fire_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(id.as_str())
                .bind(without_nul(schedule).as_ref())
                .bind(without_nul(timezone).as_ref())
                .bind(next)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            TriggerConfig::DeadLetter => {}
        }
        // Read back before committing: the stored form (ops normalised, values as
        // stored), and a trigger deleted right after commit cannot turn success into
        // `NotFound`.
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM triggers t {DETAILS} WHERE t.id = $1"
        ))
        .bind(id.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let created = trigger(&row)?;
        let changes = Change::trigger(created.config.kind());
        announce_in(&mut tx, changes.as_slice()).await?;
        tx.commit().await.map_err(db_err)?;
        self.changed(changes.as_slice());
        Ok(created)
    }

    async fn get_trigger(&self, app: &AppId, id: &TriggerId) -> StoreResult<Trigger> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM triggers t {DETAILS} WHERE t.id = $1 AND t.app_id = $2"
        ))
        .bind(id.as_str())
        .bind(app.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        trigger(&row)
    }

    async fn list_triggers(&self, app: &AppId, page: &PageRequest) -> StoreResult<Page<Trigger>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM triggers t {DETAILS} WHERE t.app_id = $1 AND t.id > $2 \
             ORDER BY t.id LIMIT $3"
        ))
        .bind(app.as_str())
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(page.fetch_limit())
        .fetch_all(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // The row lock orders this against a scheduler firing the trigger (which
        // key-share locks it first, then moves its cron details).
        let was: Option<bool> = sqlx::query_scalar(
            "SELECT enabled FROM triggers WHERE id = $1 AND app_id = $2 FOR NO KEY UPDATE",
        )
        .bind(id.as_str())
        .bind(app.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(was) = was else {
            return Err(StoreError::NotFound);
        };
        sqlx::query("UPDATE triggers SET enabled = $1, updated_at = $2 WHERE id = $3")
            .bind(enabled)
            .bind(now)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if enabled && !was {
            restart_cron(&mut tx, id, now).await?;
        }
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM triggers t {DETAILS} WHERE t.id = $1"
        ))
        .bind(id.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let updated = trigger(&row)?;
        let changes = Change::trigger(updated.config.kind());
        announce_in(&mut tx, changes.as_slice()).await?;
        tx.commit().await.map_err(db_err)?;
        self.changed(changes.as_slice());
        Ok(updated)
    }

    async fn delete_trigger(&self, app: &AppId, id: &TriggerId) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let kind: Option<String> =
            sqlx::query_scalar("DELETE FROM triggers WHERE id = $1 AND app_id = $2 RETURNING kind")
                .bind(id.as_str())
                .bind(app.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        let kind: TriggerKind = kind
            .ok_or(StoreError::NotFound)?
            .parse()
            .map_err(StoreError::other)?;
        let changes = Change::trigger(kind);
        announce_in(&mut tx, changes.as_slice()).await?;
        tx.commit().await.map_err(db_err)?;
        self.changed(changes.as_slice());
        Ok(())
    }
}
