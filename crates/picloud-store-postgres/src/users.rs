use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::{SessionId, UserId};
use picloud_store::identity;
use picloud_store::{
    KeyRevocation, NewSession, NewUser, Page, PageRequest, Session, SessionStore, StoreError,
    StoreResult, User, UserPatch, UserStore,
};
use sqlx::postgres::{PgConnection, PgRow};

use crate::{col, db_err, expect_row, map_err, PostgresStore};

const COLUMNS: &str =
    "id, email, password_hash, is_admin, disabled, session_epoch, created_at, updated_at";

/// The user columns of a join with `users u`, read back by `user_with_prefix(row, "u_")`.
pub(crate) const JOINED_USER: &str = "u.id AS u_id, u.email AS u_email, \
     u.password_hash AS u_password_hash, u.is_admin AS u_is_admin, \
     u.disabled AS u_disabled, u.session_epoch AS u_session_epoch, \
     u.created_at AS u_created_at, u.updated_at AS u_updated_at";

pub(crate) fn user_with_prefix(row: &PgRow, p: &str) -> StoreResult<User> {
    Ok(User {
        id: UserId::from_trusted(col(row, &format!("{p}id"))?),
        email: col(row, &format!("{p}email"))?,
        password_hash: col(row, &format!("{p}password_hash"))?,
        is_admin: col(row, &format!("{p}is_admin"))?,
        disabled: col(row, &format!("{p}disabled"))?,
        session_epoch: col(row, &format!("{p}session_epoch"))?,
        created_at: col(row, &format!("{p}created_at"))?,
        updated_at: col(row, &format!("{p}updated_at"))?,
    })
}

fn user(row: &PgRow) -> StoreResult<User> {
    user_with_prefix(row, "")
}

fn email_taken(email: &str) -> String {
    format!("a user with email {email:?} exists")
}

/// Whether an insert may add to existing users or must be the very first.
#[derive(Clone, Copy)]
enum Admission {
    Any,
    OnlyIfFirst,
}

impl PostgresStore {
    async fn insert_user(&self, new: NewUser, admission: Admission) -> StoreResult<User> {
        let now = picloud_core::now();
        let id = UserId::new();
        let email = new.email.to_lowercase();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let guard = match admission {
            Admission::Any => "",
            Admission::OnlyIfFirst => {
                // Under READ COMMITTED two "NOT EXISTS" checks could both pass; this
                // mode conflicts with itself and with plain inserts, so whoever comes
                // second sees the first user.
                sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                "WHERE NOT EXISTS (SELECT 1 FROM users)"
            }
        };
        let result = sqlx::query(&format!(
            "INSERT INTO users (id, email, password_hash, is_admin, disabled, created_at, \
             updated_at) SELECT $1, $2, $3, $4, FALSE, $5, $5 {guard}"
        ))
        .bind(id.as_str())
        .bind(&email)
        .bind(&new.password_hash)
        .bind(new.is_admin)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err(e, &email_taken(&email)))?;
        if result.rows_affected() == 0 {
            return Err(StoreError::Conflict("a user already exists".into()));
        }
        tx.commit().await.map_err(db_err)?;
        Ok(User {
            id,
            email,
            password_hash: new.password_hash,
            is_admin: new.is_admin,
            disabled: false,
            session_epoch: 0,
            created_at: now,
            updated_at: now,
        })
    }
}

#[async_trait]
impl UserStore for PostgresStore {
    async fn count_users(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn create_user(&self, new: NewUser) -> StoreResult<User> {
        self.insert_user(new, Admission::Any).await
    }

    async fn create_first_user(&self, new: NewUser) -> StoreResult<User> {
        self.insert_user(new, Admission::OnlyIfFirst).await
    }

    async fn get_user(&self, id: &UserId) -> StoreResult<User> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
            .bind(id.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        user(&row)
    }

    async fn get_user_by_email(&self, email: &str) -> StoreResult<User> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE email = $1"))
            .bind(email.to_lowercase())
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        user(&row)
    }

