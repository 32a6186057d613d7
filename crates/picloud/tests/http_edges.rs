//! The edges of the HTTP layer: errors the router and the connection produce (405,
//! 414) carry the error envelope; a script cannot answer with a status HTTP gives
//! another meaning (1xx, 101 above all); routes are made of valid tokens only; and
//! the credentials of an async call never reach the outbox or the dead letters.

use std::time::Duration;

use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

async fn envelope(r: reqwest::Response) -> (u16, String, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("status {status}: not the error envelope: {text:?}"));
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(body["error"]["message"].is_string(), "{body}");
    (status, code, body)
}

async fn router_errors_use_the_envelope(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.deploy("shop", "GET", "/ok", r#""ok""#).await;
    for (method, path) in [
        (Method::DELETE, "/healthz"),
        (Method::PUT, "/api/v1/auth/login"),
        (Method::PATCH, "/api/v1/admin/apps"),
        (Method::POST, "/_/"),
    ] {
        let r = app
            .client
            .request(method.clone(), app.url(path))
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .expect("r");
        let allow = r
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let (status, code, _) = envelope(r).await;
        assert_eq!(
            (status, code.as_str()),
            (405, "method_not_allowed"),
            "{method} {path}"
        );
        assert!(
            allow.contains("GET") || allow.contains("POST"),
            "{path}: Allow {allow:?}"
        );
    }

    let long = "a".repeat(20_000);
    for url in [
        app.url(&format!("/api/v1/admin/apps?cursor={long}")),
        app.url(&format!("/apps/shop/{long}")),
        app.url(&format!("/healthz?{long}")),
    ] {
        let r = app
            .client
            .get(&url)
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .expect("r");
        let (status, code, _) = envelope(r).await;
        assert_eq!((status, code.as_str()), (414, "uri_too_long"));
    }
    let r = app
        .on_host("shop", Method::GET, &format!("/{long}"))
        .send()
        .await
        .expect("r");
    let (status, code, _) = envelope(r).await;
    assert_eq!((status, code.as_str()), (414, "uri_too_long"));
    // A long but reasonable URI still works.
    let r = app
        .on_host("shop", Method::GET, &format!("/ok?{}", "b".repeat(4000)))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 200);
    app.shutdown().await;
}

