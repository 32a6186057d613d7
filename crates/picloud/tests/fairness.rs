//! One app flooding the executor cannot starve the others or the control plane, and
//! its own excess requests are refused with 503 + Retry-After instead of queueing
//! without bound.

use std::time::{Duration, Instant};

use picloud_testkit::{Backend, TestApp};
use reqwest::Method;

async fn flood(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.executor.threads = 8;
        c.executor.app_max_concurrency = 4;
        c.executor.queue_timeout = Duration::from_millis(300);
        c.limits.route_timeout = Duration::from_secs(2);
        c.limits.max_operations = u64::MAX / 2;
    })
    .await
    .expect("server");
    app.deploy("hog", "GET", "/spin", "loop {}").await;
    app.deploy("polite", "GET", "/hi", r#""hi""#).await;

    let mut flood = Vec::new();
    for _ in 0..50 {
        let req = app.on_host("hog", Method::GET, "/spin");
        flood.push(tokio::spawn(async move {
            let r = req.send().await.expect("flood request");
            let retry_after = r.headers().get("retry-after").cloned();
            (r.status().as_u16(), retry_after)
        }));
    }
    // Let the flood occupy the hog's share of the pool.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let r = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(r.status(), 200);
    let healthz = started.elapsed();
    assert!(healthz < Duration::from_secs(1), "healthz took {healthz:?}");

    let started = Instant::now();
    let r = app
        .on_host("polite", Method::GET, "/hi")
        .send()
        .await
        .expect("polite");
    let polite = started.elapsed();
    assert_eq!(r.status(), 200);
    assert!(
        polite < Duration::from_millis(1500),
        "another app answered in {polite:?}"
    );

    let mut timeouts = 0;
    let mut refused = 0;
    for handle in flood {
        let (status, retry_after) = handle.await.expect("join");
        match status {
            504 => timeouts += 1,
            503 => {
                refused += 1;
                assert!(retry_after.is_some(), "503 carries Retry-After");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        refused > 0,
        "excess requests were refused, not queued forever"
    );
    assert!(timeouts >= 4, "the hog ran up to its share: {timeouts}");
    assert_eq!(timeouts + refused, 50);
    // Everything recovers once the flood ends.
    let r = app
        .on_host("polite", Method::GET, "/hi")
        .send()
        .await
        .expect("polite");
    assert_eq!(r.status(), 200);
    app.shutdown().await;
}

picloud_testkit::backend_tests!(one_app_cannot_starve_others => flood);
