use async_trait::async_trait;
use picloud_core::{ApiKeyId, AppId, AuditId, UserId};
use picloud_store::{AuditEntry, AuditStore, Page, PageRequest, StoreResult};
use sqlx::sqlite::SqliteRow;

use crate::{col, col_ts, db_err, expect_row, ts, SqliteStore};

fn entry(row: &SqliteRow) -> StoreResult<AuditEntry> {
    let user_id: Option<String> = col(row, "user_id")?;
    let key_id: Option<String> = col(row, "key_id")?;
    let app_id: Option<String> = col(row, "app_id")?;
    let status: i64 = col(row, "status")?;
    Ok(AuditEntry {
        id: AuditId::from_trusted(col(row, "id")?),
        at: col_ts(row, "at")?,
        user_id: user_id.map(UserId::from_trusted),
        key_id: key_id.map(ApiKeyId::from_trusted),
        action: col(row, "action")?,
        app_id: app_id.map(AppId::from_trusted),
        target: col(row, "target")?,
        ip: col(row, "ip")?,
        status: u16::try_from(status).unwrap_or(0),
    })
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, e: &AuditEntry) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_log (id, at, user_id, key_id, action, app_id, target, ip, status) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(e.id.as_str())
        .bind(ts(e.at))
        .bind(e.user_id.as_ref().map(UserId::as_str))
        .bind(e.key_id.as_ref().map(ApiKeyId::as_str))
        .bind(&e.action)
        .bind(e.app_id.as_ref().map(AppId::as_str))
        .bind(&e.target)
        .bind(&e.ip)
        .bind(i64::from(e.status))
        .execute(&self.writer)
        .await
        .map(|_| ())
        .map_err(db_err)
    }

    async fn finish_audit(
        &self,
        id: &AuditId,
        status: u16,
        app: Option<&AppId>,
    ) -> StoreResult<()> {
        let result = sqlx::query(
            "UPDATE audit_log SET status = ?, app_id = COALESCE(?, app_id) WHERE id = ?",
        )
        .bind(i64::from(status))
        .bind(app.map(AppId::as_str))
        .bind(id.as_str())
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        expect_row(result.rows_affected())
    }

    async fn delete_audit(&self, id: &AuditId) -> StoreResult<()> {
        sqlx::query("DELETE FROM audit_log WHERE id = ?")
            .bind(id.as_str())
            .execute(&self.writer)
            .await
            .map(drop)
            .map_err(db_err)
    }

    async fn list_audit(
        &self,
        app: Option<&AppId>,
        page: &PageRequest,
    ) -> StoreResult<Page<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_log WHERE (? IS NULL OR app_id = ?) AND (? IS NULL OR id < ?) \
             ORDER BY id DESC LIMIT ?",
        )
        .bind(app.map(AppId::as_str))
        .bind(app.map(AppId::as_str))
        .bind(page.after.as_deref())
        .bind(page.after.as_deref())
        .bind(page.fetch_limit())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        let entries = rows.iter().map(entry).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(entries, page, |e| e.id.as_str()))
    }
}