    async fn list_users(&self, page: &PageRequest) -> StoreResult<Page<User>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(page.fetch_limit())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let users = rows.iter().map(user).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(users, page, |u| u.id.as_str()))
    }

    async fn update_user(&self, id: &UserId, patch: UserPatch) -> StoreResult<User> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let current = lock_user(&mut tx, id).await?;
        identity::check_precondition(&current, &patch)?;
        if identity::removes_enabled_admin(&current, &patch) {
            keep_another_admin(&mut tx, id).await?;
        }
        let ends_sessions = identity::ends_sessions(&patch);
        let row = sqlx::query(&format!(
            "UPDATE users SET password_hash = COALESCE($1, password_hash), \
             is_admin = COALESCE($2, is_admin), disabled = COALESCE($3, disabled), \
             session_epoch = session_epoch + $4, updated_at = $5 WHERE id = $6 \
             RETURNING {COLUMNS}"
        ))
        .bind(&patch.password_hash)
        .bind(patch.is_admin)
        .bind(patch.disabled)
        .bind(i64::from(ends_sessions))
        .bind(picloud_core::now())
        .bind(id.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let updated = user(&row)?;
        if ends_sessions {
            // The epoch already ends them; deleting the rows only tidies up.
            let keep = identity::kept_session(&patch);
            sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id IS DISTINCT FROM $2::text")
                .bind(id.as_str())
                .bind(keep.map(SessionId::as_str))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            if let Some(keep) = keep {
                sqlx::query(
                    "UPDATE sessions SET session_epoch = $1 WHERE id = $2 AND user_id = $3",
                )
                .bind(updated.session_epoch)
                .bind(keep.as_str())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
        }
        match patch.api_keys {
            KeyRevocation::Keep => {}
            KeyRevocation::RevokeAll => {
                sqlx::query("DELETE FROM api_keys WHERE user_id = $1")
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
        }
        tx.commit().await.map_err(db_err)?;
        Ok(updated)
    }

    async fn delete_user(&self, id: &UserId) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let current = lock_user(&mut tx, id).await?;
        if identity::is_enabled_admin(&current) {
            keep_another_admin(&mut tx, id).await?;
        }
        let result = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        expect_row(result.rows_affected())?;
        tx.commit().await.map_err(db_err)
    }
}

/// The transaction lock every change to a user takes ("picladmn"). Row locks alone
/// would not do: two requests demoting two *different* admins lock different rows,
/// and each would still count the other as an admin.
const USERS_LOCK: i64 = 0x7069_636c_6164_6d6e;

/// Takes [`USERS_LOCK`] and the user's row, and reads it (`NotFound` if missing).
/// Counts made after this see every change committed before it.
async fn lock_user(tx: &mut PgConnection, id: &UserId) -> StoreResult<User> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(USERS_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM users WHERE id = $1 FOR UPDATE"
    ))
    .bind(id.as_str())
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?
    .ok_or(StoreError::NotFound)?;
    user(&row)
}

/// `Conflict` unless an enabled instance admin other than `id` exists.
async fn keep_another_admin(tx: &mut PgConnection, id: &UserId) -> StoreResult<()> {
    let others: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE is_admin AND NOT disabled AND id <> $1",
    )
    .bind(id.as_str())
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    if others == 0 {
        return Err(StoreError::Conflict(identity::LAST_ADMIN.into()));
    }
    Ok(())
}

const SESSION_COLUMNS: &str = "s.id, s.user_id, s.created_at, s.last_used_at, s.expires_at";

fn session(row: &PgRow) -> StoreResult<Session> {
    Ok(Session {
        id: SessionId::from_trusted(col(row, "id")?),
        user_id: UserId::from_trusted(col(row, "user_id")?),
        created_at: col(row, "created_at")?,
        last_used_at: col(row, "last_used_at")?,
        expires_at: col(row, "expires_at")?,
    })
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create_session(&self, new: NewSession) -> StoreResult<Session> {
        let now = picloud_core::now();
        let id = SessionId::new();
        sqlx::query(
            "INSERT INTO sessions (id, user_id, token_hash, created_at, last_used_at, \
             expires_at, session_epoch) VALUES ($1, $2, $3, $4, $4, $5, $6)",
        )
        .bind(id.as_str())
        .bind(new.user_id.as_str())
        .bind(&new.token_hash)
        .bind(now)
        .bind(new.expires_at)
        .bind(new.session_epoch)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(Session {
            id,
            user_id: new.user_id,
            created_at: now,
            last_used_at: now,
            expires_at: new.expires_at,
        })
    }

    async fn session_by_token_hash(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<(Session, User)> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS}, {JOINED_USER} \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 \
             AND s.session_epoch = u.session_epoch"
        ))
        .bind(token_hash)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok((session(&row)?, user_with_prefix(&row, "u_")?))
    }

    async fn touch_session(
        &self,
        id: &SessionId,
        used_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET last_used_at = $1, expires_at = $2 WHERE id = $3")
            .bind(used_at)
            .bind(expires_at)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)
            .and_then(|r| expect_row(r.rows_affected()))
    }

    async fn delete_session(&self, id: &SessionId) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)
            .and_then(|r| expect_row(r.rows_affected()))
    }

    async fn delete_user_sessions(&self, user: &UserId) -> StoreResult<u64> {
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user.as_str())
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(db_err)
    }

    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(db_err)
    }
}
