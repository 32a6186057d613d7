//! The events scenarios as markdown.

use std::fmt::Write as _;

use crate::bench::Results;
use crate::events::{AsyncRun, EventsRun, PAUSE};
use crate::session::{mark, Options};

const TARGET_LATENCY_P50_MS: i64 = 5;
const TARGET_EVENTS_PER_SEC: f64 = 5000.0;
const TARGET_SQLITE_EVENTS_PER_SEC: f64 = 3000.0;

pub fn tables(out: &mut String, r: &Results, opts: &Options) {
    if r.events.is_empty() {
        return;
    }
    latency_table(out, &r.events);
    throughput_table(out, &r.events, opts);
}

fn latency_table(out: &mut String, runs: &[EventsRun]) {
    out.push_str("### Events: write → trigger handler start (idle server)\n\n");
    out.push_str(
        "| backend | writes | p50 ms | p90 ms | p99 ms | max ms | write request round trip p50 / p99 ms |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    for run in runs {
        let l = &run.latency;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {:.2} / {:.2} |",
            run.backend,
            l.samples_ms.len(),
            l.quantile_ms(0.5),
            l.quantile_ms(0.9),
            l.quantile_ms(0.99),
            l.quantile_ms(1.0),
            l.round_trip_ms(0.5),
            l.round_trip_ms(0.99),
        );
    }
    let _ = write!(
        out,
        "\nOne write at a time, {} ms apart: the sync route `POST /put/{{k}}` sets \
         `jobs[k] = time::now_ms()`; the `jobs` KV trigger's handler, as its first \
         statement, sets `lat[k] = time::now_ms() - ctx.event.kv.value`; the harness reads \
         `lat` back through the admin KV browser. **Millisecond resolution**: both ends are \
         whole milliseconds of the server's clock (scripts have no finer clock), so every \
         sample is ±1 ms and 0 means under a millisecond. The latency covers the write's \
         commit with its outbox row, waking the dispatcher, claiming, loading the app and \
         script, and waiting for a script slot.\n\n",
        PAUSE.as_millis(),
    );
}

fn drain_cell(a: &AsyncRun) -> String {
    let ms = a.drain.as_secs_f64() * 1000.0;
    if a.complete() {
        format!("{ms:.0} ms")
    } else {
        format!("> {ms:.0} ms (only {} of {} ran)", a.done, a.load.total_ok)
    }
}

fn throughput_table(out: &mut String, runs: &[EventsRun], opts: &Options) {
    out.push_str("### Events: async route throughput (`()` script)\n\n");
    out.push_str(
        "| backend | async accepted/s | accepted (warm-up incl.) | run by load end | drain | \
         processed events/s | server CPU µs/event | sync req/s | sync CPU µs/req | \
         processed ÷ sync | errors async / sync |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for run in runs {
        let a = &run.async_run;
        let s = &run.sync;
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} | {:.0} | {:.1} | {:.0} | {:.1} | {:.2}× | {} / {} |",
            run.backend,
            a.load.throughput(),
            a.load.total_ok,
            a.done_at_load_end,
            drain_cell(a),
            a.processed_per_sec(),
            a.cpu_per_event * 1e6,
            s.load.throughput(),
            s.cpu_per_request * 1e6,
            a.processed_per_sec() / s.load.throughput(),
            a.load.errors,
            s.load.errors,
        );
    }
    let l = &opts.event_load;
    let _ = write!(
        out,
        "\n`POST /a`, an async route to the script `()`, driven by the load generator at \
         {} connections, {:.0} s warm-up + {:.0} s measured (`--events-duration`); \
         \"accepted/s\" counts its 202 answers in the measured window. Then `/metrics` is polled every 5 ms until \
         `picloud_executions_total{{status=\"ok\"}}` has grown by every accepted request \
         (warm-up included) since before the load: \"drain\" is the time from the end of the \
         load until then, and \"processed events/s\" = accepted / (load time + drain). \
         \"Server CPU µs/event\" covers the load, the drain and writing the deliveries' \
         execution records. \"Sync\": the same script as the sync route `GET /s` (204), \
         right after, through the same load generator.\n\n",
        l.connections,
        l.warmup.as_secs_f64(),
        l.duration.as_secs_f64(),
    );
}

/// The events lines of the targets section.
pub fn targets(out: &mut String, r: &Results) {
    if r.events.is_empty() {
        return;
    }
    let p50s: Vec<(String, i64)> = r
        .events
        .iter()
        .map(|run| (run.backend.clone(), run.latency.quantile_ms(0.5)))
        .collect();
    let text = p50s
        .iter()
        .map(|(backend, p50)| format!("{p50} ms ({backend})"))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        out,
        "- {} write → trigger handler start p50 < {TARGET_LATENCY_P50_MS} ms on an idle server: {text}",
        mark(p50s.iter().all(|(_, p50)| *p50 < TARGET_LATENCY_P50_MS)),
    );
    let rate = |backend: &str| {
        r.events
            .iter()
            .find(|run| run.backend == backend)
            .map(|run| run.async_run.processed_per_sec())
    };
    if let Some(v) = rate("SQLite") {
        let _ = writeln!(
            out,
            "- {} async events processed ≥ {TARGET_SQLITE_EVENTS_PER_SEC:.0}/s on SQLite: {v:.0}/s",
            mark(v >= TARGET_SQLITE_EVENTS_PER_SEC),
        );
    }
    match rate("PostgreSQL") {
        Some(pg) => {
            let _ = writeln!(
                out,
                "- {} async events processed ≥ {TARGET_EVENTS_PER_SEC:.0}/s on PostgreSQL: \
                 {pg:.0}/s",
                mark(pg >= TARGET_EVENTS_PER_SEC),
            );
        }
        None => {
            let _ = writeln!(
                out,
                "- – async events processed ≥ {TARGET_EVENTS_PER_SEC:.0}/s on PostgreSQL: \
                 not measured (no `--postgres`)",
            );
        }
    }
}
