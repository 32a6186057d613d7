//! Two nodes on one PostgreSQL database: what one node changes, the other's caches
//! (app by slug, route tables with their scripts, script rows) follow at once, through
//! PostgreSQL notifications — not after a restart.

use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::json;

async fn answer(node: &TestApp, path: &str) -> (u16, String) {
    let r = node
        .on_host("shop", Method::GET, path)
        .send()
        .await
        .expect("request");
    (r.status().as_u16(), r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_follow_changes_made_on_another_node() {
    let Some(a) = TestApp::start(Backend::Postgres).await else {
        return;
    };
    let script = a.deploy("shop", "GET", "/v", r#""one""#).await;
    let b = a.start_node(|_| {}).await;
    // B caches the app and its route table (with the script) on first use.
    assert_eq!(answer(&b, "/v").await, (200, "one".into()));

    a.admin_ok(
        Method::PUT,
        &format!("/api/v1/admin/scripts/{script}"),
        Some(json!({"source": r#""two""#})),
        200,
    )
    .await;
    b.eventually("B runs the edited script", || async {
        (answer(&b, "/v").await == (200, "two".into())).then_some(())
    })
    .await;

    // A dropped notification connection loses what was announced meanwhile, so a node
    // drops all its caches when its listener reconnects.
    let url = picloud_testkit::db::postgres_admin_url().expect("postgres");
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("admin connection");
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query LIKE 'LISTEN \"picloud_changes\"%'",
    )
    .execute(&mut admin)
    .await
    .expect("terminate listeners");
    a.admin_ok(
        Method::PUT,
        &format!("/api/v1/admin/scripts/{script}"),
        Some(json!({"source": r#""three""#})),
        200,
    )
    .await;
    b.eventually("B runs the script edited while it was deaf", || async {
        (answer(&b, "/v").await == (200, "three".into())).then_some(())
    })
    .await;

    let other = a.deploy("shop", "GET", "/w", r#""new route""#).await;
    b.eventually("B routes the new route", || async {
        (answer(&b, "/w").await == (200, "new route".into())).then_some(())
    })
    .await;
    a.admin_ok(
        Method::DELETE,
        &format!("/api/v1/admin/scripts/{other}"),
        None,
        204,
    )
    .await;
    b.eventually("B forgets the deleted script's route", || async {
        (answer(&b, "/w").await.0 == 404).then_some(())
    })
    .await;

    a.admin_ok(Method::DELETE, "/api/v1/admin/apps/shop", None, 204)
        .await;
    b.eventually("B forgets the deleted app", || async {
        (answer(&b, "/v").await.0 == 404).then_some(())
    })
    .await;
    b.shutdown().await;
    a.shutdown().await;
}

/// A cron trigger created through a node that does not schedule wakes the node that
/// does at once, not after its tick (an hour here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_changes_on_one_node_wake_the_scheduler_on_another() {
    let hour = std::time::Duration::from_secs(3600);
    let Some(a) =
        TestApp::start_with(Backend::Postgres, |c| c.events.cron_tick_interval = hour).await
    else {
        return;
    };
    a.eventually("node A schedules", || async {
        let text = a
            .client
            .get(a.url("/metrics"))
            .bearer_auth(picloud_testkit::app::METRICS_TOKEN)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .any(|l| l.starts_with("picloud_cron_leader") && l.trim_end().ends_with(" 1"))
            .then_some(())
    })
    .await;
    let b = a.start_node(|c| c.events.cron_tick_interval = hour).await;
    b.create_app("shop").await;
    let script = b
        .create_script(
            "shop",
            "tick",
            r#"kv::collection("ticks").set(ctx.event.id, 1); ()"#,
        )
        .await;
    b.admin_ok(
        Method::POST,
        "/api/v1/admin/apps/shop/triggers/cron",
        Some(json!({"script_id": script["id"], "schedule": "* * * * * *"})),
        201,
    )
    .await;
    b.eventually("ticks scheduled by node A", || async {
        let page = b
            .admin_ok(Method::GET, "/api/v1/admin/apps/shop/kv/ticks", None, 200)
            .await;
        (page["items"].as_array().map_or(0, Vec::len) >= 2).then_some(())
    })
    .await;
    b.shutdown().await;
    a.shutdown().await;
}

/// Deleting and renaming an app and editing a module on node A: node B follows from
/// the store's change stream alone (no handler tells it), executor state included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_and_module_changes_on_one_node_reach_the_other() {
    let Some(a) = TestApp::start(Backend::Postgres).await else {
        return;
    };
    a.create_app("shop").await;
    a.admin_ok(
        Method::POST,
        "/api/v1/admin/apps/shop/scripts",
        Some(json!({"name": "lib", "kind": "module", "source": r#"fn v() { "one" }"#})),
        201,
    )
    .await;
    let module = a
        .admin_ok(Method::GET, "/api/v1/admin/apps/shop/scripts", None, 200)
        .await["items"][0]["id"]
        .as_str()
        .expect("module id")
        .to_owned();
    a.deploy("shop", "GET", "/v", "import \"lib\" as lib;\nlib::v()")
        .await;
    let app = a
        .admin_ok(Method::GET, "/api/v1/admin/apps/shop", None, 200)
        .await;
    let app_id = picloud_core::AppId::parse(app["id"].as_str().expect("app id")).expect("id");

    let b = a.start_node(|_| {}).await;
    assert_eq!(answer(&b, "/v").await, (200, "one".into()));
    let on_b = &b.started().state;
    // (The executor keeps nothing for an app with no runs in progress or waiting,
    // so only the caches hold the app now.)
    assert!(
        on_b.routing.cached_app("shop").is_some(),
        "B caches the app"
    );

    a.admin_ok(
        Method::PUT,
        &format!("/api/v1/admin/scripts/{module}"),
        Some(json!({"source": r#"fn v() { "two" }"#})),
        200,
    )
    .await;
    b.eventually("B runs the edited module", || async {
        (answer(&b, "/v").await == (200, "two".into())).then_some(())
    })
    .await;

    a.admin_ok(
        Method::PATCH,
        "/api/v1/admin/apps/shop",
        Some(json!({"name": "Shop renamed"})),
        200,
    )
    .await;
    b.eventually("B drops the app row it had before the rename", || async {
        let cached = on_b.routing.cached_app("shop");
        cached
            .is_none_or(|app| app.name == "Shop renamed")
            .then_some(())
    })
    .await;

    a.admin_ok(Method::DELETE, "/api/v1/admin/apps/shop", None, 204)
        .await;
    b.eventually(
        "B forgets the deleted app, executor state included",
        || async {
            (answer(&b, "/v").await.0 == 404 && !on_b.runner.holds_app_state(&app_id)).then_some(())
        },
    )
    .await;
    b.shutdown().await;
    a.shutdown().await;
}
