//! Helpers for tests that run the real binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_picloud");

pub fn picloud(dir: &std::path::Path) -> Command {
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
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run picloud");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub lines: Vec<String>,
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
pub fn spawn(cmd: &mut Command, expect_setup_link: bool) -> Server {
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

pub fn key() -> String {
    let (code, out, _) = run(Command::new(BIN).arg("keygen"));
    assert_eq!(code, 0);
    out.trim().to_owned()
}

/// A signed-in admin API client for a spawned server.
pub struct Admin {
    pub base: String,
    pub token: String,
    pub client: reqwest::Client,
}

impl Admin {
    pub async fn login(base: &str, email: &str, password: &str) -> Admin {
        let client = reqwest::Client::new();
        let body: serde_json::Value = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json");
        Admin {
            base: base.to_owned(),
            token: body["token"].as_str().expect("token").to_owned(),
            client,
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.expect("request");
        let status = r.status();
        let text = r.text().await.expect("text");
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }

    /// App `slug`, a script with `source`, and (with a method and path) a route to it.
    pub async fn script(&self, slug: &str, name: &str, source: &str) -> String {
        let script = self
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/admin/apps/{slug}/scripts"),
                Some(serde_json::json!({"name": name, "source": source})),
            )
            .await;
        script["id"].as_str().expect("id").to_owned()
    }

    pub async fn route(&self, script: &str, method: &str, path: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/api/v1/admin/scripts/{script}/routes"),
            Some(serde_json::json!({"method": method, "path": path})),
        )
        .await;
    }

    /// Keys in a KV collection (first 500).
    pub async fn kv_keys(&self, slug: &str, collection: &str) -> Vec<(String, serde_json::Value)> {
        let page = self
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/admin/apps/{slug}/kv/{collection}?limit=500"),
                None,
            )
            .await;
        page["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| {
                        (
                            i["key"].as_str().unwrap_or_default().to_owned(),
                            i["value"].clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Polls until `check` holds, failing after a generous deadline.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    while !check().await {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
