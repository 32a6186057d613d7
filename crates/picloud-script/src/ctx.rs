//! The `ctx` variable a run sees (SCRIPTING.md "ctx").

use rhai::{Dynamic, Map};

use crate::convert::json_to_dynamic;

#[derive(Debug, Clone)]
pub struct AppRef {
    pub id: String,
    pub slug: String,
}

#[derive(Debug, Clone)]
pub struct ScriptRef {
    pub id: String,
    pub name: String,
}

/// The authenticated caller a run acts for.
#[derive(Debug, Clone)]
pub struct PrincipalInput {
    /// `"user"` or `"api_key"`.
    pub kind: &'static str,
    pub user_id: String,
    pub key_id: Option<String>,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum RequestBody {
    /// Empty, or a content type the runtime does not parse.
    None,
    Json(serde_json::Value),
    Text(String),
    Form(Vec<(String, String)>),
}

#[derive(Debug, Clone)]
pub struct RequestInput {
    pub method: String,
    /// App-relative path.
    pub path: String,
    pub params: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    /// Lower-case names; repeated headers joined with ", ".
    pub headers: Vec<(String, String)>,
    pub body: RequestBody,
    pub body_raw: Vec<u8>,
}

/// Everything a run is given.
#[derive(Debug, Clone)]
pub struct RunInput {
    pub app: AppRef,
    pub script: ScriptRef,
    pub principal: Option<PrincipalInput>,
    pub request: Option<RequestInput>,
    pub event: Option<serde_json::Value>,
    pub execution_id: String,
    pub attempt: u32,
    /// The services the run may call, for its app and caller.
    pub services: Option<std::sync::Arc<crate::ServiceAccess>>,
}

fn text(s: &str) -> Dynamic {
    Dynamic::from(rhai::ImmutableString::from(s))
}

fn string_map(pairs: &[(String, String)]) -> Dynamic {
    let mut map = Map::new();
    for (k, v) in pairs {
        map.insert(k.as_str().into(), text(v));
    }
    Dynamic::from_map(map)
}

/// A map of a few fixed fields: inserted one by one (collecting would sort a
/// temporary vector first, a wasted allocation on every run).
fn map<const N: usize>(fields: [(&str, Dynamic); N]) -> Dynamic {
    let mut map = Map::new();
    for (k, v) in fields {
        map.insert(k.into(), v);
    }
    Dynamic::from_map(map)
}

/// `ctx` for `input`. Built from a reference, so an inline attempt that gives way can
/// hand the same input to a script thread; only the raw body, which may be large, is
/// passed in owned.
pub(crate) fn build(input: &RunInput, body_raw: Vec<u8>) -> Dynamic {
    let app = map([("id", text(&input.app.id)), ("slug", text(&input.app.slug))]);
    let script = map([
        ("id", text(&input.script.id)),
        ("name", text(&input.script.name)),
    ]);
    let principal = match &input.principal {
        None => Dynamic::UNIT,
        Some(p) => {
            let mut fields = Map::new();
            fields.insert("kind".into(), Dynamic::from(p.kind));
            fields.insert("id".into(), text(&p.user_id));
            if let Some(key_id) = &p.key_id {
                fields.insert("key_id".into(), text(key_id));
            }
            let scopes: rhai::Array = p.scopes.iter().map(|s| text(s)).collect();
            fields.insert("scopes".into(), Dynamic::from_array(scopes));
            Dynamic::from_map(fields)
        }
    };
    let execution = map([
        ("id", text(&input.execution_id)),
        ("attempt", Dynamic::from_int(i64::from(input.attempt))),
    ]);
    let mut ctx = Map::new();
    ctx.insert("app".into(), app);
    ctx.insert("script".into(), script);
    ctx.insert("principal".into(), principal);
    ctx.insert("execution".into(), execution);
    if let Some(req) = &input.request {
        let body = match &req.body {
            RequestBody::None => Dynamic::UNIT,
            RequestBody::Json(value) => json_to_dynamic(value),
            RequestBody::Text(t) => text(t),
            RequestBody::Form(pairs) => string_map(pairs),
        };
        let request = map([
            ("method", text(&req.method)),
            ("path", text(&req.path)),
            ("params", string_map(&req.params)),
            ("query", string_map(&req.query)),
            ("headers", string_map(&req.headers)),
            ("body", body),
            ("body_raw", Dynamic::from_blob(body_raw)),
        ]);
        ctx.insert("request".into(), request);
    }
    if let Some(event) = &input.event {
        ctx.insert("event".into(), json_to_dynamic(event));
    }
    Dynamic::from_map(ctx)
}
