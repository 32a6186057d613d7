//! The data plane: return-value mapping, parameters, precedence, addressing.

use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

/// (path, script, status, content type, body)
type Case = (
    &'static str,
    &'static str,
    u16,
    Option<&'static str>,
    &'static [u8],
);

/// Every row of SCRIPTING.md's return-value table.
async fn return_values(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    let cases: &[Case] = &[
        ("/unit", "()", 204, None, b""),
        (
            "/string",
            r#""hello""#,
            200,
            Some("text/plain; charset=utf-8"),
            b"hello",
        ),
        (
            "/blob",
            "let b = blob(3, 0x41); b",
            200,
            Some("application/octet-stream"),
            b"AAA",
        ),
        (
            "/map",
            "#{a: 1}",
            200,
            Some("application/json"),
            br#"{"a":1}"#,
        ),
        (
            "/array",
            "[1, \"x\", true]",
            200,
            Some("application/json"),
            br#"[1,"x",true]"#,
        ),
        ("/number", "41 + 1", 200, Some("application/json"), b"42"),
        ("/float", "1.5", 200, Some("application/json"), b"1.5"),
        ("/bool", "false", 200, Some("application/json"), b"false"),
        (
            "/explicit",
            r#"#{status: 201, headers: #{"x-thing": "yes"}, body: #{ok: true}}"#,
            201,
            Some("application/json"),
            br#"{"ok":true}"#,
        ),
        (
            "/explicit-text",
            r#"#{status: 418, body: "teapot"}"#,
            418,
            Some("text/plain; charset=utf-8"),
            b"teapot",
        ),
        ("/explicit-empty", "#{status: 202}", 202, None, b""),
        (
            "/explicit-type",
            r#"#{status: 200, headers: #{"content-type": "text/html"}, body: "<b>x</b>"}"#,
            200,
            Some("text/html"),
            b"<b>x</b>",
        ),
        // Not the response form (extra key, or no integer status): plain JSON.
        (
            "/not-response",
            r#"#{status: 200, extra: 1}"#,
            200,
            Some("application/json"),
            br#"{"extra":1,"status":200}"#,
        ),
        (
            "/string-status",
            r#"#{status: "200", body: "x"}"#,
            200,
            Some("application/json"),
            br#"{"body":"x","status":"200"}"#,
        ),
    ];
    for (path, source, _, _, _) in cases {
        app.deploy("shop", "GET", path, source).await;
    }
    for (path, _, status, content_type, body) in cases {
        let r = app
            .on_host("shop", Method::GET, path)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), *status, "{path}");
        assert_eq!(
            r.headers()
                .get("content-type")
                .map(|v| v.to_str().expect("ascii")),
            *content_type,
            "{path}"
        );
        assert!(r.headers().contains_key("x-picloud-execution-id"), "{path}");
        if *path == "/explicit" {
            assert_eq!(r.headers()["x-thing"], "yes");
        }
        assert_eq!(&r.bytes().await.expect("body")[..], *body, "{path}");
    }
    // A bad status in the response form is a script error, not a crash.
    app.deploy("shop", "GET", "/bad-status", "#{status: 1000}")
        .await;
    let r = app
        .on_host("shop", Method::GET, "/bad-status")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "script_error");
    app.shutdown().await;
}

