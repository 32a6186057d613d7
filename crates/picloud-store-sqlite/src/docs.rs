//! Documents on SQLite: filters compile to `json_type` / `json_extract` predicates, so
//! a query never loads a collection into memory; writes lock the database (one writer)
//! from read to write, so `prev_data` and patches see no interleaving.
//!
//! Declared indexes are partial expression indexes, `(json_extract(data, '$."a"'),
//! json_type(data, '$."a"'), id) WHERE app_id = '…' AND collection = '…'`. An index
//! serves a term only when the query holds the very same expression as a plain term,
//! so paths are written into the SQL as literals (segments are validated to
//! `[A-Za-z0-9_-]`, which cannot close a literal) and equality outside a `NOT` is not
//! wrapped in `IFNULL`. Without statistics SQLite's planner guesses that any equality
//! leaves about ten rows, so it took the collection's own index as often as the
//! declared one: a `find` whose filter has a declared field at its top level names the
//! index (`INDEXED BY`), with the app and collection written as literals so that the
//! index's `WHERE` is provably met.

use std::collections::HashMap;

use async_trait::async_trait;
use futures_util::TryStreamExt as _;
use picloud_core::model::{DocsOp, ExecutionSource};
use picloud_core::{AppId, DocId};
use picloud_store::docs::{find_too_large, CmpOp, FieldPath, Scalar, SortKey};
use picloud_store::docs_index::checked_index_name;
use picloud_store::page::Gathered;
use picloud_store::{
    docs_event_for, Condition, Doc, DocsStore, EventCause, Page, PageRequest, Patch, Query,
    StoreError, StoreResult, WriteOutcome,
};
use rusqlite::OptionalExtension as _;
use serde_json::{Number, Value};
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqliteRow};
use sqlx::Arguments;

use crate::batch::WriteOp;
use crate::direct::direct_err;
use crate::docs_index::{collection_literals, declared_index_for};
use crate::outbox::emit;
use crate::triggers::docs_targets;
use crate::{col, col_ts, db_err, parse_ts, stored_len, ts, SqliteStore};

const COLUMNS: &str = "id, collection, json(data) AS data, created_at, updated_at";

/// `'$."a"."b"'`: the path as a SQL literal of SQLite's JSON path syntax. A
/// `FieldPath` holds only letters, digits, `_` and `-`, so nothing in it can end the
/// quotes.
fn json_path(path: &FieldPath) -> String {
    let mut out = String::from("'$");
    for s in path.segments() {
        out.push_str(&format!(".\"{s}\""));
    }
    out.push('\'');
    out
}

/// `json_extract(data, '$."a"')`: the value a declared index is keyed on, and the one
/// equality and comparisons test, character for character.
pub(crate) fn extract_expr(path: &FieldPath) -> String {
    format!("json_extract(data, {})", json_path(path))
}

/// `json_type(data, '$."a"')`: the type test that follows a value test (`true`
/// extracts as 1), also kept in a declared index.
pub(crate) fn type_expr(path: &FieldPath) -> String {
    format!("json_type(data, {})", json_path(path))
}

fn cmp_sql(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Gt => ">",
        CmpOp::Gte => ">=",
        CmpOp::Lt => "<",
        CmpOp::Lte => "<=",
    }
}

fn doc(row: &SqliteRow) -> StoreResult<Doc> {
    let data: String = col(row, "data")?;
    Ok(Doc {
        id: DocId::from_trusted(col(row, "id")?),
        collection: col(row, "collection")?,
        data: serde_json::from_str(&data).map_err(StoreError::other)?,
        created_at: col_ts(row, "created_at")?,
        updated_at: col_ts(row, "updated_at")?,
    })
}

/// SQL text with its arguments, built together so they cannot drift apart.
#[derive(Default)]
struct Sql {
    text: String,
    args: SqliteArguments<'static>,
}

impl Sql {
    fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    fn text_arg(&mut self, value: String) {
        self.text.push('?');
        let _ = self.args.add(value);
    }

    fn number_arg(&mut self, n: &Number) {
        self.text.push('?');
        let _ = match n.as_i64() {
            Some(i) => self.args.add(i),
            None => self.args.add(n.as_f64().unwrap_or(f64::NAN)),
        };
    }