async fn script_statuses_outside_200_to_599_are_script_errors(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    for status in [101, 100, 103, 199, 0, -1, 600, 999, 1000, 65_536 + 200] {
        let path = format!("/s{}", status.to_string().replace('-', "m"));
        app.deploy(
            "shop",
            "GET",
            &path,
            &format!(r#"#{{status: {status}, headers: #{{"upgrade": "websocket"}}}}"#),
        )
        .await;
        let r = app
            .on_host("shop", Method::GET, &path)
            .send()
            .await
            .expect("r");
        let header_id = r
            .headers()
            .get("x-picloud-execution-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (got, code, body) = envelope(r).await;
        assert_eq!(
            (got, code.as_str()),
            (500, "script_error"),
            "status {status}"
        );
        let id = body["error"]["execution_id"]
            .as_str()
            .expect("execution id");
        assert_eq!(header_id.as_deref(), Some(id));
        // The client sees an opaque script error; the run's record says why.
        let run = app.execution("shop", id).await;
        assert_eq!(run["status"], "error");
        let error = run["error"].as_str().unwrap_or_default();
        assert!(error.contains("between 200 and 599"), "{error}");
    }
    for status in [200, 299, 404, 599] {
        let path = format!("/ok{status}");
        app.deploy("shop", "GET", &path, &format!("#{{status: {status}}}"))
            .await;
        let r = app
            .on_host("shop", Method::GET, &path)
            .send()
            .await
            .expect("r");
        assert_eq!(r.status().as_u16(), status);
    }
    app.shutdown().await;
}

async fn routes_are_made_of_valid_tokens(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("shop").await;
    let script = app.create_script("shop", "s", "1").await;
    let id = script["id"].as_str().expect("id").to_owned();
    let routes = format!("/api/v1/admin/scripts/{id}/routes");
    let create = |method: &str, path: &str| {
        app.admin(
            Method::POST,
            &routes,
            Some(json!({"method": method, "path": path})),
        )
    };
    for method in [
        "GET\r\nX-Injected: 1",
        "GET\n",
        "\tGET",
        " GET",
        "GET ",
        "G ET",
        "",
        "GET,POST",
        "PROPFIND",
        "CONNECT",
    ] {
        let (status, code, body) = envelope(create(method, "/x").await).await;
        assert_eq!(
            (status, code.as_str()),
            (422, "invalid"),
            "{method:?}: {body}"
        );
        assert_eq!(body["error"]["field"], "method", "{method:?}");
    }
    for (i, method) in ["GET", "get", "Post", "ANY", "options"].iter().enumerate() {
        let r = create(method, &format!("/m/{i}")).await;
        assert_eq!(r.status(), 201, "{method:?}");
    }
    for (path, hint) in [
        ("/a/../b", ".."),
        ("/..", ".."),
        ("/./a", "'.'"),
        ("/a/.", "'.'"),
        ("/users/:id", "{id}"),
        ("/users/:id/posts", "{id}"),
        ("/:rest", "{rest}"),
    ] {
        let (status, code, body) = envelope(create("GET", path).await).await;
        assert_eq!((status, code.as_str()), (422, "invalid"), "{path}: {body}");
        assert_eq!(body["error"]["field"], "path", "{path}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(hint), "{path}: {message}");
    }
    for path in [
        "/v1.2/x",
        "/a..b",
        "/.well-known/thing",
        "/a:b",
        "/time/12:30",
    ] {
        let r = create("GET", path).await;
        assert_eq!(r.status(), 201, "{path}");
    }
    app.shutdown().await;
}

/// The outbox row of one event, read straight from the database.
async fn outbox_payload(app: &TestApp, event_id: &str) -> Option<Value> {
    use sqlx::Connection;
    let url = app
        .started()
        .state
        .config
        .database_url
        .clone()
        .expect("test servers name their database");
    let text: Option<String> = match app.backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
            sqlx::query_scalar("SELECT payload FROM outbox WHERE id = ?")
                .bind(event_id)
                .fetch_optional(&mut conn)
                .await
                .expect("query")
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("postgres");
            sqlx::query_scalar("SELECT payload::text FROM outbox WHERE id = $1")
                .bind(event_id)
                .fetch_optional(&mut conn)
                .await
                .expect("query")
        }
    };
    text.map(|t| serde_json::from_str(&t).expect("payload is JSON"))
}

fn assert_no_credentials(payload: &Value, what: &str) {
    let headers = payload["request"]["headers"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: request headers are stored: {payload}"));
    for name in [
        "cookie",
        "authorization",
        "x-csrf-token",
        "proxy-authorization",
        "x-api-key",
    ] {
        assert!(
            !headers.contains_key(name),
            "{what} stored {name}: {payload}"
        );
    }
    assert_eq!(
        headers.get("x-keep").and_then(Value::as_str),
        Some("yes"),
        "{what}"
    );
    let text = payload.to_string();
    for secret in [
        "sid=s3cr3t",
        "third-party-jwt",
        "csrf-value",
        "proxy-pass",
        "partner-key",
    ] {
        assert!(!text.contains(secret), "{what} holds {secret}: {text}");
    }
}

async fn async_calls_never_store_credentials(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.events.retry_max_attempts = 2;
        c.events.retry_base_delay = Duration::from_secs(2);
    })
    .await
    .expect("server");
    app.create_app("shop").await;
    let script = app
        .create_script("shop", "hook", r#"throw "always fails""#)
        .await;
    app.admin_ok(
        Method::POST,
        &format!(
            "/api/v1/admin/scripts/{}/routes",
            script["id"].as_str().expect("id")
        ),
        Some(json!({"method": "POST", "path": "/hook", "dispatch_mode": "async"})),
        201,
    )
    .await;
    let r = app
        .on_path("shop", Method::POST, "/hook")
        .header("cookie", "sid=s3cr3t; picloud_session=pcs_x")
        .header("authorization", "Bearer third-party-jwt")
        .header("x-csrf-token", "csrf-value")
        .header("proxy-authorization", "Basic proxy-pass")
        .header("x-api-key", "partner-key")
        .header("x-keep", "yes")
        .json(&json!({"n": 1}))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.expect("json");
    let event_id = body["event_id"].as_str().expect("event id").to_owned();

    // The row waits two seconds between its attempts, so it is there to read.
    let stored = app
        .eventually("the stored event", || outbox_payload(&app, &event_id))
        .await;
    assert_no_credentials(&stored, "the outbox");

    let app_id = picloud_core::AppId::from_trusted(
        app.admin_ok(Method::GET, "/api/v1/admin/apps/shop", None, 200)
            .await["id"]
            .as_str()
            .expect("id")
            .to_owned(),
    );
    let store = app.started().state.store.clone();
    let dead = app
        .eventually("the dead letter", || async {
            let page = store
                .list_dead_letters(
                    &app_id,
                    picloud_store::DeadLetterFilter::All,
                    &picloud_store::PageRequest {
                        limit: 10,
                        after: None,
                    },
                )
                .await
                .ok()?;
            page.items.into_iter().next()
        })
        .await;
    assert_eq!(dead.event_id.as_str(), event_id);
    assert_no_credentials(&dead.payload, "the dead letter");
    app.shutdown().await;
}

/// Sends `request` on a raw connection (half-closing it, so a body cut short ends) and
/// returns the answer's status line and body.
async fn raw(app: &TestApp, request: &[u8]) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    conn.write_all(request).await.expect("write");
    conn.shutdown().await.expect("half-close");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.lines().next().unwrap_or_default().to_owned();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

/// A body that ends early or has a malformed chunk is a 400 `bad_request`, not a 413
/// (it said "larger than 10485760 bytes" about five bytes).
async fn broken_bodies_are_bad_requests(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.deploy("shop", "POST", "/echo", "ctx.request.body")
        .await;
    let cut_short = b"POST /apps/shop/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\nConnection: close\r\n\r\n{\"a\":";
    let bad_chunk = b"POST /apps/shop/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n";
    for (what, request) in [("cut short", &cut_short[..]), ("bad chunk", &bad_chunk[..])] {
        let (status, body) = raw(&app, request).await;
        assert!(status.contains(" 400 "), "{what}: {status} {body}");
        assert!(body.contains("\"bad_request\""), "{what}: {body}");
    }
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    broken_request_bodies_are_bad_requests => broken_bodies_are_bad_requests,
    router_and_connection_errors_use_the_envelope => router_errors_use_the_envelope,
    script_statuses_outside_200_to_599_are_errors => script_statuses_outside_200_to_599_are_script_errors,
    route_methods_and_paths_are_validated => routes_are_made_of_valid_tokens,
    async_routes_never_store_credentials => async_calls_never_store_credentials,
);
