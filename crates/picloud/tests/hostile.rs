//! Hostile scripts and requests: each gets its documented error, and the server keeps
//! answering normal requests right after.

use std::time::{Duration, Instant};

use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

/// Sends `request` over a plain TCP connection and returns what comes back until the
/// server closes it or a deadline passes.
async fn raw_exchange(app: &TestApp, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The server may stop reading early; what it answers is what counts.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => response.extend_from_slice(&chunk[..n]),
            Err(_) if !response.is_empty() => break,
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&response).into_owned()
}

async fn error_code(r: reqwest::Response) -> (u16, String, Value) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("json error body");
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body,
    )
}

/// After every hostile request, a plain one still answers 200.
async fn still_healthy(app: &TestApp) {
    let r = app
        .on_host("shop", Method::GET, "/ok")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "server still answers");
    let r = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(r.status(), 200);
}

async fn runaway_scripts(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.limits.route_timeout = Duration::from_millis(1500);
    })
    .await
    .expect("server");
    app.deploy("shop", "GET", "/ok", r#""ok""#).await;

    // Operation limit: a tight loop exhausts 10M operations.
    app.deploy("shop", "GET", "/spin", "loop {}").await;
    let (status, code, _) = error_code(
        app.on_host("shop", Method::GET, "/spin")
            .send()
            .await
            .expect("r"),
    )
    .await;
    assert!(
        (status, code.as_str()) == (500, "limit_exceeded")
            || (status, code.as_str()) == (504, "timeout"),
        "loop stops at a limit: {status} {code}"
    );
    still_healthy(&app).await;

    // Unbounded recursion meets the call-depth limit, never the native stack.
    app.deploy("shop", "GET", "/recurse", "fn f(n) { f(n + 1) } f(0)")
        .await;
    let (status, code, body) = error_code(
        app.on_host("shop", Method::GET, "/recurse")
            .send()
            .await
            .expect("r"),
    )
    .await;
    assert_eq!((status, code.as_str()), (500, "limit_exceeded"), "{body}");
    // Recursion through method-style calls and closures, too.
    app.deploy(
        "shop",
        "GET",
        "/recurse2",
        "fn g(n) { let h = |x| g(x); h.call(n + 1) } g(0)",
    )
    .await;
    let (status, code, _) = error_code(
        app.on_host("shop", Method::GET, "/recurse2")
            .send()
            .await
            .expect("r"),
    )
    .await;
    assert_eq!((status, code.as_str()), (500, "limit_exceeded"));
    // The worst case for the native stack: every call level as deep an expression as
    // the parser allows. Still the call-depth limit that stops it.
    let nested = format!(
        "fn f(n) {{ if n <= 0 {{ return 0; }} {}f(n - 1){} }} f(100000)",
        "(1 + ".repeat(40),
        ")".repeat(40)
    );
    app.deploy("shop", "GET", "/deep-recurse", &nested).await;
    let (status, code, body) = error_code(
        app.on_host("shop", Method::GET, "/deep-recurse")
            .send()
            .await
            .expect("r"),
    )
    .await;
    assert_eq!((status, code.as_str()), (500, "limit_exceeded"), "{body}");
    still_healthy(&app).await;

    // A 2 MiB string built in a loop hits the 1 MiB string limit.
    app.deploy(
        "shop",
        "GET",
        "/big-string",
        r#"let s = "x"; while true { s += s; } s"#,
    )
    .await;
    let (status, code, _) = error_code(
        app.on_host("shop", Method::GET, "/big-string")
            .send()
            .await
            .expect("r"),
    )
    .await;
    assert_eq!((status, code.as_str()), (500, "limit_exceeded"));
    app.deploy(
        "shop",
        "GET",
        "/big-array",
        "let a = []; a.pad(200000, 0); a",
    )
    .await;
    app.deploy(
        "shop",
        "GET",
        "/pushed-array",
        "let a = []; a.pad(99999, 0); a.push(1); a.push(2); a",
    )
    .await;
    // Rhai counts Blob bytes against its array limit, which is therefore the larger
    // Blob cap; arrays keep their own 100,000.
    for path in ["/big-array", "/pushed-array"] {
        let (status, code, body) = error_code(
            app.on_host("shop", Method::GET, path)
                .send()
                .await
                .expect("r"),
        )
        .await;
        assert_eq!(
            (status, code.as_str()),
            (500, "limit_exceeded"),
            "{path}: {body}"
        );
    }
    // Deeply nested values cannot blow the stack either.
    app.deploy(
        "shop",
        "GET",
        "/nest",
        "let a = []; for i in 0..200000 { a = [a]; } 1",
    )
    .await;
    let (status, code, body) = error_code(
        app.on_host("shop", Method::GET, "/nest")
            .send()
            .await
            .expect("r"),
    )
    .await;
    assert!(
        (status, code.as_str()) == (500, "limit_exceeded")
            || (status, code.as_str()) == (504, "timeout"),
        "{body}"
    );
    still_healthy(&app).await;

    let runs = app.executions("shop", 6).await;
    let statuses: Vec<&str> = runs
        .iter()
        .map(|r| r["status"].as_str().expect("status"))
        .collect();
    assert!(statuses.contains(&"limit_exceeded"));
    app.shutdown().await;
}

