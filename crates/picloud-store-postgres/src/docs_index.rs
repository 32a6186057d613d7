//! Declared document indexes on PostgreSQL: the declaration commits first, then its
//! B-tree is built `CONCURRENTLY` (writes go on); removal drops the object first, then
//! the declaration, so an interruption never leaves an index nothing names. See
//! `docs.rs` for the expressions the index is built over.

use async_trait::async_trait;
use picloud_core::AppId;
use picloud_store::docs::FieldPath;
use picloud_store::docs_index::{
    app_index_prefix, checked_index_name, ddl_literal, index_name, too_many_indexes, DocsIndex,
    DocsIndexStore, IndexDeclared, INDEX_NAME_PREFIX, MAX_INDEXES_PER_COLLECTION,
};
use picloud_store::{StoreError, StoreResult};

use crate::docs::sort_exprs;
use crate::{col, db_err, map_insert_err, without_nul, PostgresStore};

#[async_trait]
impl DocsIndexStore for PostgresStore {
    async fn docs_indexes(&self, app: &AppId, collection: &str) -> StoreResult<Vec<DocsIndex>> {
        let rows = sqlx::query(
            "SELECT d.field, d.created_at, COALESCE(i.indisvalid, FALSE) AS ready \
             FROM docs_indexes d LEFT JOIN pg_index i ON i.indexrelid = to_regclass(d.name)::oid \
             WHERE d.app_id = $1 AND d.collection = $2 ORDER BY d.field",
        )
        .bind(app.as_str())
        .bind(without_nul(collection).as_ref())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                let field: String = col(row, "field")?;
                Ok(DocsIndex {
                    collection: collection.to_owned(),
                    field: FieldPath::parse(&field).map_err(StoreError::other)?,
                    created_at: col(row, "created_at")?,
                    ready: col(row, "ready")?,
                })
            })
            .collect()
    }

    async fn docs_create_index(
        &self,
        app: &AppId,
        collection: &str,
        field: &FieldPath,
    ) -> StoreResult<(DocsIndex, IndexDeclared)> {
        let name = index_name(app, collection, field);
        let ddl = index_ddl(&name, app, collection, field)?;
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // The app's row first (the crate's lock order): declarations racing for a
        // collection's last slot take turns.
        let app_exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM apps WHERE id = $1 FOR NO KEY UPDATE")
                .bind(app.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        if app_exists.is_none() {
            return Err(StoreError::NotFound);
        }
        let existing: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
            "SELECT created_at FROM docs_indexes \
             WHERE app_id = $1 AND collection = $2 AND field = $3",
        )
        .bind(app.as_str())
        .bind(collection)
        .bind(field.dotted())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let (created_at, declared) = match existing {
            Some(at) => (at, IndexDeclared::Existing),
            None => {
                let count: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM docs_indexes WHERE app_id = $1 AND collection = $2",
                )
                .bind(app.as_str())
                .bind(collection)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
                if usize::try_from(count).unwrap_or(usize::MAX) >= MAX_INDEXES_PER_COLLECTION {
                    return Err(too_many_indexes(collection));
                }
                let now = picloud_core::now();
                sqlx::query(
                    "INSERT INTO docs_indexes (app_id, collection, field, name, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(app.as_str())
                .bind(collection)
                .bind(field.dotted())
                .bind(&name)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| map_insert_err(e, "that index is declared already"))?;
                (now, IndexDeclared::Created)
            }
        };
        // The declaration commits first, so whatever stops the build half way, the
        // index is still known: listed as not ready, rebuilt by declaring it again,
        // dropped with its collection or app.
        tx.commit().await.map_err(db_err)?;
        if let Err(e) = self.build_index(&name, &ddl).await {
            if declared == IndexDeclared::Created {
                self.forget_failed_build(app, collection, field, &name)
                    .await;
            }
            return Err(e);
        }
        let ready = index_state(&self.pool, &name).await? == Some(true);
        let index = DocsIndex {
            collection: collection.to_owned(),
            field: field.clone(),
            created_at,
            ready,
        };
        Ok((index, declared))
    }

    async fn docs_drop_index(
        &self,
        app: &AppId,
        collection: &str,
        field: &FieldPath,
    ) -> StoreResult<()> {
        let name: Option<String> = sqlx::query_scalar(
            "SELECT name FROM docs_indexes WHERE app_id = $1 AND collection = $2 AND field = $3",
        )
        .bind(app.as_str())
        .bind(without_nul(collection).as_ref())
        .bind(field.dotted())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let name = name.ok_or(StoreError::NotFound)?;
        // The object first: stopped in between, the declaration stays (not ready) and
        // can be dropped again; the other order could leave an index nothing names.
        drop_index_objects(&self.pool, &[name]).await?;
        sqlx::query(
            "DELETE FROM docs_indexes WHERE app_id = $1 AND collection = $2 AND field = $3",
        )
        .bind(app.as_str())
        .bind(collection)
        .bind(field.dotted())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn docs_drop_collection(&self, app: &AppId, collection: &str) -> StoreResult<u64> {
        let collection = without_nul(collection);
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM docs_indexes WHERE app_id = $1 AND collection = $2",
        )
        .bind(app.as_str())
        .bind(collection.as_ref())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        drop_index_objects(&self.pool, &names).await?;
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("DELETE FROM docs_indexes WHERE app_id = $1 AND collection = $2")
            .bind(app.as_str())
            .bind(collection.as_ref())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let deleted = sqlx::query("DELETE FROM docs WHERE app_id = $1 AND collection = $2")
            .bind(app.as_str())
            .bind(collection.as_ref())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok(deleted)
    }

    async fn docs_index_objects(&self) -> StoreResult<Vec<String>> {
        index_objects_named(&self.pool, INDEX_NAME_PREFIX).await
    }
}