async fn request_context(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    let echo = r#"#{
        method: ctx.request.method, path: ctx.request.path, params: ctx.request.params,
        query: ctx.request.query, agent: ctx.request.headers["x-agent"], body: ctx.request.body,
        raw_len: ctx.request.body_raw.len(), app: ctx.app.slug, script: ctx.script.name,
        principal: ctx.principal, attempt: ctx.execution.attempt,
        exec_prefix: ctx.execution.id.sub_string(0, 4)
    }"#;
    app.deploy("shop", "ANY", "/echo/{a}/{*rest}", echo).await;
    let r = app
        .on_host("shop", Method::POST, "/echo/x%20y/deep/er?q=1&q=2&z=%C3%A9")
        .header("x-agent", "tester")
        .json(&json!({"n": 1}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/echo/x%20y/deep/er");
    assert_eq!(body["params"], json!({"a": "x y", "rest": "deep/er"}));
    assert_eq!(body["query"], json!({"q": "2", "z": "é"}));
    assert_eq!(body["agent"], "tester");
    assert_eq!(body["body"], json!({"n": 1}));
    assert_eq!(body["raw_len"], 7);
    assert_eq!(body["app"], "shop");
    assert_eq!(body["principal"], Value::Null);
    assert_eq!(body["attempt"], 1);
    assert_eq!(body["exec_prefix"], "exe_");

    // The same path through the /apps/ prefix: path is app-relative.
    let r = app
        .on_path("shop", Method::PUT, "/echo/1/2")
        .header("content-type", "text/plain")
        .body("plain text")
        .send()
        .await
        .expect("request");
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(
        csp.starts_with("sandbox"),
        "prefix responses are sandboxed: {csp}"
    );
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["path"], "/echo/1/2");
    assert_eq!(body["body"], "plain text");

    // Forms become maps; unknown types leave body () but body_raw intact.
    let r = app
        .on_host("shop", Method::POST, "/echo/f/g")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=1&b=two+words")
        .send()
        .await
        .expect("request");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["body"], json!({"a": "1", "b": "two words"}));
    let r = app
        .on_host("shop", Method::POST, "/echo/f/g")
        .header("content-type", "image/png")
        .body(vec![0u8, 1, 2])
        .send()
        .await
        .expect("request");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["body"], Value::Null);
    assert_eq!(body["raw_len"], 3);

    // A signed-in caller is the principal, and never sees its own token.
    app.deploy(
        "shop",
        "GET",
        "/whoami",
        "#{p: ctx.principal, auth: ctx.request.headers.authorization}",
    )
    .await;
    let r = app
        .on_host("shop", Method::GET, "/whoami")
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("request");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["p"]["kind"], "user");
    assert!(body["p"]["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("usr_")));
    assert_eq!(body["p"]["scopes"].as_array().map(Vec::len), Some(7));
    assert_eq!(
        body["auth"],
        Value::Null,
        "our token is not handed to scripts"
    );
    // A token that is not ours is the script's business.
    let r = app
        .on_host("shop", Method::GET, "/whoami")
        .bearer_auth("third-party")
        .send()
        .await
        .expect("request");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["p"], Value::Null);
    assert_eq!(body["auth"], "Bearer third-party");
    // One of ours that is invalid is refused.
    let r = app
        .on_host("shop", Method::GET, "/whoami")
        .bearer_auth("pcs_forged")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    app.shutdown().await;
}

