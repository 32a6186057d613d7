//! The results as markdown.

use std::fmt::Write as _;
use std::time::Duration;

use crate::bench::{Results, StartSample};
use crate::events_report;
use crate::session::{mark, Options, Row};

const TARGET_RATIO: f64 = 0.7;
const TARGET_P99_MS: f64 = 2.0;
const TARGET_RSS_MIB: f64 = 40.0;
const TARGET_START_MS: f64 = 300.0;

pub fn markdown(r: &Results, opts: &Options) -> String {
    let mut out = String::new();
    header(&mut out, r, opts);
    latency_table(&mut out, r);
    sweep_table(&mut out, r);
    records_table(&mut out, r);
    events_report::tables(&mut out, r, opts);
    crate::calls::table(&mut out, &r.calls);
    crate::docs::table(&mut out, &r.docs);
    crate::values::table(&mut out, r.values.as_ref());
    memory(&mut out, r);
    startup_table(&mut out, r);
    targets(&mut out, r);
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ratio(row: &Row, baseline: &Row) -> f64 {
    row.load.throughput() / baseline.load.throughput()
}

fn header(out: &mut String, r: &Results, opts: &Options) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let l = &opts.load;
    let _ = writeln!(
        out,
        "Load: {} keep-alive HTTP/1.1 connections, {:.0} s warm-up + {:.0} s measured per \
         scenario; the load generator shares the machine's {cores} cores with the server.  \n\
         Load average (1/5/15 min) before: {}; after: {}.\n",
        l.connections,
        l.warmup.as_secs_f64(),
        l.duration.as_secs_f64(),
        r.loadavg_before,
        r.loadavg_after,
    );
}

fn latency_row(out: &mut String, row: &Row, baseline: &Row) {
    let l = &row.load;
    let _ = writeln!(
        out,
        "| {} | {:.0} | {:.2}× | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
        row.label,
        l.throughput(),
        ratio(row, baseline),
        row.cpu_per_request * 1e6,
        l.quantile_ms(0.5),
        l.quantile_ms(0.99),
        l.quantile_ms(0.999),
        l.quantile_ms(1.0),
        l.errors,
    );
}

fn latency_table(out: &mut String, r: &Results) {
    out.push_str("### Throughput and latency (SQLite, default executor threads)\n\n");
    out.push_str(
        "| scenario | req/s | vs baseline | server CPU µs/req | p50 ms | p99 ms | p99.9 ms | max ms | errors |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in [&r.baseline, &r.host, &r.path] {
        latency_row(out, row, &r.baseline);
    }
    if let Some((pg_baseline, pg_script)) = &r.postgres {
        latency_row(out, pg_baseline, pg_baseline);
        latency_row(out, pg_script, pg_baseline);
    }
    out.push_str(
        "\n\"vs baseline\": throughput over the bare handler's in the same server process \
         (the PostgreSQL rows: over the PostgreSQL server's own baseline). \"Server CPU\": \
         the server's user + system time, all threads, per response (for script routes \
         including writing their execution records); unlike throughput it hardly depends \
         on what else the machine is running.\n\n",
    );
}

fn sweep_table(out: &mut String, r: &Results) {
    if r.sweep.is_empty() {
        return;
    }
    out.push_str(
        "### Executor threads (script route by Host header, SQLite, one server per value)\n\n",
    );
    out.push_str("| PICLOUD_EXECUTOR_THREADS | per-app limit | req/s | vs baseline | server CPU µs/req | p50 ms | p99 ms | p99.9 ms | errors |\n");
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (threads, row) in &r.sweep {
        let l = &row.load;
        let _ = writeln!(
            out,
            "| {threads} | {} | {:.0} | {:.2}× | {:.1} | {:.2} | {:.2} | {:.2} | {} |",
            (threads / 2).max(1),
            l.throughput(),
            ratio(row, &r.baseline),
            row.cpu_per_request * 1e6,
            l.quantile_ms(0.5),
            l.quantile_ms(0.99),
            l.quantile_ms(0.999),
            l.errors,
        );
    }
    out.push_str(
        "\nThe per-app limit is the server's default (half the threads): one app, as here, \
         can hold at most that many threads. \"vs baseline\" is against the baseline of the \
         first table (another process of the same run).\n\n",
    );
}

fn script_rows(r: &Results) -> Vec<&Row> {
    let mut rows = vec![&r.host, &r.path];
    rows.extend(r.sweep.iter().map(|(_, row)| row));
    if let Some((_, pg)) = &r.postgres {
        rows.push(pg);
    }
    rows
}

