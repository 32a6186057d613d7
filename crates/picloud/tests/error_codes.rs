//! The same kind of mistake gets the same code and status on every endpoint, each
//! code the status API.md's table gives it, always in the error envelope: a real
//! server over HTTP, walked with one kind of mistake at a time across many endpoints.

use std::time::Duration;

use picloud_testkit::{Backend, TestApp};
use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};

/// API.md's table, plus the codes added since (never renamed).
fn status_of(code: &str) -> u16 {
    match code {
        "bad_request" => 400,
        "unauthorized" => 401,
        "forbidden" => 403,
        "not_found" => 404,
        "method_not_allowed" => 405,
        "conflict" => 409,
        "payload_too_large" => 413,
        "uri_too_long" => 414,
        "unsupported_media_type" => 415,
        "invalid" => 422,
        "rate_limited" => 429,
        "internal" | "script_error" | "limit_exceeded" => 500,
        "unavailable" => 503,
        "timeout" => 504,
        other => panic!("unknown error code {other:?}"),
    }
}

/// Sends `req` and checks it is refused with `code` in the envelope, at that code's
/// status.
async fn refused(req: RequestBuilder, code: &str, what: &str) -> Value {
    refused_response(req.send().await.expect("request"), code, what).await
}

async fn refused_response(r: reqwest::Response, code: &str, what: &str) -> Value {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{what}: {status}, not the envelope: {text:?}"));
    let got = body["error"]["code"].as_str().unwrap_or_default();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: no message: {body}"
    );
    assert_eq!((got, status), (code, status_of(code)), "{what}: {body}");
    body
}

fn req(app: &TestApp, token: Option<&str>, method: Method, path: &str) -> RequestBuilder {
    let r = app.client.request(method, app.url(path));
    match token {
        Some(token) => r.bearer_auth(token),
        None => r,
    }
}

fn raw_json(r: RequestBuilder, body: &str) -> RequestBuilder {
    r.header("content-type", "application/json")
        .body(body.to_owned())
}

