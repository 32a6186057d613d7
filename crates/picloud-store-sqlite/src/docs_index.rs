//! Declared document indexes on SQLite: a declaration and its partial expression index
//! commit in one write transaction (SQLite's DDL is transactional), and so do their
//! removal with a collection or an app. See `docs.rs` for how `find` uses them.

use async_trait::async_trait;
use picloud_core::AppId;
use picloud_store::docs::FieldPath;
use picloud_store::docs_index::{
    checked_index_name, ddl_literal, index_name, too_many_indexes, DocsIndex, DocsIndexStore,
    IndexDeclared, INDEX_NAME_PREFIX, MAX_INDEXES_PER_COLLECTION,
};
use picloud_store::{Condition, StoreError, StoreResult};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnection, SqliteRow};

use crate::docs::{extract_expr, type_expr};
use crate::{col, col_ts, db_err, ts, SqliteStore};

#[async_trait]
impl DocsIndexStore for SqliteStore {
    async fn docs_indexes(&self, app: &AppId, collection: &str) -> StoreResult<Vec<DocsIndex>> {
        let rows = sqlx::query(
            "SELECT field, created_at, EXISTS (SELECT 1 FROM sqlite_schema s \
                 WHERE s.type = 'index' AND s.name = d.name) AS ready \
             FROM docs_indexes d WHERE app_id = ? AND collection = ? ORDER BY field",
        )
        .bind(app.as_str())
        .bind(collection)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                Ok(DocsIndex {
                    collection: collection.to_owned(),
                    field: stored_field(row)?,
                    created_at: col_ts(row, "created_at")?,
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
        // One transaction on the one writer: the declaration and the index commit
        // together, and the build holds the write lock (readers go on).
        let mut tx = self.begin_write().await?;
        let existing = sqlx::query(
            "SELECT created_at FROM docs_indexes WHERE app_id = ? AND collection = ? AND field = ?",
        )
        .bind(app.as_str())
        .bind(collection)
        .bind(field.dotted())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let (created_at, declared) = match existing {
            Some(row) => (col_ts(&row, "created_at")?, IndexDeclared::Existing),
            None => {
                let count: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM docs_indexes WHERE app_id = ? AND collection = ?",
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
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(app.as_str())
                .bind(collection)
                .bind(field.dotted())
                .bind(&name)
                .bind(ts(now))
                .execute(&mut *tx)
                .await
                .map_err(|e| match &e {
                    sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                        StoreError::NotFound
                    }
                    _ => db_err(e),
                })?;
                (now, IndexDeclared::Created)
            }
        };
        // `IF NOT EXISTS`: declaring again rebuilds nothing, and restores a missing one.
        sqlx::query(&ddl)
            .persistent(false)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        crate::write::commit(tx).await?;
        let index = DocsIndex {
            collection: collection.to_owned(),
            field: field.clone(),
            created_at,
            ready: true,
        };
        Ok((index, declared))
    }

    async fn docs_drop_index(
        &self,
        app: &AppId,
        collection: &str,
        field: &FieldPath,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let names: Vec<String> = sqlx::query_scalar(
            "DELETE FROM docs_indexes WHERE app_id = ? AND collection = ? AND field = ? \
             RETURNING name",
        )
        .bind(app.as_str())
        .bind(collection)
        .bind(field.dotted())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        if names.is_empty() {
            return Err(StoreError::NotFound);
        }
        drop_index_objects(&mut tx, &names).await?;
        crate::write::commit(tx).await
    }

    async fn docs_drop_collection(&self, app: &AppId, collection: &str) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let names: Vec<String> = sqlx::query_scalar(
            "DELETE FROM docs_indexes WHERE app_id = ? AND collection = ? RETURNING name",
        )
        .bind(app.as_str())
        .bind(collection)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        // First, so the delete maintains no index of the collection's own.
        drop_index_objects(&mut tx, &names).await?;
        let deleted = sqlx::query("DELETE FROM docs WHERE app_id = ? AND collection = ?")
            .bind(app.as_str())
            .bind(collection)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        crate::write::commit(tx).await?;
        Ok(deleted)
    }

