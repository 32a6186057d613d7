//! `picloud-bench`: spawns the `picloud` binary, sets up a one-line script route and
//! measures it against a bare handler in the same server; also the executor-pool
//! size, execution-record throughput, idle memory, start-up time, and the events
//! machinery (trigger latency, async-route throughput) and document queries. Prints
//! markdown.

mod api;
mod bench;
mod calls;
mod docs;
mod events;
mod events_report;
mod files;
mod load;
mod pg;
mod report;
mod server;
mod session;
mod values;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Arg, ArgMatches, Command};

use crate::load::LoadConfig;
use crate::session::{Calls, Options};

/// (flag, environment variable, default, help)
const SETTINGS: &[(&str, &str, &str, &str)] = &[
    (
        "picloud",
        "PICLOUD_BENCH_BINARY",
        "target/release/picloud",
        "the picloud binary to run",
    ),
    (
        "connections",
        "PICLOUD_BENCH_CONNECTIONS",
        "32",
        "concurrent keep-alive connections",
    ),
    (
        "duration",
        "PICLOUD_BENCH_DURATION",
        "10",
        "measured seconds per scenario",
    ),
    (
        "warmup",
        "PICLOUD_BENCH_WARMUP",
        "2",
        "warm-up seconds per scenario",
    ),
    (
        "threads",
        "PICLOUD_BENCH_THREADS",
        "2,4,8,16",
        "executor thread counts to sweep (empty: none)",
    ),
    (
        "startup-runs",
        "PICLOUD_BENCH_STARTUP_RUNS",
        "5",
        "start-ups per data-dir kind",
    ),
    (
        "postgres",
        "PICLOUD_BENCH_POSTGRES_URL",
        "",
        "postgres://… server: also run on PostgreSQL",
    ),
    (
        "events",
        "PICLOUD_BENCH_EVENTS",
        "true",
        "events scenarios: trigger latency, async-route throughput (true/false)",
    ),
    (
        "events-duration",
        "PICLOUD_BENCH_EVENTS_DURATION",
        "5",
        "measured seconds of the async and sync event-route loads",
    ),
    (
        "calls",
        "PICLOUD_BENCH_CALLS",
        "true",
        "the service-calls scenario: kv/docs routes' CPU per request (true/false/only: skip every other scenario)",
    ),
    (
        "calls-duration",
        "PICLOUD_BENCH_CALLS_DURATION",
        "5",
        "measured seconds of each service-calls route",
    ),
    (
        "files",
        "PICLOUD_BENCH_FILES",
        "true",
        "the files and pub/sub scenario (true/false/only: skip every other scenario)",
    ),
    (
        "docs",
        "PICLOUD_BENCH_DOCS",
        "100000",
        "documents of the docs find scenario (0: skip it)",
    ),
    (
        "values",
        "PICLOUD_BENCH_VALUES",
        "true",
        "the script-values scenario: building data, oversized answers (true/false)",
    ),
    (
        "count-records",
        "PICLOUD_BENCH_COUNT_RECORDS",
        "true",
        "list every execution record of the first server to check the count (true/false)",
    ),
    (
        "event-requests",
        "PICLOUD_BENCH_EVENT_REQUESTS",
        "300",
        "sequential writes of the trigger-latency scenario",
    ),
];

fn cli() -> Command {
    SETTINGS.iter().fold(
        Command::new("picloud-bench").about("Benchmarks the picloud binary; prints markdown"),
        |cmd, &(flag, env, default, help)| {
            let help = if default.is_empty() {
                format!("{help} [env: {env}]")
            } else {
                format!("{help} [env: {env}] [default: {default}]")
            };
            cmd.arg(Arg::new(flag).long(flag).value_name("VALUE").help(help))
        },
    )
}

