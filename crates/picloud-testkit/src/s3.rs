//! A real S3-compatible server for tests: `moto_server` (PyPI `moto[server]`), started
//! on a free port and killed on drop. Without it a test skips, saying so, unless
//! `PICLOUD_TEST_REQUIRE_S3=1` (CI), where it fails.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use picloud_core::config::S3Config;
use tokio::process::{Child, Command};

const REQUIRE_VAR: &str = "PICLOUD_TEST_REQUIRE_S3";
/// Python starting on a loaded 2-core CI machine can be slow; polled, not slept.
const START_DEADLINE: Duration = Duration::from_secs(90);

pub struct Moto {
    _child: Child,
    pub endpoint: String,
}

impl Moto {
    /// A running server, or `None` (after printing why) when this machine has none and
    /// CI did not ask for one. Panics when CI asked and it cannot start.
    pub async fn start_or_skip(test: &str) -> Option<Moto> {
        match Self::start().await {
            Ok(moto) => Some(moto),
            Err(why) => {
                let required = std::env::var(REQUIRE_VAR)
                    .is_ok_and(|v| !v.trim().is_empty() && v.trim() != "0");
                assert!(
                    !required,
                    "{test}: an S3-compatible server is required: {why}"
                );
                eprintln!(
                    "skipping {test}: {why} (CI installs moto[server] and sets {REQUIRE_VAR})"
                );
                None
            }
        }
    }

    async fn start() -> Result<Moto, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let mut child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run moto_server: {e}"))?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("moto_server exited at start-up ({status})"));
            }
            if client
                .get(&endpoint)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(Moto {
                    _child: child,
                    endpoint,
                });
            }
            if Instant::now() > deadline {
                return Err(format!("moto_server not ready after {START_DEADLINE:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A fresh bucket and the settings that point a server at it (moto takes unsigned
    /// bucket creation).
    pub async fn bucket(&self, name: &str) -> S3Config {
        let r = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .expect("create bucket");
        assert!(r.status().is_success(), "create bucket: {}", r.status());
        S3Config {
            bucket: name.to_owned(),
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".to_owned(),
            access_key_id: "testing".to_owned(),
            secret_access_key: "testing".to_owned(),
        }
    }
}
