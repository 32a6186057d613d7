//! API keys, cookie sessions and CSRF, login throttling, users, members and the audit
//! log: the hostile cases of the identity work.

use picloud_testkit::{Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn status(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn user(app: &TestApp, email: &str) -> (String, String) {
    let u = app
        .admin_ok(
            Method::POST,
            "/api/v1/admin/users",
            Some(json!({"email": email, "password": "password123"})),
            201,
        )
        .await;
    (
        u["id"].as_str().expect("id").to_owned(),
        app.login(email, "password123").await,
    )
}

async fn member(app: &TestApp, slug: &str, user_id: &str, role: &str) {
    app.admin_ok(
        Method::PUT,
        &format!("/api/v1/admin/apps/{slug}/members/{user_id}"),
        Some(json!({"role": role})),
        200,
    )
    .await;
}

async fn new_key(app: &TestApp, token: &str, body: Value) -> (String, String) {
    let r = app
        .call_as(token, Method::POST, "/api/v1/admin/api-keys", Some(body))
        .await;
    let (s, b) = status(r).await;
    assert_eq!(s, 201, "{b}");
    (
        b["id"].as_str().expect("id").to_owned(),
        b["key"].as_str().expect("key").to_owned(),
    )
}

async fn api_keys(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("shop").await;
    app.create_app("other").await;
    let (dev_id, dev) = user(&app, "dev@example.com").await;
    member(&app, "shop", &dev_id, "editor").await;
    member(&app, "other", &dev_id, "viewer").await;

    // Shown once, stored only as a hash.
    let (key_id, key) = new_key(
        &app,
        &dev,
        json!({"name": "ci", "scopes": ["script:read", "script:write", "app:read"]}),
    )
    .await;
    assert!(key.starts_with("pk_") && key.len() >= 3 + 43, "{key}");
    let listed = app
        .call_as(&dev, Method::GET, "/api/v1/admin/api-keys", None)
        .await
        .json::<Value>()
        .await
        .expect("json");
    let item = &listed["items"][0];
    assert_eq!(item["id"], key_id.as_str());
    assert!(item.get("key").is_none(), "the key is never shown again");
    assert_eq!(item["prefix"], &key[..11]);
    assert_eq!(
        item["scopes"],
        json!(["app:read", "script:read", "script:write"])
    );

    // The key acts for its owner: an editor's write works on shop...
    let r = app
        .call_as(
            &key,
            Method::POST,
            "/api/v1/admin/apps/shop/scripts",
            Some(json!({"name": "by_key", "source": "1"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    // ...but not where the owner is only a viewer (intersection with the role).
    let r = app
        .call_as(
            &key,
            Method::POST,
            "/api/v1/admin/apps/other/scripts",
            Some(json!({"name": "by_key", "source": "1"})),
        )
        .await;
    assert_eq!(r.status(), 403);
    let used = app
        .call_as(&dev, Method::GET, "/api/v1/admin/api-keys", None)
        .await
        .json::<Value>()
        .await
        .expect("json");
    assert!(used["items"][0]["last_used_at"].as_str().is_some());
    // A key cannot mint keys.
    let r = app
        .call_as(
            &key,
            Method::POST,
            "/api/v1/admin/api-keys",
            Some(json!({"name": "x", "scopes": ["app:read"]})),
        )
        .await;
    assert_eq!(r.status(), 403);

    // App-scoped: another app does not exist for it, even one the owner can see.
    let (_, scoped) = new_key(
        &app,
        &dev,
        json!({"name": "shop only", "scopes": ["app:read"], "app_id": "shop"}),
    )
    .await;
    assert_eq!(
        app.call_as(&scoped, Method::GET, "/api/v1/admin/apps/shop", None)
            .await
            .status(),
        200
    );
    let (s, b) = status(
        app.call_as(&scoped, Method::GET, "/api/v1/admin/apps/other", None)
            .await,
    )
    .await;
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("not_found")));
    let mine = app
        .call_as(&scoped, Method::GET, "/api/v1/admin/apps", None)
        .await
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(mine["items"].as_array().map(Vec::len), Some(1));
    // A key for an app the owner cannot see is refused as if the app did not exist.
    app.create_app("secret").await;
    let r = app
        .call_as(
            &dev,
            Method::POST,
            "/api/v1/admin/api-keys",
            Some(json!({"name": "x", "scopes": ["app:read"], "app_id": "secret"})),
        )
        .await;
    assert_eq!(r.status(), 404);
    let r = app
        .call_as(
            &dev,
            Method::POST,
            "/api/v1/admin/api-keys",
            Some(json!({"name": "x", "scopes": ["root"]})),
        )
        .await;
    assert_eq!(r.status(), 422);
    let r = app
        .call_as(
            &dev,
            Method::POST,
            "/api/v1/admin/api-keys",
            Some(
                json!({"name": "x", "scopes": ["app:read"], "expires_at": "2001-01-01T00:00:00Z"}),
            ),
        )
        .await;
    assert_eq!(r.status(), 422);

    // Expired keys stop working.
    let (expiring_id, expiring) =
        new_key(&app, &dev, json!({"name": "soon", "scopes": ["app:read"]})).await;
    let store = app.started().state.store.clone();
    let key_row = store
        .get_api_key(&picloud_core::ApiKeyId::parse(&expiring_id).expect("id"))
        .await
        .expect("row");
    assert_eq!(
        app.call_as(&expiring, Method::GET, "/api/v1/auth/me", None)
            .await
            .status(),
        200
    );
    let hash = picloud_core::crypto::hash_token(&expiring);
    assert!(store
        .api_key_by_hash(&hash, key_row.created_at + chrono::Duration::days(1))
        .await
        .is_ok());
    // Rewrite its expiry into the past through a fresh key row (the API refuses past dates).
    store.delete_api_key(&key_row.id).await.expect("delete");
    store
        .create_api_key(picloud_store::NewApiKey {
            user_id: key_row.user_id.clone(),
            name: "expired".into(),
            key_hash: hash,
            prefix: key_row.prefix.clone(),
            scopes: key_row.scopes.clone(),
            app_id: None,
            expires_at: Some(picloud_core::now() - chrono::Duration::seconds(1)),
        })
        .await
        .expect("expired row");
    assert_eq!(
        app.call_as(&expiring, Method::GET, "/api/v1/auth/me", None)
            .await
            .status(),
        401
    );

    // Revoked: 401 at once.
    let r = app
        .call_as(
            &dev,
            Method::DELETE,
            &format!("/api/v1/admin/api-keys/{key_id}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        app.call_as(&key, Method::GET, "/api/v1/auth/me", None)
            .await
            .status(),
        401
    );
    // Someone else's key is not yours to delete (nor to know of).
    let (other_id, _) = new_key(
        &app,
        &app.admin_token,
        json!({"name": "admin's", "scopes": ["app:read"]}),
    )
    .await;
    let r = app
        .call_as(
            &dev,
            Method::DELETE,
            &format!("/api/v1/admin/api-keys/{other_id}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 404);
    let all = app
        .admin_ok(Method::GET, "/api/v1/admin/api-keys", None, 200)
        .await;
    assert!(
        all["items"].as_array().expect("items").len() >= 3,
        "instance admins see everyone's keys"
    );

    // A disabled owner's keys stop working at once.
    app.admin_ok(
        Method::PATCH,
        &format!("/api/v1/admin/users/{dev_id}"),
        Some(json!({"disabled": true})),
        200,
    )
    .await;
    assert_eq!(
        app.call_as(&scoped, Method::GET, "/api/v1/admin/apps/shop", None)
            .await
            .status(),
        401
    );
    assert_eq!(
        app.call_as(&dev, Method::GET, "/api/v1/auth/me", None)
            .await
            .status(),
        401
    );
    app.shutdown().await;
}

async fn keys_on_the_data_plane(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("shop").await;
    let s = app
        .create_script(
            "shop",
            "guarded",
            "#{kind: ctx.principal.kind, scopes: ctx.principal.scopes, key: ctx.principal.key_id}",
        )
        .await;
    app.admin_ok(
        Method::POST,
        &format!(
            "/api/v1/admin/scripts/{}/routes",
            s["id"].as_str().expect("id")
        ),
        Some(json!({"method": "GET", "path": "/guarded", "auth": "required"})),
        201,
    )
    .await;
    app.create_app("other").await;
    let (dev_id, dev) = user(&app, "dev@example.com").await;
    member(&app, "shop", &dev_id, "viewer").await;
    member(&app, "other", &dev_id, "viewer").await;
    let (invoke_id, invoke) = new_key(
        &app,
        &dev,
        json!({"name": "i", "scopes": ["script:invoke"]}),
    )
    .await;
    let (_, read_only) = new_key(&app, &dev, json!({"name": "r", "scopes": ["script:read"]})).await;
    let (_, elsewhere) = new_key(
        &app,
        &dev,
        json!({"name": "o", "scopes": ["script:invoke"], "app_id": "other"}),
    )
    .await;
    let call = |token: &str| {
        app.on_host("shop", Method::GET, "/guarded")
            .bearer_auth(token.to_owned())
            .send()
    };
    let r = call(&invoke).await.expect("r");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["kind"], "api_key");
    assert_eq!(body["key"], invoke_id.as_str());
    assert_eq!(body["scopes"], json!(["script:invoke"]));
    assert_eq!(call(&read_only).await.expect("r").status(), 403);
    assert_eq!(call(&elsewhere).await.expect("r").status(), 403);
    assert_eq!(call("pk_forged").await.expect("r").status(), 401);
    assert_eq!(
        app.on_host("shop", Method::GET, "/guarded")
            .send()
            .await
            .expect("r")
            .status(),
        401
    );
    // A viewer's session holds script:invoke; its scopes are the role's.
    let r = call(&dev).await.expect("r");
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body["scopes"],
        json!(["app:read", "script:read", "script:invoke"])
    );
    app.shutdown().await;
}

async fn cookie_sessions_need_csrf(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    let client = reqwest::Client::new();
    let r = client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": picloud_testkit::app::ADMIN_EMAIL, "password": picloud_testkit::app::ADMIN_PASSWORD, "cookie": true}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 200);
    let set_cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(set_cookie.contains("Path=/api"), "{set_cookie}");
    assert!(!set_cookie.contains("Secure"), "plain HTTP: no Secure flag");
    let body: Value = r.json().await.expect("json");
    assert!(body.get("token").is_none(), "the token stays in the cookie");
    let csrf = body["csrf_token"].as_str().expect("csrf").to_owned();
    let cookie = set_cookie.split(';').next().expect("pair").to_owned();

    let with_cookie = |method: Method, path: &str| {
        client
            .request(method, app.url(path))
            .header("cookie", cookie.clone())
    };
    // Reads need no header.
    let me: Value = with_cookie(Method::GET, "/api/v1/auth/me")
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(
        me["csrf_token"],
        csrf.as_str(),
        "a reloaded dashboard gets its CSRF token back"
    );
    // Changes do.
    let r = with_cookie(Method::POST, "/api/v1/admin/apps")
        .json(&json!({"slug": "shop"}))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = with_cookie(Method::POST, "/api/v1/admin/apps")
        .header("x-csrf-token", "0".repeat(64))
        .json(&json!({"slug": "shop"}))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = with_cookie(Method::POST, "/api/v1/admin/apps")
        .header("x-csrf-token", &csrf)
        .json(&json!({"slug": "shop"}))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), StatusCode::CREATED);
    // Bearer requests never need it.
    app.admin_ok(
        Method::POST,
        "/api/v1/admin/apps",
        Some(json!({"slug": "other"})),
        201,
    )
    .await;
    // The data plane never honours the cookie.
    app.deploy("shop", "GET", "/who", "ctx.principal").await;
    let r = client
        .get(app.url("/apps/shop/who"))
        .header("cookie", cookie.clone())
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 204, "anonymous: the script returned ()");
    // Behind a TLS proxy the cookie is Secure.
    let r = client
        .post(app.url("/api/v1/auth/login"))
        .header("x-forwarded-proto", "https")
        .json(&json!({"email": picloud_testkit::app::ADMIN_EMAIL, "password": picloud_testkit::app::ADMIN_PASSWORD, "cookie": true}))
        .send()
        .await
        .expect("login");
    assert!(r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .contains("Secure"));
    // Logout clears it and revokes the session.
    let r = with_cookie(Method::POST, "/api/v1/auth/logout")
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 204);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .contains("Max-Age=0"));
    assert_eq!(
        with_cookie(Method::GET, "/api/v1/auth/me")
            .send()
            .await
            .expect("r")
            .status(),
        401
    );
    app.shutdown().await;
}