async fn wall_clock_limit(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.limits.route_timeout = Duration::from_millis(800);
        // Make the clock, not the operation count, the limit that trips.
        c.limits.max_operations = u64::MAX / 2;
    })
    .await
    .expect("server");
    app.deploy("shop", "GET", "/ok", r#""ok""#).await;
    app.deploy("shop", "GET", "/spin", "loop {}").await;
    let started = Instant::now();
    let (status, code, body) = error_code(
        app.on_host("shop", Method::GET, "/spin")
            .send()
            .await
            .expect("r"),
    )
    .await;
    assert_eq!((status, code.as_str()), (504, "timeout"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped in time: {:?}",
        started.elapsed()
    );
    assert!(body["error"]["execution_id"].as_str().is_some());
    still_healthy(&app).await;
    let runs = app.executions("shop", 2).await;
    assert!(runs.iter().any(|r| r["status"] == "timeout"));
    app.shutdown().await;
}

async fn hostile_requests(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.deploy("shop", "GET", "/ok", r#""ok""#).await;
    app.deploy("shop", "POST", "/echo", "ctx.request.body_raw")
        .await;
    app.deploy("shop", "POST", "/json", "ctx.request.body")
        .await;

    // 20 MiB body: 413, before any script runs. Written by hand: the server answers
    // on the declared length and closes, so a client still writing the body may see a
    // broken pipe instead of the answer, depending on timing.
    let response = raw_exchange(
        &app,
        &format!(
            "POST /echo HTTP/1.1\r\nhost: shop.localhost\r\ncontent-length: {}\r\n\r\n{}",
            20 << 20,
            "a".repeat(64 << 10)
        ),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("payload_too_large"), "{response}");
    still_healthy(&app).await;

    // 5 MiB is within the body cap: the script can read and return it...
    let five = vec![7u8; 5 << 20];
    let post_five = |path: &'static str| {
        app.on_host("shop", Method::POST, path)
            .header("content-type", "application/octet-stream")
            .body(five.clone())
            .send()
    };
    let r = post_five("/echo").await.expect("r");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.expect("body").len(), five.len());
    // ...and work with it like any value it builds: Blob functions, returned values.
    app.deploy(
        "shop",
        "POST",
        "/grow",
        "let b = ctx.request.body_raw; b.push(8); let copy = #{data: b}; copy.data",
    )
    .await;
    let r = post_five("/grow").await.expect("r");
    assert_eq!(r.status(), 200);
    let grown = r.bytes().await.expect("body");
    assert_eq!((grown.len(), grown.last()), (five.len() + 1, Some(&8)));

    // Malformed JSON sent as JSON: 400 without running the script.
    let r = app
        .on_host("shop", Method::POST, "/json")
        .header("content-type", "application/json")
        .body("{\"a\": ")
        .send()
        .await
        .expect("r");
    let (status, code, _) = error_code(r).await;
    assert_eq!((status, code.as_str()), (400, "bad_request"));
    still_healthy(&app).await;
    let runs = app.executions("shop", 4).await;
    assert_eq!(runs.len(), 4, "neither refused request ran a script");

    // A script that does not compile is refused at save time, with its position.
    let r = app
        .admin(
            Method::POST,
            "/api/v1/admin/apps/shop/scripts",
            Some(json!({"name": "broken", "source": "let x = 1;\nlet y = ;\n"})),
        )
        .await;
    let (status, code, body) = error_code(r).await;
    assert_eq!((status, code.as_str()), (422, "invalid"));
    assert_eq!(body["error"]["line"], 2);
    assert!(body["error"]["column"].as_u64().is_some());
    // Nesting deeper than the expression limit is a compile error, not a crash.
    let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
    let r = app
        .admin(
            Method::POST,
            "/api/v1/admin/apps/shop/scripts",
            Some(json!({"name": "deep", "source": deep})),
        )
        .await;
    assert_eq!(error_code(r).await.0, 422);
    // eval is not available, nor is the file system.
    let r = app
        .admin(
            Method::POST,
            "/api/v1/admin/apps/shop/scripts",
            Some(json!({"name": "ev", "source": "eval(\"1\")"})),
        )
        .await;
    assert_eq!(error_code(r).await.0, 422);
    // No file-system resolver: a path is not even a module name, refused on save;
    // and a script that reaches the database around the API fails at run time.
    let r = app
        .admin(
            Method::POST,
            "/api/v1/admin/apps/shop/scripts",
            Some(json!({"name": "fs", "source": "import \"/etc/passwd\" as p; 1"})),
        )
        .await;
    assert_eq!(error_code(r).await.0, 422);
    let shop = app
        .admin_ok(Method::GET, "/api/v1/admin/apps/shop", None, 200)
        .await;
    let raw = app
        .started()
        .state
        .store
        .create_script(picloud_store::NewScript {
            app_id: picloud_core::AppId::from_trusted(shop["id"].as_str().expect("id").to_owned()),
            name: "fs".into(),
            kind: picloud_core::model::ScriptKind::Endpoint,
            source: "import \"/etc/passwd\" as p; 1".into(),
            imports: vec![],
        })
        .await
        .expect("written around the API");
    app.create_route(raw.id.as_str(), "GET", "/import").await;
    let (status, code, body) = error_code(
        app.on_host("shop", Method::GET, "/import")
            .send()
            .await
            .expect("r"),
    )
    .await;
    assert_eq!((status, code.as_str()), (500, "script_error"));
    let id = body["error"]["execution_id"]
        .as_str()
        .expect("execution id");
    let run = app.execution("shop", id).await;
    let error = run["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("import:") && !error.contains("root:"),
        "{error}"
    );
    still_healthy(&app).await;

    // A script id of another app, used under this app's URL: 404, as if absent.
    app.create_app("other").await;
    let theirs = app.create_script("other", "secret", "\"theirs\"").await;
    let theirs_id = theirs["id"].as_str().expect("id");
    for method in [Method::GET, Method::DELETE] {
        let r = app
            .admin(
                method,
                &format!("/api/v1/admin/apps/shop/scripts/{theirs_id}"),
                None,
            )
            .await;
        let (status, code, _) = error_code(r).await;
        assert_eq!((status, code.as_str()), (404, "not_found"));
    }
    let r = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/apps/shop/scripts/{theirs_id}"),
            Some(json!({"source": "1"})),
        )
        .await;
    assert_eq!(error_code(r).await.0, 404);
    let r = app
        .admin(
            Method::GET,
            &format!("/api/v1/admin/apps/shop/executions?script_id={theirs_id}"),
            None,
        )
        .await;
    assert_eq!(error_code(r).await.0, 404);
    let still_theirs = app
        .admin_ok(
            Method::GET,
            &format!("/api/v1/admin/scripts/{theirs_id}"),
            None,
            200,
        )
        .await;
    assert_eq!(still_theirs["source"], "\"theirs\"");
    still_healthy(&app).await;
    app.shutdown().await;
}

