//! Durable pub/sub end to end, on both backends: fan-out by pattern with one delivery
//! per subscriber and independent retries, Blobs in messages, the trigger's admin
//! validation, isolation between apps, and the capability check for callers.

use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

async fn subscribe(app: &TestApp, slug: &str, script: &Value, topic: &str) -> Value {
    app.admin_ok(
        Method::POST,
        &format!("/api/v1/admin/apps/{slug}/triggers/pubsub"),
        Some(json!({"script_id": script["id"], "topic": topic,
                    "retry": {"max_attempts": 3, "base_delay_ms": 10, "max_delay_ms": 50}})),
        201,
    )
    .await
}

async fn kv_items(app: &TestApp, slug: &str, collection: &str) -> Vec<Value> {
    let page = app
        .admin_ok(
            Method::GET,
            &format!("/api/v1/admin/apps/{slug}/kv/{collection}?limit=500"),
            None,
            200,
        )
        .await;
    page["items"].as_array().cloned().unwrap_or_default()
}

async fn fan_out_each_subscriber_once(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("shop").await;
    // Each handler records what it saw under its own collection.
    let record = |name: &str| {
        format!(
            r#"kv::collection("{name}").set(ctx.event.id + ":" + ctx.event.attempt, ctx.event); ()"#
        )
    };
    let exact = app.create_script("shop", "exact", &record("exact")).await;
    let prefix = app.create_script("shop", "prefix", &record("prefix")).await;
    // Fails on its first attempt, succeeds on the second: its retry is its own.
    let flaky = app
        .create_script(
            "shop",
            "flaky",
            r#"
            kv::collection("flaky").set(ctx.event.id + ":" + ctx.event.attempt, ctx.event);
            if ctx.event.attempt == 1 { throw "first attempt fails"; }
            ()
        "#,
        )
        .await;
    let t = subscribe(&app, "shop", &exact, "orders").await;
    assert_eq!(
        (t["kind"].as_str(), t["topic"].as_str()),
        (Some("pubsub"), Some("orders"))
    );
    subscribe(&app, "shop", &prefix, "orders.*").await;
    subscribe(&app, "shop", &flaky, "*").await;

    app.deploy(
        "shop",
        "POST",
        "/publish",
        r#"
        let topic = ctx.request.body.topic;
        pubsub::publish_durable(topic, #{n: ctx.request.body.n, raw: blob(2, 7), deep: [#{b: blob(1, 255)}]});
        "ok"
    "#,
    )
    .await;
    for (topic, n) in [("orders", 1), ("orders.eu.new", 2), ("unrelated", 3)] {
        let r = app
            .on_host("shop", Method::POST, "/publish")
            .json(&json!({"topic": topic, "n": n}))
            .send()
            .await
            .expect("publish");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }

    // flaky: 3 publishes × 2 attempts; exact: 1; prefix: 1.
    let flaky_seen = app
        .eventually("flaky retried every message", || async {
            let items = kv_items(&app, "shop", "flaky").await;
            (items.len() >= 6).then_some(items)
        })
        .await;
    let exact_seen = kv_items(&app, "shop", "exact").await;
    let prefix_seen = app
        .eventually("prefix subscriber ran", || async {
            let items = kv_items(&app, "shop", "prefix").await;
            (!items.is_empty()).then_some(items)
        })
        .await;
    assert_eq!(exact_seen.len(), 1, "{exact_seen:?}");
    assert_eq!(prefix_seen.len(), 1, "{prefix_seen:?}");
    assert_eq!(flaky_seen.len(), 6, "{flaky_seen:?}");
    let event = &exact_seen[0]["value"];
    assert_eq!(event["source"], "pubsub");
    assert_eq!(event["op"], "publish");
    assert_eq!(event["pubsub"]["topic"], "orders");
    // Blobs arrive base64-encoded, at any depth.
    assert_eq!(
        event["pubsub"]["message"],
        json!({"n": 1, "raw": "Bwc=", "deep": [{"b": "/w=="}]})
    );
    assert!(event["pubsub"]["published_at"].is_string());
    assert_eq!(prefix_seen[0]["value"]["pubsub"]["topic"], "orders.eu.new");
    // One event id per subscriber and publish, the same on both attempts.
    let mut ids: Vec<String> = flaky_seen
        .iter()
        .map(|i| i["value"]["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_ne!(exact_seen[0]["value"]["id"], flaky_seen[0]["value"]["id"]);

    // Nothing is left queued or dead-lettered.
    let dead = app
        .admin_ok(
            Method::GET,
            "/api/v1/admin/apps/shop/dead-letters?status=all",
            None,
            200,
        )
        .await;
    assert_eq!(dead["items"].as_array().map(Vec::len), Some(0), "{dead}");
    app.shutdown().await;
}

async fn patterns_and_topics_are_validated(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("shop").await;
    let handler = app.create_script("shop", "h", "()").await;
    for (body, field) in [
        (json!({"script_id": handler["id"]}), "topic"),
        (
            json!({"script_id": handler["id"], "topic": "orders.*.new"}),
            "topic",
        ),
        (
            json!({"script_id": handler["id"], "topic": "*.new"}),
            "topic",
        ),
        (json!({"script_id": handler["id"], "topic": "or*"}), "topic"),
        (json!({"script_id": handler["id"], "topic": ""}), "topic"),
        (
            json!({"script_id": handler["id"], "topic": "a", "collection": "c"}),
            "collection",
        ),
    ] {
        let r = app
            .admin(
                Method::POST,
                "/api/v1/admin/apps/shop/triggers/pubsub",
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status(), 422, "{body}");
        let error: Value = r.json().await.expect("json");
        assert_eq!(error["error"]["field"], field, "{error}");
    }
    // A topic on another kind is refused too.
    let r = app
        .admin(
            Method::POST,
            "/api/v1/admin/apps/shop/triggers/kv",
            Some(json!({"script_id": handler["id"], "collection": "c", "topic": "x"})),
        )
        .await;
    assert_eq!(r.status(), 422);

    // Publishing to a wildcard or an empty topic throws, naming the namespace; no
    // subscriber is not an error.
    app.deploy(
        "shop",
        "POST",
        "/bad",
        r#"
        let errors = [];
        for t in ["orders.*", "", "a b"] {
            try { pubsub::publish_durable(t, 1); errors.push("accepted " + t); }
            catch (e) { errors.push(e); }
        }
        pubsub::publish_durable("nobody.listens", #{x: 1});
        errors
    "#,
    )
    .await;
    let r = app
        .on_host("shop", Method::POST, "/bad")
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 200);
    let errors: Value = r.json().await.expect("json");
    for e in errors.as_array().expect("array") {
        assert!(e.as_str().is_some_and(|e| e.starts_with("pubsub: ")), "{e}");
    }
    app.shutdown().await;
}

async fn apps_and_rights_are_isolated(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("one").await;
    app.create_app("two").await;
    let theirs = app
        .create_script(
            "two",
            "h",
            r#"kv::collection("got").set(ctx.event.id, 1); ()"#,
        )
        .await;
    subscribe(&app, "two", &theirs, "*").await;
    let mine = app
        .create_script(
            "one",
            "h",
            r#"kv::collection("got").set(ctx.event.id, 1); ()"#,
        )
        .await;
    subscribe(&app, "one", &mine, "*").await;
    app.deploy(
        "one",
        "POST",
        "/p",
        r#"pubsub::publish_durable("x", 1); "ok""#,
    )
    .await;
    let r = app
        .on_host("one", Method::POST, "/p")
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 200);
    app.eventually("app one's subscriber ran", || async {
        (!kv_items(&app, "one", "got").await.is_empty()).then_some(())
    })
    .await;
    // App two's subscriber never hears app one's publish.
    assert!(kv_items(&app, "two", "got").await.is_empty());

    // A caller holding only script:read and script:invoke cannot publish through a
    // required-auth route (403), and nothing is queued.
    let script = app
        .create_script("one", "guarded", r#"pubsub::publish_durable("x", 1); "ok""#)
        .await;
    app.required_route(&script, "POST", "/guarded").await;
    let key = app.api_key(&["script:read", "script:invoke"]).await;
    let key = key.as_str();
    let before = kv_items(&app, "one", "got").await.len();
    let r = app
        .on_host("one", Method::POST, "/guarded")
        .bearer_auth(key)
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 403, "{}", r.text().await.unwrap_or_default());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(kv_items(&app, "one", "got").await.len(), before);
    app.shutdown().await;
}

/// A value nested past serde_json's read limit once it is wrapped in its event used
/// to make every claim fail, stopping every app's triggers (found by the hostile
/// probe). Values are refused past 100 levels where they come in, and a row stored
/// deeper (before the limit) is still read and delivered.
async fn deep_values_never_stall_the_dispatcher(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("shop").await;
    let handler = app
        .create_script(
            "shop",
            "h",
            r#"kv::collection("got").set(ctx.event.id, 1); ()"#,
        )
        .await;
    subscribe(&app, "shop", &handler, "*").await;
    app.deploy(
        "shop",
        "POST",
        "/relay",
        r#"pubsub::publish_durable("in", ctx.request.body); "ok""#,
    )
    .await;
    let nested = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
    // A body past the limit is refused before any script runs.
    let r = app
        .on_host("shop", Method::POST, "/relay")
        .header("content-type", "application/json")
        .body(nested(126))
        .send()
        .await
        .expect("relay");
    assert_eq!(r.status(), 400, "{}", r.text().await.unwrap_or_default());
    // A value a script builds past the limit is refused by the service call.
    app.deploy(
        "shop",
        "POST",
        "/build",
        r#"let v = 1; for i in 0..110 { v = [v]; }
           let out = "accepted";
           try { pubsub::publish_durable("in", v); } catch (e) { out = e; }
           out"#,
    )
    .await;
    let r = app
        .on_host("shop", Method::POST, "/build")
        .send()
        .await
        .expect("build");
    let text = r.text().await.expect("body");
    assert!(
        text.starts_with("pubsub: ") && text.contains("nests deeper"),
        "{text}"
    );

    // A row stored deeper than serde_json's default limit (as before the limit
    // existed) is delivered, and so is everything queued after it.
    let store = app.started().state.store.clone();
    let app_id = store.get_app_by_slug("shop").await.expect("app").id;
    let deep = picloud_core::json::parse_stored(&nested(127)).expect("deep value");
    let trigger = store
        .list_triggers(&app_id, &picloud_store::PageRequest::default())
        .await
        .expect("triggers")
        .items
        .remove(0);
    store
        .enqueue_event(picloud_store::NewEvent {
            id: picloud_core::EventId::new(),
            app_id: app_id.clone(),
            trigger_id: Some(trigger.id.clone()),
            script_id: trigger.script_id.clone(),
            source: picloud_core::model::ExecutionSource::Pubsub,
            payload: json!({"source": "pubsub", "op": "publish",
                            "pubsub": {"topic": "in", "message": deep}}),
            retry: picloud_store::RetryPolicy::ONCE,
            depth: 1,
            due_at: picloud_core::now(),
        })
        .await
        .expect("enqueue a deep row");
    app.deploy(
        "shop",
        "POST",
        "/ok",
        r#"pubsub::publish_durable("ok", 1); "ok""#,
    )
    .await;
    let r = app
        .on_host("shop", Method::POST, "/ok")
        .send()
        .await
        .expect("ok");
    assert_eq!(r.status(), 200);
    app.eventually("both deliveries ran", || async {
        (kv_items(&app, "shop", "got").await.len() >= 2).then_some(())
    })
    .await;
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    deep_values_never_stall_the_dispatcher => deep_values_never_stall_the_dispatcher,
    one_publish_reaches_each_subscriber_once => fan_out_each_subscriber_once,
    patterns_and_topics_are_validated => patterns_and_topics_are_validated,
    apps_and_rights_are_isolated => apps_and_rights_are_isolated,
);
