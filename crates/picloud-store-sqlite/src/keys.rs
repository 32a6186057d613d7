use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::access::Scope;
use picloud_core::{ApiKeyId, AppId, UserId};
use picloud_store::{
    ApiKey, ApiKeyStore, NewApiKey, Page, PageRequest, StoreError, StoreResult, User,
};
use sqlx::sqlite::SqliteRow;

use crate::users::{user_with_prefix, JOINED_USER};
use crate::{col, col_opt_ts, col_ts, db_err, expect_row, ts, SqliteStore};

const COLUMNS: &str =
    "k.id, k.user_id, k.name, k.prefix, k.scopes, k.app_id, k.created_at, k.last_used_at, k.expires_at";

fn api_key(row: &SqliteRow) -> StoreResult<ApiKey> {
    let scopes: String = col(row, "scopes")?;
    let app_id: Option<String> = col(row, "app_id")?;
    Ok(ApiKey {
        id: ApiKeyId::from_trusted(col(row, "id")?),
        user_id: UserId::from_trusted(col(row, "user_id")?),
        name: col(row, "name")?,
        prefix: col(row, "prefix")?,
        scopes: scopes
            .split_whitespace()
            .map(|s| s.parse::<Scope>().map_err(StoreError::other))
            .collect::<StoreResult<_>>()?,
        app_id: app_id.map(AppId::from_trusted),
        created_at: col_ts(row, "created_at")?,
        last_used_at: col_opt_ts(row, "last_used_at")?,
        expires_at: col_opt_ts(row, "expires_at")?,
    })
}

fn scope_list(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn create_api_key(&self, new: NewApiKey) -> StoreResult<ApiKey> {
        let id = ApiKeyId::new();
        let now = picloud_core::now();
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, key_hash, prefix, scopes, app_id, \
             created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id.as_str())
        .bind(new.user_id.as_str())
        .bind(&new.name)
        .bind(&new.key_hash)
        .bind(&new.prefix)
        .bind(scope_list(&new.scopes))
        .bind(new.app_id.as_ref().map(AppId::as_str))
        .bind(ts(now))
        .bind(new.expires_at.map(ts))
        .execute(&self.writer)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            _ => db_err(e),
        })?;
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
             WHERE k.key_hash = ? AND (k.expires_at IS NULL OR k.expires_at > ?)"
        ))
        .bind(key_hash)
        .bind(ts(now))
        .fetch_one(&self.reader)
        .await
        .map_err(db_err)?;
        Ok((api_key(&row)?, user_with_prefix(&row, "u_")?))
    }

    async fn get_api_key(&self, id: &ApiKeyId) -> StoreResult<ApiKey> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys k WHERE k.id = ?"))
            .bind(id.as_str())
            .fetch_one(&self.reader)
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
            "SELECT {COLUMNS} FROM api_keys k WHERE (? IS NULL OR k.user_id = ?) \
             AND (? IS NULL OR k.id < ?) ORDER BY k.id DESC LIMIT ?"
        ))
        .bind(user.map(UserId::as_str))
        .bind(user.map(UserId::as_str))
        .bind(page.after.as_deref())
        .bind(page.after.as_deref())
        .bind(page.fetch_limit())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        let keys = rows.iter().map(api_key).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(keys, page, |k| k.id.as_str()))
    }

    async fn touch_api_key(&self, id: &ApiKeyId, used_at: DateTime<Utc>) -> StoreResult<()> {
        let result = sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
            .bind(ts(used_at))
            .bind(id.as_str())
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        expect_row(result.rows_affected())
    }

    async fn delete_api_key(&self, id: &ApiKeyId) -> StoreResult<()> {
        let result = sqlx::query("DELETE FROM api_keys WHERE id = ?")
            .bind(id.as_str())
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        expect_row(result.rows_affected())
    }
}
