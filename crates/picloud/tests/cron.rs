//! Cron triggers end to end, on both backends: a `*/2` schedule fires repeatedly with
//! the documented event, bad schedules and zones are refused, missed windows fire
//! once, and two servers on one PostgreSQL database fire each window exactly once.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use picloud_core::TriggerId;
use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

/// A server whose scheduler retries leadership every second (the floor).
async fn server(backend: Backend) -> TestApp {
    TestApp::start_with(backend, |c| {
        c.events.cron_tick_interval = Duration::from_secs(1);
    })
    .await
    .expect("server")
}

/// App `shop` with a handler that records every event under its own id in `ticks`.
async fn set_up(app: &TestApp) -> Value {
    app.create_app("shop").await;
    app.create_script(
        "shop",
        "tick",
        r#"kv::collection("ticks").set(ctx.event.id, ctx.event); ()"#,
    )
    .await
}

async fn cron(app: &TestApp, body: Value) -> Value {
    app.admin_ok(
        Method::POST,
        "/api/v1/admin/apps/shop/triggers/cron",
        Some(body),
        201,
    )
    .await
}

/// Every recorded event, once there are at least `n`.
async fn ticks(app: &TestApp, n: usize) -> Vec<Value> {
    app.eventually(&format!("{n} cron events"), || async {
        let page = app
            .admin_ok(
                Method::GET,
                "/api/v1/admin/apps/shop/kv/ticks?limit=500",
                None,
                200,
            )
            .await;
        let items: Vec<Value> = page["items"]
            .as_array()
            .map(|items| items.iter().map(|i| i["value"].clone()).collect())
            .unwrap_or_default();
        (items.len() >= n).then_some(items)
    })
    .await
}

