//! The files and pub/sub scenario, on a fresh SQLite server: file create and get
//! through the admin API against a plain `fs::write`/`fs::read` of the same sizes on
//! the same filesystem in the same run, the server's peak RSS while 8 clients upload
//! 100 MiB files at once, and `pubsub::publish_durable` → handler start for 1 and 10
//! subscribers.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use hyper::body::Bytes;
use hyper::Method;

use crate::api::Api;
use crate::server::Binary;
use crate::session::{Session, APP, APP_HOST};

/// (label, bytes, operations per side)
const SIZES: &[(&str, usize, usize)] = &[("4 KiB", 4 << 10, 300), ("4 MiB", 4 << 20, 25)];
const UPLOADERS: usize = 8;
const BIG: usize = 100 << 20;
const PUBLISHES: usize = 100;
const PAUSE: Duration = Duration::from_millis(15);
const SETTLE: Duration = Duration::from_secs(60);

pub struct SizeRow {
    pub label: &'static str,
    pub bytes: usize,
    /// Seconds per operation.
    pub create: f64,
    pub get: f64,
    pub fs_write: f64,
    pub fs_write_sync: f64,
    pub fs_read: f64,
}

pub struct FilesRun {
    pub sizes: Vec<SizeRow>,
    /// KiB: VmHWM before the concurrent uploads, after them.
    pub peak_before: u64,
    pub peak_after: u64,
    pub uploads: Duration,
    /// (subscribers, p50 ms, p95 ms, deliveries)
    pub pubsub: Vec<(usize, i64, i64, usize)>,
}

fn per_op(elapsed: Duration, n: usize) -> f64 {
    elapsed.as_secs_f64() / n as f64
}

async fn time_server(api: &Api, payload: &Bytes, n: usize) -> Result<(f64, f64)> {
    let mut ids = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let reply = api
            .send_bytes(
                Method::POST,
                &format!("/api/v1/admin/apps/{APP}/files/bench?name=f{i}.bin"),
                "application/octet-stream",
                payload.clone(),
            )
            .await?
            .expect_success("upload")?;
        ids.push(reply.json()?["id"].as_str().context("file id")?.to_owned());
    }
    let create = per_op(started.elapsed(), n);
    let started = Instant::now();
    for id in &ids {
        let reply = api
            .get(&format!(
                "/api/v1/admin/apps/{APP}/files/bench/{id}/content"
            ))
            .await?
            .expect_success("download")?;
        ensure!(reply.body.len() == payload.len(), "short download");
    }
    Ok((create, per_op(started.elapsed(), n)))
}

/// The same bytes written (with and without fsync) and read back, `n` times each, in
/// a directory on the data directory's filesystem.
fn time_fs(dir: &std::path::Path, payload: &[u8], n: usize) -> Result<(f64, f64, f64)> {
    let started = Instant::now();
    for i in 0..n {
        std::fs::write(dir.join(format!("w{i}")), payload)?;
    }
    let write = per_op(started.elapsed(), n);
    let started = Instant::now();
    for i in 0..n {
        let mut f = std::fs::File::create(dir.join(format!("s{i}")))?;
        f.write_all(payload)?;
        f.sync_all()?;
    }
    let write_sync = per_op(started.elapsed(), n);
    let started = Instant::now();
    for i in 0..n {
        let read = std::fs::read(dir.join(format!("s{i}")))?;
        ensure!(read.len() == payload.len(), "short read");
    }
    Ok((write, write_sync, per_op(started.elapsed(), n)))
}

async fn pubsub_latency(api: &Api, subscribers: usize) -> Result<(i64, i64, usize)> {
    let topic = format!("bench.s{subscribers}");
    let collection = format!("lat{subscribers}");
    let handler = api
        .create_script(
            APP,
            &format!("sub{subscribers}"),
            &format!(
                r#"kv::collection("{collection}").set(ctx.event.id, time::now_ms() - ctx.event.pubsub.message.t)"#
            ),
        )
        .await?;
    for _ in 0..subscribers {
        api.create_trigger(
            APP,
            "pubsub",
            &serde_json::json!({"script_id": handler, "topic": "bench.*"}),
        )
        .await?;
    }
    let publisher = api
        .create_script(
            APP,
            &format!("pub{subscribers}"),
            &format!(r#"pubsub::publish_durable("{topic}", #{{t: time::now_ms()}}); ()"#),
        )
        .await?;
    let path = format!("/pub{subscribers}");
    api.add_route(&publisher, "POST", &path, "sync").await?;
    for _ in 0..PUBLISHES {
        api.send(Method::POST, &path, Some(APP_HOST), None)
            .await?
            .expect_success("publish")?;
        tokio::time::sleep(PAUSE).await;
    }
    let goal = PUBLISHES * subscribers;
    let deadline = Instant::now() + SETTLE;
    let mut samples = loop {
        let entries = api.kv_entries(APP, &collection).await?;
        if entries.len() >= goal || Instant::now() > deadline {
            break entries
                .iter()
                .filter_map(|e| e["value"].as_i64())
                .collect::<Vec<_>>();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    ensure!(
        samples.len() == goal,
        "{} of {goal} deliveries ran",
        samples.len()
    );
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.95), samples.len()))
}