    fn json_type(&mut self, path: &FieldPath) {
        self.push(&type_expr(path));
    }

    fn json_extract(&mut self, path: &FieldPath) {
        self.push(&extract_expr(path));
    }
}

/// Where a condition stands. In a `WHERE` (through `AND` and `OR` only) a NULL drops
/// the row just as false does, so leaves can be plain terms the planner matches to
/// an index; under a `NOT` every leaf must be true or false (`NOT NULL` would drop
/// rows `$ne` must keep).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Polarity {
    Where,
    UnderNot,
}

/// Compiles a condition (see [`Polarity`]).
fn condition(c: &Condition, polarity: Polarity, sql: &mut Sql) {
    match c {
        Condition::All => sql.push("1"),
        Condition::And(parts) | Condition::Or(parts) if parts.is_empty() => {
            sql.push(if matches!(c, Condition::And(_)) {
                "1"
            } else {
                "0"
            })
        }
        Condition::And(parts) | Condition::Or(parts) => {
            let joiner = if matches!(c, Condition::And(_)) {
                " AND "
            } else {
                " OR "
            };
            sql.push("(");
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    sql.push(joiner);
                }
                condition(part, polarity, sql);
            }
            sql.push(")");
        }
        Condition::Not(inner) => {
            sql.push("NOT (");
            condition(inner, Polarity::UnderNot, sql);
            sql.push(")");
        }
        Condition::Exists(path, present) => {
            sql.push("(");
            sql.json_type(path);
            sql.push(if *present {
                " IS NOT NULL)"
            } else {
                " IS NULL)"
            });
        }
        Condition::Eq(path, value) => equals(path, value, polarity, sql),
        Condition::Cmp(path, op, operand) => match operand {
            Scalar::Number(n) => typed(path, cmp_sql(*op), Operand::Number(n), polarity, sql),
            Scalar::Text(t) => typed(path, cmp_sql(*op), Operand::Text(t), polarity, sql),
        },
    }
}

