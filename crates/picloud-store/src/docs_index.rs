//! Declared indexes on document fields: what every backend shares about them (the
//! limits, the names of their database objects, the checks that keep user text out of
//! the DDL). Each backend builds its own kind of index from a declaration: SQLite an
//! expression index over `json_extract`, PostgreSQL a B-tree over the typed sort
//! expressions of `find` (its GIN index still serves equality).
//!
//! A declaration is (app, collection, field). The database object serving it is a
//! *partial* index limited to that app's collection, so writes to other collections
//! never maintain it. DDL takes no parameters, so its text must spell out the field's
//! path, the app id and the collection name: every one of them is checked here to
//! consist of letters, digits, `_`, `-` and `.` only before it is written into SQL, and
//! the index's own name is a hash, never the user's text.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::AppId;

use crate::docs::FieldPath;
use crate::{StoreError, StoreResult};

/// The most indexes one collection may declare: each one is maintained by every write
/// to the collection's documents.
pub const MAX_INDEXES_PER_COLLECTION: usize = 10;

/// Every database index built for a declaration is named with this prefix.
pub const INDEX_NAME_PREFIX: &str = "docs_ix_";

/// An index declared on one field of one collection.
#[derive(Debug, Clone, PartialEq)]
pub struct DocsIndex {
    pub collection: String,
    pub field: FieldPath,
    pub created_at: DateTime<Utc>,
    /// The database object serves queries. Only a PostgreSQL build cut short (the
    /// server stopped while it ran) leaves this false; declaring the index again
    /// rebuilds it.
    pub ready: bool,
}

/// What declaring an index did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexDeclared {
    /// The declaration is new and its index was built.
    Created,
    /// It was declared already (its index rebuilt if a build had been cut short).
    Existing,
}

/// The first 16 hex digits of SHA-256: 64 bits, no collision in any real store.
fn short_hash(text: &str) -> String {
    let mut hex = picloud_core::crypto::hash_token(text);
    hex.truncate(16);
    hex
}

/// `docs_ix_<app hash>_`: the names of every index of one app start with it, so the
/// app's leftovers can be found by name alone.
pub fn app_index_prefix(app: &AppId) -> String {
    format!("{INDEX_NAME_PREFIX}{}_", short_hash(app.as_str()))
}

/// The name of the database index serving (app, collection, field): derived by hash,
/// the same on every node and every start.
pub fn index_name(app: &AppId, collection: &str, field: &FieldPath) -> String {
    format!(
        "{}{}",
        app_index_prefix(app),
        short_hash(&format!("{collection}\u{0}{}", field.dotted()))
    )
}

/// `name` when it is one that [`index_name`] makes (`docs_ix_`, hex digits, `_`): a
/// name read back from the database is checked before it is written into a `DROP`.
pub fn checked_index_name(name: &str) -> StoreResult<&str> {
    match name.strip_prefix(INDEX_NAME_PREFIX) {
        Some(rest)
            if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_hexdigit() || b == b'_') =>
        {
            Ok(name)
        }
        _ => Err(StoreError::other(std::io::Error::other(format!(
            "{name:?} is not the name of a declared index"
        )))),
    }
}

/// `'text'`, for one of the few names a `CREATE INDEX` must spell out (an app id, a
/// collection): refused unless it is 1 to 128 letters, digits, `_`, `-` or `.`, so it
/// can never close the literal or carry SQL. The collection rule of the services is
/// the same, so a valid collection always passes.
pub fn ddl_literal(text: &str) -> StoreResult<String> {
    let plain = !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if plain {
        Ok(format!("'{text}'"))
    } else {
        Err(StoreError::Invalid(format!(
            "{text:?} cannot name an indexed collection: use letters, digits, '_', '-' or '.'"
        )))
    }
}

/// The refusal when a collection already has its [`MAX_INDEXES_PER_COLLECTION`].
pub fn too_many_indexes(collection: &str) -> StoreError {
    StoreError::Conflict(format!(
        "collection {collection:?} already has {MAX_INDEXES_PER_COLLECTION} indexes, the \
         most it may have; drop one first"
    ))
}

#[async_trait]
pub trait DocsIndexStore {
    /// The indexes declared on a collection, by field.
    async fn docs_indexes(&self, app: &AppId, collection: &str) -> StoreResult<Vec<DocsIndex>>;
    /// Declares an index on `field` and builds it before answering. Declaring one that
    /// exists changes nothing (and rebuilds an index whose build was cut short).
    /// `Conflict` when the collection has its `MAX_INDEXES_PER_COLLECTION` already,
    /// `NotFound` without the app.
    async fn docs_create_index(
        &self,
        app: &AppId,
        collection: &str,
        field: &FieldPath,
    ) -> StoreResult<(DocsIndex, IndexDeclared)>;
    /// Drops a declared index and its database object; `NotFound` when none is
    /// declared on that field.
    async fn docs_drop_index(
        &self,
        app: &AppId,
        collection: &str,
        field: &FieldPath,
    ) -> StoreResult<()>;
    /// Deletes a collection: every document in it and every index declared on it. No
    /// trigger fires (it is not a delete of each document). Returns how many documents
    /// were deleted.
    async fn docs_drop_collection(&self, app: &AppId, collection: &str) -> StoreResult<u64>;
    /// The names of the database objects built for declared indexes, of every app:
    /// for checks that none outlives its declaration.
    async fn docs_index_objects(&self) -> StoreResult<Vec<String>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_hashes_of_the_declaration() {
        let app = AppId::new();
        let field = FieldPath::parse("user.email").expect("path");
        let name = index_name(&app, "users", &field);
        assert!(name.starts_with(&app_index_prefix(&app)));
        assert_eq!(name.len(), INDEX_NAME_PREFIX.len() + 16 + 1 + 16);
        assert!(name[INDEX_NAME_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'_'));
        assert_eq!(name, index_name(&app, "users", &field), "deterministic");
        let other = FieldPath::parse("user.name").expect("path");
        assert_ne!(name, index_name(&app, "users", &other));
        assert_ne!(name, index_name(&app, "user", &field));
        assert_ne!(name, index_name(&AppId::new(), "users", &field));
        assert_eq!(checked_index_name(&name).expect("ours"), name);
        for bad in [
            "docs_ix_",
            "docs_collection",
            "docs_ix_1; DROP TABLE docs",
            "docs_ix_G",
        ] {
            assert!(checked_index_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ddl_literals_take_plain_names_only() {
        assert_eq!(
            ddl_literal("users.v2-x_1").expect("plain"),
            "'users.v2-x_1'"
        );
        for bad in [
            "",
            "a'b",
            "a b",
            "a\"b",
            "a;b",
            "a\\b",
            "é",
            &"x".repeat(129),
        ] {
            assert!(ddl_literal(bad).is_err(), "{bad:?}");
        }
    }
}
