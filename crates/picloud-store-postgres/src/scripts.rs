use async_trait::async_trait;
use picloud_core::{AppId, ScriptId};
use picloud_store::{
    circular_import, import_cycle, module_in_use, no_module, script_name_taken as name_taken,
    Change, ImportEdge, NewScript, Page, PageRequest, Script, ScriptPatch, ScriptStore, StoreError,
    StoreResult,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::changes::announce_in;
use crate::{col, col_enum, db_err, expect_row, map_err, map_insert_err, PostgresStore};

pub(crate) const COLUMNS: &str = "id, app_id, name, kind, source, created_at, updated_at";

pub(crate) fn script_with_prefix(row: &PgRow, p: &str) -> StoreResult<Script> {
    Ok(Script {
        id: ScriptId::from_trusted(col(row, &format!("{p}id"))?),
        app_id: AppId::from_trusted(col(row, &format!("{p}app_id"))?),
        name: col(row, &format!("{p}name"))?,
        kind: col_enum(row, &format!("{p}kind"))?,
        source: col(row, &format!("{p}source"))?,
        created_at: col(row, &format!("{p}created_at"))?,
        updated_at: col(row, &format!("{p}updated_at"))?,
    })
}

fn script(row: &PgRow) -> StoreResult<Script> {
    script_with_prefix(row, "")
}

/// Replaces the recorded imports of `script`. The imported modules are locked `FOR
/// SHARE`, so a concurrent delete or rename of one (which locks it `FOR UPDATE`) waits,
/// and then sees the new importer.
async fn write_imports(
    conn: &mut PgConnection,
    script: &ScriptId,
    app: &AppId,
    imports: &[String],
) -> StoreResult<()> {
    sqlx::query("DELETE FROM script_imports WHERE script_id = $1")
        .bind(script.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    if imports.is_empty() {
        return Ok(());
    }
    let found: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM scripts WHERE app_id = $1 AND name = ANY($2) AND kind = 'module' \
         ORDER BY name FOR SHARE",
    )
    .bind(app.as_str())
    .bind(imports)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    if let Some(missing) = imports.iter().find(|m| !found.contains(m)) {
        return Err(StoreError::Invalid(no_module(missing)));
    }
    sqlx::query(
        "INSERT INTO script_imports (script_id, app_id, module_name) \
         SELECT $1, $2, m FROM UNNEST($3::text[]) AS m ON CONFLICT DO NOTHING",
    )
    .bind(script.as_str())
    .bind(app.as_str())
    .bind(imports)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    let me = script_of(conn, script).await?;
    if me.kind == picloud_core::model::ScriptKind::Module {
        let edges = edges_in(conn, app).await?;
        if let Some(cycle) = import_cycle(&edges, &me.name) {
            return Err(StoreError::Invalid(circular_import(&cycle)));
        }
    }
    Ok(())
}

async fn script_of(conn: &mut PgConnection, id: &ScriptId) -> StoreResult<Script> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM scripts WHERE id = $1"))
        .bind(id.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
    script(&row)
}

/// Serialises writes of one app's scripts: the import checks inside them then see a
/// graph no concurrent save is changing, and their row locks cannot deadlock.
async fn lock_app_scripts(conn: &mut PgConnection, app: &AppId) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('picloud.scripts:' || $1))")
        .bind(app.as_str())
        .execute(&mut *conn)
        .await
        .map(drop)
        .map_err(db_err)
}

/// The app of a script, read without a lock (to take the app's lock first).
async fn app_of(conn: &mut PgConnection, id: &ScriptId) -> StoreResult<AppId> {
    let app: String = sqlx::query_scalar("SELECT app_id FROM scripts WHERE id = $1")
        .bind(id.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(AppId::from_trusted(app))
}

async fn edges_in(conn: &mut PgConnection, app: &AppId) -> StoreResult<Vec<ImportEdge>> {
    let rows = sqlx::query(
        "SELECT i.script_id, s.name, i.module_name FROM script_imports i \
         JOIN scripts s ON s.id = i.script_id WHERE i.app_id = $1 \
         ORDER BY s.name COLLATE \"C\", i.module_name COLLATE \"C\"",
    )
    .bind(app.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(ImportEdge {
                script_id: ScriptId::from_trusted(r.try_get(0).map_err(db_err)?),
                script_name: r.try_get(1).map_err(db_err)?,
                module: r.try_get(2).map_err(db_err)?,
            })
        })
        .collect()
}

