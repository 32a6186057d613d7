//! `/metrics` tells anyone who can read it which apps exist and how busy they are:
//! it answers only with the metrics token, or on a listener of its own.

use picloud_testkit::app::METRICS_TOKEN;
use picloud_testkit::{Backend, TestApp};
use serde_json::Value;

async fn get(client: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = client.get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let r = req.send().await.expect("request");
    (r.status().as_u16(), r.text().await.expect("body"))
}

fn unauthorized(status: u16, body: &str) {
    assert_eq!(status, 401, "{body}");
    let body: Value = serde_json::from_str(body).expect("the error envelope");
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_metrics_token() {
    let app = TestApp::start(Backend::Sqlite).await.expect("server");
    app.deploy("secret-shop", "GET", "/ok", "1").await;
    app.on_host("secret-shop", reqwest::Method::GET, "/ok")
        .send()
        .await
        .expect("r");
    let url = app.url("/metrics");
    let (status, body) = get(&app.client, &url, None).await;
    unauthorized(status, &body);
    assert!(!body.contains("secret-shop"));
    // A session, even the instance admin's, is not the metrics token.
    let (status, body) = get(&app.client, &url, Some(&app.admin_token)).await;
    unauthorized(status, &body);
    let wrong = "x".repeat(METRICS_TOKEN.len());
    let (status, body) = get(&app.client, &url, Some(&wrong)).await;
    unauthorized(status, &body);
    let (status, body) = get(&app.client, &url, Some(&METRICS_TOKEN[1..])).await;
    unauthorized(status, &body);
    let (status, body) = get(&app.client, &url, Some(METRICS_TOKEN)).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#"app="secret-shop""#), "{body}");
    app.shutdown().await;

    // No token configured and no listener of its own: nobody reads the metrics.
    let app = TestApp::start_with(Backend::Sqlite, |c| c.metrics.token = None)
        .await
        .expect("server");
    let (status, body) = get(&app.client, &app.url("/metrics"), Some(METRICS_TOKEN)).await;
    unauthorized(status, &body);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_a_listener_of_their_own() {
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.metrics.token = None;
        c.metrics.listen = Some(([127, 0, 0, 1], 0).into());
    })
    .await
    .expect("server");
    let addr = app
        .started()
        .metrics_addr
        .expect("the metrics listener is bound");
    assert_ne!(
        Some(addr.port()),
        app.base.rsplit(':').next().and_then(|p| p.parse().ok())
    );
    let (status, body) = get(&app.client, &format!("http://{addr}/metrics"), None).await;
    assert_eq!(status, 200);
    assert!(body.contains("picloud_executor_busy_threads"), "{body}");
    // That listener serves nothing else.
    for path in ["/healthz", "/api/v1/auth/me", "/apps/shop/x", "/_/"] {
        let (status, _) = get(&app.client, &format!("http://{addr}{path}"), None).await;
        assert_eq!(status, 404, "{path}");
    }
    // The main listener still refuses anonymous callers.
    let (status, body) = get(&app.client, &app.url("/metrics"), None).await;
    unauthorized(status, &body);
    app.shutdown().await;
}
