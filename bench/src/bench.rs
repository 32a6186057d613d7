//! The scenarios, in order, each against a freshly spawned server.

use std::time::Duration;

use anyhow::Result;
use tempfile::TempDir;

use crate::calls::{self, CallsRun};
use crate::docs::{self, DocsRun};
use crate::events::{self, EventsRun};
use crate::pg::ScratchDatabase;
use crate::server::{Binary, Launch};
use crate::session::{Calls, Options, RecordCheck, Row, Session};
use crate::values::{self, ValuesRun};

#[derive(Clone, Copy)]
pub struct StartSample {
    pub listening: Duration,
    pub ready: Duration,
}

pub struct Memory {
    pub idle_rss_kib: u64,
    pub peak_rss_kib: u64,
}

pub struct Results {
    pub baseline: Row,
    pub host: Row,
    pub path: Row,
    pub memory: Memory,
    pub records: RecordCheck,
    pub sweep: Vec<(usize, Row)>,
    pub postgres: Option<(Row, Row)>,
    pub start_fresh: Vec<StartSample>,
    pub start_existing: Vec<StartSample>,
    /// SQLite, then PostgreSQL when asked for; empty with `--events false`.
    pub events: Vec<EventsRun>,
    /// SQLite, then PostgreSQL when asked for; empty with `--docs 0`.
    pub docs: Vec<DocsRun>,
    /// SQLite, then PostgreSQL when asked for; empty with `--calls false`.
    pub calls: Vec<CallsRun>,
    /// With `--values true` (the default).
    pub values: Option<ValuesRun>,
    pub loadavg_before: String,
    pub loadavg_after: String,
}

/// A running server with the bench app set up and an admin session.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

pub async fn run(opts: &Options) -> Result<Results> {
    let loadavg_before = loadavg();
    let bin = Binary::new(&opts.picloud).await?;
    eprintln!(
        "start-up, {} runs each (fresh, existing data dir)",
        opts.startup_runs
    );
    let (start_fresh, start_existing) = startup(&bin, opts.startup_runs).await?;

    eprintln!("SQLite, default executor threads");
    let (baseline, host, path, memory, records) = main_server(&bin, opts).await?;

    let mut sweep = Vec::new();
    for &threads in &opts.threads {
        eprintln!("SQLite, PICLOUD_EXECUTOR_THREADS={threads}");
        let session = Session::open(&bin, None, Some(threads)).await?;
        let row = session
            .measure(
                &format!("threads={threads}"),
                &session.by_host(),
                opts.load,
                true,
            )
            .await?;
        session.server.stop().await?;
        sweep.push((threads, row));
    }

    let postgres = match &opts.postgres_url {
        Some(url) => Some(postgres(&bin, opts, url).await?),
        None => None,
    };
    let events = if opts.events {
        events_runs(&bin, opts).await?
    } else {
        Vec::new()
    };
    let calls = if opts.calls == Calls::Skip {
        Vec::new()
    } else {
        calls_runs(&bin, opts).await?
    };
    let docs = if opts.docs > 0 {
        docs_runs(&bin, opts).await?
    } else {
        Vec::new()
    };
    let values = if opts.values {
        eprintln!("script values, SQLite");
        Some(values::run(&bin, opts).await?)
    } else {
        None
    };
    Ok(Results {
        values,
        calls,
        baseline,
        host,
        path,
        memory,
        records,
        sweep,
        postgres,
        start_fresh,
        start_existing,
        events,
        docs,
        loadavg_before,
        loadavg_after: loadavg(),
    })
}