impl PostgresStore {
    /// Builds a declared index without blocking writes (`CONCURRENTLY`, outside any
    /// transaction). An invalid index of that name, left by a build that was cut
    /// short, is dropped and built again.
    async fn build_index(&self, name: &str, ddl: &str) -> StoreResult<()> {
        match index_state(&self.pool, name).await? {
            Some(true) => return Ok(()),
            Some(false) => drop_index_objects(&self.pool, &[name.to_owned()]).await?,
            None => {}
        }
        sqlx::raw_sql(ddl)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(db_err)
    }

    /// After a failed build of a new declaration: takes the declaration back, and
    /// whatever the build left, so that a failed request leaves nothing behind.
    async fn forget_failed_build(
        &self,
        app: &AppId,
        collection: &str,
        field: &FieldPath,
        name: &str,
    ) {
        let dropped = drop_index_objects(&self.pool, &[name.to_owned()]).await;
        let forgotten = sqlx::query(
            "DELETE FROM docs_indexes WHERE app_id = $1 AND collection = $2 AND field = $3",
        )
        .bind(app.as_str())
        .bind(collection)
        .bind(field.dotted())
        .execute(&self.pool)
        .await;
        if let Err(e) = dropped.and(forgotten.map(drop).map_err(db_err)) {
            tracing::warn!(error = %e, index = name, "a failed index build left its declaration");
        }
    }

    /// Before an app is deleted: drops the objects of its declared indexes.
    pub(crate) async fn drop_app_indexes(&self, app: &AppId) -> StoreResult<()> {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM docs_indexes WHERE app_id = $1")
                .bind(app.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        drop_index_objects(&self.pool, &names).await
    }

    /// After an app is deleted: drops any object of its indexes still there (one
    /// declared while the app was being deleted), found by the app's name prefix.
    pub(crate) async fn drop_app_index_leftovers(&self, app: &AppId) -> StoreResult<()> {
        let names = index_objects_named(&self.pool, &app_index_prefix(app)).await?;
        drop_index_objects(&self.pool, &names).await
    }
}

/// `CREATE INDEX CONCURRENTLY IF NOT EXISTS docs_ix_… ON docs ((rank) NULLS FIRST,
/// (number) NULLS FIRST, (string) NULLS FIRST, (boolean) NULLS FIRST, id) WHERE
/// app_id = '…' AND collection = '…'`: the sort terms of `find` in their order.
fn index_ddl(name: &str, app: &AppId, collection: &str, field: &FieldPath) -> StoreResult<String> {
    let columns: Vec<String> = sort_exprs(field)
        .into_iter()
        .map(|e| format!("({e}) NULLS FIRST"))
        .collect();
    Ok(format!(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON docs ({}, id) \
         WHERE app_id = {} AND collection = {}",
        checked_index_name(name)?,
        columns.join(", "),
        ddl_literal(app.as_str())?,
        ddl_literal(collection)?,
    ))
}

/// Whether the index exists, and if so whether it is valid (built to the end).
async fn index_state(pool: &sqlx::PgPool, name: &str) -> StoreResult<Option<bool>> {
    sqlx::query_scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)::oid")
        .bind(name)
        .fetch_optional(pool)
        .await
        .map_err(db_err)
}

async fn index_objects_named(pool: &sqlx::PgPool, prefix: &str) -> StoreResult<Vec<String>> {
    sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() \
         AND tablename = 'docs' AND starts_with(indexname, $1) ORDER BY indexname",
    )
    .bind(prefix)
    .fetch_all(pool)
    .await
    .map_err(db_err)
}

/// Drops index objects one by one, `CONCURRENTLY`: reads and writes of `docs` go on.
async fn drop_index_objects(pool: &sqlx::PgPool, names: &[String]) -> StoreResult<()> {
    for name in names {
        sqlx::raw_sql(&format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}",
            checked_index_name(name)?
        ))
        .execute(pool)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}
