//! Authentication: set-up, login, logout, session expiry, and the rule that every
//! admin route refuses missing, bad and expired tokens. The route list comes from the
//! server's own OpenAPI document, so a new route cannot be forgotten here.

use std::time::Duration;

use picloud_testkit::{Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Every (method, path) the server documents under `/api/v1/admin`, with path
/// parameters filled in.
async fn admin_routes(app: &TestApp) -> Vec<(Method, String)> {
    let doc: Value = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !path.starts_with("/api/v1/admin") {
            continue;
        }
        for method in item.as_object().expect("path item").keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let filled = path
                .replace("{app}", "shop")
                .replace("{user_id}", "usr_01m8dm7ykee6t6nacm7pa7s3t7")
                .replace("{collection}", "c")
                .replace("{field}", "email")
                .replace("{file_id}", "fil_01m8dm7ykee6t6nacm7pa7s3t7")
                .replace("{name}", "s")
                .replace("{trigger}", "kv")
                .replace("{id}", "scr_01m8dm7ykee6t6nacm7pa7s3t7");
            assert!(!filled.contains('{'), "unfilled parameter in {path}");
            routes.push((method, filled));
        }
    }
    assert!(
        routes.len() >= 15,
        "the document lists the admin API ({} routes)",
        routes.len()
    );
    routes
}

async fn every_admin_route_needs_a_valid_token(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.session_ttl = Duration::from_secs(60))
        .await
        .expect("server");
    app.create_app("shop").await;
    let routes = admin_routes(&app).await;
    let expired = {
        // A session whose expiry is already past.
        let token = app
            .login(
                picloud_testkit::app::ADMIN_EMAIL,
                picloud_testkit::app::ADMIN_PASSWORD,
            )
            .await;
        let store = app.started().state.store.clone();
        let hash = picloud_core::crypto::hash_token(&token);
        let (session, _) = store
            .session_by_token_hash(&hash, picloud_core::now())
            .await
            .expect("session");
        let past = picloud_core::now() - chrono::Duration::seconds(1);
        store
            .touch_session(&session.id, past, past)
            .await
            .expect("expire");
        token
    };
    for (method, path) in &routes {
        let none = app
            .client
            .request(method.clone(), app.url(path))
            .json(&json!({}))
            .send()
            .await
            .expect("request");
        assert_eq!(
            none.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token"
        );
        let body: Value = none.json().await.expect("json");
        assert_eq!(body["error"]["code"], "unauthorized");
        for token in ["pcs_not-a-real-token", "garbage", expired.as_str()] {
            let r = app
                .client
                .request(method.clone(), app.url(path))
                .bearer_auth(token)
                .json(&json!({}))
                .send()
                .await
                .expect("request");
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} with token {token}"
            );
        }
    }
    // The real admin token passes the gate on every route (whatever the handler says next).
    for (method, path) in &routes {
        let r = app.admin(method.clone(), path, Some(json!({}))).await;
        assert_ne!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path} as admin"
        );
        assert_ne!(
            r.status(),
            StatusCode::FORBIDDEN,
            "{method} {path} as admin"
        );
    }
    app.shutdown().await;
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let r = app
        .client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn me(app: &TestApp, token: &str) -> u16 {
    app.call_as(token, Method::GET, "/api/v1/auth/me", None)
        .await
        .status()
        .as_u16()
}

