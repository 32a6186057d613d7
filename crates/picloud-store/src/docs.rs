//! Documents: the query language (parsed once here, compiled to SQL by each backend),
//! partial updates, and the storage trait.
//!
//! Comparison semantics are typed and the same on every backend: numbers compare as
//! numbers (`9 < 10`), strings as strings (byte order), a number never equals a
//! string, booleans equal only booleans. `null` equality matches a field that is null
//! or missing; `$ne`/`$nin` match missing fields too; `$gt`-family operators match only
//! fields of the operand's type; `$exists` tells present (even null) from missing.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::model::DocsOp;
use picloud_core::{AppId, DocId};
use serde_json::{json, Map, Number, Value};

use crate::{EventCause, Page, PageRequest, StoreError, StoreResult, WriteOutcome};

/// Deepest dotted path (`a.b.c.d.e`).
pub const MAX_PATH_DEPTH: usize = 5;
/// `$limit` when a query sets none, and the most it may set.
pub const DEFAULT_FIND_LIMIT: u32 = 100;
pub const MAX_FIND_LIMIT: u32 = 1_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub id: DocId,
    pub collection: String,
    pub data: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A malformed filter or patch; the message names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

fn bad<T>(message: impl Into<String>) -> Result<T, QueryError> {
    Err(QueryError(message.into()))
}

/// A dotted field path, 1 to 5 segments of letters, digits, `_` and `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    pub fn parse(path: &str) -> Result<Self, QueryError> {
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        if segments.len() > MAX_PATH_DEPTH {
            return bad(format!(
                "field path {path:?} is deeper than {MAX_PATH_DEPTH} levels"
            ));
        }
        for s in &segments {
            let ok = !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                return bad(format!(
                    "invalid field path {path:?}: segments are letters, digits, '_' or '-'"
                ));
            }
        }
        Ok(Self(segments))
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// The path as written: `a.b.c`.
    pub fn dotted(&self) -> String {
        self.0.join(".")
    }
}

/// An ordering operand: `$gt` and friends compare numbers with numbers and strings
/// with strings only.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Number(Number),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Matches everything (an empty filter).
    All,
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    /// Typed equality; `Value::Null` matches null or missing.
    Eq(FieldPath, Value),
    Cmp(FieldPath, CmpOp, Scalar),
    Exists(FieldPath, bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub path: FieldPath,
    pub descending: bool,
}

/// A parsed `find` filter with its modifiers.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub filter: Condition,
    /// In priority order; ties keep creation order.
    pub sort: Vec<SortKey>,
    pub limit: u32,
    pub skip: u32,
}

fn whole(v: &Value, what: &str, max: u32) -> Result<u32, QueryError> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n <= max)
        .map_or_else(
            || bad(format!("{what} must be a whole number from 0 to {max}")),
            Ok,
        )
}

fn scalar(op: &str, v: &Value) -> Result<Scalar, QueryError> {
    match v {
        Value::Number(n) => Ok(Scalar::Number(n.clone())),
        Value::String(s) => Ok(Scalar::Text(s.clone())),
        _ => bad(format!("{op} needs a number or a string")),
    }
}

fn operators(path: &FieldPath, ops: &Map<String, Value>) -> Result<Condition, QueryError> {
    let mut all = Vec::with_capacity(ops.len());
    for (op, arg) in ops {
        let p = || path.clone();
        let cond = match op.as_str() {
            "$eq" => Condition::Eq(p(), arg.clone()),
            "$ne" => Condition::Not(Box::new(Condition::Eq(p(), arg.clone()))),
            "$gt" => Condition::Cmp(p(), CmpOp::Gt, scalar(op, arg)?),
            "$gte" => Condition::Cmp(p(), CmpOp::Gte, scalar(op, arg)?),
            "$lt" => Condition::Cmp(p(), CmpOp::Lt, scalar(op, arg)?),
            "$lte" => Condition::Cmp(p(), CmpOp::Lte, scalar(op, arg)?),
            "$in" | "$nin" => {
                let Some(items) = arg.as_array() else {
                    return bad(format!("{op} needs an array"));
                };
                let any = Condition::Or(
                    items
                        .iter()
                        .map(|v| Condition::Eq(p(), v.clone()))
                        .collect(),
                );
                if op == "$in" {
                    any
                } else {
                    Condition::Not(Box::new(any))
                }
            }
            "$exists" => match arg {
                Value::Bool(b) => Condition::Exists(p(), *b),
                _ => return bad("$exists needs true or false"),
            },
            other => return bad(format!("unknown operator {other}")),
        };
        all.push(cond);
    }
    Ok(if all.len() == 1 {
        all.remove(0)
    } else {
        Condition::And(all)
    })
}

