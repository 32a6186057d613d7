//! Documents on PostgreSQL: `jsonb` rows. Equality filters compile to `data @> …`
//! containment, which the GIN `jsonb_path_ops` index serves, plus an exact check (an
//! array contains more than it equals); every other operator is a typed expression on
//! `data -> 'a' -> 'b'`. A query never loads a collection into memory.
//!
//! Paths use `->` with text keys, never `#>`: `#>` would index into arrays with a
//! numeric segment, which SQLite's `$."a"."0"` does not, and the two backends must
//! agree.
//!
//! A declared index is a partial B-tree over a field's four typed sort expressions
//! (type rank, number, string, boolean) and `id`, limited to its app's collection: a
//! `$sort` on the field walks it in order, and a range (`$gt` …) compiles to "rank =
//! the operand's type AND value <op> operand", an index range. The expressions are
//! written by one function each ([`rank_expr`] …), used by the index's DDL and by the
//! queries alike, so the planner sees the same expression in both.

use async_trait::async_trait;
use futures_util::TryStreamExt as _;
use picloud_core::model::{DocsOp, ExecutionSource};
use picloud_core::{AppId, DocId};
use picloud_store::docs::{docs_event, find_too_large, CmpOp, FieldPath, Scalar, SortKey};
use picloud_store::page::Gathered;
use picloud_store::{
    docs_event_for, Condition, Doc, DocsStore, EventCause, Page, PageRequest, Patch, Query,
    StoreError, StoreResult, Target, WriteOutcome,
};
use serde_json::{Map, Value};
use sqlx::postgres::{PgArguments, PgConnection, PgRow};
use sqlx::Arguments;

use crate::batch::{WriteOp, Written};
use crate::outbox::emit;
use crate::triggers::docs_targets;
use crate::{
    col, col_json, db_err, json_text, map_insert_err, stored_len, without_nul, PostgresStore,
};

const COLUMNS: &str = "id, collection, data::text AS data, created_at, updated_at";

fn cmp_sql(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Gt => ">",
        CmpOp::Gte => ">=",
        CmpOp::Lt => "<",
        CmpOp::Lte => "<=",
    }
}

fn doc(row: &PgRow) -> StoreResult<Doc> {
    Ok(Doc {
        id: DocId::from_trusted(col(row, "id")?),
        collection: col(row, "collection")?,
        data: col_json(row, "data")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
    })
}

/// SQL text with its arguments, built together so the `$n` cannot drift.
///
/// Queries built here run as unnamed statements (`persistent(false)`): PostgreSQL
/// then plans each with its actual values. A cached statement soon switches to a
/// generic plan, which cannot know how selective `data @> $3` is and picked a full
/// primary-key scan (21 ms) over the GIN index (0.3 ms) on 100,000 documents; the
/// text also varies with every filter's shape, so caching it only churns the cache.
#[derive(Default)]
struct Sql {
    text: String,
    args: PgArguments,
    count: usize,
}

impl Sql {
    fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    fn arg(&mut self, value: String, cast: &str) {
        self.count += 1;
        self.text.push_str(&format!("${}{cast}", self.count));
        let _ = self.args.add(value);
    }

    fn text_arg(&mut self, value: &str) {
        self.arg(without_nul(value).into_owned(), "::text");
    }

    fn int_arg(&mut self, n: i64) {
        self.count += 1;
        self.text.push_str(&format!("${}", self.count));
        let _ = self.args.add(n);
    }

    fn field(&mut self, path: &FieldPath) {
        self.text.push_str(&field_expr(path));
    }

    fn field_type(&mut self, path: &FieldPath) {
        self.push("jsonb_typeof(");
        self.field(path);
        self.push(")");
    }
}

/// `(data -> 'a' -> 'b')`. Segments are validated to `[A-Za-z0-9_-]`, so they are
/// written as literals (quotes doubled all the same), which lets the planner match
/// the expression indexes of declared indexes.
fn field_expr(path: &FieldPath) -> String {
    let mut out = String::from("(data");
    for s in path.segments() {
        out.push_str(&format!(" -> '{}'", s.replace('\'', "''")));
    }
    out.push(')');
    out
}

/// The type rank `$sort` orders by first: missing and null, numbers, strings,
/// booleans, objects and arrays — the same order as on SQLite. Never NULL.
fn rank_expr(path: &FieldPath) -> String {
    format!(
        "CASE jsonb_typeof({}) WHEN 'number' THEN 1 WHEN 'string' THEN 2 \
         WHEN 'boolean' THEN 3 WHEN 'object' THEN 4 WHEN 'array' THEN 4 ELSE 0 END",
        field_expr(path)
    )
}

