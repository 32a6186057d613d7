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

fn string_map(pairs: Vec<(String, String)>) -> Dynamic {
    let map: Map = pairs
        .into_iter()
        .map(|(k, v)| (k.into(), Dynamic::from(v)))
        .collect();
    Dynamic::from_map(map)
}

fn map<const N: usize>(fields: [(&str, Dynamic); N]) -> Dynamic {
    let map: Map = fields.into_iter().map(|(k, v)| (k.into(), v)).collect();
    Dynamic::from_map(map)
}

pub(crate) fn build(input: RunInput) -> Dynamic {
    let app = map([
        ("id", Dynamic::from(input.app.id)),
        ("slug", Dynamic::from(input.app.slug)),
    ]);
    let script = map([
        ("id", Dynamic::from(input.script.id)),
        ("name", Dynamic::from(input.script.name)),
    ]);
    let principal = match input.principal {
        None => Dynamic::UNIT,
        Some(p) => {
            let mut fields = Map::new();
            fields.insert("kind".into(), Dynamic::from(p.kind));
            fields.insert("id".into(), Dynamic::from(p.user_id));
            if let Some(key_id) = p.key_id {
                fields.insert("key_id".into(), Dynamic::from(key_id));
            }
            let scopes: rhai::Array = p.scopes.into_iter().map(Dynamic::from).collect();
            fields.insert("scopes".into(), Dynamic::from_array(scopes));
            Dynamic::from_map(fields)
        }
    };
    let execution = map([
        ("id", Dynamic::from(input.execution_id)),
        ("attempt", Dynamic::from_int(i64::from(input.attempt))),
    ]);
    let mut ctx = Map::new();
    ctx.insert("app".into(), app);
    ctx.insert("script".into(), script);
    ctx.insert("principal".into(), principal);
    ctx.insert("execution".into(), execution);
    if let Some(req) = input.request {
        let body = match req.body {
            RequestBody::None => Dynamic::UNIT,
            RequestBody::Json(value) => json_to_dynamic(&value),
            RequestBody::Text(text) => Dynamic::from(text),
            RequestBody::Form(pairs) => string_map(pairs),
        };
        let request = map([
            ("method", Dynamic::from(req.method)),
            ("path", Dynamic::from(req.path)),
            ("params", string_map(req.params)),
            ("query", string_map(req.query)),
            ("headers", string_map(req.headers)),
            ("body", body),
            ("body_raw", Dynamic::from_blob(req.body_raw)),
        ]);
        ctx.insert("request".into(), request);
    }
    if let Some(event) = input.event {
        ctx.insert("event".into(), json_to_dynamic(&event));
    }
    Dynamic::from_map(ctx)
}
