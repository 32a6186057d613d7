//! Short scripts answer on the async worker (no hand-off to a script thread); anything
//! that calls a service or runs long gives way and runs on a script thread, with no
//! trace of the abandoned attempt.

use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

async fn inline_runs(app: &TestApp) -> f64 {
    let text = app.metrics().await;
    text.lines()
        .find(|l| l.starts_with("picloud_inline_runs_total"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or(0.0)
}

async fn call(app: &TestApp, path: &str) -> (u16, Value, String) {
    let r = app
        .on_host("shop", Method::GET, path)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let id = r
        .headers()
        .get("x-picloud-execution-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        id,
    )
}

async fn short_scripts_run_inline(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.deploy(
        "shop",
        "GET",
        "/pure",
        r#"log::info("pure"); #{ n: 40 + 2, who: ctx.request.query.who }"#,
    )
    .await;
    app.deploy(
        "shop",
        "GET",
        "/kv",
        r#"log::info("before"); let c = kv::collection("hits"); c.set("k", 1); log::info("after"); c.get("k")"#,
    )
    .await;
    app.deploy(
        "shop",
        "GET",
        "/busy",
        "let n = 0; for i in 0..200000 { n += i; } n",
    )
    .await;

    // The first run compiles on a script thread; the next ones answer inline.
    for _ in 0..3 {
        let (status, body, _) = call(&app, "/pure?who=ann").await;
        assert_eq!((status, body), (200, json!({"n": 42, "who": "ann"})));
    }
    let inline_before = inline_runs(&app).await;
    assert!(inline_before >= 2.0, "{inline_before}");
    let (_, _, id) = call(&app, "/pure?who=bob").await;
    assert_eq!(inline_runs(&app).await, inline_before + 1.0);
    let run = app.execution("shop", &id).await;
    assert_eq!(run["status"], "ok");
    assert_eq!(run["logs"].as_array().map(Vec::len), Some(1), "{run}");

    // A service call gives way: the write happens once, on a script thread, and the
    // record holds that run's log lines only, not the abandoned attempt's.
    for _ in 0..3 {
        let (status, body, id) = call(&app, "/kv").await;
        assert_eq!((status, body), (200, json!(1)));
        let run = app.execution("shop", &id).await;
        let lines: Vec<&str> = run["logs"]
            .as_array()
            .expect("logs")
            .iter()
            .filter_map(|l| l["message"].as_str())
            .collect();
        assert_eq!(lines, ["before", "after"], "{run}");
    }
    // Long loops give way too, and still finish.
    for _ in 0..2 {
        let (status, body, _) = call(&app, "/busy").await;
        assert_eq!((status, body), (200, json!(19999900000_i64)));
    }
    // Neither counted as inline.
    assert_eq!(inline_runs(&app).await, inline_before + 1.0);
    app.shutdown().await;
}

/// A client that stops waiting does not stop the run's record: the runtime owns the
/// run, so when the request's future is dropped the run is still recorded when it ends.
async fn runs_whose_client_left_are_recorded(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.deploy(
        "gone",
        "GET",
        "/slow",
        r#"log::info("started"); let t = time::now_ms(); while time::now_ms() - t < 700 {} "done""#,
    )
    .await;
    let left = app
        .on_host("gone", Method::GET, "/slow")
        .timeout(std::time::Duration::from_millis(200))
        .send()
        .await;
    assert!(left.is_err(), "the client was meant to leave first");
    let runs = app.executions("gone", 1).await;
    assert_eq!(runs[0]["status"], "ok", "{}", runs[0]);
    assert!(
        runs[0]["duration_ms"].as_u64().is_some_and(|ms| ms >= 600),
        "{}",
        runs[0]
    );
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    short_scripts_run_inline_and_the_rest_on_script_threads => short_scripts_run_inline,
    runs_whose_client_left_are_still_recorded => runs_whose_client_left_are_recorded,
);