async fn routing_precedence_and_404s(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.deploy(
        "shop",
        "GET",
        "/users/{id}",
        r#""param " + ctx.request.params.id"#,
    )
    .await;
    app.deploy("shop", "GET", "/users/me", r#""literal""#).await;
    app.deploy(
        "shop",
        "ANY",
        "/users/{*rest}",
        r#""wildcard " + ctx.request.params.rest"#,
    )
    .await;
    app.deploy(
        "shop",
        "POST",
        "/users/{id}",
        r#""post " + ctx.request.params.id"#,
    )
    .await;
    app.deploy("shop", "GET", "/", r#""root""#).await;
    let text = |method: Method, path: &'static str| {
        let req = app.on_host("shop", method, path);
        async move {
            let r = req.send().await.expect("request");
            (r.status().as_u16(), r.text().await.expect("text"))
        }
    };
    assert_eq!(
        text(Method::GET, "/users/me").await,
        (200, "literal".into())
    );
    assert_eq!(
        text(Method::GET, "/users/42").await,
        (200, "param 42".into())
    );
    assert_eq!(
        text(Method::POST, "/users/42").await,
        (200, "post 42".into())
    );
    assert_eq!(
        text(Method::DELETE, "/users/42").await,
        (200, "wildcard 42".into())
    );
    assert_eq!(
        text(Method::GET, "/users/42/posts").await,
        (200, "wildcard 42/posts".into())
    );
    assert_eq!(text(Method::GET, "/").await, (200, "root".into()));
    let (status, body) = text(Method::GET, "/nowhere").await;
    assert_eq!(status, 404);
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["error"]["code"], "not_found");

    // Unknown app, by host and by path.
    let r = app
        .on_host("nope", Method::GET, "/users/me")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    let r = app
        .on_path("nope", Method::GET, "/users/me")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    // An app host owns every path, the control plane's included.
    let r = app
        .on_host("shop", Method::GET, "/healthz")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    // The host may carry a port.
    let r = app
        .client
        .get(app.url("/users/me"))
        .header("host", "shop.localhost:8080")
        .send()
        .await
        .expect("request");
    assert_eq!(r.text().await.expect("text"), "literal");

    // Route changes apply at once.
    let id = app.deploy("shop", "GET", "/fresh", r#""v1""#).await;
    assert_eq!(text(Method::GET, "/fresh").await, (200, "v1".into()));
    app.admin_ok(
        Method::PUT,
        &format!("/api/v1/admin/scripts/{id}"),
        Some(json!({"source": r#""v2""#})),
        200,
    )
    .await;
    assert_eq!(text(Method::GET, "/fresh").await, (200, "v2".into()));
    app.admin_ok(
        Method::DELETE,
        &format!("/api/v1/admin/scripts/{id}"),
        None,
        204,
    )
    .await;
    assert_eq!(text(Method::GET, "/fresh").await.0, 404);
    app.shutdown().await;
}

async fn logs_and_errors_are_recorded(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    let script = r#"
        log::info("starting");
        log::warn(`n = ${40 + 2}`);
        print("printed");
        debug("debugged");
        let x = ctx.request.query.fail;
        if x == "yes" {
            throw "it broke";
        }
        "fine"
    "#;
    let id = app.deploy("shop", "GET", "/work", script).await;
    let ok = app
        .on_host("shop", Method::GET, "/work")
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
    let failed = app
        .on_host("shop", Method::GET, "/work?fail=yes")
        .send()
        .await
        .expect("request");
    assert_eq!(failed.status(), 500);
    let header = failed.headers()["x-picloud-execution-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let body: Value = failed.json().await.expect("json");
    assert_eq!(body["error"]["code"], "script_error");
    assert_eq!(body["error"]["execution_id"], header);
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        !message.contains("it broke"),
        "the public body has no internals: {message}"
    );

    let runs = app.executions("shop", 2).await;
    let failed_run = runs
        .iter()
        .find(|r| r["id"] == header.as_str())
        .expect("recorded");
    assert_eq!(failed_run["status"], "error");
    assert_eq!(failed_run["script_id"], id.as_str());
    assert!(failed_run["error"]
        .as_str()
        .expect("error")
        .contains("it broke"));
    assert_eq!(failed_run["error_line"], 8);
    let levels: Vec<&str> = failed_run["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| l["level"].as_str().expect("level"))
        .collect();
    assert_eq!(levels, vec!["info", "warn", "info", "trace"]);
    assert_eq!(failed_run["logs"][1]["message"], "n = 42");

    // Filters.
    let only_errors = app
        .admin_ok(
            Method::GET,
            "/api/v1/admin/apps/shop/executions?status=error",
            None,
            200,
        )
        .await;
    assert_eq!(only_errors["items"].as_array().map(Vec::len), Some(1));
    let r = app
        .admin(
            Method::GET,
            "/api/v1/admin/apps/shop/executions?status=bogus",
            None,
        )
        .await;
    assert_eq!(r.status(), 400);
    let one = app
        .admin_ok(
            Method::GET,
            &format!("/api/v1/admin/apps/shop/executions/{header}"),
            None,
            200,
        )
        .await;
    assert_eq!(one["status"], "error");

    // Log lines are capped per run.
    app.deploy(
        "shop",
        "GET",
        "/chatty",
        "for i in 0..500 { log::info(i) } ()",
    )
    .await;
    app.on_host("shop", Method::GET, "/chatty")
        .send()
        .await
        .expect("request");
    let runs = app.executions("shop", 3).await;
    let logs = runs[0]["logs"].as_array().expect("logs");
    assert_eq!(logs.len(), 101);
    assert!(logs[100]["message"]
        .as_str()
        .expect("msg")
        .contains("400 more log lines dropped"));
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    return_value_table => return_values,
    request_context_and_principal => request_context,
    precedence_addressing_and_404 => routing_precedence_and_404s,
    execution_records => logs_and_errors_are_recorded,
);
