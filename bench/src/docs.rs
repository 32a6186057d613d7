//! The documents scenario, on a fresh server per backend: seed a collection through
//! scripts, then time `find` with an equality filter against `get` by id (the
//! baseline: a primary-key read through the same script path). On PostgreSQL `find`
//! is timed with the GIN index and again after dropping it.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use hyper::{Method, StatusCode};

use crate::load::LoadConfig;
use crate::pg::ScratchDatabase;
use crate::server::Binary;
use crate::session::{mark, Options, Row, Session, APP, APP_HOST};

/// Documents created per seeding request (one script run).
const BATCH: usize = 1_000;
/// Seeding requests in flight at once.
const SEEDERS: usize = 4;
const TARGET_FIND_P50_MS: f64 = 5.0;

const SEED_SCRIPT: &str = r#"
    let users = docs::collection("users");
    let from = parse_int(ctx.request.params.from);
    let tiers = ["gold", "silver", "bronze", "free"];
    for i in from..from + BATCH {
        users.create(#{i: i, email: `user${i}@example.com`, tier: tiers[i % 4], n: i % 1000,
                       profile: #{city: `city ${i % 97}`, age: 18 + i % 60}});
    }
"#;
const GET_SCRIPT: &str = r#"docs::collection("users").get(ctx.request.params.id).data.i"#;
const FIRST_SCRIPT: &str = r#"docs::collection("users").find_one(#{}).id"#;

fn find_script(docs: usize) -> String {
    // A document near the end of creation order: a scan cannot stop early.
    let target = docs.saturating_sub(docs / 10).max(1) - 1;
    format!(r#"docs::collection("users").find(#{{email: "user{target}@example.com"}}).len()"#)
}

pub struct DocsRun {
    pub backend: String,
    pub docs: usize,
    pub seeding: Duration,
    pub get: Row,
    /// PostgreSQL only: with the GIN `jsonb_path_ops` index.
    pub find_indexed: Option<Row>,
    /// SQLite has no index over document fields; on PostgreSQL, after dropping it.
    pub find_unindexed: Row,
}

/// One connection, one request at a time: latency, not throughput.
fn latency_load(opts: &Options) -> LoadConfig {
    LoadConfig {
        connections: 1,
        warmup: Duration::from_secs(1),
        duration: opts.event_load.duration,
    }
}

pub async fn run(
    bin: &Binary,
    opts: &Options,
    backend: &str,
    db: Option<&ScratchDatabase>,
) -> Result<DocsRun> {
    let session = Session::open(bin, db.map(|d| d.url.clone()), None).await?;
    let api = &session.api;
    let seed = SEED_SCRIPT.replace("BATCH", &BATCH.to_string());
    let seed_id = api.create_script(APP, "docs-seed", &seed).await?;
    api.add_route(&seed_id, "POST", "/seed/{from}", "sync")
        .await?;
    api.create_route(APP, "docs-get", GET_SCRIPT, "/get/{id}")
        .await?;
    api.create_route(APP, "docs-first", FIRST_SCRIPT, "/first")
        .await?;
    api.create_route(APP, "docs-find", &find_script(opts.docs), "/find")
        .await?;

    let batches = opts.docs.div_ceil(BATCH);
    eprintln!(
        "  seeding {} documents, {SEEDERS} requests at a time",
        batches * BATCH
    );
    let started = Instant::now();
    for wave in (0..batches).collect::<Vec<_>>().chunks(SEEDERS) {
        let mut tasks = tokio::task::JoinSet::new();
        for &batch in wave {
            let api = api.clone();
            tasks.spawn(async move {
                let path = format!("/seed/{}", batch * BATCH);
                api.send(Method::POST, &path, Some(APP_HOST), None)
                    .await?
                    .expect_success(&format!("POST {path}"))
                    .map(drop)
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
    }
    let seeding = started.elapsed();
    if let Some(db) = db {
        db.execute("ANALYZE docs").await?;
    }

    let first = api
        .send(Method::GET, "/first", Some(APP_HOST), None)
        .await?
        .expect_success("GET /first")?;
    let id = String::from_utf8_lossy(&first.body)
        .trim()
        .trim_matches('"')
        .to_owned();
    ensure!(id.starts_with("doc_"), "GET /first answered {id:?}");
    let found = api
        .send(Method::GET, "/find", Some(APP_HOST), None)
        .await?
        .expect_success("GET /find")?;
    ensure!(
        &found.body[..] == b"1",
        "the find route found {:?}",
        found.body
    );

    let load = latency_load(opts);
    let get_target = session.app_target(Method::GET, &format!("/get/{id}"), StatusCode::OK);
    let find_target = session.app_target(Method::GET, "/find", StatusCode::OK);
    let get = session
        .measure(
            &format!("docs get by id ({backend})"),
            &get_target,
            load,
            true,
        )
        .await?;
    let (find_indexed, find_unindexed) = match db {
        Some(db) => {
            let indexed = session
                .measure(
                    &format!("docs find, GIN ({backend})"),
                    &find_target,
                    load,
                    true,
                )
                .await?;
            db.execute("DROP INDEX docs_data").await?;
            let plain = session
                .measure(
                    &format!("docs find, no index ({backend})"),
                    &find_target,
                    load,
                    true,
                )
                .await?;
            (Some(indexed), plain)
        }
        None => {
            let plain = session
                .measure(&format!("docs find ({backend})"), &find_target, load, true)
                .await?;
            (None, plain)
        }
    };
    session
        .server
        .stop()
        .await
        .context("stopping the docs server")?;
    Ok(DocsRun {
        backend: backend.to_owned(),
        docs: batches * BATCH,
        seeding,
        get,
        find_indexed,
        find_unindexed,
    })
}

pub fn table(out: &mut String, runs: &[DocsRun]) {
    if runs.is_empty() {
        return;
    }
    out.push_str("### Documents: `find` with an equality filter\n\n");
    out.push_str(
        "| backend | documents | seeded docs/s | get by id p50 ms | find p50 ms (GIN) | \
         find p99 ms (GIN) | find p50 ms (no index) | find (GIN) ÷ get p50 | errors |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for run in runs {
        let get = run.get.load.quantile_ms(0.5);
        let (gin50, gin99, ratio) = match &run.find_indexed {
            Some(row) => (
                format!("{:.2}", row.load.quantile_ms(0.5)),
                format!("{:.2}", row.load.quantile_ms(0.99)),
                format!("{:.2}×", row.load.quantile_ms(0.5) / get),
            ),
            None => ("n/a".into(), "n/a".into(), "n/a".into()),
        };
        let errors = run.get.load.errors
            + run.find_unindexed.load.errors
            + run.find_indexed.as_ref().map_or(0, |r| r.load.errors);
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.2} | {gin50} | {gin99} | {:.2} | {ratio} | {errors} |",
            run.backend,
            run.docs,
            run.docs as f64 / run.seeding.as_secs_f64(),
            get,
            run.find_unindexed.load.quantile_ms(0.5),
        );
    }
    out.push_str(
        "\nOne connection, one request at a time, through a script route: \
         `find(#{email: …})` matching one document near the end of the collection, against \
         `get(id)` on the same server. Documents look like `#{i, email, tier, n, \
         profile: #{city, age}}`, created by scripts 1,000 per request. On PostgreSQL \
         `find` runs first with the GIN `jsonb_path_ops` index (after `ANALYZE`), then \
         again after `DROP INDEX`; SQLite has no index over document fields, so its \
         `find` scans the collection.\n\n",
    );
}

/// The target line for the summary.
pub fn target(out: &mut String, runs: &[DocsRun]) {
    for run in runs {
        if let Some(row) = &run.find_indexed {
            let p50 = row.load.quantile_ms(0.5);
            let _ = writeln!(
                out,
                "- {} docs `find` p50 on {} with {} documents and the GIN index < \
                 {TARGET_FIND_P50_MS:.0} ms: {p50:.2} ms",
                mark(p50 < TARGET_FIND_P50_MS),
                run.backend,
                run.docs,
            );
        }
    }
}
