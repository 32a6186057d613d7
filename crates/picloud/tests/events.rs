//! Events end to end, on both backends: KV triggers, retries, dead letters and their
//! handlers, replay, depth, async routes, write-then-throw semantics.

use std::time::Duration;

use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

/// A server whose retries are quick enough to watch.
async fn server(backend: Backend) -> TestApp {
    TestApp::start_with(backend, |c| {
        c.events.retry_base_delay = Duration::from_millis(20);
        c.events.retry_max_delay = Duration::from_millis(200);
    })
    .await
    .expect("server")
}

async fn trigger(app: &TestApp, kind: &str, body: Value) -> Value {
    app.admin_ok(
        Method::POST,
        &format!("/api/v1/admin/apps/shop/triggers/{kind}"),
        Some(body),
        201,
    )
    .await
}

/// Entries of a KV collection, once there are at least `n`.
async fn kv_entries(app: &TestApp, collection: &str, n: usize) -> Vec<Value> {
    app.eventually(&format!("{n} entries in {collection}"), || async {
        let page = app
            .admin_ok(
                Method::GET,
                &format!("/api/v1/admin/apps/shop/kv/{collection}?limit=500"),
                None,
                200,
            )
            .await;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        (items.len() >= n).then_some(items)
    })
    .await
}

async fn dead_letters(app: &TestApp, status: &str, n: usize) -> Vec<Value> {
    app.eventually(&format!("{n} {status} dead letters"), || async {
        let page = app
            .admin_ok(
                Method::GET,
                &format!("/api/v1/admin/apps/shop/dead-letters?status={status}"),
                None,
                200,
            )
            .await;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        (items.len() >= n).then_some(items)
    })
    .await
}

async fn kv_triggers_fire_with_the_documented_event(backend: Backend) {
    let app = server(backend).await;
    app.create_app("shop").await;
    let handler = app
        .create_script(
            "shop",
            "seen",
            // Events run concurrently, so each one gets its own key.
            r#"kv::collection("seen").set(ctx.event.id, ctx.event); ()"#,
        )
        .await;
    let writer = app
        .deploy(
            "shop",
            "POST",
            "/orders/{id}",
            r#"
            let orders = kv::collection("orders");
            if ctx.request.query.delete == "1" { orders.delete(ctx.request.params.id) }
            else { orders.set(ctx.request.params.id, ctx.request.body) }
        "#,
        )
        .await;
    let _ = writer;
    let t = trigger(
        &app,
        "kv",
        json!({"script_id": handler["id"], "collection": "orders", "ops": ["set", "delete"]}),
    )
    .await;
    assert_eq!(t["kind"], "kv");
    assert_eq!(t["ops"], json!(["set", "delete"]));
    assert_eq!(t["retry"], Value::Null);

    let post = |path: &'static str, body: Value| {
        app.on_host("shop", Method::POST, path).json(&body).send()
    };
    post("/orders/o1", json!({"total": 5})).await.expect("set");
    post("/orders/o1", json!({"total": 7}))
        .await
        .expect("set again");
    post("/orders/o1?delete=1", json!(null))
        .await
        .expect("delete");
    let seen = kv_entries(&app, "seen", 3).await;
    let find = |op: &str, value: Value| {
        seen.iter()
            .map(|e| e["value"].clone())
            .find(|e| e["op"] == op && e["kv"]["value"] == value)
    };
    let set = find("set", json!({"total": 7})).expect("second set event");
    assert_eq!(set["source"], "kv");
    assert_eq!(set["op"], "set");
    assert_eq!(set["attempt"], 1);
    assert!(set["id"].as_str().is_some_and(|id| id.starts_with("evt_")));
    // The last set wins the key: prev is the first value.
    assert_eq!(
        set["kv"],
        json!({"collection": "orders", "key": "o1", "value": {"total": 7}, "prev": {"total": 5}})
    );
    let first = find("set", json!({"total": 5})).expect("first set event");
    assert_eq!(first["kv"]["prev"], Value::Null);
    let delete = find("delete", Value::Null).expect("delete event");
    assert_eq!(
        delete["kv"],
        json!({"collection": "orders", "key": "o1", "value": null, "prev": {"total": 7}})
    );

    // A disabled trigger does not fire.
    app.admin_ok(
        Method::PATCH,
        &format!(
            "/api/v1/admin/apps/shop/triggers/{}",
            t["id"].as_str().expect("id")
        ),
        Some(json!({"enabled": false})),
        200,
    )
    .await;
    post("/orders/o2", json!(1)).await.expect("set");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = kv_entries(&app, "seen", 3).await;
    assert!(
        !seen.iter().any(|e| e["value"]["kv"]["key"] == "o2"),
        "disabled trigger fired"
    );
    let runs = app.executions("shop", 5).await;
    assert!(runs
        .iter()
        .any(|r| r["source"] == "kv" && r["status"] == "ok"));
    app.shutdown().await;
}

