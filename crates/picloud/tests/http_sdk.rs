//! Outbound `http::*` end to end against a real local HTTP server (the SSRF guard's
//! address checks off, as `PICLOUD_HTTP_ALLOW_PRIVATE=true` does): every verb, body
//! types, headers, response shapes, timeouts, size caps, redirects, the capability.
//! The guard itself is exercised in `http_guard.rs`.

use std::time::Duration;

use picloud_testkit::{Backend, TestApp, TestHttpServer};
use reqwest::Method;
use serde_json::{json, Value};

/// A script that runs `http::request(ctx.request.body)` and reports the outcome.
const REQUEST: &str = r#"
    let out = ();
    try {
        let r = http::request(ctx.request.body);
        out = #{ok: true, status: r.status, headers: r.headers, body: r.body,
                raw_len: r.body_raw.len()};
    } catch (e) {
        out = #{ok: false, error: `${e}`};
    }
    out
"#;

async fn server(
    upstream: &TestHttpServer,
    tune: impl FnOnce(&mut picloud_core::config::Config),
) -> TestApp {
    let port = upstream.port();
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.http.allow_private = true;
        c.http.allowed_ports.push(port);
        tune(c);
    })
    .await
    .expect("server");
    app.create_app("shop").await;
    app
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let r = app
        .on_host("shop", Method::POST, path)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn request(app: &TestApp, spec: Value) -> Value {
    let (status, out) = post(app, "/request", spec).await;
    assert_eq!(status, 200, "{out}");
    out
}

fn ok(out: &Value) -> &Value {
    assert_eq!(out["ok"], true, "{out}");
    out
}

fn err(out: &Value) -> String {
    assert_eq!(out["ok"], false, "expected an error: {out}");
    out["error"].as_str().expect("error").to_owned()
}

