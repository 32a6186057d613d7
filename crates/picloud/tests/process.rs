//! The real binary: configuration errors, the master-key check, `dev`, `migrate`,
//! `user create`, and graceful shutdown on SIGTERM.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

mod common;

use common::{key, picloud, run, spawn};

#[test]
fn bad_settings_stop_start_up_with_one_line_naming_the_variable() {
    let dir = tempfile::tempdir().expect("dir");
    for (var, value) in [
        ("PICLOUD_EXECUTOR_THREADS", "many"),
        ("PICLOUD_LISTEN", "nowhere"),
        ("PICLOUD_LOG_FORMAT", "xml"),
        ("PICLOUD_MAX_REQUEST_BODY_BYTES", "-1"),
        ("PICLOUD_SECRET_KEY", "tooshort"),
        ("PICLOUD_HTTP_ALLOWED_PORTS", "443,ssh"),
        ("PICLOUD_HTTP_ALLOW_PRIVATE", "maybe"),
        ("PICLOUD_HTTP_TIMEOUT_MS", "0"),
    ] {
        let (code, _, err) = run(picloud(dir.path()).arg("dev").env(var, value));
        assert_eq!(code, 2, "{var}={value}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(var), "names {var}: {err}");
    }
    // Flags are the same settings.
    let (code, _, err) = run(picloud(dir.path()).args(["dev", "--executor-threads", "0"]));
    assert_eq!(code, 2);
    assert!(err.contains("PICLOUD_EXECUTOR_THREADS"), "{err}");
    // `serve` needs a key.
    let (code, _, err) = run(picloud(dir.path()).arg("serve"));
    assert_eq!(code, 2);
    assert!(err.contains("PICLOUD_SECRET_KEY"), "{err}");
    assert!(
        !dir.path().join("picloud-data").exists(),
        "nothing written before the check"
    );
}

#[test]
fn dev_prints_the_address_and_a_set_up_link_then_a_different_key_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let mut server = spawn(
        picloud(dir.path()).args(["dev", "--listen", "127.0.0.1:0"]),
        true,
    );
    assert!(server.base.starts_with("http://127.0.0.1:"));
    assert!(dir.path().join("picloud-data/picloud.db").exists());
    assert!(
        !server
            .lines
            .iter()
            .any(|l| l.contains("PICLOUD_HTTP_ALLOW_PRIVATE")),
        "{:?}",
        server.lines
    );
    let link = server.lines.last().expect("set-up line");
    let expected = format!("{}/_/?token=pst_", server.base);
    assert!(link.contains(&expected), "set-up link printed: {link}");
    // The link's token creates the first admin.
    let token = link.split("token=").nth(1).expect("token").to_owned();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let base = server.base.clone();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{base}/api/v1/auth/setup"))
            .json(&json!({"token": token, "email": "me@example.com", "password": "my password"}))
            .send()
            .await
            .expect("setup");
        assert_eq!(r.status(), 201);
    });
    server.child.kill().expect("kill");
    let _ = server.child.wait();

    // The data was written under the dev key: a real key is refused.
    let (code, _, err) = run(picloud(dir.path())
        .arg("serve")
        .env("PICLOUD_SECRET_KEY", key()));
    assert_eq!(code, 2);
    assert!(
        err.contains("PICLOUD_SECRET_KEY") && err.contains("differs"),
        "{err}"
    );
}

#[test]
fn allowing_private_http_targets_warns_at_start_up() {
    let dir = tempfile::tempdir().expect("dir");
    let server = spawn(
        picloud(dir.path())
            .args(["dev", "--listen", "127.0.0.1:0"])
            .env("PICLOUD_HTTP_ALLOW_PRIVATE", "true"),
        true,
    );
    assert!(
        server
            .lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("PICLOUD_HTTP_ALLOW_PRIVATE is on")),
        "{:?}",
        server.lines
    );
}

#[test]
fn migrate_and_user_create_then_sigterm_finishes_in_flight_requests() {
    let dir = tempfile::tempdir().expect("dir");
    let key = key();
    let with_key = |cmd: &mut Command| {
        cmd.env("PICLOUD_SECRET_KEY", &key);
    };
    let mut migrate = picloud(dir.path());
    with_key(&mut migrate);
    let (code, out, err) = run(migrate.arg("migrate"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("migrations applied"));
    let mut create = picloud(dir.path());
    with_key(&mut create);
    let (code, out, err) = run(create.args([
        "user",
        "create",
        "--email",
        "ops@example.com",
        "--password",
        "ops password",
        "--admin",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("usr_"));

    let mut serve = picloud(dir.path());
    with_key(&mut serve);
    serve.env("PICLOUD_SCRIPT_MAX_OPERATIONS", "1000000000000");
    let mut server = spawn(serve.args(["serve", "--listen", "127.0.0.1:0"]), false);
    assert!(
        !server.lines.iter().any(|l| l.contains("token=")),
        "no set-up link once a user exists"
    );
    let base = server.base.clone();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = reqwest::Client::new();
        let login: Value = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": "ops@example.com", "password": "ops password"}))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json");
        let token = login["token"].as_str().expect("token").to_owned();
        let admin = |method: reqwest::Method, path: String, body: Value| {
            client.request(method, format!("{base}{path}")).bearer_auth(&token).json(&body).send()
        };
        admin(reqwest::Method::POST, "/api/v1/admin/apps".into(), json!({"slug": "shop"}))
            .await
            .expect("app");
        let script: Value = admin(
            reqwest::Method::POST,
            "/api/v1/admin/apps/shop/scripts".into(),
            json!({"name": "slow", "source": "let end = time::now_ms() + 1500; while time::now_ms() < end {} \"done\""}),
        )
        .await
        .expect("script")
        .json()
        .await
        .expect("json");
        let id = script["id"].as_str().expect("id").to_owned();
        admin(
            reqwest::Method::POST,
            format!("/api/v1/admin/scripts/{id}/routes"),
            json!({"method": "GET", "path": "/slow"}),
        )
        .await
        .expect("route");

        let slow = tokio::spawn(
            client
                .get(format!("{base}/apps/shop/slow"))
                .send(),
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        let pid = server.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(status.success());
        let response = slow.await.expect("join").expect("in-flight request completes");
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.expect("text"), "done");
    });
    let exit = server.child.wait().expect("wait");
    assert!(exit.success(), "clean exit after SIGTERM: {exit:?}");

    // The run's execution record was flushed before exit.
    let mut again = picloud(dir.path());
    with_key(&mut again);
    let mut server = spawn(again.args(["serve", "--listen", "127.0.0.1:0"]), false);
    let base = server.base.clone();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let login: Value = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": "ops@example.com", "password": "ops password"}))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json");
        let runs: Value = client
            .get(format!("{base}/api/v1/admin/apps/shop/executions"))
            .bearer_auth(login["token"].as_str().expect("token"))
            .send()
            .await
            .expect("runs")
            .json()
            .await
            .expect("json");
        assert_eq!(runs["items"][0]["status"], "ok", "{runs}");
    });
    server.child.kill().expect("kill");
    let _ = server.child.wait();
}