async fn brute_force_is_throttled(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    let attempt = |password: &'static str| {
        app.client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"email": picloud_testkit::app::ADMIN_EMAIL, "password": password}))
            .send()
    };
    for i in 0..10 {
        assert_eq!(
            attempt("wrong password").await.expect("r").status(),
            401,
            "attempt {}",
            i + 1
        );
    }
    let r = attempt("wrong password").await.expect("r");
    assert_eq!(r.status(), 429, "the 11th wrong password within a minute");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry));
    let (_, body) = status(r).await;
    assert_eq!(body["error"]["code"], "rate_limited");
    // Even the right password waits now: the account is throttled.
    assert_eq!(
        attempt(picloud_testkit::app::ADMIN_PASSWORD)
            .await
            .expect("r")
            .status(),
        429
    );
    app.shutdown().await;
}

async fn users_members_and_audit(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("shop").await;
    let (alice_id, alice) = user(&app, "alice@example.com").await;
    let (bob_id, bob) = user(&app, "bob@example.com").await;
    let users = app
        .admin_ok(Method::GET, "/api/v1/admin/users", None, 200)
        .await;
    assert_eq!(users["items"].as_array().map(Vec::len), Some(3));
    assert!(users["items"][0].get("password_hash").is_none());
    assert_eq!(
        app.call_as(&alice, Method::GET, "/api/v1/admin/users", None)
            .await
            .status(),
        403
    );

    member(&app, "shop", &alice_id, "admin").await;
    member(&app, "shop", &bob_id, "viewer").await;
    let members = app
        .call_as(&bob, Method::GET, "/api/v1/admin/apps/shop/members", None)
        .await
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(members["items"].as_array().map(Vec::len), Some(2));
    // An app admin manages members; a viewer cannot.
    let r = app
        .call_as(
            &bob,
            Method::PUT,
            &format!("/api/v1/admin/apps/shop/members/{bob_id}"),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = app
        .call_as(
            &alice,
            Method::PUT,
            &format!("/api/v1/admin/apps/shop/members/{bob_id}"),
            Some(json!({"role": "editor"})),
        )
        .await;
    assert_eq!(status(r).await.1["role"], "editor");
    let me = app
        .call_as(&bob, Method::GET, "/api/v1/auth/me", None)
        .await
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(me["memberships"][0]["role"], "editor");
    let r = app
        .call_as(
            &alice,
            Method::PUT,
            "/api/v1/admin/apps/shop/members/usr_nope",
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(r.status(), 404);
    let r = app
        .call_as(
            &alice,
            Method::DELETE,
            &format!("/api/v1/admin/apps/shop/members/{bob_id}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        app.call_as(&bob, Method::GET, "/api/v1/admin/apps/shop", None)
            .await
            .status(),
        404
    );

    // A password change ends the user's sessions.
    app.admin_ok(
        Method::PATCH,
        &format!("/api/v1/admin/users/{bob_id}"),
        Some(json!({"password": "new password 1"})),
        200,
    )
    .await;
    assert_eq!(
        app.call_as(&bob, Method::GET, "/api/v1/auth/me", None)
            .await
            .status(),
        401
    );
    let bob = app.login("bob@example.com", "new password 1").await;
    // The last admin cannot be removed or demoted.
    let me = app
        .admin_ok(Method::GET, "/api/v1/auth/me", None, 200)
        .await;
    let admin_id = me["id"].as_str().expect("id").to_owned();
    for (method, body) in [
        (Method::PATCH, Some(json!({"is_admin": false}))),
        (Method::PATCH, Some(json!({"disabled": true}))),
        (Method::DELETE, None),
    ] {
        let r = app
            .admin(method, &format!("/api/v1/admin/users/{admin_id}"), body)
            .await;
        assert_eq!(r.status(), 409);
    }
    app.admin_ok(
        Method::DELETE,
        &format!("/api/v1/admin/users/{bob_id}"),
        None,
        204,
    )
    .await;
    assert_eq!(
        app.call_as(&bob, Method::GET, "/api/v1/auth/me", None)
            .await
            .status(),
        401
    );

    // The audit log: who, what, which app, from where; no secrets.
    let s = app
        .call_as(
            &alice,
            Method::POST,
            "/api/v1/admin/apps/shop/scripts",
            Some(json!({"name": "audited", "source": "1"})),
        )
        .await;
    assert_eq!(s.status(), 201);
    let audit = app
        .call_as(&alice, Method::GET, "/api/v1/admin/audit?app=shop", None)
        .await
        .json::<Value>()
        .await
        .expect("json");
    let entry = &audit["items"][0];
    assert_eq!(entry["action"], "POST /api/v1/admin/apps/{app}/scripts");
    assert_eq!(entry["user_id"], alice_id.as_str());
    assert_eq!(entry["status"], 201);
    assert_eq!(entry["ip"], "127.0.0.1");
    assert!(entry["app_id"]
        .as_str()
        .is_some_and(|a| a.starts_with("app_")));
    let all = app
        .admin_ok(Method::GET, "/api/v1/admin/audit?limit=500", None, 200)
        .await;
    let text = all.to_string();
    assert!(
        !text.contains("password123") && !text.contains("new password 1"),
        "no passwords in the audit log"
    );
    assert!(all["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|e| e["action"] == "PATCH /api/v1/admin/users/{id}"));
    assert!(all["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|e| e["action"] == "POST /api/v1/admin/users"));
    // App admins read their app only; the instance-wide log is for instance admins.
    assert_eq!(
        app.call_as(&alice, Method::GET, "/api/v1/admin/audit", None)
            .await
            .status(),
        403
    );
    app.create_app("elsewhere").await;
    assert_eq!(
        app.call_as(
            &alice,
            Method::GET,
            "/api/v1/admin/audit?app=elsewhere",
            None
        )
        .await
        .status(),
        404
    );
    // Refused attempts are audited too.
    app.call_as(
        &alice,
        Method::POST,
        "/api/v1/admin/apps",
        Some(json!({"slug": "nope"})),
    )
    .await;
    let all = app
        .admin_ok(Method::GET, "/api/v1/admin/audit", None, 200)
        .await;
    assert_eq!(all["items"][0]["status"], 403);
    assert_eq!(all["items"][0]["user_id"], alice_id.as_str());
    app.shutdown().await;
}

/// The script is the gate for anonymous calls; for an authenticated caller every
/// service call checks the caller's rights, below the script.
async fn script_as_gate(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("shop").await;
    app.deploy(
        "shop",
        "POST",
        "/note/{k}",
        r#"kv::collection("notes").set(ctx.request.params.k, "written"); "ok""#,
    )
    .await;
    app.deploy(
        "shop",
        "GET",
        "/forge",
        r#"throw "forbidden: I made this up""#,
    )
    .await;
    app.deploy(
        "shop",
        "POST",
        "/careful/{k}",
        r#"let out = "wrote"; try { kv::collection("notes").set(ctx.request.params.k, 1); } catch (e) { out = `refused: ${e}`; } out"#,
    )
    .await;
    let (dev_id, dev) = user(&app, "dev@example.com").await;
    member(&app, "shop", &dev_id, "editor").await;
    let (_, reader) = new_key(
        &app,
        &dev,
        json!({"name": "r", "scopes": ["script:read", "script:invoke"]}),
    )
    .await;
    let (_, writer) = new_key(&app, &dev, json!({"name": "w", "scopes": ["script:write"]})).await;
    let written = |key: &'static str| {
        let req = app.admin(Method::GET, "/api/v1/admin/apps/shop/kv/notes", None);
        async move {
            let page: Value = req.await.json().await.expect("json");
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .any(|e| e["key"] == key)
        }
    };

    let r = app
        .on_host("shop", Method::POST, "/note/anon")
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 200, "anonymous: the script is the gate");
    assert!(written("anon").await);

    let r = app
        .on_host("shop", Method::POST, "/note/by-reader")
        .bearer_auth(&reader)
        .send()
        .await
        .expect("r");
    let (code, body) = status(r).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    assert!(!written("by-reader").await, "nothing was written");

    let r = app
        .on_host("shop", Method::POST, "/note/by-writer")
        .bearer_auth(&writer)
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 200);
    assert!(written("by-writer").await);

    // The refusal is a distinct kind of error: a script throwing the same words is not.
    let r = app
        .on_host("shop", Method::GET, "/forge")
        .send()
        .await
        .expect("r");
    assert_eq!(status(r).await.1["error"]["code"], "script_error");
    // A script may catch the refusal and carry on.
    let r = app
        .on_host("shop", Method::POST, "/careful/x")
        .bearer_auth(&reader)
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("text");
    assert!(text.starts_with("refused: forbidden:"), "{text}");
    assert!(!written("x").await);

    // Documents answer to the same rights: reading needs script:read, writing
    // script:write, checked below the script.
    app.deploy(
        "shop",
        "POST",
        "/doc",
        r#"docs::collection("orders").create(#{by: ctx.request.body.by}).id"#,
    )
    .await;
    app.deploy(
        "shop",
        "GET",
        "/docs",
        r#"docs::collection("orders").find(#{}).map(|d| d.data.by)"#,
    )
    .await;
    let post = |key: &str, by: &str| {
        app.on_host("shop", Method::POST, "/doc")
            .bearer_auth(key)
            .json(&json!({"by": by}))
            .send()
    };
    let (code, body) = status(post(&reader, "reader").await.expect("r")).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    assert_eq!(post(&writer, "writer").await.expect("r").status(), 200);
    let found = |key: &str| {
        app.on_host("shop", Method::GET, "/docs")
            .bearer_auth(key)
            .send()
    };
    let (code, body) = status(found(&reader).await.expect("r")).await;
    assert_eq!(
        (code, body),
        (200, json!(["writer"])),
        "only the writer's document exists"
    );
    let (code, body) = status(found(&writer).await.expect("r")).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    script_as_gate_for_anonymous_calls_checks_for_callers => script_as_gate,
    api_keys_shown_once_scoped_revoked_expired => api_keys,
    keys_and_sessions_on_required_routes => keys_on_the_data_plane,
    cookie_sessions_require_the_csrf_header => cookie_sessions_need_csrf,
    eleventh_wrong_password_is_throttled => brute_force_is_throttled,
    users_members_and_the_audit_log => users_members_and_audit,
);
