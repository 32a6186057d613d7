use async_trait::async_trait;
use picloud_core::{AppId, ScriptId};
use picloud_store::{
    NewScript, Page, PageRequest, Script, ScriptPatch, ScriptStore, StoreError, StoreResult,
};
use sqlx::sqlite::SqliteRow;

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

fn name_taken(name: &str) -> String {
    format!("the app already has a script named {name:?}")
}

#[async_trait]
impl ScriptStore for SqliteStore {
    async fn create_script(&self, new: NewScript) -> StoreResult<Script> {
        let now = picloud_core::now();
        let id = ScriptId::new();
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
        .execute(&self.writer)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            _ => map_err(e, &name_taken(&new.name)),
        })?;
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
        let result = sqlx::query(
            "UPDATE scripts SET name = COALESCE(?, name), source = COALESCE(?, source), \
             updated_at = ? WHERE id = ?",
        )
        .bind(patch.name)
        .bind(patch.source)
        .bind(ts(picloud_core::now()))
        .bind(id.as_str())
        .execute(&self.writer)
        .await
        .map_err(|e| map_err(e, &conflict))?;
        expect_row(result.rows_affected())?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM scripts WHERE id = ?"))
            .bind(id.as_str())
            .fetch_one(&self.writer)
            .await
            .map_err(db_err)?;
        script(&row)
    }

    async fn delete_script(&self, id: &ScriptId) -> StoreResult<()> {
        let result = sqlx::query("DELETE FROM scripts WHERE id = ?")
            .bind(id.as_str())
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        expect_row(result.rows_affected())
    }
}
