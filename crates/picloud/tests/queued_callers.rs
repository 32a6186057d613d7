//! Queued runs act with their caller's rights as they stand when the run starts: a
//! retry after the caller was removed, demoted, disabled or lost their key, and a
//! dead-letter replay after that, write nothing more. On both backends.

use std::time::Duration;

use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

/// Each run records itself as a document (before it may throw), so the test can count
/// what every attempt wrote.
const WORK: &str = r#"
    docs::collection("log").create(#{
        tag: ctx.request.body.tag, attempt: ctx.event.attempt, scopes: ctx.principal.scopes,
    });
    if ctx.request.body.fail == "always" { throw "asked to fail"; }
    if ctx.request.body.fail == "first" && ctx.event.attempt == 1 { throw "first attempt fails"; }
"#;

/// Two attempts per delivery, the second a second and a half after the first: time
/// for the test to change the caller's rights in between.
async fn server(backend: Backend) -> TestApp {
    TestApp::start_with(backend, |c| {
        c.events.retry_max_attempts = 2;
        c.events.retry_base_delay = Duration::from_millis(1500);
        c.events.retry_max_delay = Duration::from_millis(1500);
    })
    .await
    .expect("server")
}

async fn user(app: &TestApp, email: &str, role: &str) -> (String, String) {
    let u = app
        .admin_ok(
            Method::POST,
            "/api/v1/admin/users",
            Some(json!({"email": email, "password": "password123"})),
            201,
        )
        .await;
    let id = u["id"].as_str().expect("id").to_owned();
    app.admin_ok(
        Method::PUT,
        &format!("/api/v1/admin/apps/shop/members/{id}"),
        Some(json!({"role": role})),
        200,
    )
    .await;
    (id, app.login(email, "password123").await)
}

/// Calls the async route as `token`; returns the event id.
async fn call(app: &TestApp, token: &str, tag: &str, fail: &str) -> String {
    let r = app
        .on_host("shop", Method::POST, "/work")
        .bearer_auth(token)
        .json(&json!({"tag": tag, "fail": fail}))
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.expect("json");
    body["event_id"].as_str().expect("event id").to_owned()
}

/// The documents runs tagged `tag` wrote.
async fn written(app: &TestApp, tag: &str) -> Vec<Value> {
    let page = app
        .admin_ok(
            Method::GET,
            "/api/v1/admin/apps/shop/docs/log?limit=500",
            None,
            200,
        )
        .await;
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|d| d["data"]["tag"] == tag)
        .map(|d| d["data"].clone())
        .collect()
}

async fn wait_written(app: &TestApp, tag: &str, n: usize) -> Vec<Value> {
    app.eventually(&format!("{n} runs of {tag}"), || async {
        let docs = written(app, tag).await;
        (docs.len() >= n).then_some(docs)
    })
    .await
}

/// The dead letters of one event, newest first, once there are `n`.
async fn dead_letters(app: &TestApp, event: &str, n: usize) -> Vec<Value> {
    app.eventually(&format!("{n} dead letters of {event}"), || async {
        let page = app
            .admin_ok(
                Method::GET,
                "/api/v1/admin/apps/shop/dead-letters?status=all&limit=500",
                None,
                200,
            )
            .await;
        let items: Vec<Value> = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|d| d["event_id"] == event)
            .cloned()
            .collect();
        (items.len() >= n).then_some(items)
    })
    .await
}

/// A queued run the caller may no longer make is not run: dead-lettered at once (no
/// further attempts), with the reason in the execution record and the dead letter.
fn assert_refused(dead_letter: &Value, reason: &str) {
    let error = dead_letter["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("forbidden: not run:") && error.contains(reason),
        "{dead_letter}"
    );
}

async fn refused_record(app: &TestApp, reason: &str) -> Value {
    app.eventually("the record of the refused run", || async {
        let page = app
            .admin_ok(
                Method::GET,
                "/api/v1/admin/apps/shop/executions?source=http&limit=500",
                None,
                200,
            )
            .await;
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|e| {
                e["error"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("forbidden: not run:") && m.contains(reason))
            })
            .cloned()
    })
    .await
}

