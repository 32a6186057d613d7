use async_trait::async_trait;
use picloud_core::{AppId, ScriptId};
use picloud_store::{
    circular_import, import_cycle, module_in_use, no_module, script_name_taken as name_taken,
    Change, ImportEdge, NewScript, Page, PageRequest, Script, ScriptPatch, ScriptStore, StoreError,
    StoreResult,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::write::commit;
use crate::{col, col_enum, col_ts, db_err, expect_row, map_err, ts, SqliteStore};

pub(crate) const COLUMNS: &str = "id, app_id, name, kind, source, created_at, updated_at";

pub(crate) fn script_with_prefix(row: &SqliteRow, p: &str) -> StoreResult<Script> {
    Ok(Script {
        id: ScriptId::from_trusted(col(row, &format!("{p}id"))?),
        app_id: AppId::from_trusted(col(row, &format!("{p}app_id"))?),
        name: col(row, &format!("{p}name"))?,
        kind: col_enum(row, &format!("{p}kind"))?,
        source: col(row, &format!("{p}source"))?,
        created_at: col_ts(row, &format!("{p}created_at"))?,
        updated_at: col_ts(row, &format!("{p}updated_at"))?,
    })
}

fn script(row: &SqliteRow) -> StoreResult<Script> {
    script_with_prefix(row, "")
}

/// Replaces the recorded imports of `script`.
async fn write_imports(
    conn: &mut SqliteConnection,
    script: &ScriptId,
    app: &AppId,
    imports: &[String],
) -> StoreResult<()> {
    sqlx::query("DELETE FROM script_imports WHERE script_id = ?")
        .bind(script.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    for module in imports {
        // Checked inside the write transaction, so a module deleted a moment ago cannot
        // leave an edge to nothing.
        let exists =
            sqlx::query("SELECT 1 FROM scripts WHERE app_id = ? AND name = ? AND kind = 'module'")
                .bind(app.as_str())
                .bind(module)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_err)?;
        if exists.is_none() {
            return Err(StoreError::Invalid(no_module(module)));
        }
        sqlx::query(
            "INSERT OR IGNORE INTO script_imports (script_id, app_id, module_name) VALUES (?, ?, ?)",
        )
        .bind(script.as_str())
        .bind(app.as_str())
        .bind(module)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    }
    if !imports.is_empty() {
        refuse_cycles(conn, script, app).await?;
    }
    Ok(())
}

/// `Invalid` when the app's import graph, as this transaction sees it, has a cycle
/// through `script` (only a module can be part of one).
async fn refuse_cycles(
    conn: &mut SqliteConnection,
    script: &ScriptId,
    app: &AppId,
) -> StoreResult<()> {
    let me = script_in(conn, script).await?;
    if me.kind != picloud_core::model::ScriptKind::Module {
        return Ok(());
    }
    let edges = edges_in(conn, app).await?;
    match import_cycle(&edges, &me.name) {
        Some(cycle) => Err(StoreError::Invalid(circular_import(&cycle))),
        None => Ok(()),
    }
}

async fn edges_in(conn: &mut SqliteConnection, app: &AppId) -> StoreResult<Vec<ImportEdge>> {
    let rows = sqlx::query(
        "SELECT i.script_id, s.name, i.module_name FROM script_imports i \
         JOIN scripts s ON s.id = i.script_id WHERE i.app_id = ? \
         ORDER BY s.name, i.module_name",
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

/// `Conflict` when other scripts import the module `name` of `app`.
async fn refuse_if_imported(
    conn: &mut SqliteConnection,
    app: &AppId,
    name: &str,
    except: &ScriptId,
) -> StoreResult<()> {
    let importers: Vec<String> = sqlx::query_scalar(
        "SELECT s.name FROM script_imports i JOIN scripts s ON s.id = i.script_id \
         WHERE i.app_id = ? AND i.module_name = ? AND i.script_id <> ? ORDER BY s.name",
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

async fn script_in(conn: &mut SqliteConnection, id: &ScriptId) -> StoreResult<Script> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM scripts WHERE id = ?"))
        .bind(id.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
    script(&row)
}

#[async_trait]
impl ScriptStore for SqliteStore {
    async fn create_script(&self, new: NewScript) -> StoreResult<Script> {
        let now = picloud_core::now();
        let id = ScriptId::new();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO scripts (id, app_id, name, kind, source, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id.as_str())
        .bind(new.app_id.as_str())
        .bind(&new.name)
        .bind(new.kind.as_str())
        .bind(&new.source)
        .bind(ts(now))
        .bind(ts(now))
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            _ => map_err(e, &name_taken(&new.name)),
        })?;
        write_imports(&mut tx, &id, &new.app_id, &new.imports).await?;
        commit(tx).await?;
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
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM scripts WHERE id = ?"))
            .bind(id.as_str())
            .fetch_one(&self.reader)
            .await
            .map_err(db_err)?;
        script(&row)
    }

    async fn list_scripts(&self, app: &AppId, page: &PageRequest) -> StoreResult<Page<Script>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM scripts WHERE app_id = ? AND id > ? ORDER BY id LIMIT ?"
        ))
        .bind(app.as_str())
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(page.fetch_limit())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        let scripts = rows.iter().map(script).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(scripts, page, |s| s.id.as_str()))
    }

    async fn update_script(&self, id: &ScriptId, patch: ScriptPatch) -> StoreResult<Script> {
        let conflict = patch.name.as_deref().map(name_taken).unwrap_or_default();
        let mut tx = self.begin_write().await?;
        let before = script_in(&mut tx, id).await?;
        if patch.name.as_ref().is_some_and(|n| *n != before.name) {
            refuse_if_imported(&mut tx, &before.app_id, &before.name, id).await?;
        }
        sqlx::query(
            "UPDATE scripts SET name = COALESCE(?, name), source = COALESCE(?, source), \
             updated_at = ? WHERE id = ?",
        )
        .bind(patch.name)
        .bind(patch.source)
        .bind(ts(picloud_core::now()))
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err(e, &conflict))?;
        if let Some(imports) = &patch.imports {
            write_imports(&mut tx, id, &before.app_id, imports).await?;
        }
        let after = script_in(&mut tx, id).await?;
        commit(tx).await?;
        self.changed(&Change::script(&before.app_id, id));
        Ok(after)
    }

    async fn delete_script(&self, id: &ScriptId) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let before = script_in(&mut tx, id).await?;
        refuse_if_imported(&mut tx, &before.app_id, &before.name, id).await?;
        let result = sqlx::query("DELETE FROM scripts WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        expect_row(result.rows_affected())?;
        commit(tx).await?;
        self.changed(&Change::script(&before.app_id, id));
        Ok(())
    }

    async fn get_module(&self, app: &AppId, name: &str) -> StoreResult<Script> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM scripts WHERE app_id = ? AND name = ? AND kind = 'module'"
        ))
        .bind(app.as_str())
        .bind(name)
        .fetch_one(&self.reader)
        .await
        .map_err(db_err)?;
        script(&row)
    }

    async fn import_edges(&self, app: &AppId) -> StoreResult<Vec<ImportEdge>> {
        let mut conn = self.reader.acquire().await.map_err(db_err)?;
        edges_in(&mut conn, app).await
    }
}
