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