fn records_table(out: &mut String, r: &Results) {
    out.push_str("### Execution records (written off the request path)\n\n");
    out.push_str("| scenario | runs (warm-up included) | last record listed after load end | records/s sustained |\n");
    out.push_str("|---|---:|---:|---:|\n");
    for row in script_rows(r) {
        let Some(d) = &row.drain else { continue };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} ms | {:.0} |",
            row.label,
            row.load.total_responses,
            ms(d.visible_after),
            d.records_per_sec,
        );
    }
    let c = &r.records;
    let listed = match c.listed {
        Some((listed, took)) => format!(
            "records listed = {listed} {} (listing them 500 a page took {:.1} s)",
            mark(listed == c.served && c.metric == c.served),
            took.as_secs_f64(),
        ),
        None => format!(
            "records not listed (`--count-records false`) {}",
            mark(c.metric == c.served)
        ),
    };
    let _ = writeln!(
        out,
        "\n\"Records/s sustained\" = runs / (load time + time until the last record is listed); \
         the writer keeps up when the drain is a few milliseconds.  \n\
         Check on the first server: {} script runs answered, `picloud_executions_total` = {}, \
         {listed}.\n",
        c.served, c.metric,
    );
}

fn memory(out: &mut String, r: &Results) {
    let m = &r.memory;
    let _ = writeln!(
        out,
        "### Memory\n\nIdle RSS after start-up, set-up and 2 s idle: **{:.1} MiB**; \
         peak RSS (VmHWM) after the three load runs: {:.1} MiB.\n",
        mib(m.idle_rss_kib),
        mib(m.peak_rss_kib),
    );
}

fn median(samples: &[StartSample], f: impl Fn(&StartSample) -> Duration) -> Duration {
    let mut v: Vec<Duration> = samples.iter().map(f).collect();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn startup_row(out: &mut String, label: &str, samples: &[StartSample]) {
    let all = samples
        .iter()
        .map(|s| format!("{:.0}", ms(s.ready)))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        out,
        "| {label} | {:.0} ms | {:.0} ms | {all} |",
        ms(median(samples, |s| s.listening)),
        ms(median(samples, |s| s.ready)),
    );
}

fn startup_table(out: &mut String, r: &Results) {
    out.push_str("### Start-up (SQLite, `picloud serve`, median)\n\n");
    out.push_str("| data dir | spawn → `listening on` | spawn → first 200 from /readyz | every run (ready, ms) |\n");
    out.push_str("|---|---:|---:|---|\n");
    startup_row(out, "fresh (creates and migrates)", &r.start_fresh);
    startup_row(out, "existing", &r.start_existing);
    out.push('\n');
}

fn targets(out: &mut String, r: &Results) {
    let host = ratio(&r.host, &r.baseline);
    let path = ratio(&r.path, &r.baseline);
    let p99 = r
        .host
        .load
        .quantile_ms(0.99)
        .max(r.path.load.quantile_ms(0.99));
    let rss = mib(r.memory.idle_rss_kib);
    let start =
        ms(median(&r.start_fresh, |s| s.ready)).max(ms(median(&r.start_existing, |s| s.ready)));
    out.push_str("### Targets\n\n");
    let _ = writeln!(
        out,
        "- {} script route ≥ {:.0}% of the bare handler's throughput: {:.0}% (Host), {:.0}% (path)",
        mark(host.min(path) >= TARGET_RATIO),
        TARGET_RATIO * 100.0,
        host * 100.0,
        path * 100.0,
    );
    let _ = writeln!(
        out,
        "- {} script route p99 < {TARGET_P99_MS:.0} ms at {} connections: {p99:.2} ms",
        mark(p99 < TARGET_P99_MS),
        r.host.load.connections,
    );
    let _ = writeln!(
        out,
        "- {} idle RSS < {TARGET_RSS_MIB:.0} MiB: {rss:.1} MiB",
        mark(rss < TARGET_RSS_MIB)
    );
    let _ = writeln!(
        out,
        "- {} start-up to ready < {TARGET_START_MS:.0} ms: {start:.0} ms (slower of fresh and existing)",
        mark(start < TARGET_START_MS),
    );
    events_report::targets(out, r);
    crate::calls::targets(out, &r.calls);
    crate::docs::target(out, &r.docs);
    crate::values::target(out, r.values.as_ref());
}