async fn patch_user(app: &TestApp, id: &str, body: Value) {
    app.admin_ok(
        Method::PATCH,
        &format!("/api/v1/admin/users/{id}"),
        Some(body),
        200,
    )
    .await;
}

async fn queued_runs_use_current_rights(backend: Backend) {
    let app = server(backend).await;
    app.create_app("shop").await;
    let script = app.create_script("shop", "work", WORK).await;
    app.admin_ok(
        Method::POST,
        &format!(
            "/api/v1/admin/scripts/{}/routes",
            script["id"].as_str().expect("id")
        ),
        Some(json!({"method": "POST", "path": "/work", "dispatch_mode": "async", "auth": "required"})),
        201,
    )
    .await;
    let (removed_id, removed) = user(&app, "removed@example.com", "editor").await;
    let (demoted_id, demoted) = user(&app, "demoted@example.com", "editor").await;
    let (disabled_id, disabled) = user(&app, "disabled@example.com", "editor").await;
    let (_, promoted) = user(&app, "promoted@example.com", "viewer").await;
    let (_, key_owner) = user(&app, "keys@example.com", "editor").await;
    let key: Value = app
        .call_as(
            &key_owner,
            Method::POST,
            "/api/v1/admin/api-keys",
            Some(json!({"name": "k", "scopes": ["script:invoke", "script:write"]})),
        )
        .await
        .json()
        .await
        .expect("key");
    let (key_id, key) = (
        key["id"].as_str().expect("id").to_owned(),
        key["key"].as_str().expect("key").to_owned(),
    );

    // Every caller's first attempt runs with their rights and fails; between it and
    // the retry, each caller loses something.
    let removed_event = call(&app, &removed, "removed", "first").await;
    let demoted_event = call(&app, &demoted, "demoted", "first").await;
    let key_event = call(&app, &key, "key", "first").await;
    for tag in ["removed", "demoted", "key"] {
        wait_written(&app, tag, 1).await;
    }
    app.admin_ok(
        Method::DELETE,
        &format!("/api/v1/admin/apps/shop/members/{removed_id}"),
        None,
        204,
    )
    .await;
    app.admin_ok(
        Method::PUT,
        &format!("/api/v1/admin/apps/shop/members/{demoted_id}"),
        Some(json!({"role": "viewer"})),
        200,
    )
    .await;
    app.admin_ok(
        Method::DELETE,
        &format!("/api/v1/admin/api-keys/{key_id}"),
        None,
        204,
    )
    .await;
    // A removed member's retry does not run at all.
    let dl = dead_letters(&app, &removed_event, 1).await;
    assert_refused(&dl[0], "no longer holds any right");
    assert_eq!(dl[0]["attempts"], 2);
    refused_record(&app, "no longer holds any right").await;
    // A revoked key's retry does not run either.
    let dl = dead_letters(&app, &key_event, 1).await;
    assert_refused(&dl[0], "API key");
    // A demoted member's retry runs as a viewer: its write is refused below the script.
    let dl = dead_letters(&app, &demoted_event, 1).await;
    let error = dl[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("forbidden:") && error.contains("script:write"),
        "{error}"
    );
    for tag in ["removed", "demoted", "key"] {
        assert_eq!(written(&app, tag).await.len(), 1, "{tag} wrote again");
    }
    let first = &written(&app, "demoted").await[0];
    assert_eq!(
        first["scopes"],
        json!(["app:read", "script:read", "script:invoke", "script:write"])
    );

    // A viewer promoted after the call gains nothing on it: the call was accepted from
    // a viewer, and a queued run never holds more than its caller held then.
    let promoted_event = call(&app, &promoted, "promoted", "first").await;
    let promoted_id = app
        .call_as(&promoted, Method::GET, "/api/v1/auth/me", None)
        .await
        .json::<Value>()
        .await
        .expect("me")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.admin_ok(
        Method::PUT,
        &format!("/api/v1/admin/apps/shop/members/{promoted_id}"),
        Some(json!({"role": "editor"})),
        200,
    )
    .await;
    let dl = dead_letters(&app, &promoted_event, 1).await;
    assert!(
        dl[0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("forbidden:") && e.contains("script:write")),
        "{}",
        dl[0]
    );
    assert!(written(&app, "promoted").await.is_empty());

    // A dead letter replayed after its caller was disabled does not run; replayed again
    // once the caller is enabled, it runs with their rights of that moment.
    let event = call(&app, &disabled, "disabled", "always").await;
    dead_letters(&app, &event, 1).await;
    assert_eq!(wait_written(&app, "disabled", 2).await.len(), 2);
    patch_user(&app, &disabled_id, json!({"disabled": true})).await;
    let first = &dead_letters(&app, &event, 1).await[0];
    app.admin_ok(
        Method::POST,
        &format!(
            "/api/v1/admin/apps/shop/dead-letters/{}/replay",
            first["id"].as_str().expect("id")
        ),
        None,
        202,
    )
    .await;
    let dls = dead_letters(&app, &event, 2).await;
    let replayed = dls
        .iter()
        .find(|d| d["replay_of"] == first["id"])
        .expect("the replay's dead letter");
    assert_refused(replayed, "disabled");
    assert_eq!(replayed["attempts"], 1, "refused at once, not retried");
    assert_eq!(written(&app, "disabled").await.len(), 2, "the replay wrote");
    patch_user(&app, &disabled_id, json!({"disabled": false})).await;
    app.admin_ok(
        Method::POST,
        &format!(
            "/api/v1/admin/apps/shop/dead-letters/{}/replay",
            replayed["id"].as_str().expect("id")
        ),
        None,
        202,
    )
    .await;
    wait_written(&app, "disabled", 3).await;
    app.shutdown().await;
}

