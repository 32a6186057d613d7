//! Delivery survives crashes and shares work: kill -9 with hundreds of events pending
//! loses none; two servers on one PostgreSQL database deliver every event exactly once.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{eventually, key, picloud, spawn, Admin, Server};
use reqwest::Method;
use serde_json::json;

const EMAIL: &str = "ops@example.com";
const PASSWORD: &str = "ops password";
const METRICS_TOKEN: &str = "crash-test-metrics-token";

fn server_command(dir: &Path, key: &str, database_url: Option<&str>, poll_ms: u32) -> Command {
    let mut cmd = picloud(dir);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("PICLOUD_SECRET_KEY", key)
        .env("PICLOUD_DATA_DIR", dir.join("data"))
        .env("PICLOUD_ADMIN_EMAIL", EMAIL)
        .env("PICLOUD_ADMIN_PASSWORD", PASSWORD)
        // Short leases, so a dead node's claims come back quickly on PostgreSQL.
        .env("PICLOUD_TRIGGER_TIMEOUT_MS", "2000")
        .env("PICLOUD_DISPATCH_LEASE_SECS", "3")
        .env("PICLOUD_DISPATCH_POLL_INTERVAL_MS", poll_ms.to_string())
        .env("PICLOUD_TRIGGER_RETRY_BASE_DELAY_MS", "50")
        .env("PICLOUD_METRICS_TOKEN", METRICS_TOKEN);
    if let Some(url) = database_url {
        cmd.env("PICLOUD_DATABASE_URL", url);
    }
    cmd
}

/// App `shop`: POST /fill/{n} writes n keys to `jobs`; each write's event runs a handler
/// that works `busy_ms`, then counts the key in `done`.
async fn set_up(admin: &Admin, busy_ms: u32) {
    admin
        .call(
            Method::POST,
            "/api/v1/admin/apps",
            Some(json!({"slug": "shop"})),
        )
        .await;
    let handler = admin
        .script(
            "shop",
            "worker",
            &format!(
                r#"let end = time::now_ms() + {busy_ms}; while time::now_ms() < end {{}}
                   let done = kv::collection("done");
                   let key = ctx.event.kv.key;
                   let seen = done.get(key);
                   done.set(key, if seen == () {{ 1 }} else {{ seen + 1 }});"#
            ),
        )
        .await;
    admin
        .call(
            Method::POST,
            "/api/v1/admin/apps/shop/triggers/kv",
            Some(json!({"script_id": handler, "collection": "jobs", "ops": ["set"]})),
        )
        .await;
    let fill = admin
        .script(
            "shop",
            "fill",
            r#"let jobs = kv::collection("jobs");
               let from = parse_int(ctx.request.params.from);
               let n = parse_int(ctx.request.params.n);
               for i in from..(from + n) { jobs.set(`j${i}`, i); } n"#,
        )
        .await;
    admin.route(&fill, "POST", "/fill/{from}/{n}").await;
}

/// Writes `n` jobs, 100 per request (each write commits on its own).
async fn fill(admin: &Admin, n: usize) {
    for from in (0..n).step_by(100) {
        let r = admin
            .client
            .post(format!(
                "{}/apps/shop/fill/{from}/{}",
                admin.base,
                100.min(n - from)
            ))
            .send()
            .await
            .expect("fill");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }
}

async fn done(admin: &Admin) -> Vec<(String, serde_json::Value)> {
    admin.kv_keys("shop", "done").await
}

fn kill_9(server: &mut Server) {
    server.child.kill().expect("SIGKILL");
    let _ = server.child.wait();
}

async fn crash_and_restart(database_url: Option<&str>) {
    let dir = tempfile::tempdir().expect("dir");
    let key = key();
    let mut first = spawn(
        &mut server_command(dir.path(), &key, database_url, 200),
        false,
    );
    let admin = Admin::login(&first.base, EMAIL, PASSWORD).await;
    set_up(&admin, 30).await;
    fill(&admin, 500).await;
    eventually("the first deliveries", Duration::from_secs(60), || async {
        !done(&admin).await.is_empty()
    })
    .await;
    let before = done(&admin).await.len();
    kill_9(&mut first);
    assert!(
        before < 500,
        "events were still pending at the crash ({before} done)"
    );

    let second = spawn(
        &mut server_command(dir.path(), &key, database_url, 200),
        false,
    );
    let admin = Admin::login(&second.base, EMAIL, PASSWORD).await;
    eventually(
        "every event delivered after the restart",
        Duration::from_secs(120),
        || async { done(&admin).await.len() == 500 },
    )
    .await;
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_500_events_pending_loses_none_sqlite() {
    crash_and_restart(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_500_events_pending_loses_none_postgres() {
    let Some(db) = picloud_testkit::db::TestDb::postgres().await else {
        return;
    };
    crash_and_restart(Some(db.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_deliver_each_event_once() {
    let Some(db) = picloud_testkit::db::TestDb::postgres().await else {
        return;
    };
    let dir_a = tempfile::tempdir().expect("dir");
    let dir_b = tempfile::tempdir().expect("dir");
    let key = key();
    let a = spawn(
        // A poll every minute: within the test the second node learns of work only
        // through PostgreSQL notifications.
        &mut server_command(dir_a.path(), &key, Some(db.url()), 60_000),
        false,
    );
    let admin = Admin::login(&a.base, EMAIL, PASSWORD).await;
    set_up(&admin, 2).await;
    let b = spawn(
        &mut server_command(dir_b.path(), &key, Some(db.url()), 60_000),
        false,
    );
    fill(&admin, 1000).await;
    eventually("1000 deliveries", Duration::from_secs(180), || async {
        let page = admin
            .call(
                Method::GET,
                "/api/v1/admin/apps/shop/kv/done?limit=500",
                None,
            )
            .await;
        let first = page["items"].as_array().map_or(0, Vec::len);
        let rest = match page["next_cursor"].as_str() {
            Some(c) => admin
                .call(
                    Method::GET,
                    &format!("/api/v1/admin/apps/shop/kv/done?limit=500&cursor={c}"),
                    None,
                )
                .await["items"]
                .as_array()
                .map_or(0, Vec::len),
            None => 0,
        };
        first + rest == 1000
    })
    .await;
    // Give any duplicate a moment to show, then check every count is exactly one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut cursor: Option<String> = None;
    let mut total = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/admin/apps/shop/kv/done?limit=500&cursor={c}"),
            None => "/api/v1/admin/apps/shop/kv/done?limit=500".to_owned(),
        };
        let page = admin.call(Method::GET, &path, None).await;
        for item in page["items"].as_array().expect("items") {
            assert_eq!(item["value"], 1, "{} ran more than once", item["key"]);
            total += 1;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(total, 1000);
    // Both nodes took part.
    for server in [&a, &b] {
        let metrics = admin
            .client
            .get(format!("{}/metrics", server.base))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let ran: f64 = metrics
            .lines()
            .find(|l| l.starts_with("picloud_executions_total{status=\"ok\"}"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        assert!(ran > 0.0, "{} delivered nothing", server.base);
    }
    drop(a);
    drop(b);
}
