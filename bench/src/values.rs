//! The script-values scenario: scripts that build data (100,000 pushes, 100,000 map
//! keys, a 1 MiB string) and one that writes out a value far larger than its text
//! limit, each timed one request at a time against a trivial script on the same
//! server. Building is linear in what is built (it was quadratic: 100,000 pushes ran
//! past the 5 s limit), and the oversized answer is refused at once.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result};
use hyper::{Method, StatusCode};

use crate::load::LoadConfig;
use crate::server::Binary;
use crate::session::{Options, Row, Session, APP};

const TARGET_PUSH_P50_MS: f64 = 100.0;

/// (route, script, expected status, what it does)
const SCRIPTS: &[(&str, &str, u16, &str)] = &[
    ("/v/trivial", "1", 200, "`1` (the reference)"),
    (
        "/v/push",
        "let a = []; for i in 0..100000 { a.push(i); } a.len()",
        200,
        "100,000 `push`es",
    ),
    (
        "/v/map",
        "let m = #{}; for i in 0..100000 { m[`${i}`] = i; } m.len()",
        200,
        "100,000 map keys by indexed assignment",
    ),
    (
        "/v/string",
        r#"let c = ""; c.pad(1024, "x"); let s = ""; for i in 0..1023 { s += c; } s.len()"#,
        200,
        "a 1 MiB string by `+=` of 1 KiB",
    ),
    (
        "/v/shared",
        r#"let s = ""; s.pad(1000000, "a"); let m = #{}; for i in 0..10000 { m[`${i}`] = s; } m"#,
        500,
        "a map of one 1 MiB string 10,000 times, returned (refused: 10 GB of JSON)",
    ),
];

pub struct ValuesRun {
    pub rows: Vec<(&'static str, Row)>,
}

pub async fn run(bin: &Binary, opts: &Options) -> Result<ValuesRun> {
    let session = Session::open(bin, None, None).await?;
    for (i, (route, script, _, _)) in SCRIPTS.iter().enumerate() {
        session
            .api
            .create_route(APP, &format!("values-{i}"), script, route)
            .await?;
    }
    let load = LoadConfig {
        connections: 1,
        warmup: Duration::from_secs(1),
        duration: opts.event_load.duration,
    };
    let mut rows = Vec::new();
    for (route, _, status, what) in SCRIPTS {
        let expect = StatusCode::from_u16(*status)?;
        let target = session.app_target(Method::GET, route, expect);
        let row = session.measure(route, &target, load, true).await?;
        rows.push((*what, row));
    }
    session
        .server
        .stop()
        .await
        .context("stopping the values server")?;
    Ok(ValuesRun { rows })
}

pub fn table(out: &mut String, run: Option<&ValuesRun>) {
    let Some(run) = run else { return };
    out.push_str("### Script values: building data, and writing out what is too large\n\n");
    out.push_str("| script | p50 ms | p99 ms | ÷ trivial p50 | requests | errors |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|\n");
    let reference = run
        .rows
        .first()
        .map_or(1.0, |(_, r)| r.load.quantile_ms(0.5));
    for (what, row) in &run.rows {
        let p50 = row.load.quantile_ms(0.5);
        let _ = writeln!(
            out,
            "| {what} | {p50:.2} | {:.2} | {:.0}× | {} | {} |",
            row.load.quantile_ms(0.99),
            p50 / reference,
            row.load.total_responses,
            row.load.errors,
        );
    }
    out.push_str(
        "\nOne connection, one request at a time, SQLite, default limits. The last row \
         answers `500 limit_exceeded`: its JSON text would be 10 GB, and it is refused \
         while being written, within the Blob cap.\n\n",
    );
}

pub fn target(out: &mut String, run: Option<&ValuesRun>) {
    let Some(push) = run.and_then(|r| r.rows.get(1)) else {
        return;
    };
    let p50 = push.1.load.quantile_ms(0.5);
    let _ = writeln!(
        out,
        "- {} 100,000 pushes p50 < {TARGET_PUSH_P50_MS:.0} ms: {p50:.1} ms",
        crate::session::mark(p50 < TARGET_PUSH_P50_MS),
    );
}
