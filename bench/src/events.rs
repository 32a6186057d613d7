//! The events scenarios, on a fresh server per backend: how long a KV write takes to
//! start its trigger's handler on an idle server, and how many async-route calls per
//! second the outbox and the dispatcher sustain, against the same script routed sync.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use hyper::{Method, StatusCode};

use crate::api::Api;
use crate::load::{self, LoadResult};
use crate::server::Binary;
use crate::session::{Options, Row, Session, APP, APP_HOST};

/// The route doing the write: the key from the path, the time as the value.
const PUT_SCRIPT: &str = r#"kv::collection("jobs").set(ctx.request.params.k, time::now_ms())"#;
/// The trigger's handler: its first statement stores how long ago the write was.
const HANDLER_SCRIPT: &str =
    r#"kv::collection("lat").set(ctx.event.kv.key, time::now_ms() - ctx.event.kv.value)"#;
/// The async and the sync route's script.
const TRIVIAL_SCRIPT: &str = "()";
const ASYNC_PATH: &str = "/a";
const SYNC_PATH: &str = "/s";
/// Between one latency request's answer and the next request.
pub const PAUSE: Duration = Duration::from_millis(15);
/// Finished runs by status, routes and deliveries alike.
const OK_RUNS: &str = r#"picloud_executions_total{status="ok"}"#;
const POLL: Duration = Duration::from_millis(5);
/// For the latency handlers to finish after the last request.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// For the async backlog to run after the load.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Write → handler start, on an idle server.
pub struct Latency {
    /// Milliseconds, sorted: both ends are `time::now_ms()`, whole milliseconds.
    pub samples_ms: Vec<i64>,
    /// Client round trip of each write request (the sync route doing the write), sorted.
    pub round_trips: Vec<Duration>,
}

impl Latency {
    /// The `q` quantile (0..=1) of the samples, in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> i64 {
        nearest_rank(&self.samples_ms, q).unwrap_or(-1)
    }

    pub fn round_trip_ms(&self, q: f64) -> f64 {
        nearest_rank(&self.round_trips, q).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    }
}

fn nearest_rank<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let last = sorted.len().checked_sub(1)?;
    let rank = ((last as f64) * q).round() as usize;
    sorted.get(rank.min(last)).copied()
}

/// The async route under load, then until its backlog has run.
pub struct AsyncRun {
    /// 202 answers: `ok` in the window, `total_ok` warm-up included.
    pub load: LoadResult,
    /// Deliveries finished when the load ended.
    pub done_at_load_end: u64,
    /// Deliveries finished when the drain ended (all of them unless it timed out).
    pub done: u64,
    /// From the end of the load until every accepted event had run.
    pub drain: Duration,
    /// Server CPU per accepted event, until the last execution record was written.
    pub cpu_per_event: f64,
}

impl AsyncRun {
    /// Every accepted event ran before the deadline.
    pub fn complete(&self) -> bool {
        self.done >= self.load.total_ok
    }

    /// Events run over load time (warm-up included) plus drain time.
    pub fn processed_per_sec(&self) -> f64 {
        self.done as f64 / (self.load.elapsed + self.drain).as_secs_f64()
    }
}

pub struct EventsRun {
    pub backend: String,
    pub latency: Latency,
    pub async_run: AsyncRun,
    /// The same script as a sync route, through the same load generator.
    pub sync: Row,
}

/// All the events scenarios on one fresh server (`database_url`: PostgreSQL).
pub async fn run(
    bin: &Binary,
    opts: &Options,
    backend: &str,
    database_url: Option<String>,
) -> Result<EventsRun> {
    let session = Session::open(bin, database_url, None).await?;
    set_up(&session.api).await?;
    eprintln!(
        "  trigger latency: {} writes, one at a time, {PAUSE:?} apart",
        opts.event_requests
    );
    let latency = latency(&session, opts.event_requests).await?;
    let async_run = async_throughput(&session, opts).await?;
    let sync_target = session.app_target(Method::GET, SYNC_PATH, StatusCode::NO_CONTENT);
    let sync_label = format!("sync GET {SYNC_PATH} ({backend})");
    let sync = session
        .measure(&sync_label, &sync_target, opts.event_load, true)
        .await?;
    session.server.stop().await?;
    Ok(EventsRun {
        backend: backend.to_owned(),
        latency,
        async_run,
        sync,
    })
}

