use async_trait::async_trait;
use picloud_core::AppId;
use picloud_store::{App, AppPatch, AppStore, Change, NewApp, Page, PageRequest, StoreResult};
use sqlx::sqlite::SqliteRow;

use crate::{col, col_ts, db_err, expect_row, map_err, ts, SqliteStore};

const COLUMNS: &str = "id, slug, name, created_at, updated_at";

fn app(row: &SqliteRow) -> StoreResult<App> {
    Ok(App {
        id: AppId::from_trusted(col(row, "id")?),
        slug: col(row, "slug")?,
        name: col(row, "name")?,
        created_at: col_ts(row, "created_at")?,
        updated_at: col_ts(row, "updated_at")?,
    })
}

#[async_trait]
impl AppStore for SqliteStore {
    async fn create_app(&self, new: NewApp) -> StoreResult<App> {
        let now = picloud_core::now();
        let id = AppId::new();
        sqlx::query(
            "INSERT INTO apps (id, slug, name, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id.as_str())
        .bind(&new.slug)
        .bind(&new.name)
        .bind(ts(now))
        .bind(ts(now))
        .execute(&self.writer)
        .await
        .map_err(|e| map_err(e, &format!("slug {:?} is taken", new.slug)))?;
        Ok(App {
            id,
            slug: new.slug,
            name: new.name,
            created_at: now,
            updated_at: now,
        })
    }

    async fn get_app(&self, id: &AppId) -> StoreResult<App> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM apps WHERE id = ?"))
            .bind(id.as_str())
            .fetch_one(&self.reader)
            .await
            .map_err(db_err)?;
        app(&row)
    }

    async fn get_app_by_slug(&self, slug: &str) -> StoreResult<App> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM apps WHERE slug = ?"))
            .bind(slug)
            .fetch_one(&self.reader)
            .await
            .map_err(db_err)?;
        app(&row)
    }

    async fn list_apps(&self, page: &PageRequest) -> StoreResult<Page<App>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM apps WHERE id > ? ORDER BY id LIMIT ?"
        ))
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(page.fetch_limit())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        let apps = rows.iter().map(app).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(apps, page, |a| a.id.as_str()))
    }

    async fn update_app(&self, id: &AppId, patch: AppPatch) -> StoreResult<App> {
        let result =
            sqlx::query("UPDATE apps SET name = COALESCE(?, name), updated_at = ? WHERE id = ?")
                .bind(patch.name)
                .bind(ts(picloud_core::now()))
                .bind(id.as_str())
                .execute(&self.writer)
                .await
                .map_err(db_err)?;
        expect_row(result.rows_affected())?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM apps WHERE id = ?"))
            .bind(id.as_str())
            .fetch_one(&self.writer)
            .await
            .map_err(db_err)?;
        self.changed(&[Change::App(id.clone())]);
        app(&row)
    }

    async fn delete_app(&self, id: &AppId) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        // The cascade takes the declarations; their indexes are objects of the shared
        // `docs` table and go first, in the same transaction.
        let indexes: Vec<String> =
            sqlx::query_scalar("SELECT name FROM docs_indexes WHERE app_id = ?")
                .bind(id.as_str())
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
        crate::docs_index::drop_index_objects(&mut tx, &indexes).await?;
        let result = sqlx::query("DELETE FROM apps WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        expect_row(result.rows_affected())?;
        crate::write::commit(tx).await?;
        self.changed(&[Change::AppDeleted(id.clone())]);
        Ok(())
    }
}
