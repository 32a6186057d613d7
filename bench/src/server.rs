//! Spawning, watching and stopping the `picloud` binary under test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hyper::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::api::{Api, METRICS_TOKEN};

pub const ADMIN_EMAIL: &str = "bench@example.com";
pub const ADMIN_PASSWORD: &str = "bench-password-1";

const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// How to start one server.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub executor_threads: Option<usize>,
    /// Bootstrap the bench admin and serve the baseline handler.
    pub bench_mode: bool,
}

/// The binary and the key every launch uses.
pub struct Binary {
    path: PathBuf,
    secret_key: String,
    clock_ticks_per_sec: u64,
}

impl Binary {
    /// Checks the binary runs and asks it for a fresh master key.
    pub async fn new(path: &Path) -> Result<Self> {
        let out = Command::new(path)
            .arg("keygen")
            .output()
            .await
            .with_context(|| format!("running {} keygen", path.display()))?;
        if !out.status.success() {
            bail!("{} keygen failed: {}", path.display(), out.status);
        }
        let secret_key = String::from_utf8(out.stdout)?.trim().to_owned();
        Ok(Self {
            path: path.to_owned(),
            secret_key,
            clock_ticks_per_sec: clock_ticks_per_sec().await,
        })
    }

    fn command(&self, launch: &Launch) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.arg("serve");
        // A clean environment: nothing from the caller's shell leaks in.
        for (key, _) in std::env::vars() {
            if key.starts_with("PICLOUD_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("PICLOUD_SECRET_KEY", &self.secret_key)
            .env("PICLOUD_DATA_DIR", &launch.data_dir)
            .env("PICLOUD_LISTEN", "127.0.0.1:0")
            .env("PICLOUD_METRICS_TOKEN", METRICS_TOKEN)
            // `PICLOUD_BENCH_SERVER_LOG` (a log filter) shows the server's log, e.g.
            // `sqlx::query=debug` for every statement with its time.
            .env(
                "PICLOUD_LOG",
                std::env::var("PICLOUD_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            );
        if let Some(url) = &launch.database_url {
            cmd.env("PICLOUD_DATABASE_URL", url);
        }
        if let Some(n) = launch.executor_threads {
            cmd.env("PICLOUD_EXECUTOR_THREADS", n.to_string());
        }
        if launch.bench_mode {
            cmd.env("PICLOUD_BENCH_BASELINE", "1")
                .env("PICLOUD_ADMIN_EMAIL", ADMIN_EMAIL)
                .env("PICLOUD_ADMIN_PASSWORD", ADMIN_PASSWORD);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        cmd
    }

    /// Starts a server and waits for its `listening on` line.
    pub async fn spawn(&self, launch: &Launch) -> Result<Server> {
        let spawned = Instant::now();
        let mut child = self.command(launch).spawn().context("spawning picloud")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(START_TIMEOUT, listening_addr(&mut lines))
            .await
            .context("no `listening on` line in time")??;
        let listening = spawned.elapsed();
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let pid = child.id().context("picloud exited at once")?;
        Ok(Server {
            child,
            pid,
            addr,
            spawned,
            listening,
            clock_ticks_per_sec: self.clock_ticks_per_sec,
        })
    }
}

/// `getconf CLK_TCK`: the unit of the CPU times in `/proc/PID/stat` (almost always 100).
async fn clock_ticks_per_sec() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().await;
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(100)
}

async fn listening_addr(lines: &mut Lines<BufReader<ChildStdout>>) -> Result<SocketAddr> {
    while let Some(line) = lines.next_line().await? {
        if let Some(url) = line.strip_prefix("listening on http://") {
            return url.trim().parse().context("bad listening address");
        }
    }
    bail!("picloud exited before listening")
}

pub struct Server {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    spawned: Instant,
    /// From spawn to the `listening on` line.
    pub listening: Duration,
    clock_ticks_per_sec: u64,
}

impl Server {
    /// Polls `/readyz` every millisecond; returns the time from spawn to the first 200.
    pub async fn wait_ready(&self) -> Result<Duration> {
        let api = Api::new(self.addr);
        let deadline = self.spawned + START_TIMEOUT;
        loop {
            if let Ok(reply) = api.get("/readyz").await {
                if reply.status == StatusCode::OK {
                    return Ok(self.spawned.elapsed());
                }
            }
            if Instant::now() > deadline {
                bail!("/readyz never answered 200");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Resident set size now (`VmRSS`) and at its peak (`VmHWM`), in KiB.
    pub fn memory_kib(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .context("reading /proc/PID/status")?;
        Ok((
            status_field(&status, "VmRSS:")?,
            status_field(&status, "VmHWM:")?,
        ))
    }

    /// CPU time the server has used so far, all threads, user plus system.
    pub fn cpu_time(&self) -> Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .context("reading /proc/PID/stat")?;
        // Fields after the command name (which may contain spaces) and its `)`;
        // utime and stime are fields 14 and 15 of the whole line.
        let rest = stat.rsplit_once(')').context("bad /proc/PID/stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| -> Result<u64> {
            let field = fields.get(i).context("short /proc/PID/stat")?;
            Ok(field.parse()?)
        };
        let total = ticks(11)? + ticks(12)?;
        Ok(Duration::from_secs_f64(
            total as f64 / self.clock_ticks_per_sec as f64,
        ))
    }

    /// SIGTERM (graceful shutdown), then SIGKILL if it takes too long.
    pub async fn stop(mut self) -> Result<()> {
        let term = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if term.is_ok_and(|s| s.success()) {
            if let Ok(waited) = tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
                waited?;
                return Ok(());
            }
            eprintln!("picloud {} ignored SIGTERM; killing it", self.pid);
        }
        self.child.kill().await.context("killing picloud")
    }
}

fn status_field(status: &str, name: &str) -> Result<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {name} in /proc/PID/status"))
}