async fn set_up(api: &Api) -> Result<()> {
    let put = api.create_script(APP, "put", PUT_SCRIPT).await?;
    api.add_route(&put, "POST", "/put/{k}", "sync").await?;
    let handler = api.create_script(APP, "on_job", HANDLER_SCRIPT).await?;
    api.create_kv_trigger(APP, &handler, "jobs").await?;
    let trivial = api.create_script(APP, "trivial", TRIVIAL_SCRIPT).await?;
    api.add_route(&trivial, "POST", ASYNC_PATH, "async").await?;
    api.add_route(&trivial, "GET", SYNC_PATH, "sync").await?;
    Ok(())
}

async fn ok_runs(api: &Api) -> Result<u64> {
    Ok(api.metric(OK_RUNS).await? as u64)
}

/// Polls `/metrics` until `goal` runs have finished or `deadline` passes; returns the
/// count last seen.
async fn wait_for_runs(api: &Api, goal: u64, deadline: Instant) -> Result<u64> {
    loop {
        let seen = ok_runs(api).await?;
        if seen >= goal || Instant::now() > deadline {
            return Ok(seen);
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn latency(session: &Session, requests: usize) -> Result<Latency> {
    let api = &session.api;
    let before = ok_runs(api).await?;
    let mut round_trips = Vec::with_capacity(requests);
    for i in 0..requests {
        let path = format!("/put/k{i:05}");
        let sent = Instant::now();
        let reply = api.send(Method::POST, &path, Some(APP_HOST), None).await?;
        round_trips.push(sent.elapsed());
        ensure!(
            reply.status.is_success(),
            "POST {path}: HTTP {}",
            reply.status
        );
        tokio::time::sleep(PAUSE).await;
    }
    // Each request is one route run and one handler run.
    let goal = before + 2 * requests as u64;
    let seen = wait_for_runs(api, goal, Instant::now() + SETTLE_TIMEOUT).await?;
    ensure!(
        seen >= goal,
        "{} of {requests} trigger handlers ran",
        (seen - before).saturating_sub(requests as u64)
    );
    let mut samples_ms = lat_samples(api).await?;
    ensure!(
        samples_ms.len() == requests,
        "{} latency entries for {requests} writes",
        samples_ms.len()
    );
    samples_ms.sort_unstable();
    round_trips.sort_unstable();
    Ok(Latency {
        samples_ms,
        round_trips,
    })
}

/// The handler's measurements, read back through the admin KV browser.
async fn lat_samples(api: &Api) -> Result<Vec<i64>> {
    api.kv_entries(APP, "lat")
        .await?
        .iter()
        .map(|e| {
            e["value"]
                .as_i64()
                .with_context(|| format!("lat entry is not an integer: {e}"))
        })
        .collect()
}

async fn async_throughput(session: &Session, opts: &Options) -> Result<AsyncRun> {
    let target = session.app_target(Method::POST, ASYNC_PATH, StatusCode::ACCEPTED);
    let config = opts.event_load;
    eprintln!(
        "  async POST {ASYNC_PATH}: {} connections, {:?} warm-up + {:?}, then until every event ran",
        config.connections, config.warmup, config.duration
    );
    let api = &session.api;
    let before = ok_runs(api).await?;
    let cpu_before = session.server.cpu_time()?;
    let load = load::run(&target, config).await?;
    let done_at_load_end = ok_runs(api).await?.saturating_sub(before);
    let seen = wait_for_runs(api, before + load.total_ok, load.ended + DRAIN_TIMEOUT).await?;
    let drain = load.ended.elapsed();
    let done = seen.saturating_sub(before);
    if done < load.total_ok {
        eprintln!(
            "  only {done} of {} accepted events ran within {DRAIN_TIMEOUT:?}",
            load.total_ok
        );
    }
    // The deliveries' execution records belong to their cost too.
    session
        .drain_records(Instant::now() + DRAIN_TIMEOUT)
        .await?;
    let cpu = session.server.cpu_time()?.saturating_sub(cpu_before);
    Ok(AsyncRun {
        cpu_per_event: cpu.as_secs_f64() / load.total_ok.max(1) as f64,
        load,
        done_at_load_end,
        done,
        drain,
    })
}

#[cfg(test)]
mod tests {
    use super::nearest_rank;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<i64> = (1..=101).collect();
        assert_eq!(nearest_rank(&v, 0.5), Some(51));
        assert_eq!(nearest_rank(&v, 0.99), Some(100));
        assert_eq!(nearest_rank(&v, 1.0), Some(101));
        assert_eq!(nearest_rank::<i64>(&[], 0.5), None);
    }
}
