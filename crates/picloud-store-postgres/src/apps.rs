use async_trait::async_trait;
use picloud_core::AppId;
use picloud_store::{
    App, AppPatch, AppStore, Change, NewApp, Page, PageRequest, StoreError, StoreResult,
};
use sqlx::postgres::PgRow;

use crate::changes::announce_in;
use crate::{col, db_err, expect_row, map_err, PostgresStore};

const COLUMNS: &str = "id, slug, name, created_at, updated_at";

fn app(row: &PgRow) -> StoreResult<App> {
    Ok(App {
        id: AppId::from_trusted(col(row, "id")?),
        slug: col(row, "slug")?,
        name: col(row, "name")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
    })
}

#[async_trait]
impl AppStore for PostgresStore {
    async fn create_app(&self, new: NewApp) -> StoreResult<App> {
        let now = picloud_core::now();
        let id = AppId::new();
        sqlx::query(
            "INSERT INTO apps (id, slug, name, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(id.as_str())
        .bind(&new.slug)
        .bind(&new.name)
        .bind(now)
        .execute(&self.pool)
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
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM apps WHERE id = $1"))
            .bind(id.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        app(&row)
    }

    async fn get_app_by_slug(&self, slug: &str) -> StoreResult<App> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM apps WHERE slug = $1"))
            .bind(slug)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        app(&row)
    }

    async fn list_apps(&self, page: &PageRequest) -> StoreResult<Page<App>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM apps WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(page.fetch_limit())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let apps = rows.iter().map(app).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(apps, page, |a| a.id.as_str()))
    }

    async fn update_app(&self, id: &AppId, patch: AppPatch) -> StoreResult<App> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let row = sqlx::query(&format!(
            "UPDATE apps SET name = COALESCE($1, name), updated_at = $2 WHERE id = $3 \
             RETURNING {COLUMNS}"
        ))
        .bind(patch.name)
        .bind(picloud_core::now())
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let updated = row.as_ref().map_or(Err(StoreError::NotFound), app)?;
        let changes = [Change::App(id.clone())];
        announce_in(&mut tx, &changes).await?;
        tx.commit().await.map_err(db_err)?;
        self.changed(&changes);
        Ok(updated)
    }

    async fn delete_app(&self, id: &AppId) -> StoreResult<()> {
        // Declared indexes are objects of the shared `docs` table: dropped
        // concurrently, outside the delete's transaction (a plain DROP would lock
        // every app's documents until the delete commits).
        self.drop_app_indexes(id).await?;
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let result = sqlx::query("DELETE FROM apps WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        expect_row(result.rows_affected())?;
        let changes = [Change::AppDeleted(id.clone())];
        announce_in(&mut tx, &changes).await?;
        tx.commit().await.map_err(db_err)?;
        self.changed(&changes);
        self.drop_app_index_leftovers(id).await
    }
}