const RANK_NUMBER: u8 = 1;
const RANK_STRING: u8 = 2;

/// The field as a number, NULL unless it is one.
fn number_expr(path: &FieldPath) -> String {
    let f = field_expr(path);
    format!("CASE WHEN jsonb_typeof({f}) = 'number' THEN ({f})::numeric END")
}

/// The field as a string compared byte by byte (`COLLATE "C"`), NULL unless it is one.
fn string_expr(path: &FieldPath) -> String {
    let f = field_expr(path);
    format!("CASE WHEN jsonb_typeof({f}) = 'string' THEN ({f} #>> '{{}}') COLLATE \"C\" END")
}

/// The field as a boolean, NULL unless it is one.
fn boolean_expr(path: &FieldPath) -> String {
    let f = field_expr(path);
    format!("CASE WHEN jsonb_typeof({f}) = 'boolean' THEN ({f})::boolean END")
}

/// `{"a": {"b": value}}` for the path `a.b`.
fn nested(path: &FieldPath, value: &Value) -> Value {
    path.segments()
        .iter()
        .rev()
        .fold(value.clone(), |inner, key| {
            let mut map = Map::new();
            map.insert(key.clone(), inner);
            Value::Object(map)
        })
}

/// Compiles a condition; every leaf yields true or false, never NULL (`NOT NULL`
/// would drop rows `$ne` must keep). Typed comparisons use CASE so the cast runs only
/// on a value of the right type: AND does not promise an evaluation order.
fn condition(c: &Condition, sql: &mut Sql) {
    match c {
        Condition::All => sql.push("TRUE"),
        Condition::And(parts) | Condition::Or(parts) if parts.is_empty() => {
            sql.push(if matches!(c, Condition::And(_)) {
                "TRUE"
            } else {
                "FALSE"
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
                condition(part, sql);
            }
            sql.push(")");
        }
        Condition::Not(inner) => {
            sql.push("NOT (");
            condition(inner, sql);
            sql.push(")");
        }
        Condition::Exists(path, present) => {
            sql.push("(");
            sql.field(path);
            sql.push(if *present {
                " IS NOT NULL)"
            } else {
                " IS NULL)"
            });
        }
        Condition::Eq(path, Value::Null) => {
            sql.push("(COALESCE(");
            sql.field_type(path);
            sql.push(", 'null') = 'null')");
        }
        Condition::Eq(path, value) => {
            // Containment finds candidates through the index; equality is exact.
            sql.push("(data @> ");
            sql.arg(json_text(&nested(path, value)), "::jsonb");
            sql.push(" AND COALESCE(");
            sql.field(path);
            sql.push(" = ");
            sql.arg(json_text(value), "::jsonb");
            sql.push(", FALSE))");
        }
        // "Of the operand's type, and in range": the planner can serve both terms
        // from a declared index (rank first, then the typed value). Never NULL: the
        // value is NULL only where the rank test is already false.
        Condition::Cmp(path, op, operand) => {
            sql.push("(");
            sql.push(&rank_expr(path));
            match operand {
                Scalar::Number(n) => {
                    sql.push(&format!(" = {RANK_NUMBER} AND "));
                    sql.push(&number_expr(path));
                    sql.push(&format!(" {} ", cmp_sql(*op)));
                    sql.arg(n.to_string(), "::numeric");
                }
                Scalar::Text(t) => {
                    sql.push(&format!(" = {RANK_STRING} AND "));
                    sql.push(&string_expr(path));
                    sql.push(&format!(" {} ", cmp_sql(*op)));
                    sql.text_arg(t);
                }
            }
            sql.push(")");
        }
    }
}

/// One `$sort` key as four sort terms: type rank, then the value within its type.
/// Ascending, each term is `NULLS FIRST` like a declared index's columns; descending,
/// `NULLS LAST`, the same index read backwards.
fn sort_terms(key: &SortKey, sql: &mut Sql) {
    let dir = if key.descending {
        " DESC NULLS LAST, "
    } else {
        " ASC NULLS FIRST, "
    };
    for term in sort_exprs(&key.path) {
        sql.push(&term);
        sql.push(dir);
    }
}

pub(crate) fn sort_exprs(path: &FieldPath) -> [String; 4] {
    [
        rank_expr(path),
        number_expr(path),
        string_expr(path),
        boolean_expr(path),
    ]
}

/// `find`'s statement.
fn find_sql(app: &AppId, collection: &str, query: &Query) -> Sql {
    let mut sql = Sql::default();
    sql.push(&format!("SELECT {COLUMNS} FROM docs WHERE app_id = "));
    sql.text_arg(app.as_str());
    sql.push(" AND collection = ");
    sql.text_arg(collection);
    sql.push(" AND ");
    condition(&query.filter, &mut sql);
    sql.push(" ORDER BY ");
    for key in &query.sort {
        sort_terms(key, &mut sql);
    }
    sql.push("id ASC LIMIT ");
    sql.int_arg(query.limit.into());
    sql.push(" OFFSET ");
    sql.int_arg(query.skip.into());
    sql
}

/// The document's data, row-locked until the transaction ends.
async fn locked_data(
    conn: &mut PgConnection,
    app: &AppId,
    collection: &str,
    id: &DocId,
) -> StoreResult<Option<Value>> {
    let data: Option<String> = sqlx::query_scalar(
        "SELECT data::text FROM docs WHERE id = $1 AND app_id = $2 AND collection = $3 \
         FOR UPDATE",
    )
    .bind(id.as_str())
    .bind(app.as_str())
    .bind(without_nul(collection).as_ref())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    data.map(|d| serde_json::from_str(&d).map_err(StoreError::other))
        .transpose()
}

impl PostgresStore {
    /// Replaces a document's data, given its locked previous data, and queues the
    /// `update` events for `targets`. The transaction is the caller's.
    async fn rewrite(
        conn: &mut PgConnection,
        app: &AppId,
        id: &DocId,
        data: &Value,
        prev: Value,
        targets: Vec<Target>,
        cause: &EventCause,
    ) -> StoreResult<(Doc, WriteOutcome)> {
        let row = sqlx::query(&format!(
            "UPDATE docs SET data = $1::jsonb, updated_at = $2 WHERE id = $3 RETURNING {COLUMNS}"
        ))
        .bind(json_text(data))
        .bind(picloud_core::now())
        .bind(id.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
        let saved = doc(&row)?;
        let payload = docs_event_for(DocsOp::Update, &saved, Some(&prev));
        let mut outcome = emit(conn, app, targets, ExecutionSource::Docs, payload, cause).await?;
        outcome.prev = Some(prev);
        Ok((saved, outcome))
    }

    /// Locks the triggers (before the row: the crate's lock order), then the document,
    /// and rewrites it with what `change` makes of its data.
    async fn modify(
        &self,
        app: &AppId,
        collection: &str,
        id: &DocId,
        cause: &EventCause,
        change: impl FnOnce(&Value) -> StoreResult<Value> + Send,
    ) -> StoreResult<(Doc, WriteOutcome)> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let targets = docs_targets(
            &mut tx,
            app,
            collection,
            DocsOp::Update,
            cause.default_retry,
        )
        .await?;
        let prev = locked_data(&mut tx, app, collection, id)
            .await?
            .ok_or(StoreError::NotFound)?;
        let data = change(&prev)?;
        let out = Self::rewrite(&mut tx, app, id, &data, prev, targets, cause).await?;
        tx.commit().await.map_err(db_err)?;
        if !out.1.events.is_empty() {
            self.announce();
        }
        Ok(out)
    }
}

/// Creates the document inside the caller's transaction (a batch of the group-commit
/// writer, `batch.rs`); the caller commits and announces.
pub(crate) async fn create_in(
    tx: &mut PgConnection,
    app: &AppId,
    collection: &str,
    data: &Value,
    cause: &EventCause,
) -> StoreResult<(Doc, WriteOutcome)> {
    let collection = without_nul(collection);
    let targets = docs_targets(
        &mut *tx,
        app,
        &collection,
        DocsOp::Create,
        cause.default_retry,
    )
    .await?;
    let now = picloud_core::now();
    let row = sqlx::query(&format!(
        "INSERT INTO docs (id, app_id, collection, data, created_at, updated_at) \
         VALUES ($1, $2, $3, $4::jsonb, $5, $5) RETURNING {COLUMNS}"
    ))
    .bind(DocId::new().as_str())
    .bind(app.as_str())
    .bind(collection.as_ref())
    .bind(json_text(data))
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| map_insert_err(e, "that document already exists"))?;
    let saved = doc(&row)?;
    let payload = docs_event_for(DocsOp::Create, &saved, None);
    let outcome = emit(
        &mut *tx,
        app,
        targets,
        ExecutionSource::Docs,
        payload,
        cause,
    )
    .await?;
    Ok((saved, outcome))
}

