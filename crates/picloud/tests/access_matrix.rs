//! The access matrix: every admin route × every kind of caller, with the expected
//! outcome derived from the route's declared capability (`x-capability` in the OpenAPI
//! document, which is the router's own list) and an independent table of what each
//! role may do (API.md "Auth and users"). A route without a declared capability fails
//! the test; so does a route whose enforcement disagrees with its declaration.

use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// Signed in, but not a member of the app.
    Nobody,
    Viewer,
    Editor,
    AppAdmin,
    InstanceAdmin,
}

const EVERYONE: [Who; 5] = [
    Who::Nobody,
    Who::Viewer,
    Who::Editor,
    Who::AppAdmin,
    Who::InstanceAdmin,
];

#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Allowed,
    Forbidden,
    /// The app does not exist for this caller.
    Hidden,
}

/// API.md: viewer → app:read, script:read, script:invoke; editor → + script:write;
/// admin → + app:admin (routes, triggers, members, …); instance admin → everything.
fn expected(capability: &str, who: Who) -> Expect {
    use Expect::*;
    let rank = match who {
        Who::Nobody => 0,
        Who::Viewer => 1,
        Who::Editor => 2,
        Who::AppAdmin => 3,
        Who::InstanceAdmin => 4,
    };
    let app_level = |needed: u8| {
        if rank >= needed {
            Allowed
        } else if rank == 0 {
            Hidden
        } else {
            Forbidden
        }
    };
    match capability {
        "signed_in" => Allowed,
        "app.create" | "user.admin" | "audit.read_all" => {
            if who == Who::InstanceAdmin {
                Allowed
            } else {
                Forbidden
            }
        }
        "app.read" | "script.read" | "data.read" => app_level(1),
        "script.write" | "data.write" => app_level(2),
        "app.admin" | "members.manage" | "route.manage" | "audit.read" | "trigger.manage" => {
            app_level(3)
        }
        other => panic!("capability {other:?} has no row in the expectation table"),
    }
}

/// Valid bodies, so that an allowed call gets past validation.
fn body_for(method: &Method, template: &str, n: usize) -> Option<Value> {
    let body = match (method.as_str(), template) {
        ("POST", "/api/v1/admin/apps") => json!({"slug": format!("made-{n}")}),
        ("PATCH", "/api/v1/admin/apps/{app}") => json!({"name": "Renamed"}),
        ("POST", "/api/v1/admin/apps/{app}/scripts") => {
            json!({"name": format!("s{n}"), "source": "1"})
        }
        ("PUT", "/api/v1/admin/scripts/{id}")
        | ("PUT", "/api/v1/admin/apps/{app}/scripts/{id}") => {
            json!({"source": "2"})
        }
        ("POST", "/api/v1/admin/scripts/{id}/routes") => {
            json!({"method": "GET", "path": format!("/r{n}")})
        }
        ("POST", "/api/v1/admin/users") => {
            json!({"email": format!("new{n}@example.com"), "password": "password123"})
        }
        ("PATCH", "/api/v1/admin/users/{id}") => json!({"disabled": false}),
        ("POST", "/api/v1/admin/api-keys") => json!({"name": "k", "scopes": ["script:read"]}),
        ("PUT", "/api/v1/admin/apps/{app}/members/{user_id}") => json!({"role": "viewer"}),
        ("POST", "/api/v1/admin/apps/{app}/triggers/{trigger}") => json!({"script_id": "{script}"}),
        ("PATCH", "/api/v1/admin/apps/{app}/triggers/{trigger}") => json!({"enabled": false}),
        ("POST", "/api/v1/admin/apps/{app}/docs/{collection}/indexes") => json!({"field": "f"}),
        // File bytes: any body will do (an upload without `?name=` is a 422).
        ("POST", "/api/v1/admin/apps/{app}/files/{collection}")
        | ("PUT", "/api/v1/admin/apps/{app}/files/{collection}/{file_id}/content") => {
            json!({"bytes": n})
        }
        ("POST", "/api/v1/admin/apps/{app}/secrets") => {
            json!({"name": format!("s{n}"), "value": {"token": n}})
        }
        ("POST", "/api/v1/admin/apps/{app}/dead-letters/{id}/replay")
        | ("POST", "/api/v1/admin/apps/{app}/dead-letters/{id}/resolve")
        | ("POST", "/api/v1/admin/apps/{app}/secrets/{name}/reveal") => return None,
        ("GET", _) | ("DELETE", _) => return None,
        (m, t) => panic!("no request body for {m} {t}: add one to body_for"),
    };
    Some(body)
}

struct Callers {
    tokens: Vec<(Who, String)>,
    ids: Vec<(Who, String)>,
}