/// A delivery claimed while every script slot is busy waits for one; its caller's
/// rights are judged when it gets the slot, not when it was claimed: a member removed
/// while the run waited writes nothing.
async fn waiting_runs_use_rights_at_start(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.executor.threads = 1;
        c.executor.app_max_concurrency = 1;
        // The hog below holds the only slot until it times out, and is not retried.
        c.limits.trigger_timeout = Duration::from_millis(2000);
        c.limits.max_operations = u64::MAX / 2;
        c.events.retry_max_attempts = 1;
    })
    .await
    .expect("server");
    app.create_app("shop").await;
    for (name, path, source, auth) in [
        ("work", "/work", WORK, "required"),
        ("hog", "/hog", "loop {}", "public"),
    ] {
        let script = app.create_script("shop", name, source).await;
        app.admin_ok(
            Method::POST,
            &format!(
                "/api/v1/admin/scripts/{}/routes",
                script["id"].as_str().expect("id")
            ),
            Some(json!({"method": "POST", "path": path, "dispatch_mode": "async", "auth": auth})),
            201,
        )
        .await;
    }
    let (member_id, member) = user(&app, "waiting@example.com", "editor").await;
    let r = app
        .on_host("shop", Method::POST, "/hog")
        .send()
        .await
        .expect("hog");
    assert_eq!(r.status(), 202);
    // The hog holds the slot; the member's call is claimed and waits behind it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let event = call(&app, &member, "waiting", "never").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    app.admin_ok(
        Method::DELETE,
        &format!("/api/v1/admin/apps/shop/members/{member_id}"),
        None,
        204,
    )
    .await;
    let dl = dead_letters(&app, &event, 1).await;
    assert_refused(&dl[0], "no longer holds any right");
    refused_record(&app, "no longer holds any right").await;
    assert!(written(&app, "waiting").await.is_empty());
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    queued_runs_act_with_the_callers_current_rights => queued_runs_use_current_rights,
    runs_waiting_for_a_slot_act_with_the_rights_at_start => waiting_runs_use_rights_at_start,
);