fn time(v: &Value) -> DateTime<Utc> {
    let text = v.as_str().unwrap_or_else(|| panic!("{v} is a time"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

/// The scheduled windows of the events of one trigger, with how often each came.
fn windows_of(events: &[Value], trigger: &Value) -> Vec<DateTime<Utc>> {
    let schedule = trigger["schedule"].as_str().expect("schedule");
    let mut windows: Vec<_> = events
        .iter()
        .filter(|e| e["cron"]["schedule"] == schedule)
        .map(|e| time(&e["cron"]["scheduled_at"]))
        .collect();
    windows.sort();
    windows
}

async fn trigger_object(app: &TestApp, id: &Value) -> Value {
    let list = app
        .admin_ok(Method::GET, "/api/v1/admin/apps/shop/triggers", None, 200)
        .await;
    list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|t| t["id"] == *id).cloned())
        .expect("trigger listed")
}

async fn fires_on_a_two_second_schedule(backend: Backend) {
    let app = server(backend).await;
    let script = set_up(&app).await;
    let t = cron(
        &app,
        json!({"script_id": script["id"], "schedule": "*/2 * * * * *",
               "timezone": "Europe/Berlin"}),
    )
    .await;
    assert_eq!(t["kind"], "cron");
    assert_eq!(t["schedule"], "*/2 * * * * *");
    assert_eq!(t["timezone"], "Europe/Berlin");
    assert_eq!(t["last_fired_at"], Value::Null);
    let first = time(&t["next_fire_at"]);
    assert_eq!(first.second() % 2, 0);

    let events = ticks(&app, 3).await;
    let windows = windows_of(&events, &t);
    for e in &events {
        assert_eq!(e["source"], "cron");
        assert_eq!(e["op"], "tick");
        assert_eq!(e["attempt"], 1);
        assert_eq!(e["cron"]["schedule"], "*/2 * * * * *");
        assert_eq!(e["cron"]["timezone"], "Europe/Berlin");
        let scheduled = time(&e["cron"]["scheduled_at"]);
        assert!(time(&e["cron"]["fired_at"]) >= scheduled, "{e}");
        assert_eq!((scheduled.second() % 2, scheduled.nanosecond()), (0, 0));
        assert!(scheduled >= first);
    }
    let distinct: BTreeSet<_> = windows.iter().collect();
    assert_eq!(distinct.len(), windows.len(), "a window fired twice");

    // The trigger shows where it stands.
    let shown = trigger_object(&app, &t["id"]).await;
    let last = time(&shown["last_fired_at"]);
    assert!(time(&shown["next_fire_at"]) > last - chrono::Duration::seconds(2));

    // Runs are recorded with the cron source.
    let runs = app
        .admin_ok(
            Method::GET,
            "/api/v1/admin/apps/shop/executions?source=cron",
            None,
            200,
        )
        .await;
    assert!(!runs["items"].as_array().expect("items").is_empty());

    // Disabled, it stops: once the deliveries queued before are done, no window of it
    // fires while a one-second trigger fires three times.
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
    let store = app.started().state.store.clone();
    let app_id = store.get_app_by_slug("shop").await.expect("app").id;
    app.eventually("the queued deliveries done", || async {
        (store.count_events(&app_id).await.expect("count") == 0).then_some(())
    })
    .await;
    let stopped_at = windows_of(&ticks(&app, 0).await, &t).len();
    let every_second = cron(
        &app,
        json!({"script_id": script["id"], "schedule": "* * * * * *"}),
    )
    .await;
    assert_eq!(every_second["timezone"], "UTC");
    app.eventually("three one-second windows", || async {
        let events = ticks(&app, 0).await;
        (windows_of(&events, &every_second).len() >= 3).then_some(())
    })
    .await;
    assert_eq!(windows_of(&ticks(&app, 0).await, &t).len(), stopped_at);
    app.shutdown().await;
}

async fn bad_schedules_and_zones_are_refused(backend: Backend) {
    let app = server(backend).await;
    let script = set_up(&app).await;
    let id = script["id"].clone();
    for (body, field) in [
        (
            json!({"script_id": id, "schedule": "*/5 * * * *"}),
            "schedule",
        ),
        (
            json!({"script_id": id, "schedule": "0 0 * * * * 2030"}),
            "schedule",
        ),
        (json!({"script_id": id, "schedule": "@hourly"}), "schedule"),
        (
            json!({"script_id": id, "schedule": "61 * * * * *"}),
            "schedule",
        ),
        (
            json!({"script_id": id, "schedule": "0 0 0 31 2 *"}),
            "schedule",
        ),
        (
            json!({"script_id": id, "schedule": "x * * * * *"}),
            "schedule",
        ),
        (json!({"script_id": id}), "schedule"),
        (
            json!({"script_id": id, "schedule": "0 * * * * *", "timezone": "Mars/Olympus"}),
            "timezone",
        ),
        (
            json!({"script_id": id, "schedule": "0 * * * * *", "timezone": "europe/berlin"}),
            "timezone",
        ),
        (
            json!({"script_id": id, "schedule": "0 * * * * *", "collection": "c"}),
            "collection",
        ),
    ] {
        let r = app
            .admin(
                Method::POST,
                "/api/v1/admin/apps/shop/triggers/cron",
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status(), 422, "{body}");
        let error: Value = r.json().await.expect("error body");
        assert_eq!(error["error"]["code"], "invalid", "{body}");
        assert_eq!(error["error"]["field"], field, "{body}: {error}");
        assert!(error["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    // Schedule fields on another kind are refused too.
    let r = app
        .admin(
            Method::POST,
            "/api/v1/admin/apps/shop/triggers/kv",
            Some(json!({"script_id": id, "collection": "c", "schedule": "0 * * * * *"})),
        )
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        app.admin_ok(Method::GET, "/api/v1/admin/apps/shop/triggers", None, 200)
            .await["items"],
        json!([])
    );
    app.shutdown().await;
}

async fn missed_windows_fire_once(backend: Backend) {
    let app = server(backend).await;
    let script = set_up(&app).await;
    // New Year, midnight UTC: the next real window is months away.
    let t = cron(
        &app,
        json!({"script_id": script["id"], "schedule": "0 0 0 1 1 *", "timezone": "UTC"}),
    )
    .await;
    let now = Utc::now();
    let this_new_year = Utc
        .with_ymd_and_hms(now.year(), 1, 1, 0, 0, 0)
        .single()
        .expect("new year");
    let next_new_year = Utc
        .with_ymd_and_hms(now.year() + 1, 1, 1, 0, 0, 0)
        .single()
        .expect("new year");
    assert_eq!(time(&t["next_fire_at"]), next_new_year);

    // As if the server had been down since 2020: seven New Years missed.
    let store = app.started().state.store.clone();
    let id = TriggerId::parse(t["id"].as_str().expect("id")).expect("trigger id");
    let long_ago = Utc
        .with_ymd_and_hms(2020, 1, 1, 0, 0, 0)
        .single()
        .expect("2020");
    assert!(store
        .reschedule_cron(&id, Some(next_new_year), Some(long_ago))
        .await
        .expect("reschedule"));
    // Any change to a cron trigger wakes the scheduler; this one changes nothing.
    app.admin_ok(
        Method::PATCH,
        &format!("/api/v1/admin/apps/shop/triggers/{}", id.as_str()),
        Some(json!({"enabled": true})),
        200,
    )
    .await;

    let events = ticks(&app, 1).await;
    assert_eq!(
        events[0]["cron"]["scheduled_at"],
        json!(this_new_year.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    );
    // Moved on to the next real window: nothing more can fire until then.
    let shown = app
        .eventually("the trigger moved on", || async {
            let shown = trigger_object(&app, &t["id"]).await;
            (shown["next_fire_at"] != Value::Null && time(&shown["next_fire_at"]) == next_new_year)
                .then_some(shown)
        })
        .await;
    assert!(time(&shown["last_fired_at"]) >= now - chrono::Duration::seconds(5));
    // Delivered, and exactly one event was queued for the seven windows.
    let app_id = store.get_app_by_slug("shop").await.expect("app").id;
    app.eventually("the delivery done", || async {
        (store.count_events(&app_id).await.expect("count") == 0).then_some(())
    })
    .await;
    assert_eq!(ticks(&app, 1).await.len(), 1);
    app.shutdown().await;
}

/// With an hour-long tick, only waking for the new trigger and then at each due window
/// can make it fire within the test's deadline.
async fn sleeps_until_the_next_window_not_the_tick(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.events.cron_tick_interval = Duration::from_secs(3600);
    })
    .await
    .expect("server");
    let script = set_up(&app).await;
    // The scheduler has gone to sleep with nothing to do before the trigger exists.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = cron(
        &app,
        json!({"script_id": script["id"], "schedule": "* * * * * *"}),
    )
    .await;
    let events = ticks(&app, 3).await;
    assert!(windows_of(&events, &t).len() >= 3);
    app.shutdown().await;
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn metrics(app: &TestApp) -> String {
    app.metrics().await
}

/// The node that runs the scheduler, once exactly one of them does.
async fn leader(nodes: &[&TestApp]) -> usize {
    nodes[0]
        .eventually("exactly one cron leader", || async {
            let mut leaders = Vec::new();
            for (i, node) in nodes.iter().enumerate() {
                if metric(&metrics(node).await, "picloud_cron_leader") == 1.0 {
                    leaders.push(i);
                }
            }
            (leaders.len() == 1).then(|| leaders[0])
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_fire_each_window_once() {
    let Some(mut a) = TestApp::start_with(Backend::Postgres, |c| {
        c.events.cron_tick_interval = Duration::from_secs(1);
    })
    .await
    else {
        return;
    };
    let mut b = a
        .start_node(|c| c.events.cron_tick_interval = Duration::from_secs(1))
        .await;
    let script = set_up(&a).await;
    let t = cron(
        &a,
        json!({"script_id": script["id"], "schedule": "* * * * * *"}),
    )
    .await;
    let first = leader(&[&a, &b]).await;

    // About five seconds of windows.
    let events = ticks(&a, 5).await;
    let windows = windows_of(&events, &t);
    let distinct: BTreeSet<_> = windows.iter().collect();
    assert_eq!(
        distinct.len(),
        windows.len(),
        "duplicate windows: {windows:?}"
    );
    // Only the leader fired.
    let mut fired = Vec::new();
    for node in [&a, &b] {
        fired.push(metric(&metrics(node).await, "picloud_cron_fired_total"));
    }
    assert!(fired[first] >= 5.0 && fired[1 - first] == 0.0, "{fired:?}");

    // The leader stops; the other node takes over and the windows go on, still once
    // each.
    let before = windows.len();
    let (stopped, survivor) = if first == 0 {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    stopped.stop().await;
    assert_eq!(leader(&[survivor]).await, 0);
    let events = ticks(survivor, before + 3).await;
    let windows = windows_of(&events, &t);
    let distinct: BTreeSet<_> = windows.iter().collect();
    assert_eq!(
        distinct.len(),
        windows.len(),
        "duplicate windows: {windows:?}"
    );
    assert!(metric(&metrics(survivor).await, "picloud_cron_fired_total") >= 3.0);
    // Whoever owns the database goes last.
    b.shutdown().await;
    a.shutdown().await;
}

picloud_testkit::backend_tests!(
    fires_every_two_seconds_with_the_documented_event => fires_on_a_two_second_schedule,
    invalid_schedules_and_zones_answer_422 => bad_schedules_and_zones_are_refused,
    missed_windows_fire_once_for_the_latest => missed_windows_fire_once,
    wakes_for_changes_and_due_windows_not_the_tick => sleeps_until_the_next_window_not_the_tick,
);