async fn make_user(app: &TestApp, email: &str) -> (String, String) {
    let user = app
        .admin_ok(
            Method::POST,
            "/api/v1/admin/users",
            Some(json!({"email": email, "password": "password123"})),
            201,
        )
        .await;
    let token = app.login(email, "password123").await;
    (user["id"].as_str().expect("id").to_owned(), token)
}

async fn callers(app: &TestApp) -> Callers {
    let mut tokens = vec![(Who::InstanceAdmin, app.admin_token.clone())];
    let mut ids = Vec::new();
    for (who, email) in [
        (Who::Nobody, "nobody@example.com"),
        (Who::Viewer, "viewer@example.com"),
        (Who::Editor, "editor@example.com"),
        (Who::AppAdmin, "appadmin@example.com"),
    ] {
        let (id, token) = make_user(app, email).await;
        tokens.push((who, token));
        ids.push((who, id));
    }
    Callers { tokens, ids }
}

/// A fresh app with members, a script, a route, a run, a member to change and a user
/// to administer: everything an allowed call could touch, nothing shared between calls.
async fn fixture(
    app: &TestApp,
    callers: &Callers,
    n: usize,
    who: Who,
    token: &str,
) -> Vec<(&'static str, String)> {
    let slug = format!("app-{n}");
    app.create_app(&slug).await;
    for (member, role) in [
        (Who::Viewer, "viewer"),
        (Who::Editor, "editor"),
        (Who::AppAdmin, "admin"),
    ] {
        let id = &callers
            .ids
            .iter()
            .find(|(w, _)| *w == member)
            .expect("member")
            .1;
        app.admin_ok(
            Method::PUT,
            &format!("/api/v1/admin/apps/{slug}/members/{id}"),
            Some(json!({"role": role})),
            200,
        )
        .await;
    }
    let script = app.deploy(&slug, "GET", "/hit", "\"hit\"").await;
    let routes = app
        .admin_ok(
            Method::GET,
            &format!("/api/v1/admin/apps/{slug}/routes"),
            None,
            200,
        )
        .await;
    let route = routes["items"][0]["id"].as_str().expect("route").to_owned();
    app.on_host(&slug, Method::GET, "/hit")
        .send()
        .await
        .expect("run");
    let execution = app.executions(&slug, 1).await[0]["id"]
        .as_str()
        .expect("exe")
        .to_owned();
    let target = app
        .admin_ok(
            Method::POST,
            "/api/v1/admin/users",
            Some(json!({"email": format!("target{n}@example.com"), "password": "password123"})),
            201,
        )
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.admin_ok(
        Method::PUT,
        &format!("/api/v1/admin/apps/{slug}/members/{target}"),
        Some(json!({"role": "viewer"})),
        200,
    )
    .await;
    // A key of the caller's own, for the key routes. Written through the store: a
    // caller without a role (Nobody) holds no scope a key could carry.
    let me: Value = app
        .call_as(token, Method::GET, "/api/v1/auth/me", None)
        .await
        .json()
        .await
        .expect("json");
    let owner = picloud_core::UserId::parse(me["id"].as_str().expect("id")).expect("user id");
    let key = app
        .started()
        .state
        .store
        .create_api_key(picloud_store::NewApiKey {
            user_id: owner,
            name: "own".into(),
            key_hash: format!("matrix-{n}"),
            prefix: "pk_matrix".into(),
            scopes: vec![picloud_core::access::Scope::AppRead],
            app_id: None,
            expires_at: None,
        })
        .await
        .unwrap_or_else(|e| panic!("{who:?}'s own key: {e}"))
        .id
        .to_string();
    let trigger = app
        .admin_ok(
            Method::POST,
            &format!("/api/v1/admin/apps/{slug}/triggers/kv"),
            Some(json!({"script_id": script, "collection": "c"})),
            201,
        )
        .await["id"]
        .as_str()
        .expect("trigger")
        .to_owned();
    let dead_letter = dead_letter(app, &slug, &script).await;
    // An index on `c.f`, for the route that drops one.
    app.admin_ok(
        Method::POST,
        &format!("/api/v1/admin/apps/{slug}/docs/c/indexes"),
        Some(json!({"field": "f"})),
        201,
    )
    .await;
    let file = app.upload(&slug, "c", "f.txt", "text/plain", "hello").await["id"]
        .as_str()
        .expect("file")
        .to_owned();
    // A secret, for the routes that delete and reveal one.
    app.admin_ok(
        Method::POST,
        &format!("/api/v1/admin/apps/{slug}/secrets"),
        Some(json!({"name": "s", "value": "v"})),
        201,
    )
    .await;
    vec![
        ("{app}", slug),
        ("trigger", trigger),
        ("dead_letter", dead_letter),
        ("{user_id}", target.clone()),
        ("script", script),
        ("route", route),
        ("execution", execution),
        ("user", target),
        ("key", key),
        ("{file_id}", file),
    ]
}