async fn retries_then_success(backend: Backend) {
    let app = server(backend).await;
    app.create_app("shop").await;
    let handler = app
        .create_script(
            "shop",
            "flaky",
            r#"
            kv::collection("calls").set(`${ctx.event.id}/${ctx.event.attempt}`, ctx.event.attempt);
            if ctx.event.attempt < 3 { throw "not yet"; }
        "#,
        )
        .await;
    trigger(
        &app,
        "kv",
        json!({
            "script_id": handler["id"], "collection": "jobs", "ops": ["set"],
            "retry": {"max_attempts": 5, "base_delay_ms": 20, "max_delay_ms": 100},
        }),
    )
    .await;
    app.deploy(
        "shop",
        "POST",
        "/job",
        r#"kv::collection("jobs").set("j1", 1); ()"#,
    )
    .await;
    app.on_host("shop", Method::POST, "/job")
        .send()
        .await
        .expect("job");
    let calls = kv_entries(&app, "calls", 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = {
        let again = kv_entries(&app, "calls", 3).await;
        assert_eq!(again.len(), calls.len());
        again
    };
    assert_eq!(calls.len(), 3, "called exactly three times: {calls:?}");
    let ids: Vec<&str> = calls
        .iter()
        .map(|c| {
            c["key"]
                .as_str()
                .expect("key")
                .split('/')
                .next()
                .expect("id")
        })
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "the same event id every time"
    );
    let attempts: Vec<i64> = calls
        .iter()
        .map(|c| c["value"].as_i64().expect("attempt"))
        .collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    assert!(dead_letters(&app, "all", 0).await.is_empty());
    app.shutdown().await;
}

