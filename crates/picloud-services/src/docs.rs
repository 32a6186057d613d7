//! `docs::collection(name).{create,get,update,patch,delete,find,find_one,list}`.

use std::sync::Arc;

use picloud_core::access::Capability;
use picloud_core::config::EventsConfig;
use picloud_core::DocId;
use picloud_store::{Doc, EventCause, PageRequest, Patch, Query, RetryPolicy, Store};
use serde_json::Value;

use crate::kv::validate_collection;
use crate::{default_retry, CallContext, ServiceError, ServiceResult};

/// One page of `list`: documents in creation order and the cursor of the next page.
#[derive(Debug, Clone, PartialEq)]
pub struct DocsPage {
    pub items: Vec<Doc>,
    pub cursor: Option<String>,
}

/// What a write did: the document as stored, and how many trigger events were
/// skipped at the depth limit (for the caller to log).
#[derive(Debug, Clone, PartialEq)]
pub struct DocWrite {
    pub doc: Doc,
    pub skipped_for_depth: usize,
}

pub struct DocsService {
    store: Arc<dyn Store>,
    max_doc_bytes: usize,
    max_depth: u32,
    default_retry: RetryPolicy,
}

fn not_found(collection: &str, id: &str) -> ServiceError {
    ServiceError::NotFound(format!("document {id:?} in collection {collection:?}"))
}

/// PostgreSQL's jsonb cannot hold NUL; refusing it everywhere keeps both backends
/// storing exactly what they were given.
fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

impl DocsService {
    /// Checks a collection name before any call is made (`docs::collection(name)`).
    pub fn validate_collection_name(name: &str) -> ServiceResult<()> {
        validate_collection(name)
    }

    pub fn new(store: Arc<dyn Store>, config: &EventsConfig) -> Self {
        Self {
            store,
            max_doc_bytes: config.docs_max_doc_bytes,
            max_depth: config.max_trigger_depth,
            default_retry: default_retry(config),
        }
    }

    /// The largest document, as JSON text (`PICLOUD_DOCS_MAX_DOC_BYTES`).
    pub fn max_doc_bytes(&self) -> usize {
        self.max_doc_bytes
    }

    fn cause(&self, ctx: &CallContext) -> EventCause {
        EventCause {
            depth: ctx.depth,
            max_depth: self.max_depth,
            default_retry: self.default_retry,
        }
    }

    /// A document is a map, within the size cap, without NUL characters.
    fn validate_data(&self, data: &Value) -> ServiceResult<()> {
        if !data.is_object() {
            return Err(ServiceError::Invalid("a document is a map".into()));
        }
        let text = data.to_string();
        if text.len() > self.max_doc_bytes {
            return Err(ServiceError::Invalid(format!(
                "the document is {} bytes as JSON; the limit is {} (PICLOUD_DOCS_MAX_DOC_BYTES)",
                text.len(),
                self.max_doc_bytes
            )));
        }
        if text.contains("\\u0000") && contains_nul(data) {
            return Err(ServiceError::Invalid(
                "documents cannot contain NUL characters".into(),
            ));
        }
        Ok(())
    }

    fn written(&self, doc: Doc, outcome: &picloud_store::WriteOutcome) -> DocWrite {
        DocWrite {
            doc,
            skipped_for_depth: outcome.skipped_for_depth,
        }
    }

    pub async fn create(
        &self,
        ctx: &CallContext,
        collection: &str,
        data: &Value,
    ) -> ServiceResult<DocWrite> {
        ctx.require(Capability::DataWrite)?;
        validate_collection(collection)?;
        self.validate_data(data)?;
        let (doc, outcome) = self
            .store
            .docs_create(&ctx.app_id, collection, data, &self.cause(ctx))
            .await
            .map_err(|e| ServiceError::store(e, "app"))?;
        Ok(self.written(doc, &outcome))
    }

    /// The document, or `None` (also for a string that is not a document id).
    pub async fn get(
        &self,
        ctx: &CallContext,
        collection: &str,
        id: &str,
    ) -> ServiceResult<Option<Doc>> {
        ctx.require(Capability::DataRead)?;
        validate_collection(collection)?;
        let Ok(id) = DocId::parse(id) else {
            return Ok(None);
        };
        self.store
            .docs_get(&ctx.app_id, collection, &id)
            .await
            .map_err(|e| ServiceError::store(e, "app"))
    }