/// Parses a filter object (no modifiers allowed: those are for the top level).
fn condition(filter: &Map<String, Value>, top: bool) -> Result<Condition, QueryError> {
    let mut all = Vec::new();
    for (key, value) in filter {
        match key.as_str() {
            "$and" | "$or" => {
                let Some(items) = value.as_array() else {
                    return bad(format!("{key} needs an array of filters"));
                };
                let mut parts = Vec::with_capacity(items.len());
                for item in items {
                    let Some(obj) = item.as_object() else {
                        return bad(format!("{key} needs an array of filters (maps)"));
                    };
                    parts.push(condition(obj, false)?);
                }
                all.push(if key == "$and" {
                    Condition::And(parts)
                } else {
                    Condition::Or(parts)
                });
            }
            "$sort" | "$limit" | "$skip" if top => {}
            "$sort" | "$limit" | "$skip" => {
                return bad(format!("{key} is allowed only at the top of a filter"))
            }
            k if k.starts_with('$') => return bad(format!("unknown operator {k}")),
            path => {
                let path = FieldPath::parse(path)?;
                let cond = match value.as_object() {
                    Some(obj) if !obj.is_empty() && obj.keys().all(|k| k.starts_with('$')) => {
                        operators(&path, obj)?
                    }
                    Some(obj) if obj.keys().any(|k| k.starts_with('$')) => {
                        return bad(format!(
                            "field {:?} mixes operators with plain keys",
                            path.segments().join(".")
                        ))
                    }
                    _ => Condition::Eq(path, value.clone()),
                };
                all.push(cond);
            }
        }
    }
    Ok(match all.len() {
        0 => Condition::All,
        1 => all.remove(0),
        _ => Condition::And(all),
    })
}

fn sort_key(spec: &str) -> Result<SortKey, QueryError> {
    let (descending, path) = match spec.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, spec),
    };
    Ok(SortKey {
        path: FieldPath::parse(path)?,
        descending,
    })
}

impl Query {
    /// Parses a `find` filter: conditions plus `$sort`, `$limit`, `$skip`.
    pub fn parse(filter: &Value) -> Result<Query, QueryError> {
        let Some(obj) = filter.as_object() else {
            return bad("a filter is a map");
        };
        let sort = match obj.get("$sort") {
            None => Vec::new(),
            Some(Value::String(s)) => vec![sort_key(s)?],
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => sort_key(s),
                    _ => bad("$sort takes field names (\"-age\" for descending)"),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return bad("$sort takes a field name or an array of them (maps are unordered)")
            }
        };
        let limit = match obj.get("$limit") {
            Some(v) => whole(v, "$limit", MAX_FIND_LIMIT)?,
            None => DEFAULT_FIND_LIMIT,
        };
        let skip = match obj.get("$skip") {
            Some(v) => whole(v, "$skip", u32::MAX)?,
            None => 0,
        };
        Ok(Query {
            filter: condition(obj, true)?,
            sort,
            limit,
            skip,
        })
    }

    /// Parses a filter without modifiers (admin browsing).
    pub fn parse_filter(filter: &Value) -> Result<Condition, QueryError> {
        let Some(obj) = filter.as_object() else {
            return bad("a filter is a map");
        };
        condition(obj, false)
    }
}

/// `patch(id, #{"$set": …, "$unset": […], "$inc": …})`
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Patch {
    pub set: Vec<(FieldPath, Value)>,
    pub unset: Vec<FieldPath>,
    pub inc: Vec<(FieldPath, Number)>,
}

