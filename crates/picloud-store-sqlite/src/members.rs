use async_trait::async_trait;
use picloud_core::access::Role;
use picloud_core::{AppId, UserId};
use picloud_store::{MemberStore, Membership, Page, PageRequest, StoreError, StoreResult};
use sqlx::sqlite::SqliteRow;

use crate::{col, col_enum, col_ts, db_err, expect_row, ts, SqliteStore};

fn membership(row: &SqliteRow) -> StoreResult<Membership> {
    Ok(Membership {
        app_id: AppId::from_trusted(col(row, "app_id")?),
        user_id: UserId::from_trusted(col(row, "user_id")?),
        role: col_enum(row, "role")?,
        created_at: col_ts(row, "created_at")?,
    })
}

#[async_trait]
impl MemberStore for SqliteStore {
    async fn set_member(&self, app: &AppId, user: &UserId, role: Role) -> StoreResult<Membership> {
        sqlx::query(
            "INSERT INTO app_members (app_id, user_id, role, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (app_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(app.as_str())
        .bind(user.as_str())
        .bind(role.as_str())
        .bind(ts(picloud_core::now()))
        .execute(&self.writer)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            _ => db_err(e),
        })?;
        let row = sqlx::query("SELECT * FROM app_members WHERE app_id = ? AND user_id = ?")
            .bind(app.as_str())
            .bind(user.as_str())
            .fetch_one(&self.writer)
            .await
            .map_err(db_err)?;
        membership(&row)
    }

    async fn remove_member(&self, app: &AppId, user: &UserId) -> StoreResult<()> {
        let result = sqlx::query("DELETE FROM app_members WHERE app_id = ? AND user_id = ?")
            .bind(app.as_str())
            .bind(user.as_str())
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        expect_row(result.rows_affected())
    }

    async fn list_members(&self, app: &AppId, page: &PageRequest) -> StoreResult<Page<Membership>> {
        let rows = sqlx::query(
            "SELECT * FROM app_members WHERE app_id = ? AND user_id > ? ORDER BY user_id LIMIT ?",
        )
        .bind(app.as_str())
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(page.fetch_limit())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        let members = rows
            .iter()
            .map(membership)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(members, page, |m| m.user_id.as_str()))
    }

    async fn memberships_of(&self, user: &UserId) -> StoreResult<Vec<Membership>> {
        let rows = sqlx::query("SELECT * FROM app_members WHERE user_id = ? ORDER BY app_id")
            .bind(user.as_str())
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(membership).collect()
    }

    async fn member_role(&self, app: &AppId, user: &UserId) -> StoreResult<Option<Role>> {
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM app_members WHERE app_id = ? AND user_id = ?")
                .bind(app.as_str())
                .bind(user.as_str())
                .fetch_optional(&self.reader)
                .await
                .map_err(db_err)?;
        role.map(|r| r.parse().map_err(StoreError::other))
            .transpose()
    }
}
