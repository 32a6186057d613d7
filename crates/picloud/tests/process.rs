//! The real binary: configuration errors, the master-key check, `dev`, `migrate`,
//! `user create`, and graceful shutdown on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_picloud");

fn picloud(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir);
    // A clean environment: nothing from the developer's shell leaks in.
    for (key, _) in std::env::vars() {
        if key.starts_with("PICLOUD_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("PICLOUD_LOG", "warn");
    cmd
}

/// Runs to completion; returns (exit code, stdout, stderr).
fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run picloud");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Server {
    child: Child,
    base: String,
    lines: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Already exited (the SIGTERM test) makes both calls harmless no-ops.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a server and waits for its `listening on` line (and, with
/// `expect_setup_link`, the line after it).
fn spawn(cmd: &mut Command, expect_setup_link: bool) -> Server {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn picloud");
    // From here on the guard reaps the child, whatever happens.
    let mut server = Server {
        child,
        base: String::new(),
        lines: Vec::new(),
    };
    let stdout = server.child.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout);
    let lines = &mut server.lines;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut line = String::new();
        assert!(Instant::now() < deadline, "no listening line: {lines:?}");
        if reader.read_line(&mut line).expect("read stdout") == 0 {
            panic!("picloud exited before listening: {lines:?}");
        }
        let line = line.trim_end().to_owned();
        lines.push(line.clone());
        if let Some(addr) = line.strip_prefix("listening on ") {
            let base = addr.to_owned();
            if expect_setup_link {
                let mut next = String::new();
                reader.read_line(&mut next).expect("read stdout");
                lines.push(next.trim_end().to_owned());
            }
            // Keep draining stdout so the child never blocks on a full pipe.
            std::thread::spawn(move || {
                let mut sink = String::new();
                while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                    sink.clear();
                }
            });
            server.base = base;
            return server;
        }
    }
}

fn key() -> String {
    let (code, out, _) = run(Command::new(BIN).arg("keygen"));
    assert_eq!(code, 0);
    out.trim().to_owned()
}

#[test]
fn bad_settings_stop_start_up_with_one_line_naming_the_variable() {
    let dir = tempfile::tempdir().expect("dir");
    for (var, value) in [
        ("PICLOUD_EXECUTOR_THREADS", "many"),
        ("PICLOUD_LISTEN", "nowhere"),
        ("PICLOUD_LOG_FORMAT", "xml"),
        ("PICLOUD_MAX_REQUEST_BODY_BYTES", "-1"),
        ("PICLOUD_SECRET_KEY", "tooshort"),
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