#[async_trait]
impl DocsStore for PostgresStore {
    async fn docs_create(
        &self,
        app: &AppId,
        collection: &str,
        data: &Value,
        cause: &EventCause,
    ) -> StoreResult<(Doc, WriteOutcome)> {
        let op = WriteOp::DocCreate {
            app: app.clone(),
            collection: collection.to_owned(),
            data: data.clone(),
            cause: *cause,
        };
        match self.batch.write(op).await? {
            Written::Doc(doc, outcome) => Ok((doc, outcome)),
            Written::Kv(_) => Err(StoreError::other(std::io::Error::other(
                "the writer answered a document create with a KV outcome",
            ))),
        }
    }

    async fn docs_get(
        &self,
        app: &AppId,
        collection: &str,
        id: &DocId,
    ) -> StoreResult<Option<Doc>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM docs WHERE id = $1 AND app_id = $2 AND collection = $3"
        ))
        .bind(id.as_str())
        .bind(app.as_str())
        .bind(without_nul(collection).as_ref())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(doc).transpose()
    }

    async fn docs_update(
        &self,
        app: &AppId,
        collection: &str,
        id: &DocId,
        data: &Value,
        cause: &EventCause,
    ) -> StoreResult<(Doc, WriteOutcome)> {
        self.modify(app, collection, id, cause, |_| Ok(data.clone()))
            .await
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
        self.modify(app, collection, id, cause, |prev| {
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
            Ok(data)
        })
        .await
    }

    async fn docs_delete(
        &self,
        app: &AppId,
        collection: &str,
        id: &DocId,
        cause: &EventCause,
    ) -> StoreResult<WriteOutcome> {
        let collection = without_nul(collection);
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let targets = docs_targets(
            &mut tx,
            app,
            &collection,
            DocsOp::Delete,
            cause.default_retry,
        )
        .await?;
        // The delete locks the row and returns what it removes: `prev` is read by the
        // write itself.
        let prev: Option<String> = sqlx::query_scalar(
            "DELETE FROM docs WHERE id = $1 AND app_id = $2 AND collection = $3 \
             RETURNING data::text",
        )
        .bind(id.as_str())
        .bind(app.as_str())
        .bind(collection.as_ref())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let prev: Option<Value> = prev
            .map(|p| serde_json::from_str(&p).map_err(StoreError::other))
            .transpose()?;
        let mut outcome = match &prev {
            Some(prev) => {
                let payload = docs_event(DocsOp::Delete, &collection, id, None, Some(prev));
                emit(&mut tx, app, targets, ExecutionSource::Docs, payload, cause).await?
            }
            None => WriteOutcome::default(),
        };
        tx.commit().await.map_err(db_err)?;
        if !outcome.events.is_empty() {
            self.announce();
        }
        outcome.prev = prev;
        Ok(outcome)
    }

    async fn docs_find(
        &self,
        app: &AppId,
        collection: &str,
        query: &Query,
    ) -> StoreResult<Vec<Doc>> {
        let sql = find_sql(app, collection, query);
        let rows = sqlx::query_with(&sql.text, sql.args)
            .persistent(false)
            .fetch(&self.pool)
            .map_err(db_err);
        let found = Gathered::read(rows, |row| stored_len(row, "data"), doc).await?;
        if found.cut {
            return Err(find_too_large());
        }
        Ok(found.items)
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
        sql.text_arg(app.as_str());
        sql.push(" AND collection = ");
        sql.text_arg(collection);
        sql.push(" AND id > ");
        sql.text_arg(page.after.as_deref().unwrap_or(""));
        sql.push(" AND ");
        condition(filter.unwrap_or(&Condition::All), &mut sql);
        sql.push(" ORDER BY id LIMIT ");
        sql.int_arg(page.fetch_limit());
        let rows = sqlx::query_with(&sql.text, sql.args)
            .persistent(false)
            .fetch(&self.pool)
            .map_err(db_err);
        let items = Gathered::read(rows, |row| stored_len(row, "data"), doc).await?;
        Ok(Page::from_gathered(items, page, |d| d.id.as_str()))
    }
}

#[cfg(test)]
#[path = "docs_tests.rs"]
mod tests;