/// A dead letter, made through the store: an event due in a year (so the server's
/// dispatcher leaves it alone), claimed and exhausted here.
async fn dead_letter(app: &TestApp, slug: &str, script: &str) -> String {
    let store = app.started().state.store.clone();
    let app_id = store.get_app_by_slug(slug).await.expect("app").id;
    let far = picloud_core::now() + chrono::Duration::days(365);
    store
        .enqueue_event(picloud_store::NewEvent {
            id: picloud_core::EventId::new(),
            app_id: app_id.clone(),
            trigger_id: None,
            script_id: picloud_core::ScriptId::parse(script).expect("script id"),
            source: picloud_core::model::ExecutionSource::Http,
            payload: json!({"source": "http", "op": "request"}),
            retry: picloud_store::RetryPolicy::ONCE,
            depth: 0,
            due_at: far,
        })
        .await
        .expect("enqueue");
    let claimed = store
        .claim_events(
            far + chrono::Duration::seconds(1),
            500,
            std::time::Duration::from_secs(60),
        )
        .await
        .expect("claim");
    let event = claimed
        .into_iter()
        .find(|e| e.app_id == app_id)
        .expect("our event");
    store
        .dead_letter_event(&event.id, event.lease_version, "made for the matrix", 8)
        .await
        .expect("dead letter")
        .expect("written")
        .id
        .into_string()
}

fn fill(template: &str, values: &[(&'static str, String)]) -> String {
    let get = |k: &str| {
        values
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
            .expect("value")
    };
    let id_kind = if template.contains("/scripts/{id}") {
        "script"
    } else if template.contains("/routes/{id}") {
        "route"
    } else if template.contains("/executions/{id}") {
        "execution"
    } else if template.contains("/users/{id}") {
        "user"
    } else if template.contains("/api-keys/{id}") {
        "key"
    } else if template.contains("/dead-letters/{id}") {
        "dead_letter"
    } else {
        "none"
    };
    let mut path = template
        .replace("{app}", &get("{app}"))
        .replace("{user_id}", &get("{user_id}"))
        .replace("{collection}", "c")
        .replace("{file_id}", &get("{file_id}"))
        .replace("{field}", "f")
        .replace("{name}", "s");
    if path.contains("{id}") {
        path = path.replace("{id}", &get(id_kind));
    }
    assert!(
        !path.replace("{trigger}", "").contains('{'),
        "unfilled parameter in {template}"
    );
    path
}

async fn matrix(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    let callers = callers(&app).await;
    let doc: Value = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    let mut checked = 0;
    let mut n = 0;
    for (template, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let needs_auth = op.get("security").is_some();
            let capability = op["x-capability"].as_str();
            if template.starts_with("/api/v1/admin") || needs_auth {
                assert!(
                    capability.is_some(),
                    "{method} {template} declares no capability"
                );
            }
            let Some(capability) = capability else {
                continue;
            };
            if !template.starts_with("/api/v1/admin") {
                continue;
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            for who in EVERYONE {
                n += 1;
                let token = &callers
                    .tokens
                    .iter()
                    .find(|(w, _)| *w == who)
                    .expect("token")
                    .1;
                let values = fixture(&app, &callers, n, who, token).await;
                let mut path = fill(template, &values);
                // `{trigger}` is the kind when creating, the id otherwise.
                let trigger = if method == Method::POST {
                    "kv".to_owned()
                } else {
                    values[1].1.clone()
                };
                path = path.replace("{trigger}", &trigger);
                if capability == "audit.read" {
                    path.push_str(&format!("?app={}", values[0].1));
                }
                let r = app
                    .call_as(token, method.clone(), &path, body_for(&method, template, n))
                    .await;
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                let outcome = match status {
                    403 => Expect::Forbidden,
                    404 => Expect::Hidden,
                    401 => panic!("{who:?} {method} {path}: 401 with a valid session"),
                    _ => Expect::Allowed,
                };
                assert_eq!(
                    outcome,
                    expected(capability, who),
                    "{who:?} {method} {template} ({capability}) answered {status}: {text}"
                );
                if outcome == Expect::Allowed {
                    assert!(
                        status < 400 || status == 409 || status == 422,
                        "{who:?} {method} {path}: {status} {text}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 5 * 25, "the matrix covered {checked} calls");
    app.shutdown().await;
}

picloud_testkit::backend_tests!(every_admin_route_for_every_role => matrix);