/// A run the HTTP side stops waiting for (its script is inside slow operations between
/// two clock checks) answers 504, is recorded in abandoned_executions, and its own
/// execution record still arrives when it ends.
async fn abandoned_runs(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.limits.route_timeout = Duration::from_millis(50);
        c.limits.abandon_grace = Duration::ZERO;
        c.executor.queue_timeout = Duration::from_millis(1);
    })
    .await
    .expect("server");
    app.deploy("shop", "GET", "/ok", r#""ok""#).await;
    // Each replace_all over 650 KB is one operation of milliseconds; the clock is read
    // every 128 operations, which this expression reaches only after ~40 of them.
    let slow = vec![r#"regex::replace_all("a", s, "b").len()"#; 60].join(" + ");
    let source = format!(r#"let s = "aaaaaaaaaa"; for i in 0..16 {{ s += s; }} {slow}"#);
    app.deploy("shop", "GET", "/slow", &source).await;
    let started = Instant::now();
    let (status, code, body) = error_code(
        app.on_host("shop", Method::GET, "/slow")
            .send()
            .await
            .expect("r"),
    )
    .await;
    assert_eq!((status, code.as_str()), (504, "timeout"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at the HTTP limit"
    );
    let execution = body["error"]["execution_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let abandoned = app
        .eventually("abandoned record", || async {
            let page = app
                .admin_ok(
                    Method::GET,
                    "/api/v1/admin/apps/shop/abandoned-executions",
                    None,
                    200,
                )
                .await;
            page["items"].as_array().and_then(|i| i.first().cloned())
        })
        .await;
    assert_eq!(abandoned["execution_id"], execution.as_str());
    let runs = app.executions("shop", 1).await;
    let run = app
        .eventually("the abandoned run's own record", || async {
            let runs = app.executions("shop", 1).await;
            runs.into_iter().find(|r| r["id"] == execution.as_str())
        })
        .await;
    assert!(run["duration_ms"].as_u64().is_some());
    let _ = runs;
    still_healthy(&app).await;
    app.shutdown().await;
}

/// A stop raised inside a closure reaches `try` wrapped in a catchable error; the stop
/// must still end the run (found in review: the loop below ran on to the operation
/// limit, past its wall-clock limit).
async fn stops_cannot_be_caught(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.limits.route_timeout = Duration::from_millis(300);
    })
    .await
    .expect("server");
    app.deploy("shop", "GET", "/ok", r#""ok""#).await;
    app.deploy(
        "shop",
        "GET",
        "/sly",
        // Almost every clock check falls inside the closure: without sticky stops the
        // first one is caught and the script returns "escaped".
        r#"let caught = false;
           loop {
               try { [1].map(|x| { let i = 0; while i < 100000 { i += 1; } x }); } catch (e) { caught = true; }
               if caught { return "escaped"; }
           }"#,
    )
    .await;
    let (status, code, body) = error_code(
        app.on_host("shop", Method::GET, "/sly")
            .send()
            .await
            .expect("r"),
    )
    .await;
    assert_eq!((status, code.as_str()), (504, "timeout"), "{body}");
    still_healthy(&app).await;
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    stops_raised_in_closures_cannot_be_caught => stops_cannot_be_caught,
    abandoned_runs_are_recorded => abandoned_runs,
    runaway_scripts_stop_at_limits => runaway_scripts,
    wall_clock_limit_stops_loops => wall_clock_limit,
    hostile_requests_get_documented_errors => hostile_requests,
);
