//! `docs::collection(name)` and the methods of the handle it returns.

use picloud_store::Doc;
use rhai::plugin::*;
use rhai::{Array, Dynamic, ImmutableString, Map};

use super::{call, error, note_skipped, to_json, PageOptions};
use crate::convert::json_to_dynamic;

/// A handle on one document collection of the running app.
#[derive(Debug, Clone)]
pub struct DocsCollection {
    pub(crate) name: ImmutableString,
}

/// The envelope scripts see: `#{id, data, created_at, updated_at}`.
fn envelope(doc: &Doc) -> Dynamic {
    let at = |t: &chrono::DateTime<chrono::Utc>| {
        Dynamic::from(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    };
    let mut map = Map::new();
    map.insert("id".into(), Dynamic::from(doc.id.as_str().to_owned()));
    map.insert("data".into(), json_to_dynamic(&doc.data));
    map.insert("created_at".into(), at(&doc.created_at));
    map.insert("updated_at".into(), at(&doc.updated_at));
    Dynamic::from_map(map)
}

/// A document, patch or filter as JSON, at most a document's size.
fn json(value: &Dynamic, what: &str) -> Result<serde_json::Value, Box<EvalAltResult>> {
    to_json(
        "docs",
        what,
        value,
        (|s| s.docs.max_doc_bytes(), "PICLOUD_DOCS_MAX_DOC_BYTES"),
    )
}

#[export_module]
mod docs_ns {
    use super::*;

    /// A handle on the collection `name` of this app (letters, digits, `_`, `-`, `.`).
    #[rhai_fn(return_raw)]
    pub fn collection(name: ImmutableString) -> Result<DocsCollection, Box<EvalAltResult>> {
        picloud_services::DocsService::validate_collection_name(&name)
            .map_err(|e| error("docs", e))?;
        Ok(DocsCollection { name })
    }

    /// Stores a new document (a map); returns its envelope. Triggers fire `create`.
    #[rhai_fn(global, return_raw)]
    pub fn create(coll: DocsCollection, data: Dynamic) -> Result<Dynamic, Box<EvalAltResult>> {
        let data = json(&data, "document")?;
        let name = coll.name.clone();
        let written = call("docs", |s, ctx| async move {
            s.docs.create(&ctx, &name, &data).await
        })?;
        note_skipped("docs", written.skipped_for_depth);
        Ok(envelope(&written.doc))
    }

    /// The document's envelope, or `()`.
    #[rhai_fn(global, return_raw)]
    pub fn get(coll: DocsCollection, id: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        let name = coll.name.clone();
        let id = id.to_owned();
        let doc = call("docs", |s, ctx| async move {
            s.docs.get(&ctx, &name, &id).await
        })?;
        Ok(doc.as_ref().map(envelope).unwrap_or(Dynamic::UNIT))
    }

    /// Replaces the document's data; returns the new envelope. Throws if there is no
    /// such document.
    #[rhai_fn(global, return_raw)]
    pub fn update(
        coll: DocsCollection,
        id: &str,
        data: Dynamic,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        let data = json(&data, "document")?;
        let name = coll.name.clone();
        let id = id.to_owned();
        let written = call("docs", |s, ctx| async move {
            s.docs.update(&ctx, &name, &id, &data).await
        })?;
        note_skipped("docs", written.skipped_for_depth);
        Ok(envelope(&written.doc))
    }

    /// Applies `#{"$set": #{…}, "$unset": [...], "$inc": #{…}}` atomically; returns the
    /// new envelope. Throws if there is no such document.
    #[rhai_fn(global, return_raw)]
    pub fn patch(
        coll: DocsCollection,
        id: &str,
        patch: Map,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        let patch = json(&Dynamic::from_map(patch), "patch")?;
        let name = coll.name.clone();
        let id = id.to_owned();
        let written = call("docs", |s, ctx| async move {
            s.docs.patch(&ctx, &name, &id, &patch).await
        })?;
        note_skipped("docs", written.skipped_for_depth);
        Ok(envelope(&written.doc))
    }

    /// Deletes the document; returns whether it was there.
    #[rhai_fn(global, return_raw)]
    pub fn delete(coll: DocsCollection, id: &str) -> Result<bool, Box<EvalAltResult>> {
        let name = coll.name.clone();
        let id = id.to_owned();
        let (was_present, skipped) = call("docs", |s, ctx| async move {
            s.docs.delete(&ctx, &name, &id).await
        })?;
        note_skipped("docs", skipped);
        Ok(was_present)
    }

    /// Envelopes of the documents matching `filter` (see "Docs filters").
    #[rhai_fn(global, return_raw)]
    pub fn find(coll: DocsCollection, filter: Map) -> Result<Array, Box<EvalAltResult>> {
        let filter = json(&Dynamic::from_map(filter), "filter")?;
        let name = coll.name.clone();
        let docs = call("docs", |s, ctx| async move {
            s.docs.find(&ctx, &name, &filter).await
        })?;
        Ok(docs.iter().map(envelope).collect())
    }

    /// The first envelope `find` would return, or `()`.
    #[rhai_fn(global, return_raw)]
    pub fn find_one(coll: DocsCollection, filter: Map) -> Result<Dynamic, Box<EvalAltResult>> {
        let filter = json(&Dynamic::from_map(filter), "filter")?;
        let name = coll.name.clone();
        let doc = call("docs", |s, ctx| async move {
            s.docs.find_one(&ctx, &name, &filter).await
        })?;
        Ok(doc.as_ref().map(envelope).unwrap_or(Dynamic::UNIT))
    }

    /// The first page of documents in creation order: `#{items, cursor}`.
    #[rhai_fn(global, name = "list", return_raw)]
    pub fn list_all(coll: DocsCollection) -> Result<Map, Box<EvalAltResult>> {
        list(coll, Map::new())
    }

    /// Documents in creation order, with `#{cursor?, limit?}`; `cursor` is `()` on the
    /// last page.
    #[rhai_fn(global, return_raw)]
    pub fn list(coll: DocsCollection, options: Map) -> Result<Map, Box<EvalAltResult>> {
        let mut page = PageOptions::default();
        for (key, value) in &options {
            if !page.take("docs", key, value)? {
                return Err(error("docs", format!("unknown list option {key:?}")));
            }
        }
        let PageOptions { cursor, limit } = page;
        let name = coll.name.clone();
        let page = call("docs", |s, ctx| async move {
            s.docs.list(&ctx, &name, cursor.as_deref(), limit).await
        })?;
        let mut out = Map::new();
        out.insert(
            "items".into(),
            Dynamic::from_array(page.items.iter().map(envelope).collect()),
        );
        out.insert(
            "cursor".into(),
            page.cursor.map(Dynamic::from).unwrap_or(Dynamic::UNIT),
        );
        Ok(out)
    }
}

pub(crate) fn module() -> Module {
    exported_module!(docs_ns)
}
