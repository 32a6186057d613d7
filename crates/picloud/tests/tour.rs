//! The README's 60-second tour, step by step, on both backends.

use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

async fn tour(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    // Log in (the tour uses the PICLOUD_ADMIN_* bootstrap, as CI would).
    let token = app
        .login(
            picloud_testkit::app::ADMIN_EMAIL,
            picloud_testkit::app::ADMIN_PASSWORD,
        )
        .await;
    let post = |path: &'static str, body: Value| {
        let client = app.client.clone();
        let url = app.url(path);
        let token = token.clone();
        async move {
            // curl -d sends a form content type; the admin API reads JSON regardless.
            client
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.to_string())
                .send()
                .await
                .expect("request")
        }
    };
    let r = post("/api/v1/admin/apps", json!({"slug": "shop"})).await;
    assert_eq!(r.status(), 201);
    let r = post(
        "/api/v1/admin/apps/shop/scripts",
        json!({"name": "hello", "source": "#{ hi: ctx.request.params.name }"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let script: Value = r.json().await.expect("json");
    let id = script["id"].as_str().expect("id");
    let r = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/scripts/{id}/routes"),
            Some(json!({"method": "GET", "path": "/hello/{name}"})),
        )
        .await;
    assert_eq!(r.status(), 201);

    let by_host = app
        .on_host("shop", Method::GET, "/hello/bob")
        .send()
        .await
        .expect("host");
    assert_eq!(by_host.status(), 200);
    assert_eq!(by_host.headers()["content-type"], "application/json");
    assert_eq!(
        by_host.json::<Value>().await.expect("json"),
        json!({"hi": "bob"})
    );
    let by_path = app
        .on_path("shop", Method::GET, "/hello/bob")
        .send()
        .await
        .expect("path");
    assert_eq!(by_path.status(), 200);
    assert_eq!(
        by_path.json::<Value>().await.expect("json"),
        json!({"hi": "bob"})
    );

    let runs = app.executions("shop", 2).await;
    assert!(runs
        .iter()
        .all(|r| r["status"] == "ok" && r["source"] == "http"));

    // The module and the scheduled script that imports it (every second here, instead
    // of the README's 09:00, so the test need not wait a day).
    app.admin_ok(
        Method::POST,
        "/api/v1/admin/apps/shop/scripts",
        Some(json!({"name": "fmt", "kind": "module",
                    "source": "fn shout(s) { s.to_upper() + \"!\" }"})),
        201,
    )
    .await;
    let daily = app
        .create_script(
            "shop",
            "daily",
            r#"import "fmt" as f; log::info(f::shout("good morning"));"#,
        )
        .await;
    app.admin_ok(
        Method::POST,
        "/api/v1/admin/apps/shop/triggers/cron",
        Some(json!({"script_id": daily["id"], "schedule": "* * * * * *",
                    "timezone": "Europe/Berlin"})),
        201,
    )
    .await;
    let run = app
        .eventually("the scheduled run", || async {
            let page = app
                .admin_ok(
                    Method::GET,
                    "/api/v1/admin/apps/shop/executions?source=cron",
                    None,
                    200,
                )
                .await;
            page["items"].as_array()?.first().cloned()
        })
        .await;
    assert_eq!(run["status"], "ok", "{run}");
    assert_eq!(run["logs"][0]["message"], "GOOD MORNING!");
    app.shutdown().await;
}

picloud_testkit::backend_tests!(readme_tour => tour);
