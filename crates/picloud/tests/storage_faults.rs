//! The database fails under a running server: the disk holding SQLite fills up (a
//! small tmpfs), a PostgreSQL connection is killed mid-write. No write that did not
//! commit is ever answered 2xx, the errors are 503 `unavailable` without SQL or paths,
//! writes resume once the fault is gone, and nothing acknowledged is lost — checked
//! again after a kill -9 and a restart on the same data.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{eventually, key, picloud, spawn, Admin, Server};
use picloud_testkit::tmpfs::Tmpfs;
use picloud_testkit::{Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::postgres::PgConnection;
use sqlx::Connection;

const EMAIL: &str = "ops@example.com";
const PASSWORD: &str = "ops password";

fn server_command(dir: &Path, key: &str) -> Command {
    let mut cmd = picloud(dir);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("PICLOUD_SECRET_KEY", key)
        .env("PICLOUD_DATA_DIR", dir)
        .env("PICLOUD_ADMIN_EMAIL", EMAIL)
        .env("PICLOUD_ADMIN_PASSWORD", PASSWORD);
    cmd
}

/// What the server answered while the disk was full.
#[derive(Default)]
struct Ledger {
    apps: Vec<String>,
    refused_apps: Vec<String>,
    keys: Vec<String>,
    refused_keys: Vec<String>,
    executions: Vec<String>,
    refusals: usize,
}

/// An error answer during an outage: an error status, API.md's envelope, and a
/// message without SQL, file paths or driver text.
fn assert_clean_error(what: &str, status: StatusCode, body: &str, tmp: &Path) {
    assert!(
        status.is_server_error(),
        "{what} answered {status} on a full disk: {body}"
    );
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let message = parsed["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{what}: no error envelope: {body}");
    for leak in ["INSERT", "SELECT", "sqlite", "code:", ".db", "/tmp"] {
        assert!(!body.contains(leak), "{what} leaks {leak:?}: {body}");
    }
    assert!(
        !body.contains(&tmp.display().to_string()),
        "{what} leaks the data directory: {body}"
    );
}

async fn post(admin: &Admin, path: &str, body: Option<Value>) -> (StatusCode, String, String) {
    let mut req = admin
        .client
        .post(format!("{}{path}", admin.base))
        .bearer_auth(&admin.token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.expect("request");
    let status = r.status();
    let execution = r
        .headers()
        .get("x-picloud-execution-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, r.text().await.expect("body"), execution)
}

async fn status_of(admin: &Admin, path: &str) -> StatusCode {
    admin
        .client
        .get(format!("{}{path}", admin.base))
        .bearer_auth(&admin.token)
        .send()
        .await
        .expect("request")
        .status()
}

/// Every acknowledged app, key and audit entry is there; nothing refused is.
async fn check(admin: &Admin, ledger: &Ledger) {
    for slug in &ledger.apps {
        let status = status_of(admin, &format!("/api/v1/admin/apps/{slug}")).await;
        assert_eq!(status, 200, "app {slug} was answered 201");
    }
    for slug in &ledger.refused_apps {
        let status = status_of(admin, &format!("/api/v1/admin/apps/{slug}")).await;
        assert_eq!(status, 404, "app {slug} was refused");
    }
    let keys: Vec<String> = admin
        .kv_keys("shop", "big")
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for key in &ledger.keys {
        assert!(keys.contains(key), "key {key} was answered 200");
    }
    for key in &ledger.refused_keys {
        assert!(!keys.contains(key), "key {key} was refused");
    }
    // Every app answered 201 is in the audit log: finished (201, naming the app) or,
    // when its outcome could not be written, pending (0).
    let audit = admin
        .call(Method::GET, "/api/v1/admin/audit?limit=500", None)
        .await;
    let creations: Vec<&Value> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["action"] == "POST /api/v1/admin/apps")
        .collect();
    let pending = creations.iter().filter(|e| e["status"] == 0).count();
    let mut unaccounted = 0;
    for slug in &ledger.apps {
        let id = admin
            .call(Method::GET, &format!("/api/v1/admin/apps/{slug}"), None)
            .await["id"]
            .clone();
        let finished = creations
            .iter()
            .any(|e| e["status"] == 201 && e["app_id"] == id);
        if !finished {
            unaccounted += 1;
        }
    }
    assert!(
        unaccounted <= pending,
        "{unaccounted} apps answered 201 without a finished audit entry, {pending} pending"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_full_disk_never_acknowledges_a_lost_write_and_recovers() {
    let Some(fs) = Tmpfs::mount(24 << 20) else {
        return;
    };
    let key = key();
    let mut server = spawn(&mut server_command(fs.path(), &key), false);
    let admin = Admin::login(&server.base, EMAIL, PASSWORD).await;
    admin
        .call(
            Method::POST,
            "/api/v1/admin/apps",
            Some(json!({"slug": "shop"})),
        )
        .await;
    let fill = admin
        .script(
            "shop",
            "fill",
            r#"let s = "x"; for i in 0..15 { s += s; }
               kv::collection("big").set(ctx.request.params.k, s); "stored""#,
        )
        .await;
    admin.route(&fill, "POST", "/fill/{k}").await;
    let mut ledger = Ledger {
        apps: vec!["shop".into()],
        ..Ledger::default()
    };
    for i in 0..3 {
        let k = format!("before-{i}");
        let (status, body, _) = post(&admin, &format!("/apps/shop/fill/{k}"), None).await;
        assert_eq!(status, 200, "{body}");
        ledger.keys.push(k);
    }

    fs.fill_leaving(512 << 10);
    for i in 0..300 {
        let k = format!("k{i}");
        let (status, body, execution) = post(&admin, &format!("/apps/shop/fill/{k}"), None).await;
        ledger.executions.push(execution);
        if status == 200 {
            ledger.keys.push(k);
        } else {
            assert_clean_error("a KV write", status, &body, fs.path());
            ledger.refused_keys.push(k);
            ledger.refusals += 1;
        }
        let slug = format!("during-{i}");
        let (status, body, _) = post(
            &admin,
            "/api/v1/admin/apps",
            Some(json!({"slug": slug.as_str()})),
        )
        .await;
        if status == 201 {
            ledger.apps.push(slug);
        } else {
            assert_clean_error("creating an app", status, &body, fs.path());
            assert_eq!(status, 503, "{body}");
            let parsed: Value = serde_json::from_str(&body).expect("json");
            assert_eq!(parsed["error"]["code"], "unavailable", "{body}");
            ledger.refused_apps.push(slug);
            ledger.refusals += 1;
        }
        if ledger.refusals >= 20 {
            break;
        }
    }
    eprintln!(
        "full disk: {} keys and {} apps acknowledged, {} and {} refused",
        ledger.keys.len(),
        ledger.apps.len(),
        ledger.refused_keys.len(),
        ledger.refused_apps.len()
    );
    assert!(ledger.refusals >= 20, "the disk never filled");
    assert!(ledger.keys.len() > 3, "some writes fitted first");

    // An outage longer than a moment: whatever retries inside the server (the
    // execution recorder's) must outlast it rather than give up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    fs.free();
    // No restart: the next writes go through.
    let (status, body, _) =
        post(&admin, "/api/v1/admin/apps", Some(json!({"slug": "after"}))).await;
    assert_eq!(status, 201, "{body}");
    ledger.apps.push("after".into());
    let (status, body, _) = post(&admin, "/apps/shop/fill/after", None).await;
    assert_eq!(status, 200, "{body}");
    ledger.keys.push("after".into());
    check(&admin, &ledger).await;
    // Runs during the outage are recorded once the disk has room again.
    for id in ledger.executions.iter().filter(|id| !id.is_empty()) {
        let path = format!("/api/v1/admin/apps/shop/executions/{id}");
        eventually(
            "the execution records of the outage",
            Duration::from_secs(60),
            || async { status_of(&admin, &path).await == 200 },
        )
        .await;
    }

    // Durable, not just visible: a hard kill, then the same data directory.
    kill_9(&mut server);
    let server = spawn(&mut server_command(fs.path(), &key), false);
    let admin = Admin::login(&server.base, EMAIL, PASSWORD).await;
    check(&admin, &ledger).await;
    drop(server);
}

fn kill_9(server: &mut Server) {
    server.child.kill().expect("SIGKILL");
    let _ = server.child.wait();
}

/// Holds `table` locked from another session until the returned connection rolls
/// back; then kills the backend of whichever session waits for it.
async fn lock(url: &str, table: &str) -> PgConnection {
    let mut blocker = PgConnection::connect(url).await.expect("blocker");
    sqlx::query("BEGIN")
        .execute(&mut blocker)
        .await
        .expect("begin");
    sqlx::query(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        .execute(&mut blocker)
        .await
        .expect("lock");
    blocker
}

/// Terminates every backend that waits for a lock, from the first one on for `keep`
/// (zero: just that first one).
async fn kill_waiting_backends(url: &str, keep: Duration) {
    let mut admin = PgConnection::connect(url).await.expect("admin");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut first: Option<std::time::Instant> = None;
    loop {
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock' \
             AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut admin)
        .await
        .expect("terminate");
        if killed.contains(&true) && first.is_none() {
            first = Some(std::time::Instant::now());
        }
        if first.is_some_and(|at| at.elapsed() >= keep) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no request ever waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `request` while `table` is locked, kills the connection serving it (and,
/// for `keep`, every later one that waits too), and returns the answer.
async fn killed_mid_write(
    url: &str,
    table: &str,
    keep: Duration,
    request: reqwest::RequestBuilder,
) -> (StatusCode, String) {
    let mut blocker = lock(url, table).await;
    let sent = tokio::spawn(async move {
        let r = request.send().await.expect("request");
        (r.status(), r.text().await.expect("body"))
    });
    kill_waiting_backends(url, keep).await;
    sqlx::query("ROLLBACK")
        .execute(&mut blocker)
        .await
        .expect("unlock");
    sent.await.expect("request task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connection_killed_mid_write_is_never_acknowledged() {
    let Some(app) = TestApp::start(Backend::Postgres).await else {
        return;
    };
    let url = app.database_url().to_owned();
    app.create_app("shop").await;
    let script = app
        .create_script(
            "shop",
            "put",
            r#"kv::collection("c").set(ctx.request.params.k, 1); "stored""#,
        )
        .await;
    app.create_route(script["id"].as_str().expect("id"), "POST", "/put/{k}")
        .await;

    // An admin write: 503, and the app does not exist.
    let request = app
        .client
        .post(app.url("/api/v1/admin/apps"))
        .bearer_auth(&app.admin_token)
        .json(&json!({"slug": "killed"}));
    let (status, body) = killed_mid_write(&url, "apps", Duration::ZERO, request).await;
    assert_eq!(status, 503, "{body}");
    let parsed: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(parsed["error"]["code"], "unavailable", "{body}");
    app.admin_ok(Method::GET, "/api/v1/admin/apps/killed", None, 404)
        .await;
    app.create_app("after").await;

    // A script's KV write (a transaction with its outbox rows): an error, not 200.
    let request = app.client.post(app.url("/apps/shop/put/killed"));
    let (status, body) = killed_mid_write(&url, "kv_entries", Duration::ZERO, request).await;
    assert!(status.is_server_error(), "{status}: {body}");
    let r = app
        .client
        .post(app.url("/apps/shop/put/after"))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200, "the pool recovered");
    let listed = app
        .admin_ok(Method::GET, "/api/v1/admin/apps/shop/kv/c", None, 200)
        .await;
    let keys: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["key"].as_str())
        .collect();
    assert_eq!(keys, vec!["after"]);

    // The audit entry is written before the change: when that fails, nothing runs.
    let request = create_request(&app, "unwritten");
    let (status, body) = killed_mid_write(&url, "audit_log", Duration::ZERO, request).await;
    assert_eq!(status, 503, "{body}");
    app.admin_ok(Method::GET, "/api/v1/admin/apps/unwritten", None, 404)
        .await;
    // Its outcome is written after: one lost connection is retried…
    let (status, body) = outcome_killed(&app, &url, "finished", Duration::ZERO).await;
    assert_eq!(status, 201, "{body}");
    let newest = newest_audit_entry(&app).await;
    assert_eq!(newest["status"], 201, "{newest}");
    let id = serde_json::from_str::<Value>(&body).expect("json")["id"].clone();
    assert_eq!(newest["app_id"], id, "{newest}");
    // …and when it cannot be written at all, the change is still on record, pending.
    let (status, body) = outcome_killed(&app, &url, "pending", Duration::from_secs(3)).await;
    assert_eq!(status, 201, "{body}");
    let newest = newest_audit_entry(&app).await;
    assert_eq!(newest["action"], "POST /api/v1/admin/apps", "{newest}");
    assert_eq!(newest["status"], 0, "{newest}");
}

fn create_request(app: &TestApp, slug: &str) -> reqwest::RequestBuilder {
    app.client
        .post(app.url("/api/v1/admin/apps"))
        .bearer_auth(&app.admin_token)
        .json(&json!({"slug": slug}))
}

/// Creates app `slug` while the connection that records the request's outcome in its
/// (already written) audit entry is killed, and every later one for `keep`.
async fn outcome_killed(
    app: &TestApp,
    url: &str,
    slug: &str,
    keep: Duration,
) -> (StatusCode, String) {
    // The handler waits for `apps` while its pending audit entry gets row-locked.
    let mut apps = lock(url, "apps").await;
    let request = create_request(app, slug);
    let sent = tokio::spawn(async move {
        let r = request.send().await.expect("request");
        (r.status(), r.text().await.expect("body"))
    });
    let mut entry = PgConnection::connect(url).await.expect("entry lock");
    sqlx::query("BEGIN")
        .execute(&mut entry)
        .await
        .expect("begin");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pending: Vec<String> =
            sqlx::query_scalar("SELECT id FROM audit_log WHERE status = 0 FOR UPDATE")
                .fetch_all(&mut entry)
                .await
                .expect("lock the pending entry");
        if !pending.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no pending entry");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sqlx::query("ROLLBACK")
        .execute(&mut apps)
        .await
        .expect("let the change run");
    let mut admin = PgConnection::connect(url).await.expect("admin");
    loop {
        let made: Option<i32> = sqlx::query_scalar("SELECT 1 FROM apps WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&mut admin)
            .await
            .expect("app committed?");
        if made.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the app never committed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill_waiting_backends(url, keep).await;
    sqlx::query("ROLLBACK")
        .execute(&mut entry)
        .await
        .expect("unlock the entry");
    sent.await.expect("request task")
}

async fn newest_audit_entry(app: &TestApp) -> Value {
    let audit = app
        .admin_ok(Method::GET, "/api/v1/admin/audit?limit=1", None, 200)
        .await;
    audit["items"][0].clone()
}
