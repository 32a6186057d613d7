//! The documents scenario, on a fresh server per backend: seed a collection through
//! scripts, then time `find` with an equality filter against `get` by id (the
//! baseline: a primary-key read through the same script path), and a sorted `find`
//! (`$sort: "-i", $limit: 10`). Both are timed without, then with, an index declared
//! through the admin API (on `email` and on `i`; the declarations are timed too). On
//! PostgreSQL the equality `find` is timed with the GIN index, and once more at the
//! end after dropping it.

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
const SORTED_SCRIPT: &str =
    r#"docs::collection("users").find(#{"$sort": "-i", "$limit": 10}).map(|d| d.data.i)"#;

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
    /// SQLite before any index is declared; on PostgreSQL, at the end, after dropping
    /// the GIN index (the declared B-tree does not serve equality).
    pub find_unindexed: Row,
    /// With an index declared on `email`.
    pub find_declared: Row,
    /// `$sort: "-i", $limit: 10`, before and after declaring an index on `i`.
    pub sorted: Row,
    pub sorted_declared: Row,
    /// How long `POST …/indexes` took for `email`, and for `i`.
    pub declare_email: Duration,
    pub declare_i: Duration,
}

/// Declares an index through the admin API; returns how long the request took (it
/// answers once the index is built).
async fn declare(api: &crate::api::Api, field: &str) -> Result<Duration> {
    let path = format!("/api/v1/admin/apps/{APP}/docs/users/indexes");
    let started = Instant::now();
    api.send(
        Method::POST,
        &path,
        None,
        Some(&serde_json::json!({"field": field})),
    )
    .await?
    .expect_success(&format!("POST {path}"))?;
    Ok(started.elapsed())
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
    api.create_route(APP, "docs-sorted", SORTED_SCRIPT, "/sorted")
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
    let sorted_target = session.app_target(Method::GET, "/sorted", StatusCode::OK);
    let first_find = if db.is_some() { "GIN" } else { "no index" };
    let find_first = session
        .measure(
            &format!("docs find, {first_find} ({backend})"),
            &find_target,
            load,
            true,
        )
        .await?;
    let sorted = session
        .measure(
            &format!("docs sorted find, no index ({backend})"),
            &sorted_target,
            load,
            true,
        )
        .await?;
    let declare_email = declare(api, "email").await?;
    let declare_i = declare(api, "i").await?;
    eprintln!("  declared indexes: email in {declare_email:?}, i in {declare_i:?}");
    if let Some(db) = db {
        db.execute("ANALYZE docs").await?;
    }
    let find_declared = session
        .measure(
            &format!("docs find, declared index ({backend})"),
            &find_target,
            load,
            true,
        )
        .await?;
    let sorted_declared = session
        .measure(
            &format!("docs sorted find, declared index ({backend})"),
            &sorted_target,
            load,
            true,
        )
        .await?;
    let (find_indexed, find_unindexed) = match db {
        Some(db) => {
            db.execute("DROP INDEX docs_data").await?;
            let plain = session
                .measure(
                    &format!("docs find, no GIN index ({backend})"),
                    &find_target,
                    load,
                    true,
                )
                .await?;
            (Some(find_first), plain)
        }
        None => (None, find_first),
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
        find_declared,
        sorted,
        sorted_declared,
        declare_email,
        declare_i,
    })
}

pub fn table(out: &mut String, runs: &[DocsRun]) {
    if runs.is_empty() {
        return;
    }
    out.push_str("### Documents: `find` with an equality filter\n\n");
    out.push_str(
        "| backend | documents | seeded docs/s | get by id p50 ms | find p50 ms (GIN) | \
         find p99 ms (GIN) | find p50 ms (no index) | find p50 ms (declared index) | \
         find p99 ms (declared index) | declaring it, ms | errors |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for run in runs {
        let get = run.get.load.quantile_ms(0.5);
        let (gin50, gin99) = match &run.find_indexed {
            Some(row) => (
                format!("{:.2}", row.load.quantile_ms(0.5)),
                format!("{:.2}", row.load.quantile_ms(0.99)),
            ),
            None => ("n/a".into(), "n/a".into()),
        };
        let errors = [
            &run.get,
            &run.find_unindexed,
            &run.find_declared,
            &run.sorted,
            &run.sorted_declared,
        ]
        .iter()
        .map(|r| r.load.errors)
        .sum::<u64>()
            + run.find_indexed.as_ref().map_or(0, |r| r.load.errors);
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.2} | {gin50} | {gin99} | {:.2} | {:.2} | {:.2} | {:.0} | {errors} |",
            run.backend,
            run.docs,
            run.docs as f64 / run.seeding.as_secs_f64(),
            get,
            run.find_unindexed.load.quantile_ms(0.5),
            run.find_declared.load.quantile_ms(0.5),
            run.find_declared.load.quantile_ms(0.99),
            run.declare_email.as_secs_f64() * 1000.0,
        );
    }
    out.push_str(
        "\nOne connection, one request at a time, through a script route: \
         `find(#{email: …})` matching one document near the end of the collection, against \
         `get(id)` on the same server. Documents look like `#{i, email, tier, n, \
         profile: #{city, age}}`, created by scripts 1,000 per request. \"Declared index\": \
         after `POST /api/v1/admin/apps/bench/docs/users/indexes {\"field\": \"email\"}` \
         (and one on `i`), timed in \"declaring it\" (the request answers once the index \
         is built). On PostgreSQL `find` runs first with the GIN `jsonb_path_ops` index \
         (after `ANALYZE`), which still serves equality with a declared index, and last \
         after `DROP INDEX docs_data` (\"no index\"); on SQLite \"no index\" is before the \
         declaration, a scan of the collection.\n\n",
    );
    out.push_str("### Documents: sorted `find`\n\n");
    out.push_str(
        "| backend | documents | p50 ms (no index) | p99 ms (no index) | \
         p50 ms (declared index) | p99 ms (declared index) | declaring it, ms |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    for run in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} |",
            run.backend,
            run.docs,
            run.sorted.load.quantile_ms(0.5),
            run.sorted.load.quantile_ms(0.99),
            run.sorted_declared.load.quantile_ms(0.5),
            run.sorted_declared.load.quantile_ms(0.99),
            run.declare_i.as_secs_f64() * 1000.0,
        );
    }
    out.push_str(
        "\n`find(#{\"$sort\": \"-i\", \"$limit\": 10})` over the whole collection, before \
         and after declaring an index on `i`. A declared index serves `$sort` on \
         PostgreSQL only; SQLite sorts the collection's ids either way.\n\n",
    );
}

/// The target lines for the summary.
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
        let p50 = run.find_declared.load.quantile_ms(0.5);
        let _ = writeln!(
            out,
            "- {} docs `find` p50 on {} with {} documents and a declared index < \
             {TARGET_FIND_P50_MS:.0} ms: {p50:.2} ms",
            mark(p50 < TARGET_FIND_P50_MS),
            run.backend,
            run.docs,
        );
    }
}