    async fn docs_index_objects(&self) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'docs' \
             AND substr(name, 1, ?) = ? ORDER BY name",
        )
        .bind(i64::try_from(INDEX_NAME_PREFIX.len()).unwrap_or(i64::MAX))
        .bind(INDEX_NAME_PREFIX)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)
    }
}

/// `CREATE INDEX IF NOT EXISTS docs_ix_… ON docs (json_extract(data, '$."a"'),
/// json_type(data, '$."a"'), id) WHERE` [`collection_literals`]. The type is in the key
/// so that an equality's type test is answered from the index too; `id` last lets
/// the matches of one value come out in `find`'s tie-break order, so a page stops
/// early without sorting.
fn index_ddl(name: &str, app: &AppId, collection: &str, field: &FieldPath) -> StoreResult<String> {
    Ok(format!(
        "CREATE INDEX IF NOT EXISTS {} ON docs ({}, {}, id) WHERE {}",
        checked_index_name(name)?,
        extract_expr(field),
        type_expr(field),
        collection_literals(app, collection)?,
    ))
}

/// `app_id = 'app_…' AND collection = '…'`: a declared index's `WHERE`, and the
/// same text in a query that names the index.
pub(crate) fn collection_literals(app: &AppId, collection: &str) -> StoreResult<String> {
    Ok(format!(
        "app_id = {} AND collection = {}",
        ddl_literal(app.as_str())?,
        ddl_literal(collection)?
    ))
}

/// Drops the database objects of declarations being removed, in the caller's
/// transaction (SQLite's DDL is transactional: they go exactly when the rows do).
pub(crate) async fn drop_index_objects(
    conn: &mut SqliteConnection,
    names: &[String],
) -> StoreResult<()> {
    for name in names {
        sqlx::query(&format!(
            "DROP INDEX IF EXISTS {}",
            checked_index_name(name)?
        ))
        .persistent(false)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

fn stored_field(row: &SqliteRow) -> StoreResult<FieldPath> {
    let field: String = col(row, "field")?;
    FieldPath::parse(&field).map_err(StoreError::other)
}

/// The name of the declared index `find` should search for `filter`, if one serves
/// it: the first top-level equality on a declared field, else the first range. Read
/// in the caller's transaction, so the index exists in the schema it sees.
pub(crate) async fn declared_index_for(
    conn: &mut SqliteConnection,
    app: &AppId,
    collection: &str,
    filter: &Condition,
) -> StoreResult<Option<String>> {
    let mut candidates = Vec::new();
    indexable_fields(filter, &mut candidates);
    if candidates.is_empty() {
        return Ok(None);
    }
    candidates.sort_by_key(|(_, served)| *served);
    let declared: Vec<String> =
        sqlx::query_scalar("SELECT field FROM docs_indexes WHERE app_id = ? AND collection = ?")
            .bind(app.as_str())
            .bind(collection)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err)?;
    Ok(candidates
        .into_iter()
        .find(|(path, _)| declared.contains(&path.dotted()))
        .map(|(path, _)| index_name(app, collection, path)))
}

/// How well a declared index serves a term: an exact value before a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Served {
    Equality,
    Range,
}

/// The fields of the terms every match must meet (the filter's top-level `AND`) that
/// an index on them serves: equality with a string, number or boolean, and ranges.
fn indexable_fields<'a>(c: &'a Condition, out: &mut Vec<(&'a FieldPath, Served)>) {
    match c {
        Condition::And(parts) => {
            for part in parts {
                indexable_fields(part, out);
            }
        }
        Condition::Eq(path, Value::String(_) | Value::Number(_) | Value::Bool(_)) => {
            out.push((path, Served::Equality));
        }
        Condition::Cmp(path, _, _) => out.push((path, Served::Range)),
        Condition::All
        | Condition::Or(_)
        | Condition::Not(_)
        | Condition::Eq(_, _)
        | Condition::Exists(_, _) => {}
    }
}