impl Patch {
    pub fn parse(patch: &Value) -> Result<Patch, QueryError> {
        let Some(obj) = patch.as_object() else {
            return bad("a patch is a map of $set, $unset and $inc");
        };
        let mut out = Patch::default();
        for (op, arg) in obj {
            match op.as_str() {
                "$set" => {
                    let Some(fields) = arg.as_object() else {
                        return bad("$set needs a map");
                    };
                    for (path, v) in fields {
                        out.set.push((FieldPath::parse(path)?, v.clone()));
                    }
                }
                "$unset" => {
                    let Some(paths) = arg.as_array() else {
                        return bad("$unset needs an array of field names");
                    };
                    for p in paths {
                        let Some(p) = p.as_str() else {
                            return bad("$unset needs an array of field names");
                        };
                        out.unset.push(FieldPath::parse(p)?);
                    }
                }
                "$inc" => {
                    let Some(fields) = arg.as_object() else {
                        return bad("$inc needs a map");
                    };
                    for (path, v) in fields {
                        let Value::Number(n) = v else {
                            return bad(format!("$inc of {path:?} needs a number"));
                        };
                        out.inc.push((FieldPath::parse(path)?, n.clone()));
                    }
                }
                other => return bad(format!("unknown patch operator {other}")),
            }
        }
        if out.set.is_empty() && out.unset.is_empty() && out.inc.is_empty() {
            return bad("a patch needs at least one of $set, $unset, $inc");
        }
        Ok(out)
    }

    /// Applies the patch to a document's data: `$set`, then `$unset`, then `$inc`.
    pub fn apply(&self, data: &mut Value) -> Result<(), QueryError> {
        for (path, v) in &self.set {
            *slot(data, path, "$set")? = v.clone();
        }
        for path in &self.unset {
            unset(data, path);
        }
        for (path, by) in &self.inc {
            let target = slot(data, path, "$inc")?;
            *target = match &*target {
                Value::Null => Value::Number(by.clone()),
                Value::Number(current) => add(current, by).ok_or_else(|| {
                    QueryError(format!("$inc of {:?} overflows", path.segments().join(".")))
                })?,
                _ => {
                    return bad(format!(
                        "$inc of {:?}: the field is not a number",
                        path.segments().join(".")
                    ))
                }
            };
        }
        Ok(())
    }
}

fn add(a: &Number, b: &Number) -> Option<Value> {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => x.checked_add(y).map(|n| Value::Number(n.into())),
        _ => Number::from_f64(a.as_f64()? + b.as_f64()?).map(Value::Number),
    }
}

/// The value at `path`, creating missing intermediate objects (null when absent).
fn slot<'a>(data: &'a mut Value, path: &FieldPath, op: &str) -> Result<&'a mut Value, QueryError> {
    let mut here = data;
    for (i, segment) in path.segments().iter().enumerate() {
        if here.is_null() {
            *here = Value::Object(Map::new());
        }
        let Value::Object(map) = here else {
            return bad(format!(
                "{op} of {:?}: {:?} is not a map",
                path.segments().join("."),
                path.segments()[..i].join(".")
            ));
        };
        here = map.entry(segment.clone()).or_insert(Value::Null);
    }
    Ok(here)
}

fn unset(data: &mut Value, path: &FieldPath) {
    let (last, parents) = match path.segments().split_last() {
        Some(split) => split,
        None => return,
    };
    let mut here = data;
    for segment in parents {
        match here.get_mut(segment) {
            Some(next) => here = next,
            None => return,
        }
    }
    if let Value::Object(map) = here {
        map.remove(last);
    }
}

/// The event a document write emits (SCRIPTING.md "Events").
pub fn docs_event(
    op: DocsOp,
    collection: &str,
    id: &DocId,
    data: Option<&Value>,
    prev: Option<&Value>,
) -> Value {
    json!({
        "source": "docs",
        "op": op.as_str(),
        "docs": {"collection": collection, "id": id.as_str(), "data": data, "prev_data": prev},
    })
}

/// `docs_find` matched more stored bytes than one read may carry. It has no cursor
/// to continue from, so it refuses rather than hand back part of the answer.
pub fn find_too_large() -> StoreError {
    StoreError::Invalid(format!(
        "the matching documents exceed {} MiB; narrow the filter, lower $limit, or page \
         through them with list",
        crate::page::MAX_READ_BYTES >> 20
    ))
}

/// The event of a create or update, from the stored document.
pub fn docs_event_for(op: DocsOp, doc: &Doc, prev: Option<&Value>) -> Value {
    docs_event(op, &doc.collection, &doc.id, Some(&doc.data), prev)
}

