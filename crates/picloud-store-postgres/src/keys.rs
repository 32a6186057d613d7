use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::access::Scope;
use picloud_core::{ApiKeyId, AppId, UserId};
use picloud_store::{
    ApiKey, ApiKeyStore, NewApiKey, Page, PageRequest, StoreError, StoreResult, User,
};
use sqlx::postgres::PgRow;

use crate::users::{user_with_prefix, JOINED_USER};
use crate::{col, db_err, expect_row, map_insert_err, PostgresStore};

const COLUMNS: &str =
    "k.id, k.user_id, k.name, k.prefix, k.scopes, k.app_id, k.created_at, k.last_used_at, k.expires_at";

fn api_key(row: &PgRow) -> StoreResult<ApiKey> {
    let scopes: Vec<String> = col(row, "scopes")?;
    let app_id: Option<String> = col(row, "app_id")?;
    Ok(ApiKey {
        id: ApiKeyId::from_trusted(col(row, "id")?),
        user_id: UserId::from_trusted(col(row, "user_id")?),
        name: col(row, "name")?,
        prefix: col(row, "prefix")?,
        scopes: scopes
            .iter()
            .map(|s| s.parse::<Scope>().map_err(StoreError::other))
            .collect::<StoreResult<_>>()?,
        app_id: app_id.map(AppId::from_trusted),
        created_at: col(row, "created_at")?,
        last_used_at: col(row, "last_used_at")?,
        expires_at: col(row, "expires_at")?,
    })
}

#[async_trait]
impl ApiKeyStore for PostgresStore {
    async fn create_api_key(&self, new: NewApiKey) -> StoreResult<ApiKey> {
        let id = ApiKeyId::new();
        let now = picloud_core::now();
        let scopes: Vec<&str> = new.scopes.iter().map(|s| s.as_str()).collect();
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, key_hash, prefix, scopes, app_id, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id.as_str())
        .bind(new.user_id.as_str())
        .bind(&new.name)
        .bind(&new.key_hash)
        .bind(&new.prefix)
        .bind(&scopes)
        .bind(new.app_id.as_ref().map(AppId::as_str))
        .bind(now)
        .bind(new.expires_at)
        .execute(&self.pool)
        .await
        .map_err(|e| map_insert_err(e, "key exists"))?;
        Ok(ApiKey {
            id,
            user_id: new.user_id,
            name: new.name,
            prefix: new.prefix,
            scopes: new.scopes,
            app_id: new.app_id,
            created_at: now,
            last_used_at: None,
            expires_at: new.expires_at,
        })
    }

    async fn api_key_by_hash(
        &self,
        key_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<(ApiKey, User)> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, {JOINED_USER} \
             FROM api_keys k JOIN users u ON u.id = k.user_id \
             WHERE k.key_hash = $1 AND (k.expires_at IS NULL OR k.expires_at > $2)"
        ))
        .bind(key_hash)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok((api_key(&row)?, user_with_prefix(&row, "u_")?))
    }

    async fn get_api_key(&self, id: &ApiKeyId) -> StoreResult<ApiKey> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys k WHERE k.id = $1"))
            .bind(id.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        api_key(&row)
    }

    async fn list_api_keys(
        &self,
        user: Option<&UserId>,
        page: &PageRequest,
    ) -> StoreResult<Page<ApiKey>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_keys k WHERE ($1::text IS NULL OR k.user_id = $1) \
             AND ($2::text IS NULL OR k.id < $2) ORDER BY k.id DESC LIMIT $3"
        ))
        .bind(user.map(UserId::as_str))
        .bind(page.after.as_deref())
        .bind(page.fetch_limit())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let keys = rows.iter().map(api_key).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(keys, page, |k| k.id.as_str()))
    }

    async fn touch_api_key(&self, id: &ApiKeyId, used_at: DateTime<Utc>) -> StoreResult<()> {
        let result = sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(used_at)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        expect_row(result.rows_affected())
    }

    async fn delete_api_key(&self, id: &ApiKeyId) -> StoreResult<()> {
        let result = sqlx::query("DELETE FROM api_keys WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        expect_row(result.rows_affected())
    }
}
