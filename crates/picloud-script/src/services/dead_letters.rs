//! `dead_letters::{list, replay, resolve}` for the running app.

use picloud_store::{DeadLetter, DeadLetterFilter};
use rhai::plugin::*;
use rhai::{Array, Dynamic, Map};

use super::{call, error, PageOptions};
use crate::convert::json_to_dynamic;

fn to_map(dl: &DeadLetter) -> Dynamic {
    let mut m = Map::new();
    let s = |v: &str| Dynamic::from(v.to_owned());
    m.insert("id".into(), s(dl.id.as_str()));
    m.insert(
        "trigger_id".into(),
        dl.trigger_id
            .as_ref()
            .map_or(Dynamic::UNIT, |t| s(t.as_str())),
    );
    m.insert("script_id".into(), s(dl.script_id.as_str()));
    m.insert("source_kind".into(), s(dl.source.as_str()));
    m.insert("event".into(), json_to_dynamic(&dl.event()));
    m.insert("error".into(), s(&dl.error));
    m.insert("attempts".into(), Dynamic::from_int(i64::from(dl.attempts)));
    m.insert(
        "created_at".into(),
        s(&dl
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    );
    m.insert(
        "resolution".into(),
        dl.resolution.map_or(Dynamic::UNIT, |r| s(r.as_str())),
    );
    Dynamic::from_map(m)
}

#[export_module]
mod dead_letters_ns {
    use super::*;

    /// Open dead letters, newest first: `#{items, cursor}`.
    #[rhai_fn(name = "list", return_raw)]
    pub fn list_open() -> Result<Map, Box<EvalAltResult>> {
        list(Map::new())
    }

    /// Dead letters with `#{status?: "unresolved"|"resolved"|"all", cursor?, limit?}`.
    #[rhai_fn(return_raw)]
    pub fn list(options: Map) -> Result<Map, Box<EvalAltResult>> {
        let mut filter = DeadLetterFilter::Unresolved;
        let mut page = PageOptions::default();
        for (key, value) in &options {
            if page.take("dead_letters", key, value)? {
                continue;
            }
            match key.as_str() {
                "status" => {
                    filter = match value.clone().into_string().unwrap_or_default().as_str() {
                        "unresolved" => DeadLetterFilter::Unresolved,
                        "resolved" => DeadLetterFilter::Resolved,
                        "all" => DeadLetterFilter::All,
                        other => {
                            return Err(error("dead_letters", format!("unknown status {other:?}")))
                        }
                    }
                }
                other => {
                    return Err(error(
                        "dead_letters",
                        format!("unknown list option {other:?}"),
                    ))
                }
            }
        }
        let PageOptions { cursor, limit } = page;
        let (items, next) = call("dead_letters", |s, ctx| async move {
            s.dead_letters
                .list(&ctx, filter, cursor.as_deref(), limit)
                .await
        })?;
        let items: Array = items.iter().map(to_map).collect();
        let mut out = Map::new();
        out.insert("items".into(), Dynamic::from_array(items));
        out.insert(
            "cursor".into(),
            next.map(Dynamic::from).unwrap_or(Dynamic::UNIT),
        );
        Ok(out)
    }

    /// Delivers the dead letter's event again (same event id, attempt 1); returns its id.
    #[rhai_fn(return_raw)]
    pub fn replay(id: &str) -> Result<String, Box<EvalAltResult>> {
        let id = id.to_owned();
        let event = call("dead_letters", |s, ctx| async move {
            s.dead_letters.replay(&ctx, &id).await
        })?;
        Ok(event.into_string())
    }

    /// Marks the dead letter resolved.
    #[rhai_fn(return_raw)]
    pub fn resolve(id: &str) -> Result<(), Box<EvalAltResult>> {
        let id = id.to_owned();
        call("dead_letters", |s, ctx| async move {
            s.dead_letters.resolve(&ctx, &id).await
        })?;
        Ok(())
    }
}

pub(crate) fn module() -> Module {
    exported_module!(dead_letters_ns)
}
