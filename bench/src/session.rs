//! A running server with the bench app set up, and what one load run against it
//! measured: what every scenario shares.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::api::{Api, EXECUTION_HEADER};
use crate::load::{self, LoadConfig, LoadResult, Target};
use crate::server::{Binary, Launch, Server, ADMIN_EMAIL, ADMIN_PASSWORD};

pub const APP: &str = "bench";
pub const APP_HOST: &str = "bench.localhost";
const SCRIPT: &str = r#"#{hello: "world", n: 42}"#;
const ROUTE: &str = "/hello";
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Options {
    pub picloud: PathBuf,
    pub load: LoadConfig,
    pub threads: Vec<usize>,
    pub startup_runs: usize,
    pub idle: Duration,
    pub postgres_url: Option<String>,
    /// Run the events scenarios.
    pub events: bool,
    /// The async and sync event-route loads: `load` with its own window.
    pub event_load: LoadConfig,
    /// Sequential writes of the trigger-latency scenario.
    pub event_requests: usize,
    /// The service-calls scenario, and whether it runs alone.
    pub calls: Calls,
    /// Each service-calls route's load: `load` with its own window.
    pub calls_load: LoadConfig,
    /// Documents of the docs scenario; 0 skips it.
    pub docs: usize,
    /// The script-values scenario.
    pub values: bool,
    /// Page through the first server's execution records to check their count (takes
    /// minutes after a default run; A/B comparisons skip it).
    pub count_records: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Calls {
    Skip,
    Run,
    /// Only the service-calls scenario (quick A/B runs of it).
    Only,
}

/// One load run, and for script routes how the execution records kept up.
pub struct Row {
    pub label: String,
    pub load: LoadResult,
    /// Server CPU seconds (all threads) per response, warm-up (and for script
    /// routes, the record drain) included.
    pub cpu_per_request: f64,
    pub drain: Option<Drain>,
}

pub struct Drain {
    /// From the end of the load until a run started after it is listed.
    pub visible_after: Duration,
    /// Records of the run (warm-up included) over load time plus drain time.
    pub records_per_sec: f64,
}

/// Records listed against runs counted, on the main SQLite server.
pub struct RecordCheck {
    pub served: u64,
    pub metric: u64,
    /// Records listed and how long paging through them took; `None` when not counted
    /// (`--count-records false`).
    pub listed: Option<(u64, Duration)>,
}

pub struct Session {
    pub server: Server,
    pub api: Api,
    _dir: TempDir,
}

impl Session {
    pub async fn open(
        bin: &Binary,
        database_url: Option<String>,
        threads: Option<usize>,
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let launch = Launch {
            data_dir: dir.path().to_owned(),
            database_url,
            executor_threads: threads,
            bench_mode: true,
        };
        let server = bin.spawn(&launch).await?;
        server.wait_ready().await?;
        let mut api = Api::new(server.addr);
        api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await?;
        api.create_app(APP).await?;
        api.create_route(APP, "hello", SCRIPT, ROUTE).await?;
        let session = Self {
            server,
            api,
            _dir: dir,
        };
        session.check_answers().await?;
        Ok(session)
    }

    /// The baseline and both forms of the script route answer the same JSON.
    async fn check_answers(&self) -> Result<()> {
        let expected = json!({"hello": "world", "n": 42});
        for target in [self.baseline(), self.by_host(), self.by_path()] {
            let reply = self
                .api
                .send(Method::GET, &target.path, Some(&target.host), None)
                .await?;
            ensure!(
                reply.status == StatusCode::OK,
                "GET {} (Host {}): HTTP {}",
                target.path,
                target.host,
                reply.status
            );
            let body: Value = reply.json()?;
            ensure!(
                body == expected,
                "GET {}: unexpected body {body}",
                target.path
            );
        }
        Ok(())
    }

    fn target(&self, host: &str, path: &str) -> Target {
        Target {
            addr: self.server.addr,
            method: Method::GET,
            host: host.to_owned(),
            path: path.to_owned(),
            expect: StatusCode::OK,
        }
    }

    /// A route of the bench app by `Host` header.
    pub fn app_target(&self, method: Method, path: &str, expect: StatusCode) -> Target {
        Target {
            method,
            expect,
            ..self.target(APP_HOST, path)
        }
    }

    pub fn baseline(&self) -> Target {
        self.target(&self.server.addr.to_string(), "/__bench/baseline")
    }

    pub fn by_host(&self) -> Target {
        self.target(APP_HOST, ROUTE)
    }

    pub fn by_path(&self) -> Target {
        self.target(
            &self.server.addr.to_string(),
            &format!("/apps/{APP}{ROUTE}"),
        )
    }

    pub async fn measure(
        &self,
        label: &str,
        target: &Target,
        config: LoadConfig,
        script: bool,
    ) -> Result<Row> {
        eprintln!(
            "  {label}: {} connections, {:?} warm-up + {:?}",
            config.connections, config.warmup, config.duration
        );
        let cpu_before = self.server.cpu_time()?;
        let load = load::run(target, config).await?;
        // For script routes, the records written after the load belong to it too.
        let drain = if script {
            Some(self.drain(&load).await?)
        } else {
            None
        };
        let cpu = self.server.cpu_time()?.saturating_sub(cpu_before);
        let cpu_per_request = cpu.as_secs_f64() / load.total_responses.max(1) as f64;
        Ok(Row {
            label: label.to_owned(),
            load,
            cpu_per_request,
            drain,
        })
    }

    /// Times the execution records' drain after a script load.
    async fn drain(&self, load: &LoadResult) -> Result<Drain> {
        self.drain_records(load.ended + DRAIN_TIMEOUT).await?;
        let visible_after = load.ended.elapsed();
        let records = (load.total_responses + 1) as f64;
        Ok(Drain {
            visible_after,
            records_per_sec: records / (load.elapsed + visible_after).as_secs_f64(),
        })
    }

    /// Sends one more run and waits until its record is listed: the writer is FIFO,
    /// so every record queued before it is written too.
    pub async fn drain_records(&self, deadline: Instant) -> Result<()> {
        let reply = self
            .api
            .send(Method::GET, ROUTE, Some(APP_HOST), None)
            .await?;
        let id = reply
            .headers
            .get(EXECUTION_HEADER)
            .and_then(|v| v.to_str().ok())
            .context("no execution id header")?
            .to_owned();
        while !self.api.execution_exists(APP, &id).await? {
            if Instant::now() > deadline {
                bail!("execution {id} not listed in time");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    pub async fn check_records(&self, served: u64, count: bool) -> Result<RecordCheck> {
        let metric = self.api.executions_total_metric().await?;
        let listed = if count {
            let started = Instant::now();
            let listed = self.api.count_executions(APP).await?;
            Some((listed, started.elapsed()))
        } else {
            None
        };
        Ok(RecordCheck {
            served,
            metric,
            listed,
        })
    }
}

/// A check mark for the reports' target columns.
pub fn mark(ok: bool) -> &'static str {
    if ok {
        "✅"
    } else {
        "❌"
    }
}