async fn setup_login_logout(backend: Backend) {
    // No PICLOUD_ADMIN_*: the first admin comes through the one-time set-up token.
    let app = TestApp::start_with(backend, |c| {
        c.admin_email = None;
        c.admin_password = None;
    })
    .await
    .expect("server");
    let token = app
        .started()
        .setup_token
        .clone()
        .expect("a set-up token is issued");
    let setup = "/api/v1/auth/setup";
    let (status, _) = post(
        &app,
        setup,
        json!({"token": "pst_wrong", "email": "a@b.co", "password": "long enough"}),
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = post(
        &app,
        setup,
        json!({"token": token, "email": "not-an-email", "password": "long enough"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("email"))
    );
    let (status, body) = post(
        &app,
        setup,
        json!({"token": token, "email": "a@b.co", "password": "short"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("password"))
    );
    let (status, body) = post(
        &app,
        setup,
        json!({"token": token, "email": "Root@Example.com", "password": "long enough"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["user"]["email"], "root@example.com");
    assert_eq!(body["user"]["is_admin"], true);
    let session = body["token"].as_str().expect("token").to_owned();
    assert_eq!(me(&app, &session).await, 200);
    // The token is single-use.
    let (status, _) = post(
        &app,
        setup,
        json!({"token": token, "email": "b@b.co", "password": "long enough"}),
    )
    .await;
    assert_eq!(status, 401);

    // Login: one message for unknown user and wrong password.
    let login = "/api/v1/auth/login";
    let (s1, wrong_password) = post(
        &app,
        login,
        json!({"email": "root@example.com", "password": "nope nope"}),
    )
    .await;
    let (s2, unknown_user) = post(
        &app,
        login,
        json!({"email": "who@example.com", "password": "nope nope"}),
    )
    .await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(wrong_password, unknown_user);
    let (status, body) = post(
        &app,
        login,
        json!({"email": "ROOT@example.com", "password": "long enough"}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body["expires_at"].as_str().is_some());
    let second = body["token"].as_str().expect("token").to_owned();
    let (status, _) = post(&app, login, json!({"email": "root@example.com"})).await;
    assert_eq!(status, 422, "a missing field is named");
    let r = app
        .client
        .post(app.url(login))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);

    // Logout revokes only that session.
    let r = app
        .call_as(&second, Method::POST, "/api/v1/auth/logout", None)
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(me(&app, &second).await, 401);
    assert_eq!(me(&app, &session).await, 200);

    // A user who is not an instance admin: signed in, but refused by the admin API.
    let store = app.started().state.store.clone();
    store
        .create_user(picloud_store::NewUser {
            email: "dev@example.com".into(),
            password_hash: picloud_core::crypto::hash_password("dev password"),
            is_admin: false,
        })
        .await
        .expect("user");
    let (_, body) = post(
        &app,
        login,
        json!({"email": "dev@example.com", "password": "dev password"}),
    )
    .await;
    let dev = body["token"].as_str().expect("token").to_owned();
    let me_body: Value = app
        .call_as(&dev, Method::GET, "/api/v1/auth/me", None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me_body["is_admin"], false);
    assert_eq!(me_body["memberships"], json!([]));
    let r = app
        .call_as(&dev, Method::GET, "/api/v1/admin/apps", None)
        .await;
    assert_eq!(r.status(), 200, "anyone signed in lists the apps they see");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["items"], json!([]));
    let r = app
        .call_as(
            &dev,
            Method::POST,
            "/api/v1/admin/apps",
            Some(json!({"slug": "mine"})),
        )
        .await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "forbidden");

    // A disabled user's sessions stop working at once.
    let dev_user = store
        .get_user_by_email("dev@example.com")
        .await
        .expect("user");
    store
        .update_user(
            &dev_user.id,
            picloud_store::UserPatch {
                disabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("disable");
    assert_eq!(me(&app, &dev).await, 401);

    // Routes with auth "required": 401 without a token, 403 without script:invoke.
    let admin = TestApp::start(backend).await.expect("second server");
    let id = admin.create_app("shop").await;
    let _ = id;
    let script = admin
        .create_script("shop", "guarded", "ctx.principal.kind")
        .await;
    admin
        .admin_ok(
            Method::POST,
            &format!(
                "/api/v1/admin/scripts/{}/routes",
                script["id"].as_str().expect("id")
            ),
            Some(json!({"method": "GET", "path": "/guarded", "auth": "required"})),
            201,
        )
        .await;
    let r = admin
        .on_host("shop", Method::GET, "/guarded")
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 401);
    admin
        .started()
        .state
        .store
        .create_user(picloud_store::NewUser {
            email: "plain@example.com".into(),
            password_hash: picloud_core::crypto::hash_password("plain password"),
            is_admin: false,
        })
        .await
        .expect("user");
    let plain = admin.login("plain@example.com", "plain password").await;
    let r = admin
        .on_host("shop", Method::GET, "/guarded")
        .bearer_auth(&plain)
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 403);
    let r = admin
        .on_host("shop", Method::GET, "/guarded")
        .bearer_auth(&admin.admin_token)
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("text"), "user");
    admin.shutdown().await;
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    admin_routes_refuse_missing_bad_and_expired_tokens => every_admin_route_needs_a_valid_token,
    setup_login_logout_and_roles => setup_login_logout,
);