#[async_trait]
pub trait DocsStore {
    /// Creates a document; its `docs` triggers get events in the same transaction.
    async fn docs_create(
        &self,
        app: &AppId,
        collection: &str,
        data: &Value,
        cause: &EventCause,
    ) -> StoreResult<(Doc, WriteOutcome)>;
    async fn docs_get(&self, app: &AppId, collection: &str, id: &DocId)
        -> StoreResult<Option<Doc>>;
    /// Replaces the data; `NotFound` if there is no such document. `prev` is the data
    /// before, read with the row locked.
    async fn docs_update(
        &self,
        app: &AppId,
        collection: &str,
        id: &DocId,
        data: &Value,
        cause: &EventCause,
    ) -> StoreResult<(Doc, WriteOutcome)>;
    /// Applies a patch atomically (row locked from read to write); `Invalid` when it
    /// does not apply (a non-number `$inc`, …) or the result exceeds `max_bytes`.
    async fn docs_patch(
        &self,
        app: &AppId,
        collection: &str,
        id: &DocId,
        patch: &Patch,
        max_bytes: usize,
        cause: &EventCause,
    ) -> StoreResult<(Doc, WriteOutcome)>;
    /// Deletes; `prev` tells whether (and what) there was.
    async fn docs_delete(
        &self,
        app: &AppId,
        collection: &str,
        id: &DocId,
        cause: &EventCause,
    ) -> StoreResult<WriteOutcome>;
    /// The documents matching the query, compiled to SQL.
    async fn docs_find(
        &self,
        app: &AppId,
        collection: &str,
        query: &Query,
    ) -> StoreResult<Vec<Doc>>;
    /// Documents in creation order, optionally filtered (admin browsing, `list`).
    async fn docs_list(
        &self,
        app: &AppId,
        collection: &str,
        filter: Option<&Condition>,
        page: &PageRequest,
    ) -> StoreResult<Page<Doc>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_operators_and_modifiers() {
        let q = Query::parse(&json!({
            "tier": "gold",
            "age": {"$gte": 18, "$lt": 65},
            "$or": [{"a.b": {"$exists": true}}, {"c": {"$in": [1, "1"]}}],
            "$sort": ["-age", "name"], "$limit": 10, "$skip": 5
        }))
        .expect("valid");
        assert_eq!(q.limit, 10);
        assert_eq!(q.skip, 5);
        assert_eq!(q.sort.len(), 2);
        assert!(q.sort[0].descending);
        assert!(matches!(q.filter, Condition::And(ref parts) if parts.len() == 3));
    }

    #[test]
    fn errors_name_the_offending_part() {
        for (filter, needle) in [
            (json!({"a": {"$regex": "x"}}), "$regex"),
            (json!({"$where": "1"}), "$where"),
            (json!({"a.b.c.d.e.f": 1}), "deeper"),
            (json!({"a": {"$gt": true}}), "$gt"),
            (json!({"a": {"$in": 1}}), "$in"),
            (json!({"$or": [1]}), "$or"),
            (json!({"$and": [{"$limit": 1}]}), "$limit"),
            (json!({"a": {"$gt": 1, "b": 2}}), "mixes"),
            (json!({"$sort": {"a": 1}}), "$sort"),
            (json!({"$limit": 5000}), "$limit"),
            (json!({"a b": 1}), "invalid field path"),
        ] {
            let err = Query::parse(&filter).expect_err("refused");
            assert!(err.0.contains(needle), "{filter}: {err}");
        }
    }

    #[test]
    fn patches_apply_in_order() {
        let mut data = json!({"a": 1, "n": 2, "nested": {"x": 1}, "gone": true});
        let p = Patch::parse(&json!({
            "$set": {"a": "one", "nested.y": [1], "deep.er": 3},
            "$unset": ["gone", "missing.path"],
            "$inc": {"n": 3, "fresh": 1.5}
        }))
        .expect("valid");
        p.apply(&mut data).expect("applies");
        assert_eq!(
            data,
            json!({"a": "one", "n": 5, "nested": {"x": 1, "y": [1]}, "deep": {"er": 3}, "fresh": 1.5})
        );
        let mut text = json!({"n": "x"});
        assert!(Patch::parse(&json!({"$inc": {"n": 1}}))
            .expect("p")
            .apply(&mut text)
            .is_err());
        let mut max = json!({"n": i64::MAX});
        assert!(Patch::parse(&json!({"$inc": {"n": 1}}))
            .expect("p")
            .apply(&mut max)
            .is_err());
        assert!(Patch::parse(&json!({})).is_err());
        assert!(Patch::parse(&json!({"$push": {}})).is_err());
    }
}