async fn dead_letters_handlers_replay_resolve(backend: Backend) {
    let app = server(backend).await;
    app.create_app("shop").await;
    app.admin_ok(
        Method::POST,
        "/api/v1/admin/apps/shop/scripts",
        Some(json!({"name": "always_fails", "source": r#"kv::collection("tries").set(`${ctx.event.id}/${ctx.event.attempt}/${random::uuid()}`, 1); if kv::collection("switch").get("fixed") != true { throw "broken"; }"#})),
        201,
    )
    .await;
    let scripts = app
        .admin_ok(Method::GET, "/api/v1/admin/apps/shop/scripts", None, 200)
        .await;
    let failing = scripts["items"][0]["id"].clone();
    let dl_handler = app
        .create_script(
            "shop",
            "on_dead",
            r#"kv::collection("dead").set(ctx.event.dead_letter.id, ctx.event); ()"#,
        )
        .await;
    trigger(
        &app,
        "kv",
        json!({
            "script_id": failing, "collection": "jobs", "ops": ["set"],
            "retry": {"max_attempts": 2, "base_delay_ms": 10, "max_delay_ms": 20},
        }),
    )
    .await;
    let r = app
        .admin(Method::POST, "/api/v1/admin/apps/shop/triggers/dead_letter", Some(json!({"script_id": dl_handler["id"], "retry": {"max_attempts": 3, "base_delay_ms": 1, "max_delay_ms": 1}})))
        .await;
    assert_eq!(
        r.status(),
        422,
        "a dead-letter handler takes no retry policy"
    );
    trigger(&app, "dead_letter", json!({"script_id": dl_handler["id"]})).await;
    app.deploy(
        "shop",
        "POST",
        "/job",
        r#"kv::collection("jobs").set("j1", 1); ()"#,
    )
    .await;
    app.on_host("shop", Method::POST, "/job")
        .send()
        .await
        .expect("job");

    // Exhausted after 2 attempts → one dead letter → the handler saw it.
    let open = dead_letters(&app, "unresolved", 1).await;
    assert_eq!(open.len(), 1);
    let dl = &open[0];
    assert_eq!(dl["attempts"], 2);
    assert_eq!(dl["source_kind"], "kv");
    assert!(dl["error"].as_str().expect("error").contains("broken"));
    assert_eq!(dl["resolution"], Value::Null);
    let dl_id = dl["id"].as_str().expect("id").to_owned();
    let event_id = dl["event_id"].as_str().expect("event").to_owned();
    let seen = kv_entries(&app, "dead", 1).await;
    assert_eq!(seen[0]["key"], dl_id.as_str());
    assert_eq!(seen[0]["value"]["source"], "dead_letter");
    assert_eq!(seen[0]["value"]["op"], "created");
    assert_eq!(seen[0]["value"]["dead_letter"]["attempts"], 2);
    assert_eq!(seen[0]["value"]["dead_letter"]["event"]["kv"]["key"], "j1");

    // Replay after fixing: same event id, attempt back to 1, delivered.
    app.deploy(
        "shop",
        "POST",
        "/fix",
        r#"kv::collection("switch").set("fixed", true); ()"#,
    )
    .await;
    app.on_host("shop", Method::POST, "/fix")
        .send()
        .await
        .expect("fix");
    let replayed = app
        .admin_ok(
            Method::POST,
            &format!("/api/v1/admin/apps/shop/dead-letters/{dl_id}/replay"),
            None,
            202,
        )
        .await;
    assert_eq!(replayed["event_id"], event_id.as_str());
    let tries = kv_entries(&app, "tries", 3).await;
    let first_attempts = tries
        .iter()
        .filter(|t| {
            t["key"]
                .as_str()
                .is_some_and(|k| k.starts_with(&format!("{event_id}/1/")))
        })
        .count();
    assert_eq!(
        first_attempts, 2,
        "the replay ran the same event as attempt 1 again"
    );
    let all = dead_letters(&app, "all", 1).await;
    assert_eq!(all[0]["resolution"], "replayed");
    let r = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/apps/shop/dead-letters/{dl_id}/resolve"),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.expect("json")["resolution"],
        "resolved"
    );
    assert!(dead_letters(&app, "unresolved", 0).await.is_empty());
    app.shutdown().await;
}

/// A dead letter's `event` is `ctx.event` as the handler last saw it, `id` included —
/// over the admin API and for a dead-letter handler, for a trigger's delivery and an
/// async route call alike — and a replay delivers that same id again.
async fn dead_letter_event_is_what_the_handler_saw(backend: Backend) {
    let app = server(backend).await;
    app.create_app("shop").await;
    // Every run records the `ctx.event` it saw, under a key of its own.
    let flaky = app
        .create_script(
            "shop",
            "flaky",
            r#"kv::collection("seen").set(`${ctx.event.id}/${ctx.event.attempt}/${random::uuid()}`, ctx.event);
               if kv::collection("switch").get("fixed") != true { throw "broken"; }"#,
        )
        .await;
    let on_dead = app
        .create_script(
            "shop",
            "on_dead",
            r#"kv::collection("dead").set(ctx.event.dead_letter.id, ctx.event.dead_letter.event); ()"#,
        )
        .await;
    trigger(
        &app,
        "kv",
        json!({
            "script_id": flaky["id"], "collection": "jobs", "ops": ["set"],
            "retry": {"max_attempts": 2, "base_delay_ms": 10, "max_delay_ms": 20},
        }),
    )
    .await;
    trigger(&app, "dead_letter", json!({"script_id": on_dead["id"]})).await;
    app.admin_ok(
        Method::POST,
        &format!(
            "/api/v1/admin/scripts/{}/routes",
            flaky["id"].as_str().expect("id")
        ),
        Some(json!({"method": "POST", "path": "/later", "dispatch_mode": "async"})),
        201,
    )
    .await;
    app.deploy(
        "shop",
        "POST",
        "/job",
        r#"kv::collection("jobs").set("j1", #{n: 1}); ()"#,
    )
    .await;
    app.on_host("shop", Method::POST, "/job")
        .send()
        .await
        .expect("job");
    let r = app
        .on_host("shop", Method::POST, "/later")
        .json(&json!({"x": 1}))
        .send()
        .await
        .expect("later");
    assert_eq!(r.status(), 202);

    let open = dead_letters(&app, "unresolved", 2).await;
    assert_eq!(open.len(), 2);
    let seen = kv_entries(&app, "seen", 2 + 5).await;
    let runs_of = |event_id: &str, attempt: u64| -> Vec<Value> {
        seen.iter()
            .filter(|e| {
                e["key"]
                    .as_str()
                    .is_some_and(|k| k.starts_with(&format!("{event_id}/{attempt}/")))
            })
            .map(|e| e["value"].clone())
            .collect()
    };
    let handled = kv_entries(&app, "dead", 2).await;
    for dl in &open {
        let event_id = dl["event_id"].as_str().expect("event id");
        let attempts = dl["attempts"].as_u64().expect("attempts");
        let last = runs_of(event_id, attempts);
        assert_eq!(last.len(), 1, "one run per attempt: {dl}");
        assert_eq!(dl["event"], last[0], "the event as the last run saw it");
        assert_eq!(dl["event"]["id"], event_id);
        let by_handler = handled
            .iter()
            .find(|h| h["key"] == dl["id"])
            .expect("the handler saw this dead letter");
        assert_eq!(by_handler["value"], last[0]);
    }
    let http = open
        .iter()
        .find(|dl| dl["source_kind"] == "http")
        .expect("the async call's dead letter");
    assert_eq!(http["attempts"], 5);
    assert_eq!(
        http["event"]["http"],
        json!({"method": "POST", "path": "/later"})
    );
    assert!(
        http["event"].get("request").is_none() && http["event"].get("principal").is_none(),
        "the request is ctx.request, not part of ctx.event: {http}"
    );
    let kv = open
        .iter()
        .find(|dl| dl["source_kind"] == "kv")
        .expect("the trigger's dead letter");
    assert_eq!(kv["event"]["kv"]["value"], json!({"n": 1}));

    // Replayed after a fix, each runs again under its own id, as attempt 1.
    app.deploy(
        "shop",
        "POST",
        "/fix",
        r#"kv::collection("switch").set("fixed", true); ()"#,
    )
    .await;
    app.on_host("shop", Method::POST, "/fix")
        .send()
        .await
        .expect("fix");
    for dl in &open {
        let replayed = app
            .admin_ok(
                Method::POST,
                &format!(
                    "/api/v1/admin/apps/shop/dead-letters/{}/replay",
                    dl["id"].as_str().expect("id")
                ),
                None,
                202,
            )
            .await;
        assert_eq!(replayed["event_id"], dl["event_id"]);
    }
    let seen = kv_entries(&app, "seen", 2 + 5 + 2).await;
    for dl in &open {
        let event_id = dl["event_id"].as_str().expect("event id");
        let first_runs: Vec<&Value> = seen
            .iter()
            .filter(|e| {
                e["key"]
                    .as_str()
                    .is_some_and(|k| k.starts_with(&format!("{event_id}/1/")))
            })
            .collect();
        assert_eq!(
            first_runs.len(),
            2,
            "the replay ran {event_id} as attempt 1"
        );
        for run in first_runs {
            assert_eq!(run["value"]["id"], event_id);
        }
    }
    let all = dead_letters(&app, "all", 2).await;
    assert_eq!(all.len(), 2, "the replays succeeded: no new dead letter");
    assert!(all.iter().all(|dl| dl["resolution"] == "replayed"));
    app.shutdown().await;
}

async fn failing_dead_letter_handler(backend: Backend) {
    let app = server(backend).await;
    app.create_app("shop").await;
    let failing = app
        .create_script("shop", "fails", r#"throw "always""#)
        .await;
    let dl_handler = app
        .create_script(
            "shop",
            "dl_fails",
            r#"kv::collection("dl_runs").set(ctx.event.id, 1); throw "handler broken""#,
        )
        .await;
    trigger(&app, "kv", json!({"script_id": failing["id"], "collection": "jobs", "retry": {"max_attempts": 1, "base_delay_ms": 1, "max_delay_ms": 1}})).await;
    trigger(&app, "dead_letter", json!({"script_id": dl_handler["id"]})).await;
    app.deploy(
        "shop",
        "POST",
        "/job",
        r#"kv::collection("jobs").set("j1", 1); ()"#,
    )
    .await;
    app.on_host("shop", Method::POST, "/job")
        .send()
        .await
        .expect("job");
    let failed = app
        .eventually("handler_failed", || async {
            let all = app
                .admin_ok(
                    Method::GET,
                    "/api/v1/admin/apps/shop/dead-letters?status=all",
                    None,
                    200,
                )
                .await;
            let items = all["items"].as_array().cloned().unwrap_or_default();
            items
                .iter()
                .find(|d| d["resolution"] == "handler_failed")
                .cloned()
        })
        .await;
    assert_eq!(failed["source_kind"], "kv");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = dead_letters(&app, "all", 1).await;
    assert_eq!(
        all.len(),
        1,
        "a failing dead-letter handler produces no second dead letter"
    );
    assert_eq!(
        kv_entries(&app, "dl_runs", 1).await.len(),
        1,
        "and is not retried"
    );
    // handler_failed still counts as unresolved.
    assert_eq!(dead_letters(&app, "unresolved", 1).await.len(), 1);
    app.shutdown().await;
}

async fn self_triggering_handler_stops_at_depth(backend: Backend) {
    let app = server(backend).await;
    app.create_app("shop").await;
    let handler = app
        .create_script(
            "shop",
            "feed",
            r#"
            let n = ctx.event.kv.value + 1;
            kv::collection("loop").set("k", n);
            kv::collection("depths").set(`${n}`, n);
        "#,
        )
        .await;
    trigger(
        &app,
        "kv",
        json!({"script_id": handler["id"], "collection": "loop", "ops": ["set"]}),
    )
    .await;
    app.deploy(
        "shop",
        "POST",
        "/start",
        r#"kv::collection("loop").set("k", 0); ()"#,
    )
    .await;
    app.on_host("shop", Method::POST, "/start")
        .send()
        .await
        .expect("start");
    let depths = kv_entries(&app, "depths", 8).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let depths = {
        let again = kv_entries(&app, "depths", 8).await;
        assert_eq!(again.len(), depths.len());
        again
    };
    assert_eq!(
        depths.len(),
        8,
        "depth 1 to 8 ran, depth 9 was skipped: {depths:?}"
    );
    assert!(
        dead_letters(&app, "all", 0).await.is_empty(),
        "depth is not a failure"
    );
    let runs = app.executions("shop", 9).await;
    let last = runs.iter().find(|r| {
        r["logs"].as_array().is_some_and(|l| {
            l.iter().any(|line| {
                line["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("depth limit"))
            })
        })
    });
    assert!(last.is_some(), "the skipped event is logged in the run");
    app.shutdown().await;
}

async fn async_routes(backend: Backend) {
    let app = server(backend).await;
    app.create_app("shop").await;
    let script = app
        .create_script(
            "shop",
            "later",
            r#"
            kv::collection("async").set(ctx.event.id, #{
                source: ctx.event.source, op: ctx.event.op, body: ctx.request.body,
                path: ctx.request.path, id_param: ctx.request.params.id, attempt: ctx.event.attempt,
            });
            if ctx.request.body.fail == true { throw "asked to fail"; }
        "#,
        )
        .await;
    app.admin_ok(
        Method::POST,
        &format!(
            "/api/v1/admin/scripts/{}/routes",
            script["id"].as_str().expect("id")
        ),
        Some(json!({"method": "POST", "path": "/later/{id}", "dispatch_mode": "async"})),
        201,
    )
    .await;
    let r = app
        .on_host("shop", Method::POST, "/later/7")
        .json(&json!({"x": 1}))
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["accepted"], true);
    let event_id = body["event_id"].as_str().expect("event id").to_owned();
    let ran = kv_entries(&app, "async", 1).await;
    assert_eq!(ran[0]["key"], event_id.as_str());
    assert_eq!(
        ran[0]["value"],
        json!({"source": "http", "op": "request", "body": {"x": 1}, "path": "/later/7", "id_param": "7", "attempt": 1})
    );
    // Async runs are retried and dead-lettered like any delivery.
    app.on_host("shop", Method::POST, "/later/8")
        .json(&json!({"fail": true}))
        .send()
        .await
        .expect("r");
    let dl = dead_letters(&app, "unresolved", 1).await;
    assert_eq!(dl[0]["source_kind"], "http");
    assert_eq!(dl[0]["attempts"], 5, "the default policy: five runs");
    let runs = app.executions("shop", 6).await;
    assert!(runs.iter().all(|r| r["source"] == "http"));
    app.shutdown().await;
}

/// There is no per-run transaction: each service call commits on its own, with its
/// events. A script that writes and then throws keeps the write, and its trigger fires.
async fn write_then_throw_keeps_the_write(backend: Backend) {
    let app = server(backend).await;
    app.create_app("shop").await;
    let handler = app
        .create_script(
            "shop",
            "echo",
            r#"kv::collection("fired").set(ctx.event.kv.key, true); ()"#,
        )
        .await;
    trigger(
        &app,
        "kv",
        json!({"script_id": handler["id"], "collection": "orders"}),
    )
    .await;
    app.deploy(
        "shop",
        "POST",
        "/bad",
        r#"kv::collection("orders").set("o1", 1); throw "after the write""#,
    )
    .await;
    let r = app
        .on_host("shop", Method::POST, "/bad")
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 500);
    let fired = kv_entries(&app, "fired", 1).await;
    assert_eq!(fired[0]["key"], "o1");
    let orders = kv_entries(&app, "orders", 1).await;
    assert_eq!(orders[0]["value"], 1);
    app.shutdown().await;
}

async fn trigger_targets_are_checked(backend: Backend) {
    let app = server(backend).await;
    app.create_app("shop").await;
    app.create_app("other").await;
    let theirs = app.create_script("other", "theirs", "()").await;
    let module = app
        .admin_ok(
            Method::POST,
            "/api/v1/admin/apps/shop/scripts",
            Some(json!({"name": "lib", "kind": "module", "source": "fn f() { 1 }"})),
            201,
        )
        .await;
    for (kind, body) in [
        ("kv", json!({"script_id": theirs["id"], "collection": "c"})),
        ("kv", json!({"script_id": module["id"], "collection": "c"})),
        ("kv", json!({"script_id": "scr_nope", "collection": "c"})),
        ("kv", json!({"script_id": theirs["id"]})),
        (
            "kv",
            json!({"script_id": theirs["id"], "collection": "c", "ops": ["update"]}),
        ),
        ("cron", json!({"script_id": theirs["id"]})),
        // A valid schedule: refused for the target alone.
        (
            "cron",
            json!({"script_id": theirs["id"], "schedule": "0 * * * * *"}),
        ),
        (
            "cron",
            json!({"script_id": module["id"], "schedule": "0 * * * * *"}),
        ),
    ] {
        let r = app
            .admin(
                Method::POST,
                &format!("/api/v1/admin/apps/shop/triggers/{kind}"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status(), 422, "{kind} {body}");
    }
    assert_eq!(
        app.admin_ok(Method::GET, "/api/v1/admin/apps/shop/triggers", None, 200)
            .await["items"],
        json!([])
    );
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    kv_trigger_event_shape_prev_and_disabled => kv_triggers_fire_with_the_documented_event,
    fails_twice_then_succeeds => retries_then_success,
    exhaustion_dead_letter_handler_replay_resolve => dead_letters_handlers_replay_resolve,
    failing_dead_letter_handler_is_marked_not_retried => failing_dead_letter_handler,
    dead_letter_event_is_the_handlers_ctx_event_and_replays_keep_its_id => dead_letter_event_is_what_the_handler_saw,
    self_triggering_handler_stops_at_depth_8 => self_triggering_handler_stops_at_depth,
    async_routes_run_through_the_outbox => async_routes,
    write_then_throw_keeps_the_write_and_its_event => write_then_throw_keeps_the_write,
    trigger_targets_must_be_endpoints_of_the_app => trigger_targets_are_checked,
);
