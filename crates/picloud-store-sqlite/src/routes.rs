use async_trait::async_trait;
use picloud_core::{AppId, RouteId, ScriptId};
use picloud_store::{
    Change, NewRoute, Page, PageRequest, Route, RouteStore, RouteTarget, StoreError, StoreResult,
};
use sqlx::sqlite::SqliteRow;

use crate::scripts::script_with_prefix;
use crate::write::commit;
use crate::{col, col_enum, col_ts, db_err, map_err, ts, SqliteStore};

const COLUMNS: &str = "id, app_id, script_id, method, path, dispatch_mode, auth, created_at";

fn route(row: &SqliteRow) -> StoreResult<Route> {
    Ok(Route {
        id: RouteId::from_trusted(col(row, "id")?),
        app_id: AppId::from_trusted(col(row, "app_id")?),
        script_id: ScriptId::from_trusted(col(row, "script_id")?),
        method: col_enum(row, "method")?,
        path: col(row, "path")?,
        dispatch_mode: col_enum(row, "dispatch_mode")?,
        auth: col_enum(row, "auth")?,
        created_at: col_ts(row, "created_at")?,
    })
}

#[async_trait]
impl RouteStore for SqliteStore {
    async fn create_route(&self, new: NewRoute) -> StoreResult<Route> {
        let mut tx = self.begin_write().await?;
        let clash: Option<(String, String)> = sqlx::query_as(
            "SELECT method, path FROM routes WHERE app_id = ? AND path_key = ? \
             AND (method = ? OR method = 'ANY' OR ? = 'ANY') LIMIT 1",
        )
        .bind(new.app_id.as_str())
        .bind(&new.path_key)
        .bind(new.method.as_str())
        .bind(new.method.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        if let Some((method, path)) = clash {
            return Err(StoreError::Conflict(format!(
                "clashes with the existing route {method} {path}"
            )));
        }
        let now = picloud_core::now();
        let id = RouteId::new();
        sqlx::query(
            "INSERT INTO routes (id, app_id, script_id, method, path, path_key, dispatch_mode, \
             auth, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id.as_str())
        .bind(new.app_id.as_str())
        .bind(new.script_id.as_str())
        .bind(new.method.as_str())
        .bind(&new.path)
        .bind(&new.path_key)
        .bind(new.dispatch_mode.as_str())
        .bind(new.auth.as_str())
        .bind(ts(now))
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            _ => map_err(e, "clashes with an existing route"),
        })?;
        commit(tx).await?;
        self.changed(&[Change::Routes(new.app_id.clone())]);
        Ok(Route {
            id,
            app_id: new.app_id,
            script_id: new.script_id,
            method: new.method,
            path: new.path,
            dispatch_mode: new.dispatch_mode,
            auth: new.auth,
            created_at: now,
        })
    }

    async fn get_route(&self, id: &RouteId) -> StoreResult<Route> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM routes WHERE id = ?"))
            .bind(id.as_str())
            .fetch_one(&self.reader)
            .await
            .map_err(db_err)?;
        route(&row)
    }

    async fn list_routes(&self, app: &AppId, page: &PageRequest) -> StoreResult<Page<Route>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM routes WHERE app_id = ? AND id > ? ORDER BY id LIMIT ?"
        ))
        .bind(app.as_str())
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(page.fetch_limit())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        let routes = rows.iter().map(route).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(routes, page, |r| r.id.as_str()))
    }

    async fn route_targets(&self, app: &AppId) -> StoreResult<Vec<RouteTarget>> {
        let rows = sqlx::query(
            "SELECT r.id, r.app_id, r.script_id, r.method, r.path, r.dispatch_mode, r.auth, \
             r.created_at, s.id AS s_id, s.app_id AS s_app_id, s.name AS s_name, \
             s.kind AS s_kind, s.source AS s_source, s.created_at AS s_created_at, \
             s.updated_at AS s_updated_at \
             FROM routes r JOIN scripts s ON s.id = r.script_id WHERE r.app_id = ? ORDER BY r.id",
        )
        .bind(app.as_str())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                Ok(RouteTarget {
                    route: route(row)?,
                    script: script_with_prefix(row, "s_")?,
                })
            })
            .collect()
    }

    async fn delete_route(&self, id: &RouteId) -> StoreResult<()> {
        let app: Option<String> =
            sqlx::query_scalar("DELETE FROM routes WHERE id = ? RETURNING app_id")
                .bind(id.as_str())
                .fetch_optional(&self.writer)
                .await
                .map_err(db_err)?;
        let app = app.ok_or(StoreError::NotFound)?;
        self.changed(&[Change::Routes(AppId::from_trusted(app))]);
        Ok(())
    }
}
