use async_trait::async_trait;
use picloud_core::{AppId, ScriptId};
use picloud_store::{
    NewScript, Page, PageRequest, Script, ScriptPatch, ScriptStore, StoreError, StoreResult,
};
use sqlx::postgres::PgRow;

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

fn name_taken(name: &str) -> String {
    format!("the app already has a script named {name:?}")
}

#[async_trait]
impl ScriptStore for PostgresStore {
    async fn create_script(&self, new: NewScript) -> StoreResult<Script> {
        let now = picloud_core::now();
        let id = ScriptId::new();
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
        .execute(&self.pool)
        .await
        .map_err(|e| map_insert_err(e, &name_taken(&new.name)))?;
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
        let row = sqlx::query(&format!(
            "UPDATE scripts SET name = COALESCE($1, name), source = COALESCE($2, source), \
             updated_at = $3 WHERE id = $4 RETURNING {COLUMNS}"
        ))
        .bind(patch.name)
        .bind(patch.source)
        .bind(picloud_core::now())
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| map_err(e, &conflict))?;
        row.as_ref().map_or(Err(StoreError::NotFound), script)
    }

    async fn delete_script(&self, id: &ScriptId) -> StoreResult<()> {
        let result = sqlx::query("DELETE FROM scripts WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        expect_row(result.rows_affected())
    }
}