enum Operand<'a> {
    Number(&'a Number),
    Text(&'a str),
    Bool(bool),
}

/// `(json_extract(data, p) <op> ? AND json_type(data, p) IN (…))`, inside `IFNULL(…,
/// 0)` under a `NOT`: a typed comparison. The value test comes first so that most
/// rows fail it after a single lookup (SQLite's AND stops at the first false), and is
/// what a declared index serves; the type test then rejects what SQLite's loose
/// comparison let through (`true` extracts as 1, text sorts above numbers).
fn typed(path: &FieldPath, op: &str, operand: Operand<'_>, polarity: Polarity, sql: &mut Sql) {
    sql.push(match polarity {
        Polarity::Where => "(",
        Polarity::UnderNot => "IFNULL(",
    });
    sql.json_extract(path);
    sql.push(&format!(" {op} "));
    let types = match operand {
        Operand::Number(n) => {
            sql.number_arg(n);
            "('integer', 'real')"
        }
        Operand::Text(t) => {
            sql.text_arg(t.to_owned());
            "('text')"
        }
        Operand::Bool(true) => {
            sql.push("1");
            "('true')"
        }
        Operand::Bool(false) => {
            sql.push("0");
            "('false')"
        }
    };
    sql.push(" AND ");
    sql.json_type(path);
    sql.push(&format!(" IN {types}"));
    sql.push(match polarity {
        Polarity::Where => ")",
        Polarity::UnderNot => ", 0)",
    });
}

fn equals(path: &FieldPath, value: &Value, polarity: Polarity, sql: &mut Sql) {
    match value {
        // `json_extract` is NULL exactly for a JSON null and a missing field.
        Value::Null => {
            sql.push("(");
            sql.json_extract(path);
            sql.push(" IS NULL)");
        }
        Value::Bool(b) => typed(path, "=", Operand::Bool(*b), polarity, sql),
        Value::Number(n) => typed(path, "=", Operand::Number(n), polarity, sql),
        Value::String(s) => typed(path, "=", Operand::Text(s), polarity, sql),
        // Stored data and filter values are both serialised with sorted keys, so
        // their minified texts are equal exactly when the values are. The CASE keeps
        // `json()` away from scalars: SQLite does not promise to stop at a false AND,
        // and `json('apple')` (a text value, extracted bare) fails the whole query.
        Value::Array(_) | Value::Object(_) => {
            sql.push("IFNULL(CASE WHEN ");
            sql.json_type(path);
            sql.push(" IN ('object', 'array') THEN json(");
            sql.json_extract(path);
            sql.push(") = json(");
            sql.text_arg(value.to_string());
            sql.push(") END, 0)");
        }
    }
}

/// One `$sort` key as four SQL sort terms: type rank (missing and null, numbers,
/// strings, booleans, objects and arrays), then the value within its type.
fn sort_terms(key: &SortKey, sql: &mut Sql) {
    let dir = if key.descending { " DESC" } else { " ASC" };
    sql.push("CASE ");
    sql.json_type(&key.path);
    sql.push(
        " WHEN 'integer' THEN 1 WHEN 'real' THEN 1 WHEN 'text' THEN 2 WHEN 'false' THEN 3 \
              WHEN 'true' THEN 3 WHEN 'object' THEN 4 WHEN 'array' THEN 4 ELSE 0 END",
    );
    sql.push(dir);
    sql.push(", CASE WHEN ");
    sql.json_type(&key.path);
    sql.push(" IN ('integer', 'real') THEN ");
    sql.json_extract(&key.path);
    sql.push(" END");
    sql.push(dir);
    sql.push(", CASE WHEN ");
    sql.json_type(&key.path);
    sql.push(" = 'text' THEN ");
    sql.json_extract(&key.path);
    sql.push(" END");
    sql.push(dir);
    sql.push(", CASE ");
    sql.json_type(&key.path);
    sql.push(" WHEN 'true' THEN 1 WHEN 'false' THEN 0 END");
    sql.push(dir);
    sql.push(", ");
}

/// `find`'s first statement: the ids of the page, sorted. Reads the collection's
/// declarations (in the caller's read transaction, so they match the schema it sees)
/// when the filter could use one.
async fn find_ids_sql(
    conn: &mut SqliteConnection,
    app: &AppId,
    collection: &str,
    query: &Query,
) -> StoreResult<Sql> {
    let index = declared_index_for(conn, app, collection, &query.filter).await?;
    let mut sql = Sql::default();
    match index {
        Some(name) => {
            sql.push(&format!(
                "SELECT id FROM docs INDEXED BY {} WHERE {}",
                checked_index_name(&name)?,
                collection_literals(app, collection)?
            ));
        }
        None => {
            sql.push("SELECT id FROM docs WHERE app_id = ");
            sql.text_arg(app.to_string());
            sql.push(" AND collection = ");
            sql.text_arg(collection.to_owned());
        }
    }
    sql.push(" AND ");
    condition(&query.filter, Polarity::Where, &mut sql);
    sql.push(" ORDER BY ");
    for key in &query.sort {
        sort_terms(key, &mut sql);
    }
    sql.push("id ASC LIMIT ");
    sql.number_arg(&Number::from(query.limit));
    sql.push(" OFFSET ");
    sql.number_arg(&Number::from(query.skip));
    Ok(sql)
}

/// Queues, in the write's transaction, one delivery of `payload` per enabled docs
/// trigger of `collection` that listens to `op`.
async fn queue_events(
    conn: &mut SqliteConnection,
    app: &AppId,
    collection: &str,
    op: DocsOp,
    payload: serde_json::Value,
    cause: &EventCause,
    outcome: &mut WriteOutcome,
) -> StoreResult<()> {
    let targets = docs_targets(conn, app, collection, op, cause.default_retry).await?;
    *outcome = emit(conn, app, targets, ExecutionSource::Docs, payload, cause).await?;
    Ok(())
}

async fn locked_data(
    conn: &mut SqliteConnection,
    app: &AppId,
    collection: &str,
    id: &DocId,
) -> StoreResult<Option<Value>> {
    let data: Option<String> = sqlx::query_scalar(
        "SELECT json(data) FROM docs WHERE id = ? AND app_id = ? AND collection = ?",
    )
    .bind(id.as_str())
    .bind(app.as_str())
    .bind(collection)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    data.map(|d| serde_json::from_str(&d).map_err(StoreError::other))
        .transpose()
}

impl SqliteStore {
    /// Writes `data` over an existing document and queues its `update` events; the
    /// transaction (begun IMMEDIATE: the write lock) is the caller's.
    async fn rewrite(
        conn: &mut SqliteConnection,
        app: &AppId,
        collection: &str,
        id: &DocId,
        data: &Value,
        prev: &Value,
        cause: &EventCause,
    ) -> StoreResult<(Doc, WriteOutcome)> {
        let now = picloud_core::now();
        sqlx::query("UPDATE docs SET data = jsonb(?), updated_at = ? WHERE id = ?")
            .bind(data.to_string())
            .bind(ts(now))
            .bind(id.as_str())
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM docs WHERE id = ?"))
            .bind(id.as_str())
            .fetch_one(&mut *conn)
            .await
            .map_err(db_err)?;
        let saved = doc(&row)?;
        let payload = docs_event_for(DocsOp::Update, &saved, Some(prev));
        let mut outcome = WriteOutcome::default();
        queue_events(
            conn,
            app,
            collection,
            DocsOp::Update,
            payload,
            cause,
            &mut outcome,
        )
        .await?;
        outcome.prev = Some(prev.clone());
        Ok((saved, outcome))
    }
}

#[async_trait]
impl DocsStore for SqliteStore {
    async fn docs_create(
        &self,
        app: &AppId,
        collection: &str,
        data: &Value,
        cause: &EventCause,
    ) -> StoreResult<(Doc, WriteOutcome)> {
        let now = picloud_core::now();
        let doc = Doc {
            id: DocId::new(),
            collection: collection.to_owned(),
            data: data.clone(),
            created_at: now,
            updated_at: now,
        };
        let op = WriteOp::DocCreate {
            doc,
            app: app.clone(),
            text: data.to_string(),
            cause: *cause,
        };
        // The document travels to the writer and back, not copied again.
        let outcome = self.batch.write_doc(op).await?;
        Ok(outcome)
    }

    async fn docs_get(
        &self,
        app: &AppId,
        collection: &str,
        id: &DocId,
    ) -> StoreResult<Option<Doc>> {
        let row = self.direct.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM docs WHERE id = ?1 AND app_id = ?2 AND collection = ?3"
            ))
            .and_then(|mut s| {
                s.query_row(
                    rusqlite::params![id.as_str(), app.as_str(), collection],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                        ))
                    },
                )
                .optional()
            })
            .map_err(direct_err)
        })?;
        let Some((id, collection, data, created_at, updated_at)) = row else {
            return Ok(None);
        };
        Ok(Some(Doc {
            id: DocId::from_trusted(id),
            collection,
            data: serde_json::from_str(&data).map_err(StoreError::other)?,
            created_at: parse_ts(&created_at)?,
            updated_at: parse_ts(&updated_at)?,
        }))
    }

    async fn docs_update(
        &self,
        app: &AppId,
        collection: &str,
        id: &DocId,
        data: &Value,
        cause: &EventCause,
    ) -> StoreResult<(Doc, WriteOutcome)> {
        let mut tx = self.begin_write().await?;
        let prev = locked_data(&mut tx, app, collection, id)
            .await?
            .ok_or(StoreError::NotFound)?;
        let out = Self::rewrite(&mut tx, app, collection, id, data, &prev, cause).await?;
        self.commit_queued(tx, !out.1.events.is_empty()).await?;
        Ok(out)
    }

    async fn docs_patch(
        &self,
        app: &AppId,
        collection: &str,
        id: &DocId,
        patch: &Patch,
        max_bytes: usize,
        cause: &EventCause,
    ) -> StoreResult<(Doc, WriteOutcome)> {
        let mut tx = self.begin_write().await?;
        let prev = locked_data(&mut tx, app, collection, id)
            .await?
            .ok_or(StoreError::NotFound)?;
        let mut data = prev.clone();
        patch
            .apply(&mut data)
            .map_err(|e| StoreError::Invalid(e.0))?;
        let size = data.to_string().len();
        if size > max_bytes {
            return Err(StoreError::Invalid(format!(
                "the patched document is {size} bytes; the limit is {max_bytes}"
            )));
        }
        let out = Self::rewrite(&mut tx, app, collection, id, &data, &prev, cause).await?;
        self.commit_queued(tx, !out.1.events.is_empty()).await?;
        Ok(out)
    }

    async fn docs_delete(
        &self,
        app: &AppId,
        collection: &str,
        id: &DocId,
        cause: &EventCause,
    ) -> StoreResult<WriteOutcome> {
        let mut tx = self.begin_write().await?;
        let prev = locked_data(&mut tx, app, collection, id).await?;
        let mut outcome = WriteOutcome::default();
        if let Some(prev) = &prev {
            sqlx::query("DELETE FROM docs WHERE id = ?")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            let payload =
                picloud_store::docs::docs_event(DocsOp::Delete, collection, id, None, Some(prev));
            queue_events(
                &mut tx,
                app,
                collection,
                DocsOp::Delete,
                payload,
                cause,
                &mut outcome,
            )
            .await?;
        }
        self.commit_queued(tx, !outcome.events.is_empty()).await?;
        outcome.prev = prev;
        Ok(outcome)
    }

    async fn docs_find(
        &self,
        app: &AppId,
        collection: &str,
        query: &Query,
    ) -> StoreResult<Vec<Doc>> {
        // Sort and page over ids alone, then read the documents picked: SQLite's
        // sorter holds whole rows (in memory, temp_store=memory), so sorting the
        // documents themselves held a collection's bytes to return one of them (150
        // documents of 1 MB sorted for `$limit: 1` kept 170 MB). One read transaction,
        // so both statements see the same snapshot.
        let mut tx = self.reader.begin().await.map_err(db_err)?;
        let sql = find_ids_sql(&mut tx, app, collection, query).await?;
        let ids: Vec<String> = sqlx::query_scalar_with(&sql.text, sql.args)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pick = Sql::default();
        pick.push(&format!("SELECT {COLUMNS} FROM docs WHERE app_id = "));
        pick.text_arg(app.to_string());
        pick.push(" AND collection = ");
        pick.text_arg(collection.to_owned());
        pick.push(" AND id IN (");
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                pick.push(", ");
            }
            pick.text_arg(id.clone());
        }
        pick.push(")");
        let rows = sqlx::query_with(&pick.text, pick.args)
            .fetch(&mut *tx)
            .map_err(db_err);
        let found = Gathered::read(rows, |row| stored_len(row, "data"), doc).await?;
        tx.rollback().await.map_err(db_err)?;
        if found.cut {
            return Err(find_too_large());
        }
        let position: HashMap<&str, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let mut docs = found.items;
        docs.sort_by_key(|d| position.get(d.id.as_str()).copied());
        Ok(docs)
    }

    async fn docs_list(
        &self,
        app: &AppId,
        collection: &str,
        filter: Option<&Condition>,
        page: &PageRequest,
    ) -> StoreResult<Page<Doc>> {
        let mut sql = Sql::default();
        sql.push(&format!("SELECT {COLUMNS} FROM docs WHERE app_id = "));
        sql.text_arg(app.to_string());
        sql.push(" AND collection = ");
        sql.text_arg(collection.to_owned());
        sql.push(" AND id > ");
        sql.text_arg(page.after.clone().unwrap_or_default());
        sql.push(" AND ");
        condition(filter.unwrap_or(&Condition::All), Polarity::Where, &mut sql);
        sql.push(" ORDER BY id LIMIT ");
        sql.number_arg(&Number::from(page.fetch_limit()));
        let rows = sqlx::query_with(&sql.text, sql.args)
            .fetch(&self.reader)
            .map_err(db_err);
        let items = Gathered::read(rows, |row| stored_len(row, "data"), doc).await?;
        Ok(Page::from_gathered(items, page, |d| d.id.as_str()))
    }
}

#[cfg(test)]
#[path = "docs_tests.rs"]
mod tests;