pub async fn run(bin: &Binary) -> Result<FilesRun> {
    let session = Session::open(bin, None, None).await?;
    let api = &session.api;
    let scratch = tempfile::tempdir()?;
    let mut sizes = Vec::new();
    for &(label, bytes, n) in SIZES {
        eprintln!("  files: {n} × {label}");
        let payload = Bytes::from(vec![0x5a_u8; bytes]);
        let (create, get) = time_server(api, &payload, n).await?;
        let (fs_write, fs_write_sync, fs_read) = time_fs(scratch.path(), &payload, n)?;
        sizes.push(SizeRow {
            label,
            bytes,
            create,
            get,
            fs_write,
            fs_write_sync,
            fs_read,
        });
    }
    eprintln!("  files: {UPLOADERS} concurrent uploads of 100 MiB");
    let (_, peak_before) = session.server.memory_kib()?;
    let big = Bytes::from(vec![0x33_u8; BIG]);
    let started = Instant::now();
    let uploads = (0..UPLOADERS).map(|i| {
        let api = api.clone();
        let big = big.clone();
        tokio::spawn(async move {
            api.send_bytes(
                Method::POST,
                &format!("/api/v1/admin/apps/{APP}/files/big?name=big{i}.bin"),
                "application/octet-stream",
                big,
            )
            .await?
            .expect_success("100 MiB upload")
            .map(drop)
        })
    });
    let uploads: Vec<_> = uploads.collect();
    for upload in uploads {
        upload.await??;
    }
    let uploads = started.elapsed();
    let (_, peak_after) = session.server.memory_kib()?;
    let mut pubsub = Vec::new();
    for subscribers in [1, 10] {
        eprintln!("  pubsub: {PUBLISHES} publishes to {subscribers} subscriber(s)");
        let (p50, p95, n) = pubsub_latency(api, subscribers).await?;
        pubsub.push((subscribers, p50, p95, n));
    }
    session.server.stop().await?;
    Ok(FilesRun {
        sizes,
        peak_before,
        peak_after,
        uploads,
        pubsub,
    })
}

pub fn table(out: &mut String, run: &FilesRun) {
    let mb = |bytes: usize, secs: f64| bytes as f64 / secs / 1e6;
    let _ = writeln!(
        out,
        "### Files (SQLite, local filesystem; admin API, one client, sequential)\n\n\
         | size | create MB/s | `fs::write` MB/s | `fs::write` + fsync MB/s | create ÷ write+fsync | get MB/s | `fs::read` MB/s | get ÷ read |\n\
         |---|---|---|---|---|---|---|---|"
    );
    for r in &run.sizes {
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} | {:.1} | {:.2}× | {:.1} | {:.1} | {:.2}× |",
            r.label,
            mb(r.bytes, r.create),
            mb(r.bytes, r.fs_write),
            mb(r.bytes, r.fs_write_sync),
            r.fs_write_sync / r.create,
            mb(r.bytes, r.get),
            mb(r.bytes, r.fs_read),
            r.fs_read / r.get,
        );
    }
    let _ = writeln!(
        out,
        "\n{UPLOADERS} concurrent 100 MiB uploads took {:.1} s; the server's peak RSS went \
         from {} MiB to {} MiB (the bodies alone are {} MiB).\n",
        run.uploads.as_secs_f64(),
        run.peak_before / 1024,
        run.peak_after / 1024,
        UPLOADERS * (BIG >> 20),
    );
    let _ = writeln!(
        out,
        "### publish_durable → handler start (SQLite, idle server, {PUBLISHES} publishes {} ms apart)\n\n\
         | subscribers | deliveries | p50 ms | p95 ms |\n|---|---|---|---|",
        PAUSE.as_millis()
    );
    for (subscribers, p50, p95, n) in &run.pubsub {
        let _ = writeln!(out, "| {subscribers} | {n} | {p50} | {p95} |");
    }
    out.push('\n');
}
