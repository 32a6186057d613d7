//! The load generator: N keep-alive HTTP/1.1 connections, one per task, each sending
//! its requests (without a body) back to back. Every latency of the measured window is
//! recorded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What to request: `method path` with a `Host` header, on `addr`; `expect` is the
/// status that counts as a success.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub method: Method,
    pub host: String,
    pub path: String,
    pub expect: StatusCode,
}

#[derive(Clone, Copy, Debug)]
pub struct LoadConfig {
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// What one load run measured.
#[derive(Debug)]
pub struct LoadResult {
    /// Responses with the expected status to requests started inside the measured
    /// window.
    pub ok: u64,
    /// Other responses and transport errors inside the measured window.
    pub errors: u64,
    /// Every response (any status), warm-up included.
    pub total_responses: u64,
    /// Responses with the expected status, warm-up included.
    pub total_ok: u64,
    pub connections: usize,
    /// The measured window.
    pub window: Duration,
    /// Warm-up plus window, as it actually ran.
    pub elapsed: Duration,
    /// When the last connection finished its last request.
    pub ended: Instant,
    /// Microseconds, sorted, one per request of the window (errors included).
    latencies_us: Vec<u32>,
}

impl LoadResult {
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64()
    }

    /// The `q` quantile (0..=1) of the window's latencies, in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let Some(last) = self.latencies_us.len().checked_sub(1) else {
            return f64::NAN;
        };
        let rank = ((last as f64) * q).round() as usize;
        f64::from(self.latencies_us[rank.min(last)]) / 1000.0
    }
}

#[derive(Clone, Copy)]
struct Phases {
    measure_from: Instant,
    end: Instant,
}

#[derive(Default)]
struct TaskStats {
    ok: u64,
    errors: u64,
    total_responses: u64,
    total_ok: u64,
    latencies_us: Vec<u32>,
}

/// Runs the load; fails if no connection could be opened at all.
pub async fn run(target: &Target, config: LoadConfig) -> Result<LoadResult> {
    let target = Arc::new(target.clone());
    let start = Instant::now();
    let phases = Phases {
        measure_from: start + config.warmup,
        end: start + config.warmup + config.duration,
    };
    let tasks: Vec<_> = (0..config.connections)
        .map(|_| tokio::spawn(worker(target.clone(), phases)))
        .collect();
    let mut merged = TaskStats::default();
    for task in tasks {
        let stats = task.await.context("load task panicked")??;
        merged.ok += stats.ok;
        merged.errors += stats.errors;
        merged.total_responses += stats.total_responses;
        merged.total_ok += stats.total_ok;
        merged.latencies_us.extend(stats.latencies_us);
    }
    let ended = Instant::now();
    merged.latencies_us.sort_unstable();
    Ok(LoadResult {
        ok: merged.ok,
        errors: merged.errors,
        total_responses: merged.total_responses,
        total_ok: merged.total_ok,
        connections: config.connections,
        window: config.duration,
        elapsed: ended - start,
        ended,
        latencies_us: merged.latencies_us,
    })
}

async fn worker(target: Arc<Target>, phases: Phases) -> Result<TaskStats> {
    let mut stats = TaskStats {
        latencies_us: Vec::with_capacity(1 << 16),
        ..TaskStats::default()
    };
    let mut sender = connect(target.addr).await?;
    loop {
        let sent = Instant::now();
        if sent >= phases.end {
            break;
        }
        let outcome = request(&mut sender, &target).await;
        let measured = sent >= phases.measure_from;
        if measured {
            let micros = sent.elapsed().as_micros();
            stats
                .latencies_us
                .push(u32::try_from(micros).unwrap_or(u32::MAX));
        }
        match outcome {
            Ok(status) => {
                let ok = status == target.expect;
                stats.total_responses += 1;
                stats.total_ok += u64::from(ok);
                if measured {
                    stats.ok += u64::from(ok);
                    stats.errors += u64::from(!ok);
                }
            }
            Err(_) => {
                stats.errors += u64::from(measured);
                sender = connect(target.addr).await?;
            }
        }
    }
    Ok(stats)
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes the connection.
        let _ = conn.await;
    });
    Ok(sender)
}

async fn request(sender: &mut SendRequest<Empty<Bytes>>, target: &Target) -> Result<StatusCode> {
    sender.ready().await?;
    let req = Request::builder()
        .method(target.method.clone())
        .uri(target.path.as_str())
        .header(header::HOST, target.host.as_str())
        .body(Empty::new())?;
    let response = sender.send_request(req).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status)
}
