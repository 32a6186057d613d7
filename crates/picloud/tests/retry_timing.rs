//! A retry runs when its backoff is over, not at the dispatcher's next safety-net poll.

use std::time::{Duration, Instant};

use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::json;

async fn retries_wake_the_dispatcher(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.events.retry_base_delay = Duration::from_millis(200);
        c.events.retry_max_delay = Duration::from_millis(200);
        // Far longer than the test waits: only a wake-up can start the retry in time.
        c.events.poll_interval = Duration::from_secs(60);
    })
    .await
    .expect("server");
    app.create_app("shop").await;
    let script = app
        .create_script(
            "shop",
            "flaky",
            r#"kv::collection("runs").set(`${ctx.event.attempt}`, true);
               if ctx.event.attempt == 1 { throw "first attempt fails"; }"#,
        )
        .await;
    app.admin_ok(
        Method::POST,
        &format!(
            "/api/v1/admin/scripts/{}/routes",
            script["id"].as_str().expect("id")
        ),
        Some(json!({"method": "POST", "path": "/flaky", "dispatch_mode": "async"})),
        201,
    )
    .await;
    let started = Instant::now();
    let r = app
        .on_host("shop", Method::POST, "/flaky")
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), 202);
    app.eventually("the second attempt", || async {
        let page = app
            .admin_ok(Method::GET, "/api/v1/admin/apps/shop/kv/runs", None, 200)
            .await;
        page["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|i| i["key"] == "2"))
            .then_some(())
    })
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "the retry waited {took:?} for a poll instead of its 200 ms backoff"
    );
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    a_retry_runs_after_its_backoff_not_the_next_poll => retries_wake_the_dispatcher,
);