/// Locks the script row and returns it.
async fn lock_script(conn: &mut PgConnection, id: &ScriptId) -> StoreResult<Script> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM scripts WHERE id = $1 FOR UPDATE"
    ))
    .bind(id.as_str())
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    script(&row)
}

/// `Conflict` when other scripts import the module `name` of `app`.
async fn refuse_if_imported(
    conn: &mut PgConnection,
    app: &AppId,
    name: &str,
    except: &ScriptId,
) -> StoreResult<()> {
    let importers: Vec<String> = sqlx::query_scalar(
        "SELECT s.name FROM script_imports i JOIN scripts s ON s.id = i.script_id \
         WHERE i.app_id = $1 AND i.module_name = $2 AND i.script_id <> $3 ORDER BY s.name COLLATE \"C\"",
    )
    .bind(app.as_str())
    .bind(name)
    .bind(except.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    if importers.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Conflict(module_in_use(name, &importers)))
    }
}

#[async_trait]
impl ScriptStore for PostgresStore {
    async fn create_script(&self, new: NewScript) -> StoreResult<Script> {
        let now = picloud_core::now();
        let id = ScriptId::new();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        lock_app_scripts(&mut tx, &new.app_id).await?;
        sqlx::query(
            "INSERT INTO scripts (id, app_id, name, kind, source, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(id.as_str())
        .bind(new.app_id.as_str())
        .bind(&new.name)
        .bind(new.kind.as_str())
        .bind(&new.source)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_insert_err(e, &name_taken(&new.name)))?;
        write_imports(&mut tx, &id, &new.app_id, &new.imports).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(Script {
            id,
            app_id: new.app_id,
            name: new.name,
            kind: new.kind,
            source: new.source,
            created_at: now,
            updated_at: now,
        })
    }

    async fn get_script(&self, id: &ScriptId) -> StoreResult<Script> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM scripts WHERE id = $1"))
            .bind(id.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        script(&row)
    }

    async fn list_scripts(&self, app: &AppId, page: &PageRequest) -> StoreResult<Page<Script>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM scripts WHERE app_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(app.as_str())
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(page.fetch_limit())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let scripts = rows.iter().map(script).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(scripts, page, |s| s.id.as_str()))
    }

    async fn update_script(&self, id: &ScriptId, patch: ScriptPatch) -> StoreResult<Script> {
        let conflict = patch.name.as_deref().map(name_taken).unwrap_or_default();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let app = app_of(&mut tx, id).await?;
        lock_app_scripts(&mut tx, &app).await?;
        let before = lock_script(&mut tx, id).await?;
        if patch.name.as_ref().is_some_and(|n| *n != before.name) {
            refuse_if_imported(&mut tx, &before.app_id, &before.name, id).await?;
        }
        let row = sqlx::query(&format!(
            "UPDATE scripts SET name = COALESCE($1, name), source = COALESCE($2, source), \
             updated_at = $3 WHERE id = $4 RETURNING {COLUMNS}"
        ))
        .bind(patch.name)
        .bind(patch.source)
        .bind(picloud_core::now())
        .bind(id.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| map_err(e, &conflict))?;
        if let Some(imports) = &patch.imports {
            write_imports(&mut tx, id, &before.app_id, imports).await?;
        }
        let after = script(&row)?;
        let changes = Change::script(&before.app_id, id);
        announce_in(&mut tx, &changes).await?;
        tx.commit().await.map_err(db_err)?;
        self.changed(&changes);
        Ok(after)
    }

    async fn delete_script(&self, id: &ScriptId) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let app = app_of(&mut tx, id).await?;
        lock_app_scripts(&mut tx, &app).await?;
        let before = lock_script(&mut tx, id).await?;
        refuse_if_imported(&mut tx, &before.app_id, &before.name, id).await?;
        let result = sqlx::query("DELETE FROM scripts WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        expect_row(result.rows_affected())?;
        let changes = Change::script(&before.app_id, id);
        announce_in(&mut tx, &changes).await?;
        tx.commit().await.map_err(db_err)?;
        self.changed(&changes);
        Ok(())
    }

    async fn get_module(&self, app: &AppId, name: &str) -> StoreResult<Script> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM scripts WHERE app_id = $1 AND name = $2 AND kind = 'module'"
        ))
        .bind(app.as_str())
        .bind(name)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        script(&row)
    }

    async fn import_edges(&self, app: &AppId) -> StoreResult<Vec<ImportEdge>> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        edges_in(&mut conn, app).await
    }
}
