use async_trait::async_trait;
use picloud_core::access::Role;
use picloud_core::{AppId, UserId};
use picloud_store::{MemberStore, Membership, Page, PageRequest, StoreError, StoreResult};
use sqlx::postgres::PgRow;

use crate::{col, col_enum, db_err, expect_row, map_insert_err, PostgresStore};

fn membership(row: &PgRow) -> StoreResult<Membership> {
    Ok(Membership {
        app_id: AppId::from_trusted(col(row, "app_id")?),
        user_id: UserId::from_trusted(col(row, "user_id")?),
        role: col_enum(row, "role")?,
        created_at: col(row, "created_at")?,
    })
}

#[async_trait]
impl MemberStore for PostgresStore {
    async fn set_member(&self, app: &AppId, user: &UserId, role: Role) -> StoreResult<Membership> {
        let row = sqlx::query(
            "INSERT INTO app_members (app_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (app_id, user_id) DO UPDATE SET role = excluded.role RETURNING *",
        )
        .bind(app.as_str())
        .bind(user.as_str())
        .bind(role.as_str())
        .bind(picloud_core::now())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| map_insert_err(e, "already a member"))?;
        membership(&row)
    }

    async fn remove_member(&self, app: &AppId, user: &UserId) -> StoreResult<()> {
        let result = sqlx::query("DELETE FROM app_members WHERE app_id = $1 AND user_id = $2")
            .bind(app.as_str())
            .bind(user.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        expect_row(result.rows_affected())
    }

    async fn list_members(&self, app: &AppId, page: &PageRequest) -> StoreResult<Page<Membership>> {
        let rows = sqlx::query(
            "SELECT * FROM app_members WHERE app_id = $1 AND user_id > $2 ORDER BY user_id LIMIT $3",
        )
        .bind(app.as_str())
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(page.fetch_limit())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let members = rows
            .iter()
            .map(membership)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(members, page, |m| m.user_id.as_str()))
    }

    async fn memberships_of(&self, user: &UserId) -> StoreResult<Vec<Membership>> {
        let rows = sqlx::query("SELECT * FROM app_members WHERE user_id = $1 ORDER BY app_id")
            .bind(user.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(membership).collect()
    }

    async fn member_role(&self, app: &AppId, user: &UserId) -> StoreResult<Option<Role>> {
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM app_members WHERE app_id = $1 AND user_id = $2")
                .bind(app.as_str())
                .bind(user.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        role.map(|r| r.parse().map_err(StoreError::other))
            .transpose()
    }
}