#[tokio::test]
async fn verbs_bodies_headers_and_responses() {
    let up = TestHttpServer::start().await;
    let app = server(&up, |_| {}).await;
    let echo = up.url("/echo");
    let script_id = app
        .deploy(
            "shop",
            "POST",
            "/verbs",
            &format!(
                r#"
        let u = "{echo}";
        let o = #{{headers: #{{"x-test": "yes", "x-n": 7}}}};
        #{{
            get: http::get(u).body, get_o: http::get(u, o).body,
            head: http::head(u), head_o: http::head(u, o).status,
            delete: http::delete(u).body, delete_o: http::delete(u, o).body,
            post_map: http::post(u, #{{a: 1, b: [true, ()]}}).body,
            post_array: http::post(u, [1, "x"], o).body,
            put_text: http::put(u, "plain words").body,
            put_o: http::put(u, "t", o).body,
            patch_blob: http::patch(u, base64::decode("AP8=")).body,
            patch_o: http::patch(u, (), o).body,
            form: http::post_form(u, #{{name: "a b&c", n: 3}}).body,
            form_o: http::post_form(u, #{{x: "1"}}, o).body,
            options: http::request(#{{method: "options", url: u}}).body,
            ua: http::get(u, #{{headers: #{{"user-agent": "mine/1"}}}}).body.headers["user-agent"],
        }}
    "#
            ),
        )
        .await;
    let (status, out) = post(&app, "/verbs", json!(null)).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["get"]["method"], "GET");
    assert_eq!(
        out["get"]["headers"]["user-agent"],
        format!("picloud/{} (script:{script_id})", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(out["get_o"]["headers"]["x-test"], "yes");
    assert_eq!(out["get_o"]["headers"]["x-n"], "7");
    assert_eq!(out["head"]["status"], 200);
    assert_eq!(out["head"]["body"], Value::Null, "HEAD has no body");
    assert_eq!(out["head_o"], 200);
    assert_eq!(out["delete"]["method"], "DELETE");
    assert_eq!(out["delete_o"]["headers"]["x-test"], "yes");

    let pm = &out["post_map"];
    assert_eq!(pm["method"], "POST");
    assert_eq!(pm["headers"]["content-type"], "application/json");
    assert_eq!(
        serde_json::from_str::<Value>(pm["body"].as_str().expect("text")).expect("json"),
        json!({"a": 1, "b": [true, null]})
    );
    assert_eq!(out["post_array"]["body"], r#"[1,"x"]"#);
    assert_eq!(out["post_array"]["headers"]["x-test"], "yes");
    let pt = &out["put_text"];
    assert_eq!(pt["method"], "PUT");
    assert_eq!(pt["headers"]["content-type"], "text/plain; charset=utf-8");
    assert_eq!(pt["body"], "plain words");
    assert_eq!(out["put_o"]["headers"]["x-test"], "yes");
    let pb = &out["patch_blob"];
    assert_eq!(pb["method"], "PATCH");
    assert_eq!(pb["headers"]["content-type"], "application/octet-stream");
    assert_eq!(pb["body_len"], 2);
    let po = &out["patch_o"];
    assert_eq!(po["body_len"], 0);
    assert!(po["headers"].get("content-type").is_none(), "{po}");
    let form = &out["form"];
    assert_eq!(
        form["headers"]["content-type"],
        "application/x-www-form-urlencoded"
    );
    let fields: Vec<&str> = form["body"].as_str().expect("form").split('&').collect();
    assert!(
        fields.contains(&"name=a+b%26c") && fields.contains(&"n=3"),
        "{form}"
    );
    assert_eq!(out["form_o"]["headers"]["x-test"], "yes");
    assert_eq!(out["options"]["method"], "OPTIONS");
    assert_eq!(out["ua"], "mine/1");

    // Response shapes: JSON parsed, text as a string, binary only as bytes, non-2xx
    // returned rather than thrown.
    app.deploy("shop", "POST", "/request", REQUEST).await;
    let json_out = request(&app, json!({"method": "GET", "url": up.url("/json")})).await;
    assert_eq!(ok(&json_out)["body"], json!({"ok": true, "n": [1, 2]}));
    assert_eq!(json_out["headers"]["content-type"], "application/json");
    let text = request(&app, json!({"method": "GET", "url": up.url("/text")})).await;
    assert_eq!(ok(&text)["body"], "hello");
    let binary = request(&app, json!({"method": "GET", "url": up.url("/binary")})).await;
    assert_eq!(ok(&binary)["body"], Value::Null);
    assert_eq!(binary["raw_len"], 3);
    for code in [404, 500, 503] {
        let out = request(
            &app,
            json!({"method": "POST", "url": up.url(&format!("/status/{code}")), "body": {"x": 1}}),
        )
        .await;
        assert_eq!(ok(&out)["status"], code);
        assert_eq!(out["body"], json!({"status": code}));
    }
    let with_body = request(
        &app,
        json!({"method": "PUT", "url": echo, "body": "t", "headers": {"x-a": "b"}}),
    )
    .await;
    assert_eq!(ok(&with_body)["body"]["body"], "t");
    assert_eq!(with_body["body"]["headers"]["x-a"], "b");
    assert_eq!(with_body["body"]["method"], "PUT");
}

#[tokio::test]
async fn options_are_validated() {
    let up = TestHttpServer::start().await;
    // A port that was free a moment ago: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let app = server(&up, |c| c.http.allowed_ports.push(closed)).await;
    app.deploy("shop", "POST", "/request", REQUEST).await;
    let echo = up.url("/echo");
    let cases = [
        (
            json!({"method": "GET", "url": echo, "timeout": 5}),
            "http: unknown request key \"timeout\"",
        ),
        (
            json!({"method": "GET", "url": echo, "timeout_ms": 0}),
            "http: timeout_ms must be a positive integer",
        ),
        (
            json!({"method": "GET", "url": echo, "timeout_ms": "5"}),
            "http: timeout_ms must be a positive integer",
        ),
        (
            json!({"method": "GET", "url": echo, "max_redirects": 21}),
            "http: max_redirects must be an integer from 0 to 20",
        ),
        (
            json!({"method": "GET", "url": echo, "follow_redirects": "yes"}),
            "http: follow_redirects must be a bool",
        ),
        (
            json!({"method": "GET", "url": echo, "headers": ["x"]}),
            "http: headers must be a map of strings",
        ),
        (
            json!({"method": "GET", "url": echo, "headers": {"bad name": "x"}}),
            "http: invalid header name \"bad name\"",
        ),
        (
            json!({"method": "GET", "url": echo, "headers": {"x": "a\nb"}}),
            "http: invalid value for header \"x\"",
        ),
        (
            json!({"method": "TRACE", "url": echo}),
            "http: unsupported method \"TRACE\"",
        ),
        (
            json!({"method": "GET", "url": "not a url"}),
            "http: invalid URL",
        ),
        (
            json!({"url": echo}),
            "http: request needs a string \"method\"",
        ),
        (
            json!({"method": "POST", "url": echo, "body": 5}),
            "http: body must be a map, array, string, Blob or ()",
        ),
        // Network failures: TLS spoken to a plain-HTTP server, a closed port.
        (
            json!({"method": "GET", "url": echo.replace("http:", "https:")}),
            "http: connection failed",
        ),
        (
            json!({"method": "GET", "url": format!("http://127.0.0.1:{closed}/")}),
            "http: connection failed",
        ),
        (
            json!({"method": "GET", "url": "http://no-such-host.invalid/"}),
            "http: could not resolve host",
        ),
    ];
    for (spec, expected) in cases {
        let out = request(&app, spec.clone()).await;
        let e = err(&out);
        assert!(e.starts_with(expected), "{spec}: {e}");
    }
    app.deploy(
        "shop",
        "POST",
        "/opts",
        &format!(
            r#"
        let out = #{{}};
        try {{ http::get("{echo}", #{{retries: 3}}); }} catch (e) {{ out.get = `${{e}}`; }}
        try {{ http::post("{echo}", "x", #{{body: "y"}}); }} catch (e) {{ out.post = `${{e}}`; }}
        try {{ http::post_form("{echo}", #{{a: [1]}}); }} catch (e) {{ out.form = `${{e}}`; }}
        out
    "#
        ),
    )
    .await;
    let (_, out) = post(&app, "/opts", json!(null)).await;
    assert!(
        out["get"]
            .as_str()
            .expect("get")
            .starts_with("http: unknown option \"retries\""),
        "{out}"
    );
    assert!(
        out["post"]
            .as_str()
            .expect("post")
            .starts_with("http: unknown option \"body\""),
        "{out}"
    );
    assert!(
        out["form"]
            .as_str()
            .expect("form")
            .starts_with("http: form field \"a\""),
        "{out}"
    );
}

#[tokio::test]
async fn redirects() {
    let up = TestHttpServer::start().await;
    let app = server(&up, |_| {}).await;
    app.deploy("shop", "POST", "/request", REQUEST).await;
    let get = |path: &str, extra: Value| {
        let mut spec = json!({"method": "GET", "url": up.url(path)});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        spec
    };

    let followed = request(&app, get("/chain/3", json!({}))).await;
    assert_eq!(ok(&followed)["status"], 200);
    assert_eq!(followed["body"]["path"], "/echo");
    let not_followed = request(&app, get("/chain/3", json!({"follow_redirects": false}))).await;
    assert_eq!(ok(&not_followed)["status"], 302);
    assert_eq!(not_followed["headers"]["location"], "/chain/2");
    // /chain/2 is three redirects.
    let capped = request(&app, get("/chain/2", json!({"max_redirects": 2}))).await;
    assert_eq!(err(&capped), "http: too many redirects (max 2)");
    let exact = request(&app, get("/chain/2", json!({"max_redirects": 3}))).await;
    assert_eq!(ok(&exact)["status"], 200);
    let zero = request(&app, get("/chain/0", json!({"max_redirects": 0}))).await;
    assert_eq!(err(&zero), "http: too many redirects (max 0)");

    // 302 after POST becomes a GET without body; 307 repeats the POST.
    for (code, method, body) in [
        (302, "GET", ""),
        (303, "GET", ""),
        (307, "POST", "data"),
        (308, "POST", "data"),
    ] {
        let out = request(
            &app,
            json!({"method": "POST", "url": up.url(&format!("/redirect?to=/echo&status={code}")), "body": "data"}),
        )
        .await;
        assert_eq!(ok(&out)["body"]["method"], method, "{code}: {out}");
        assert_eq!(out["body"]["body"], body, "{code}");
    }

    // Credentials stay with their origin: same origin keeps them, another host (same
    // address) or another port loses them.
    let secret = json!({"authorization": "Bearer s3cret", "cookie": "sid=1", "x-keep": "k"});
    let same = request(
        &app,
        json!({"method": "GET", "url": up.url("/redirect?to=/echo"), "headers": secret}),
    )
    .await;
    assert_eq!(
        ok(&same)["body"]["headers"]["authorization"],
        "Bearer s3cret"
    );
    assert_eq!(same["body"]["headers"]["cookie"], "sid=1");
    let cross = format!("http://localhost:{}/echo", up.port());
    let moved = request(
        &app,
        json!({"method": "GET", "url": up.url(&format!("/redirect?to={cross}")), "headers": secret}),
    )
    .await;
    let headers = &ok(&moved)["body"]["headers"];
    assert!(headers.get("authorization").is_none(), "{headers}");
    assert!(headers.get("cookie").is_none(), "{headers}");
    assert_eq!(headers["x-keep"], "k");
    assert_eq!(headers["host"], format!("localhost:{}", up.port()));
    // Same host, another port: another origin too.
    let other = TestHttpServer::start().await;
    let app = server(&other, |c| c.http.allowed_ports.push(up.port())).await;
    app.deploy("shop", "POST", "/request", REQUEST).await;
    let to = other.url("/echo");
    let moved = request(
        &app,
        json!({"method": "GET", "url": up.url(&format!("/redirect?to={to}")), "headers": secret}),
    )
    .await;
    let headers = &ok(&moved)["body"]["headers"];
    assert!(headers.get("authorization").is_none(), "{headers}");
    assert!(headers.get("cookie").is_none(), "{headers}");
}

#[tokio::test]
async fn timeouts_and_size_caps() {
    let up = TestHttpServer::start().await;
    let app = server(&up, |c| {
        c.http.timeout = Duration::from_millis(700);
        c.http.max_request_body_bytes = 100;
        c.http.max_response_body_bytes = 1000;
    })
    .await;
    app.deploy("shop", "POST", "/request", REQUEST).await;
    let slow = up.url("/slow?ms=3000");
    // The script's own limit, then the configured one when the script's is longer.
    let own = request(
        &app,
        json!({"method": "GET", "url": slow, "timeout_ms": 200}),
    )
    .await;
    assert_eq!(err(&own), "http: timed out after 200 ms");
    let configured = request(
        &app,
        json!({"method": "GET", "url": slow, "timeout_ms": 60000}),
    )
    .await;
    assert_eq!(err(&configured), "http: timed out after 700 ms");
    let quick = request(&app, json!({"method": "GET", "url": up.url("/slow?ms=10")})).await;
    assert_eq!(ok(&quick)["body"], "done");

    let at_cap = request(
        &app,
        json!({"method": "POST", "url": up.url("/echo"), "body": "x".repeat(100)}),
    )
    .await;
    assert_eq!(ok(&at_cap)["body"]["body_len"], 100);
    let over = request(
        &app,
        json!({"method": "POST", "url": up.url("/echo"), "body": "x".repeat(101)}),
    )
    .await;
    assert_eq!(err(&over), "http: request body larger than 100 bytes");
    let fits = request(
        &app,
        json!({"method": "GET", "url": up.url("/bytes?n=1000")}),
    )
    .await;
    assert_eq!(ok(&fits)["raw_len"], 1000);
    for path in ["/bytes?n=1001", "/bytes?n=50000&chunked=1"] {
        let out = request(&app, json!({"method": "GET", "url": up.url(path)})).await;
        assert_eq!(
            err(&out),
            "http: response body larger than 1000 bytes",
            "{path}"
        );
    }
}

/// The run's wall-clock limit stops a script waiting on a slow request, like any other
/// run, and the server stays healthy.
#[tokio::test]
async fn the_run_deadline_bounds_a_request() {
    let up = TestHttpServer::start().await;
    let app = server(&up, |c| c.limits.route_timeout = Duration::from_millis(800)).await;
    app.deploy(
        "shop",
        "GET",
        "/stuck",
        &format!(r#"http::get("{}")"#, up.url("/slow?ms=20000")),
    )
    .await;
    let started = std::time::Instant::now();
    let r = app
        .on_host("shop", Method::GET, "/stuck")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 504);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "timeout", "{body}");
    assert!(started.elapsed() < Duration::from_secs(15));
    let runs = app.executions("shop", 1).await;
    assert_eq!(runs[0]["status"], "timeout", "{runs:?}");
}

/// Values the host hands in must be usable even past the script limits (SCRIPTING.md
/// "Limits"): a 5 MiB response reaches the script whole as `body_raw` (and can be
/// returned); its text, past the string limit, is left out of `body`. Only a body past
/// the Blob cap is refused, with a catchable `http:` error saying so.
#[tokio::test]
async fn large_responses_and_script_limits() {
    let up = TestHttpServer::start().await;
    let app = server(&up, |_| {}).await;
    app.deploy("shop", "POST", "/request", REQUEST).await;
    let five = 5 << 20;
    let big = request(
        &app,
        json!({"method": "GET", "url": up.url(&format!("/bytes?n={five}"))}),
    )
    .await;
    assert_eq!(ok(&big)["raw_len"], five);
    assert_eq!(
        big["body"],
        Value::Null,
        "the text is past the string limit"
    );
    let small = request(
        &app,
        json!({"method": "GET", "url": up.url("/bytes?n=250000")}),
    )
    .await;
    assert_eq!(small["body"].as_str().map(str::len), Some(250_000));
    // Parsed JSON is held to the array limit like arrays a script builds.
    let within = request(
        &app,
        json!({"method": "GET", "url": up.url("/zeros?n=99999")}),
    )
    .await;
    assert_eq!(ok(&within)["body"].as_array().map(Vec::len), Some(99_999));
    let past = request(
        &app,
        json!({"method": "GET", "url": up.url("/zeros?n=100001")}),
    )
    .await;
    assert_eq!(ok(&past)["body"], Value::Null, "left to body_raw");
    assert_eq!(past["raw_len"], 2 * 100_001 + 1);

    app.deploy(
        "shop",
        "POST",
        "/passthrough",
        "let r = http::get(ctx.request.body.url); let b = r.body_raw; b += blob(1, 98); b",
    )
    .await;
    let r = app
        .on_host("shop", Method::POST, "/passthrough")
        .json(&json!({"url": up.url(&format!("/bytes?n={five}"))}))
        .send()
        .await
        .expect("passthrough");
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.expect("body");
    assert_eq!(bytes.len(), five + 1);
    assert!(bytes[..five].iter().all(|&b| b == b'a') && bytes[five] == b'b');

    // Past the Blob cap the response is refused, catchably.
    let app = server(&up, |c| c.limits.max_blob_bytes = 300_000).await;
    app.deploy("shop", "POST", "/request", REQUEST).await;
    let fits = request(
        &app,
        json!({"method": "GET", "url": up.url("/bytes?n=299000")}),
    )
    .await;
    assert_eq!(ok(&fits)["raw_len"], 299_000);
    let too_big = request(
        &app,
        json!({"method": "GET", "url": up.url("/bytes?n=300001")}),
    )
    .await;
    let e = err(&too_big);
    assert!(
        e.starts_with("http: response body of 300001 bytes is larger than a script value may be"),
        "{e}"
    );

    // Each value on its own: a body within the string limit is text whatever the
    // headers beside it hold; one byte past it is left to `body_raw`.
    let app = server(&up, |c| c.limits.max_string_bytes = 2000).await;
    app.deploy("shop", "POST", "/request", REQUEST).await;
    let fits = request(
        &app,
        json!({"method": "GET", "url": up.url("/bytes?n=2000")}),
    )
    .await;
    assert_eq!(ok(&fits)["body"].as_str().map(str::len), Some(2000));
    let past = request(
        &app,
        json!({"method": "GET", "url": up.url("/bytes?n=2001")}),
    )
    .await;
    assert_eq!(ok(&past)["raw_len"], 2001);
    assert_eq!(past["body"], Value::Null, "{past}");
}

/// One client serves every run: consecutive requests, in one run and across runs,
/// reuse the same connection.
#[tokio::test]
async fn connections_are_reused() {
    let up = TestHttpServer::start().await;
    let app = server(&up, |_| {}).await;
    app.deploy(
        "shop",
        "GET",
        "/peers",
        &format!(
            r#"let u = "{}"; [http::get(u).body, http::get(u).body, http::get(u).body]"#,
            up.url("/peer")
        ),
    )
    .await;
    let mut peers = Vec::new();
    for _ in 0..2 {
        let r = app
            .on_host("shop", Method::GET, "/peers")
            .send()
            .await
            .expect("request");
        let run: Vec<String> = r.json().await.expect("json");
        peers.extend(run);
    }
    assert_eq!(peers.len(), 6);
    // One client per call would open six connections. A pooled connection goes back
    // to the pool a moment after its body is read, so under load a request may
    // occasionally open a second one; most must share.
    let distinct: std::collections::BTreeSet<&String> = peers.iter().collect();
    assert!(distinct.len() <= 2, "{peers:?}");
}

/// `http::*` needs script:write when the run acts for a caller.
#[tokio::test]
async fn callers_need_script_write() {
    let up = TestHttpServer::start().await;
    let app = server(&up, |_| {}).await;
    let script = app
        .create_script(
            "shop",
            "out",
            &format!(r#"http::get("{}").status"#, up.url("/echo")),
        )
        .await;
    let id = script["id"].as_str().expect("id");
    app.admin_ok(
        Method::POST,
        &format!("/api/v1/admin/scripts/{id}/routes"),
        Some(json!({"method": "GET", "path": "/out", "auth": "required"})),
        201,
    )
    .await;
    for (scopes, expected) in [
        (json!(["script:invoke"]), 403),
        (json!(["script:invoke", "script:read"]), 403),
        (json!(["script:invoke", "script:write"]), 200),
    ] {
        let key = app
            .admin_ok(
                Method::POST,
                "/api/v1/admin/api-keys",
                Some(json!({"name": "k", "scopes": scopes})),
                201,
            )
            .await;
        let r = app
            .on_host("shop", Method::GET, "/out")
            .bearer_auth(key["key"].as_str().expect("key"))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        assert_eq!(status, expected, "{scopes}: {text}");
    }
}
