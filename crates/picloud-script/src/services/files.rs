//! `files::collection(name)` and the methods of the handle it returns.

use bytes::Bytes;
use picloud_services::FileChanges;
use picloud_store::FileMeta;
use rhai::plugin::*;
use rhai::{Array, Blob, Dynamic, ImmutableString, Map};

use super::{call, call_weighed, error, note_skipped, PageOptions};

const NS: &str = "files";

/// A handle on one file collection of the running app.
#[derive(Debug, Clone)]
pub struct FilesCollection {
    pub(crate) name: ImmutableString,
}

/// `meta = #{id, name, content_type, size, checksum, created_at, updated_at}` (and the
/// collection).
pub(crate) fn meta(file: &FileMeta) -> Dynamic {
    let at = |t: &chrono::DateTime<chrono::Utc>| {
        Dynamic::from(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    };
    let mut map = Map::new();
    map.insert("id".into(), Dynamic::from(file.id.as_str().to_owned()));
    map.insert("collection".into(), Dynamic::from(file.collection.clone()));
    map.insert("name".into(), Dynamic::from(file.name.clone()));
    map.insert(
        "content_type".into(),
        Dynamic::from(file.content_type.clone()),
    );
    map.insert(
        "size".into(),
        Dynamic::from_int(i64::try_from(file.size).unwrap_or(i64::MAX)),
    );
    map.insert("checksum".into(), Dynamic::from(file.checksum.clone()));
    map.insert("created_at".into(), at(&file.created_at));
    map.insert("updated_at".into(), at(&file.updated_at));
    Dynamic::from_map(map)
}

/// A string field of a create/update map.
fn text(value: &Dynamic, field: &str) -> Result<String, Box<EvalAltResult>> {
    value
        .clone()
        .into_string()
        .map_err(|_| error(NS, format!("`{field}` must be a string")))
}

/// The bytes of `data`: a Blob, or a string's UTF-8 bytes.
fn bytes(value: Dynamic) -> Result<Bytes, Box<EvalAltResult>> {
    if value.is_blob() {
        let blob: Blob = value
            .into_blob()
            .map_err(|_| error(NS, "`data` must be a Blob"))?;
        return Ok(Bytes::from(blob));
    }
    if value.is_string() {
        return Ok(Bytes::from(text(&value, "data")?.into_bytes()));
    }
    Err(error(
        NS,
        format!(
            "`data` must be a Blob (or a string), not {}",
            value.type_name()
        ),
    ))
}

/// `#{name?, content_type?, data?}`; unknown keys throw, naming them.
fn changes(fields: Map, op: &str) -> Result<(FileChanges, Option<Bytes>), Box<EvalAltResult>> {
    let mut changes = FileChanges::default();
    let mut data = None;
    for (key, value) in fields {
        match key.as_str() {
            "name" => changes.name = Some(text(&value, "name")?),
            "content_type" => changes.content_type = Some(text(&value, "content_type")?),
            "data" => data = Some(bytes(value)?),
            other => {
                return Err(error(
                    NS,
                    format!("{op}: unknown field {other:?} (name, content_type, data)"),
                ))
            }
        }
    }
    Ok((changes, data))
}

#[export_module]
mod files_ns {
    use super::*;

    /// A handle on the collection `name` of this app (letters, digits, `_`, `-`, `.`).
    #[rhai_fn(return_raw)]
    pub fn collection(name: ImmutableString) -> Result<FilesCollection, Box<EvalAltResult>> {
        picloud_services::KvService::validate_collection_name(&name).map_err(|e| error(NS, e))?;
        Ok(FilesCollection { name })
    }

    /// Stores a new file from `#{name, content_type, data}` (`data` a Blob); returns
    /// its metadata. Triggers on the collection fire `create`.
    #[rhai_fn(global, return_raw)]
    pub fn create(coll: FilesCollection, fields: Map) -> Result<Dynamic, Box<EvalAltResult>> {
        let (changes, data) = changes(fields, "create")?;
        let name = changes
            .name
            .ok_or_else(|| error(NS, "create needs `name`"))?;
        let content_type = changes
            .content_type
            .ok_or_else(|| error(NS, "create needs `content_type`"))?;
        let data = data.ok_or_else(|| error(NS, "create needs `data` (a Blob)"))?;
        let collection = coll.name.clone();
        let written = call(NS, |s, ctx| async move {
            s.files
                .create(
                    &ctx,
                    &collection,
                    &name,
                    &content_type,
                    picloud_blob::stream_of(data),
                )
                .await
        })?;
        note_skipped(NS, written.skipped_for_depth);
        Ok(meta(&written.file))
    }

    /// The file's metadata, or `()`.
    #[rhai_fn(global, return_raw)]
    pub fn head(coll: FilesCollection, id: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        let collection = coll.name.clone();
        let id = id.to_owned();
        let file = call(NS, |s, ctx| async move {
            s.files.head(&ctx, &collection, &id).await
        })?;
        Ok(file.as_ref().map(meta).unwrap_or(Dynamic::UNIT))
    }

    /// The file's bytes as a Blob, checked against its checksum, or `()`.
    #[rhai_fn(global, return_raw)]
    pub fn get(
        ctx: NativeCallContext,
        coll: FilesCollection,
        id: &str,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        let max = match ctx.engine().max_blob_size() {
            0 => u64::MAX,
            n => u64::try_from(n).unwrap_or(u64::MAX),
        };
        let collection = coll.name.clone();
        let id = id.to_owned();
        let file = call_weighed(
            NS,
            |s, call_ctx| async move { s.files.read(&call_ctx, &collection, &id, max).await },
            |f| f.as_ref().map_or(0, |(_, bytes)| bytes.len()),
        )?;
        Ok(match file {
            Some((_, bytes)) => Dynamic::from_blob(bytes.to_vec()),
            None => Dynamic::UNIT,
        })
    }

    /// Changes `#{name?, content_type?, data?}` of a file; returns its metadata.
    /// Throws when there is no such file. Triggers fire `update`.
    #[rhai_fn(global, return_raw)]
    pub fn update(
        coll: FilesCollection,
        id: &str,
        fields: Map,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        let (mut changes, data) = changes(fields, "update")?;
        if changes.name.is_none() && changes.content_type.is_none() && data.is_none() {
            return Err(error(
                NS,
                "update needs at least one of name, content_type, data",
            ));
        }
        changes.body = data.map(picloud_blob::stream_of);
        let collection = coll.name.clone();
        let id = id.to_owned();
        let written = call(NS, |s, ctx| async move {
            s.files.update(&ctx, &collection, &id, changes).await
        })?;
        note_skipped(NS, written.skipped_for_depth);
        Ok(meta(&written.file))
    }

    /// Deletes the file; returns whether it existed. Triggers fire `delete`.
    #[rhai_fn(global, return_raw)]
    pub fn delete(coll: FilesCollection, id: &str) -> Result<bool, Box<EvalAltResult>> {
        let collection = coll.name.clone();
        let id = id.to_owned();
        let (was_present, skipped) = call(NS, |s, ctx| async move {
            s.files.delete(&ctx, &collection, &id).await
        })?;
        note_skipped(NS, skipped);
        Ok(was_present)
    }

    /// The first page of the collection's files: `#{items: [meta], cursor}`.
    #[rhai_fn(global, name = "list", return_raw)]
    pub fn list_all(coll: FilesCollection) -> Result<Map, Box<EvalAltResult>> {
        list(coll, Map::new())
    }

    /// Files in creation order, with `#{cursor?, limit?}`; `cursor` is `()` on the last
    /// page.
    #[rhai_fn(global, return_raw)]
    pub fn list(coll: FilesCollection, options: Map) -> Result<Map, Box<EvalAltResult>> {
        let mut page = PageOptions::default();
        for (key, value) in &options {
            if !page.take(NS, key, value)? {
                return Err(error(NS, format!("unknown list option {key:?}")));
            }
        }
        let PageOptions { cursor, limit } = page;
        let collection = coll.name.clone();
        let page = call(NS, |s, ctx| async move {
            s.files
                .list(&ctx, Some(&collection), cursor.as_deref(), limit)
                .await
        })?;
        let items: Array = page.items.iter().map(meta).collect();
        let mut out = Map::new();
        out.insert("items".into(), Dynamic::from_array(items));
        out.insert(
            "cursor".into(),
            page.cursor.map(Dynamic::from).unwrap_or(Dynamic::UNIT),
        );
        Ok(out)
    }
}

pub(crate) fn module() -> Module {
    exported_module!(files_ns)
}