async fn main_server(bin: &Binary, opts: &Options) -> Result<(Row, Row, Row, Memory, RecordCheck)> {
    let session = Session::open(bin, None, None).await?;
    tokio::time::sleep(opts.idle).await;
    let (idle_rss_kib, _) = session.server.memory_kib()?;
    let baseline = session
        .measure("baseline", &session.baseline(), opts.load, false)
        .await?;
    let host = session
        .measure("script, Host header", &session.by_host(), opts.load, true)
        .await?;
    let path = session
        .measure("script, /apps/ path", &session.by_path(), opts.load, true)
        .await?;
    let (_, peak_rss_kib) = session.server.memory_kib()?;
    // Two answer checks in set-up, one drain marker per script run.
    let served = 2 + host.load.total_ok + path.load.total_ok + 2;
    let records = session.check_records(served, opts.count_records).await?;
    session.server.stop().await?;
    let memory = Memory {
        idle_rss_kib,
        peak_rss_kib,
    };
    Ok((baseline, host, path, memory, records))
}

async fn postgres(bin: &Binary, opts: &Options, url: &str) -> Result<(Row, Row)> {
    let db = ScratchDatabase::create(url).await?;
    eprintln!("PostgreSQL ({})", db.name);
    let outcome = async {
        let session = Session::open(bin, Some(db.url.clone()), None).await?;
        let baseline = session
            .measure(
                "baseline (PostgreSQL)",
                &session.baseline(),
                opts.load,
                false,
            )
            .await?;
        let script = session
            .measure(
                "script, Host header (PostgreSQL)",
                &session.by_host(),
                opts.load,
                true,
            )
            .await?;
        session.server.stop().await?;
        Ok((baseline, script))
    }
    .await;
    db.drop_database().await?;
    outcome
}

async fn events_runs(bin: &Binary, opts: &Options) -> Result<Vec<EventsRun>> {
    eprintln!("events, SQLite");
    let mut runs = vec![events::run(bin, opts, "SQLite", None).await?];
    if let Some(url) = &opts.postgres_url {
        let db = ScratchDatabase::create(url).await?;
        eprintln!("events, PostgreSQL ({})", db.name);
        let outcome = events::run(bin, opts, "PostgreSQL", Some(db.url.clone())).await;
        db.drop_database().await?;
        runs.push(outcome?);
    }
    Ok(runs)
}

/// The service-calls scenario on SQLite, then PostgreSQL when asked for.
pub async fn calls_runs(bin: &Binary, opts: &Options) -> Result<Vec<CallsRun>> {
    eprintln!("service calls, SQLite");
    let mut runs = vec![calls::run(bin, opts, "SQLite", None).await?];
    if let Some(url) = &opts.postgres_url {
        let db = ScratchDatabase::create(url).await?;
        eprintln!("service calls, PostgreSQL ({})", db.name);
        let outcome = calls::run(bin, opts, "PostgreSQL", Some(db.url.clone())).await;
        db.drop_database().await?;
        runs.push(outcome?);
    }
    Ok(runs)
}

async fn docs_runs(bin: &Binary, opts: &Options) -> Result<Vec<DocsRun>> {
    eprintln!("documents, SQLite");
    let mut runs = vec![docs::run(bin, opts, "SQLite", None).await?];
    if let Some(url) = &opts.postgres_url {
        let db = ScratchDatabase::create(url).await?;
        eprintln!("documents, PostgreSQL ({})", db.name);
        let outcome = docs::run(bin, opts, "PostgreSQL", Some(&db)).await;
        db.drop_database().await?;
        runs.push(outcome?);
    }
    Ok(runs)
}

async fn startup(bin: &Binary, runs: usize) -> Result<(Vec<StartSample>, Vec<StartSample>)> {
    let mut fresh = Vec::with_capacity(runs);
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        fresh.push(start_once(bin, &dir).await?);
    }
    let dir = tempfile::tempdir()?;
    start_once(bin, &dir).await?; // creates and migrates the database
    let mut existing = Vec::with_capacity(runs);
    for _ in 0..runs {
        existing.push(start_once(bin, &dir).await?);
    }
    Ok((fresh, existing))
}

async fn start_once(bin: &Binary, dir: &TempDir) -> Result<StartSample> {
    let launch = Launch {
        data_dir: dir.path().to_owned(),
        ..Launch::default()
    };
    let server = bin.spawn(&launch).await?;
    let ready = server.wait_ready().await?;
    let sample = StartSample {
        listening: server.listening,
        ready,
    };
    server.stop().await?;
    Ok(sample)
}