/// The flag, else the environment variable, else the default.
fn setting(m: &ArgMatches, flag: &str) -> String {
    let (_, env, default, _) = SETTINGS
        .iter()
        .find(|s| s.0 == flag)
        .copied()
        .unwrap_or_default();
    m.get_one::<String>(flag)
        .cloned()
        .or_else(|| std::env::var(env).ok())
        .unwrap_or_else(|| default.to_owned())
}

fn number<T: std::str::FromStr>(m: &ArgMatches, flag: &str) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let raw = setting(m, flag);
    raw.trim()
        .parse()
        .with_context(|| format!("--{flag}: not a number: {raw:?}"))
}

fn seconds(m: &ArgMatches, flag: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(number(m, flag)?)
        .with_context(|| format!("--{flag}: not a duration"))
}

fn boolean(m: &ArgMatches, flag: &str) -> Result<bool> {
    let raw = setting(m, flag);
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => bail!("--{flag}: expected true or false, got {raw:?}"),
    }
}

fn calls_mode(m: &ArgMatches) -> Result<Calls> {
    if setting(m, "calls").trim().eq_ignore_ascii_case("only") {
        return Ok(Calls::Only);
    }
    Ok(if boolean(m, "calls")? {
        Calls::Run
    } else {
        Calls::Skip
    })
}

fn options(m: &ArgMatches) -> Result<Options> {
    let threads = setting(m, "threads")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().with_context(|| format!("--threads: {s:?}")))
        .collect::<Result<Vec<usize>>>()?;
    let postgres_url = Some(setting(m, "postgres")).filter(|s| !s.trim().is_empty());
    let load = LoadConfig {
        connections: number::<usize>(m, "connections")?.max(1),
        warmup: seconds(m, "warmup")?,
        duration: seconds(m, "duration")?.max(Duration::from_millis(100)),
    };
    Ok(Options {
        picloud: PathBuf::from(setting(m, "picloud")),
        load,
        event_load: LoadConfig {
            duration: seconds(m, "events-duration")?.max(Duration::from_millis(100)),
            ..load
        },
        calls_load: LoadConfig {
            duration: seconds(m, "calls-duration")?.max(Duration::from_millis(100)),
            ..load
        },
        calls: calls_mode(m)?,
        threads,
        startup_runs: number::<usize>(m, "startup-runs")?.max(1),
        idle: Duration::from_secs(2),
        postgres_url,
        events: boolean(m, "events")?,
        event_requests: number::<usize>(m, "event-requests")?.max(1),
        docs: number::<usize>(m, "docs")?,
        values: boolean(m, "values")?,
        count_records: boolean(m, "count-records")?,
    })
}

fn main() -> Result<()> {
    let matches = cli().get_matches();
    let files = setting(&matches, "files");
    let files_only = files.trim().eq_ignore_ascii_case("only");
    let files = files_only || boolean(&matches, "files")?;
    let opts = options(&matches)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let files_table = |runtime: &tokio::runtime::Runtime| -> Result<String> {
        let run = runtime.block_on(async {
            let bin = server::Binary::new(&opts.picloud).await?;
            files::run(&bin).await
        })?;
        let mut out = String::new();
        files::table(&mut out, &run);
        Ok(out)
    };
    if files_only {
        print!("{}", files_table(&runtime)?);
        return Ok(());
    }
    if opts.calls == Calls::Only {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let runs = runtime.block_on(async {
            let bin = server::Binary::new(&opts.picloud).await?;
            bench::calls_runs(&bin, &opts).await
        })?;
        let after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let mut out = format!(
            "Load average before: {}; after: {}.\n\n",
            load.trim(),
            after.trim()
        );
        calls::table(&mut out, &runs);
        out.push_str("### Targets\n\n");
        calls::targets(&mut out, &runs);
        print!("{out}");
        return Ok(());
    }
    let results = runtime.block_on(bench::run(&opts))?;
    print!("{}", report::markdown(&results, &opts));
    if files {
        eprintln!("files and pub/sub, SQLite");
        print!("{}", files_table(&runtime)?);
    }
    Ok(())
}