async fn one_mistake_one_answer(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.max_request_body_bytes = 64 * 1024)
        .await
        .expect("server");
    let admin = Some(app.admin_token.as_str());
    let script = app.deploy("shop", "GET", "/ok", r#""ok""#).await;
    let scripts = "/api/v1/admin/apps/shop/scripts";
    let creates = [
        ("/api/v1/admin/apps", Method::POST),
        (scripts, Method::POST),
        ("/api/v1/admin/users", Method::POST),
        ("/api/v1/admin/apps/shop", Method::PATCH),
        (
            &format!("/api/v1/admin/scripts/{script}/routes"),
            Method::POST,
        ),
        ("/api/v1/admin/apps/shop/triggers/kv", Method::POST),
        ("/api/v1/admin/api-keys", Method::POST),
    ]
    .map(|(p, m)| (p.to_owned(), m));

    // No credentials: 401 everywhere.
    for (path, method) in creates.iter().cloned().chain([
        ("/api/v1/admin/apps".to_owned(), Method::GET),
        ("/api/v1/auth/me".to_owned(), Method::GET),
        ("/api/v1/admin/audit".to_owned(), Method::GET),
        ("/api/v1/admin/apps/shop/executions".to_owned(), Method::GET),
    ]) {
        let r = raw_json(req(&app, None, method.clone(), &path), "{}");
        refused(r, "unauthorized", &format!("no token: {method} {path}")).await;
    }
    let r = req(
        &app,
        Some("pk_not-a-key"),
        Method::GET,
        "/api/v1/admin/apps",
    );
    refused(r, "unauthorized", "a made-up key").await;

    // Malformed JSON: 400 everywhere.
    for (path, method) in &creates {
        let r = raw_json(req(&app, admin, method.clone(), path), "{not json");
        refused(r, "bad_request", &format!("bad JSON: {method} {path}")).await;
    }
    let r = raw_json(
        req(&app, None, Method::POST, "/api/v1/auth/login"),
        "{not json",
    );
    refused(r, "bad_request", "bad JSON: login").await;

    // Well-formed JSON of the wrong shape: 422 everywhere, naming the field.
    for (path, method) in &creates {
        let r = raw_json(req(&app, admin, method.clone(), path), "[1, 2]");
        refused(r, "invalid", &format!("wrong shape: {method} {path}")).await;
    }
    let body = refused(
        req(&app, admin, Method::POST, "/api/v1/admin/apps").json(&json!({"slug": 5})),
        "invalid",
        "a number for a slug",
    )
    .await;
    assert_eq!(body["error"]["field"], "slug", "{body}");

    // A well-formed value the rules refuse: 422.
    for (path, body, what) in [
        ("/api/v1/admin/apps", json!({"slug": "Not A Slug"}), "slug"),
        (scripts, json!({"name": "x", "source": "let = ;"}), "source"),
        (
            "/api/v1/admin/users",
            json!({"email": "not-an-email", "password": "long-enough-password"}),
            "email",
        ),
        (
            "/api/v1/admin/apps/shop/triggers/kv",
            json!({"script_id": "scr_missing", "collection": "c", "ops": ["set"]}),
            "script_id",
        ),
    ] {
        let r = req(&app, admin, Method::POST, path).json(&body);
        refused(
            r,
            "invalid",
            &format!("{what} refused by the rules: {path}"),
        )
        .await;
    }
    let r = req(
        &app,
        admin,
        Method::GET,
        "/api/v1/admin/apps/shop/docs/things?filter=%7B%22%24bogus%22%3A1%7D",
    );
    refused(r, "invalid", "an unknown docs operator").await;

    // A bad query parameter: 400 on every list.
    for list in [
        "/api/v1/admin/apps",
        scripts,
        "/api/v1/admin/apps/shop/routes",
        "/api/v1/admin/apps/shop/executions",
        "/api/v1/admin/apps/shop/dead-letters",
        "/api/v1/admin/apps/shop/kv/things",
        "/api/v1/admin/apps/shop/docs/things",
        "/api/v1/admin/users",
        "/api/v1/admin/audit",
    ] {
        for query in ["limit=0", "limit=many", "cursor=not-a-cursor"] {
            let path = format!("{list}?{query}");
            let r = req(&app, admin, Method::GET, &path);
            refused(r, "bad_request", &format!("GET {path}")).await;
        }
    }
    for path in [
        "/api/v1/admin/apps/shop/executions?status=sideways",
        "/api/v1/admin/apps/shop/dead-letters?status=sideways",
    ] {
        refused(req(&app, admin, Method::GET, path), "bad_request", path).await;
    }

    // A path parameter that is not UTF-8: 400, in the envelope (axum's rejection).
    for path in [
        "/api/v1/admin/apps/%FF",
        "/api/v1/admin/scripts/%FF",
        "/api/v1/admin/users/%FF",
    ] {
        refused(req(&app, admin, Method::GET, path), "bad_request", path).await;
    }

    // Nothing there: 404 everywhere, the data plane and unknown pages included.
    for (method, path) in [
        (Method::GET, "/api/v1/admin/apps/nope"),
        (Method::GET, "/api/v1/admin/scripts/scr_nope"),
        (Method::DELETE, "/api/v1/admin/routes/rte_nope"),
        (Method::GET, "/api/v1/admin/users/usr_nope"),
        (Method::GET, "/api/v1/admin/apps/shop/executions/exe_nope"),
        (
            Method::POST,
            "/api/v1/admin/apps/shop/dead-letters/dlq_nope/replay",
        ),
        (Method::GET, "/api/v1/no-such-thing"),
        (Method::GET, "/apps/shop/no-such-route"),
        (Method::GET, "/apps/no-such-app/ok"),
    ] {
        let what = format!("{method} {path}");
        refused(req(&app, admin, method, path), "not_found", &what).await;
    }

    // A rule of uniqueness: 409.
    for (path, body) in [
        ("/api/v1/admin/apps", json!({"slug": "shop"})),
        (
            &format!("/api/v1/admin/scripts/{script}/routes") as &str,
            json!({"method": "GET", "path": "/ok"}),
        ),
        (
            "/api/v1/admin/users",
            json!({"email": "admin@example.com", "password": "long-enough-password"}),
        ),
    ] {
        let r = req(&app, admin, Method::POST, path).json(&body);
        refused(r, "conflict", &format!("taken: {path}")).await;
    }

    // Signed in, without the right: 403.
    let viewer = app
        .admin_ok(
            Method::POST,
            "/api/v1/admin/users",
            Some(json!({"email": "viewer@example.com", "password": "long-enough-password"})),
            201,
        )
        .await;
    let viewer_id = viewer["id"].as_str().expect("user id");
    app.admin_ok(
        Method::PUT,
        &format!("/api/v1/admin/apps/shop/members/{viewer_id}"),
        Some(json!({"role": "viewer"})),
        200,
    )
    .await;
    let token = app
        .login("viewer@example.com", "long-enough-password")
        .await;
    for (method, path, body) in [
        (Method::POST, scripts, json!({"name": "v", "source": "1"})),
        (Method::GET, "/api/v1/admin/users", Value::Null),
        (Method::DELETE, "/api/v1/admin/apps/shop", Value::Null),
    ] {
        let what = format!("viewer: {method} {path}");
        let mut r = req(&app, Some(&token), method, path);
        if !body.is_null() {
            r = r.json(&body);
        }
        refused(r, "forbidden", &what).await;
    }

    // A method the path does not take: 405.
    for (method, path) in [
        (Method::PATCH, "/api/v1/admin/apps"),
        (Method::DELETE, "/healthz"),
        (Method::PUT, "/api/v1/auth/login"),
    ] {
        let what = format!("{method} {path}");
        refused(req(&app, admin, method, path), "method_not_allowed", &what).await;
    }

    // The wrong content type where JSON is required: 415.
    let r = req(&app, None, Method::POST, "/api/v1/auth/login")
        .header("content-type", "text/plain")
        .body(r#"{"email": "a@b.c", "password": "x"}"#);
    refused(r, "unsupported_media_type", "login as text/plain").await;

    // A body over the limit: 413 everywhere.
    let big = format!("{{\"slug\": \"{}\"}}", "x".repeat(100 * 1024));
    for (path, method) in &creates {
        let r = raw_json(req(&app, admin, method.clone(), path), &big);
        refused(r, "payload_too_large", &format!("big: {method} {path}")).await;
    }

    app.shutdown().await;
}

/// A docs filter comparing a field to a map or array matches by value on both
/// backends, also where the field holds text (SQLite once failed the whole query
/// there, and the script was told "storage unavailable").
async fn map_and_array_filters_are_values(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.deploy(
        "shop",
        "GET",
        "/find",
        r#"
        let things = docs::collection("things");
        things.create(#{s: "apple", n: 1});
        things.create(#{s: ["apple"], n: 2});
        things.create(#{s: #{apple: 1}, n: 3});
        #{
            by_array: things.find(#{s: ["apple"]}).map(|d| d.data.n),
            by_map: things.find(#{s: #{apple: 1}}).map(|d| d.data.n),
            by_in: things.find(#{s: #{"$in": [["apple"], "apple"]}}).map(|d| d.data.n),
        }
        "#,
    )
    .await;
    let r = app
        .on_host("shop", Method::GET, "/find")
        .send()
        .await
        .expect("run");
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("json");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["by_array"], json!([2]), "{body}");
    assert_eq!(body["by_map"], json!([3]), "{body}");
    assert_eq!(body["by_in"], json!([1, 2]), "{body}");
    // The admin browser takes the same filter.
    let found = app
        .admin_ok(
            Method::GET,
            "/api/v1/admin/apps/shop/docs/things?filter=%7B%22s%22%3A%5B%22apple%22%5D%7D",
            None,
            200,
        )
        .await;
    let items = found["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{found}");
    assert_eq!(items[0]["data"]["n"], 2, "{found}");
    app.shutdown().await;
}

/// A run refused for want of a script thread says which limit was full: the whole
/// server's (at capacity) or the app's own share, with Retry-After either way.
async fn a_full_server_says_so(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.executor.threads = 2;
        c.executor.app_max_concurrency = 1;
        c.executor.queue_timeout = Duration::from_millis(300);
        c.limits.route_timeout = Duration::from_secs(4);
        c.limits.max_operations = u64::MAX / 2;
    })
    .await
    .expect("server");
    for slug in ["one", "two", "three"] {
        app.deploy(slug, "GET", "/spin", "loop {}").await;
    }
    let hogs: Vec<_> = ["one", "two"]
        .into_iter()
        .map(|slug| {
            let req = app.on_host(slug, Method::GET, "/spin");
            tokio::spawn(async move { req.send().await.expect("hog").status().as_u16() })
        })
        .collect();
    // Let the two hogs take both script threads.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for (slug, says) in [("three", "at capacity"), ("one", "as many scripts")] {
        let r = app
            .on_host(slug, Method::GET, "/spin")
            .send()
            .await
            .expect("r");
        assert!(
            r.headers().get("retry-after").is_some(),
            "{slug}: Retry-After"
        );
        let body = refused_response(r, "unavailable", slug).await;
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{slug}: {message}");
    }
    for hog in hogs {
        assert_eq!(hog.await.expect("join"), 504);
    }
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    each_kind_of_mistake_has_one_code_and_status => one_mistake_one_answer,
    docs_filters_with_maps_and_arrays_are_values => map_and_array_filters_are_values,
    a_refused_run_says_whose_limit_was_full => a_full_server_says_so,
);