    /// Replaces the document's data; an unknown id is an error.
    pub async fn update(
        &self,
        ctx: &CallContext,
        collection: &str,
        id: &str,
        data: &Value,
    ) -> ServiceResult<DocWrite> {
        ctx.require(Capability::DataWrite)?;
        validate_collection(collection)?;
        self.validate_data(data)?;
        let doc_id = DocId::parse(id).map_err(|_| not_found(collection, id))?;
        let (doc, outcome) = self
            .store
            .docs_update(&ctx.app_id, collection, &doc_id, data, &self.cause(ctx))
            .await
            .map_err(|e| match e {
                picloud_store::StoreError::NotFound => not_found(collection, id),
                other => ServiceError::store(other, "document"),
            })?;
        Ok(self.written(doc, &outcome))
    }

    /// Applies `#{"$set", "$unset", "$inc"}` under the row's lock: concurrent patches
    /// never lose each other's changes.
    pub async fn patch(
        &self,
        ctx: &CallContext,
        collection: &str,
        id: &str,
        patch: &Value,
    ) -> ServiceResult<DocWrite> {
        ctx.require(Capability::DataWrite)?;
        validate_collection(collection)?;
        let parsed = Patch::parse(patch).map_err(|e| ServiceError::Invalid(e.0))?;
        if patch.to_string().contains("\\u0000") && contains_nul(patch) {
            return Err(ServiceError::Invalid(
                "documents cannot contain NUL characters".into(),
            ));
        }
        let doc_id = DocId::parse(id).map_err(|_| not_found(collection, id))?;
        let (doc, outcome) = self
            .store
            .docs_patch(
                &ctx.app_id,
                collection,
                &doc_id,
                &parsed,
                self.max_doc_bytes,
                &self.cause(ctx),
            )
            .await
            .map_err(|e| match e {
                picloud_store::StoreError::NotFound => not_found(collection, id),
                other => ServiceError::store(other, "document"),
            })?;
        Ok(self.written(doc, &outcome))
    }

    /// Deletes the document; returns whether it was there, and events skipped for
    /// depth.
    pub async fn delete(
        &self,
        ctx: &CallContext,
        collection: &str,
        id: &str,
    ) -> ServiceResult<(bool, usize)> {
        ctx.require(Capability::DataWrite)?;
        validate_collection(collection)?;
        let Ok(id) = DocId::parse(id) else {
            return Ok((false, 0));
        };
        let outcome = self
            .store
            .docs_delete(&ctx.app_id, collection, &id, &self.cause(ctx))
            .await
            .map_err(|e| ServiceError::store(e, "app"))?;
        Ok((outcome.prev.is_some(), outcome.skipped_for_depth))
    }

    /// Documents matching `filter` (the query language, with `$sort`, `$limit`,
    /// `$skip`).
    pub async fn find(
        &self,
        ctx: &CallContext,
        collection: &str,
        filter: &Value,
    ) -> ServiceResult<Vec<Doc>> {
        let query = Query::parse(filter).map_err(|e| ServiceError::Invalid(e.0))?;
        self.run(ctx, collection, &query).await
    }

    /// The first document `find` would return, or `None`.
    pub async fn find_one(
        &self,
        ctx: &CallContext,
        collection: &str,
        filter: &Value,
    ) -> ServiceResult<Option<Doc>> {
        let mut query = Query::parse(filter).map_err(|e| ServiceError::Invalid(e.0))?;
        query.limit = 1;
        Ok(self.run(ctx, collection, &query).await?.into_iter().next())
    }

    async fn run(
        &self,
        ctx: &CallContext,
        collection: &str,
        query: &Query,
    ) -> ServiceResult<Vec<Doc>> {
        ctx.require(Capability::DataRead)?;
        validate_collection(collection)?;
        self.store
            .docs_find(&ctx.app_id, collection, query)
            .await
            .map_err(|e| ServiceError::store(e, "app"))
    }

    /// A page of the collection in creation order.
    pub async fn list(
        &self,
        ctx: &CallContext,
        collection: &str,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ServiceResult<DocsPage> {
        ctx.require(Capability::DataRead)?;
        validate_collection(collection)?;
        let page =
            PageRequest::parse(cursor, limit).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let page = self
            .store
            .docs_list(&ctx.app_id, collection, None, &page)
            .await
            .map_err(|e| ServiceError::store(e, "app"))?;
        Ok(DocsPage {
            cursor: page.next_cursor.map(|c| c.as_str().to_owned()),
            items: page.items,
        })
    }
}
