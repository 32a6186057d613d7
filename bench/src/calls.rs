//! The service-calls scenario, on a fresh server per backend: what one `kv` or `docs`
//! call adds to a script route, as server CPU per request against a trivial route of
//! the same server, and how many requests a route doing a KV set and a get serves.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use hyper::{Method, StatusCode};

use crate::server::Binary;
use crate::session::{mark, Options, Row, Session, APP};

const TARGET_GET_CPU_RATIO: f64 = 2.0;
const TARGET_SET_GET_PER_SEC: f64 = 6000.0;

/// Seeds the key and the document the routes read; answers the document's id.
const SEED_SCRIPT: &str =
    r#"kv::collection("p").set("k", 1); #{id: docs::collection("d").create(#{n: 1}).id}"#;

/// (path, script, what). `DOC_ID` is replaced by the seeded document's id.
const ROUTES: &[(&str, &str, &str)] = &[
    ("/c/trivial", "#{hello: 1}", "trivial `#{hello: 1}`"),
    ("/c/kv-get", r#"kv::collection("p").get("k")"#, "kv get"),
    (
        "/c/kv-set",
        r#"kv::collection("p").set("k", 1); 1"#,
        "kv set",
    ),
    (
        "/c/kv-set-get",
        r#"let c = kv::collection("p"); c.set("k", 1); c.get("k")"#,
        "kv set + get",
    ),
    (
        "/c/mix",
        r#"let k = kv::collection("p"); let d = docs::collection("d");
           k.get("k"); k.set("k", 2); d.get("DOC_ID"); #{id: d.create(#{n: 2}).id}"#,
        "kv get + set, docs get + create",
    ),
];

pub struct CallsRun {
    pub backend: String,
    /// In the order of `ROUTES`: the trivial route first.
    pub rows: Vec<(&'static str, Row)>,
}

impl CallsRun {
    fn row(&self, path: &str) -> Option<&Row> {
        ROUTES
            .iter()
            .position(|(p, _, _)| *p == path)
            .and_then(|i| self.rows.get(i))
            .map(|(_, row)| row)
    }
}

pub async fn run(
    bin: &Binary,
    opts: &Options,
    backend: &str,
    database_url: Option<String>,
) -> Result<CallsRun> {
    let session = Session::open(bin, database_url, None).await?;
    let api = &session.api;
    let seed = api.create_script(APP, "calls-seed", SEED_SCRIPT).await?;
    api.add_route(&seed, "POST", "/c/seed", "sync").await?;
    let reply = api
        .send(
            Method::POST,
            "/c/seed",
            Some(crate::session::APP_HOST),
            None,
        )
        .await?
        .expect_success("seeding the calls scenario")?;
    let doc_id = reply.json()?["id"]
        .as_str()
        .context("the seed route answered no document id")?
        .to_owned();
    for (i, (path, script, _)) in ROUTES.iter().enumerate() {
        let script = script.replace("DOC_ID", &doc_id);
        api.create_route(APP, &format!("calls-{i}"), &script, path)
            .await?;
    }
    let mut rows = Vec::new();
    for (path, _, what) in ROUTES {
        let target = session.app_target(Method::GET, path, StatusCode::OK);
        let label = format!("{what} ({backend})");
        let row = session
            .measure(&label, &target, opts.calls_load, true)
            .await?;
        rows.push((*what, row));
    }
    session
        .server
        .stop()
        .await
        .context("stopping the calls server")?;
    Ok(CallsRun {
        backend: backend.to_owned(),
        rows,
    })
}

pub fn table(out: &mut String, runs: &[CallsRun]) {
    if runs.is_empty() {
        return;
    }
    out.push_str("### Service calls: server CPU per request\n\n");
    out.push_str("| backend | route | req/s | server CPU µs/req | ÷ trivial CPU | p50 ms | p99 ms | errors |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|\n");
    for run in runs {
        let trivial = run
            .rows
            .first()
            .map_or(f64::NAN, |(_, r)| r.cpu_per_request);
        for (what, row) in &run.rows {
            let l = &row.load;
            let _ = writeln!(
                out,
                "| {} | {what} | {:.0} | {:.1} | {:.2}× | {:.2} | {:.2} | {} |",
                run.backend,
                l.throughput(),
                row.cpu_per_request * 1e6,
                row.cpu_per_request / trivial,
                l.quantile_ms(0.5),
                l.quantile_ms(0.99),
                l.errors,
            );
        }
    }
    out.push_str(
        "\nOne fresh server per backend, default executor threads; each route in turn at \
         the usual connections (`--calls-duration` measured seconds). The KV routes all \
         write the same key; the mixed route creates a document per request. CPU per \
         request includes writing the execution records.\n\n",
    );
}

pub fn targets(out: &mut String, runs: &[CallsRun]) {
    for run in runs {
        let (Some(trivial), Some(get), Some(set_get)) = (
            run.row("/c/trivial"),
            run.row("/c/kv-get"),
            run.row("/c/kv-set-get"),
        ) else {
            continue;
        };
        let ratio = get.cpu_per_request / trivial.cpu_per_request;
        let _ = writeln!(
            out,
            "- {} kv get route ≤ {TARGET_GET_CPU_RATIO:.0}× the trivial route's CPU ({}): {ratio:.2}×",
            mark(ratio <= TARGET_GET_CPU_RATIO),
            run.backend,
        );
        let rate = set_get.load.throughput();
        let _ = writeln!(
            out,
            "- {} kv set + get route ≥ {TARGET_SET_GET_PER_SEC:.0} req/s at {} connections ({}): {rate:.0}",
            mark(rate >= TARGET_SET_GET_PER_SEC),
            set_get.load.connections,
            run.backend,
        );
    }
}
