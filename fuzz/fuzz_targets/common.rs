//! What both targets share: the production engine, a script thread with the production
//! stack size, a fixed `RunInput`, and the checks every run report must pass.

#![allow(dead_code)]

use std::sync::mpsc;
use std::sync::{LazyLock, Mutex};
use std::thread;
use std::time::Duration;

use picloud_core::config::ScriptLimits;
use picloud_script::{
    AppRef, PrincipalInput, RequestBody, RequestInput, RouteResponse, RunInput, RunReport,
    ScriptEngine, ScriptRef,
};

/// Mirrors `picloud_runtime::executor::SCRIPT_THREAD_STACK_BYTES` (not depended on:
/// the runtime crate would pull tokio and the stores into the fuzz build).
pub const SCRIPT_THREAD_STACK_BYTES: usize = 256 << 20;

/// Wall-clock budget of one fuzzed run: 200 ms, or `PICLOUD_FUZZ_TIMEOUT_MS` (for
/// triage; production routes get 5 s).
pub static RUN_TIMEOUT: LazyLock<Duration> =
    LazyLock::new(|| Duration::from_millis(env_number("PICLOUD_FUZZ_TIMEOUT_MS").unwrap_or(200)));

/// How far past its deadline a run may end before the harness calls it a finding: a
/// native function that ignores the deadline holds a script thread that long. Generous,
/// because coverage instrumentation slows everything; `PICLOUD_FUZZ_OVERRUN_MS` to change.
static MAX_OVERRUN: LazyLock<Duration> =
    LazyLock::new(|| Duration::from_millis(env_number("PICLOUD_FUZZ_OVERRUN_MS").unwrap_or(3_000)));

/// A number from the environment (triage knobs only; fuzzing uses the defaults).
fn env_number<T: std::str::FromStr>(var: &str) -> Option<T> {
    std::env::var(var).ok().and_then(|v| v.parse().ok())
}

/// The engine exactly as production builds it: default limits, whole stdlib.
/// `PICLOUD_FUZZ_MAX_OPERATIONS` overrides the operations limit, for triage.
pub static ENGINE: LazyLock<ScriptEngine> = LazyLock::new(|| {
    let mut limits = ScriptLimits::default();
    if let Some(ops) = env_number("PICLOUD_FUZZ_MAX_OPERATIONS") {
        limits.max_operations = ops;
    }
    ScriptEngine::new(limits, 16, 16)
});

type Job = Box<dyn FnOnce() + Send>;

/// One long-lived script thread, like the executor's pool threads. A panic on it goes
/// through libfuzzer-sys's panic hook, which aborts: it is reported as a crash.
/// `PICLOUD_FUZZ_STACK_MB` changes its stack size, for triage.
static WORKER: LazyLock<Mutex<mpsc::Sender<Job>>> = LazyLock::new(|| {
    let (tx, rx) = mpsc::channel::<Job>();
    thread::Builder::new()
        .name("picloud-script-fuzz".into())
        .stack_size(
            env_number::<usize>("PICLOUD_FUZZ_STACK_MB")
                .map_or(SCRIPT_THREAD_STACK_BYTES, |mb| mb << 20),
        )
        .spawn(move || {
            for job in rx {
                job();
            }
        })
        .expect("spawn the script thread");
    Mutex::new(tx)
});

/// Runs `f` on the script thread and waits for its result.
pub fn on_script_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (reply, result) = mpsc::sync_channel(1);
    WORKER
        .lock()
        .expect("worker lock")
        .send(Box::new(move || {
            let _ = reply.send(f());
        }))
        .expect("script thread alive");
    result.recv().expect("script thread replied")
}

/// A small fixed request: `POST /items/42?q=hello&n=3` with a JSON body.
pub fn run_input(body: RequestBody, body_raw: Vec<u8>) -> RunInput {
    let pairs = |items: &[(&str, &str)]| -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    RunInput {
        app: AppRef {
            id: "app_fuzz".into(),
            slug: "fuzz".into(),
        },
        script: ScriptRef {
            id: "scr_fuzz".into(),
            name: "fuzz".into(),
        },
        principal: Some(PrincipalInput {
            kind: "user",
            user_id: "usr_fuzz".into(),
            key_id: None,
            scopes: vec!["apps:read".into()],
        }),
        request: Some(RequestInput {
            method: "POST".into(),
            path: "/items/42".into(),
            params: pairs(&[("id", "42")]),
            query: pairs(&[("q", "hello"), ("n", "3")]),
            headers: pairs(&[
                ("content-type", "application/json"),
                ("x-trace", "abc, def"),
            ]),
            body,
            body_raw,
        }),
        event: None,
        execution_id: "exe_fuzz".into(),
        attempt: 1,
        // No services: SDK calls throw "not available", which is fine to fuzz.
        services: None,
    }
}

pub fn default_run_input() -> RunInput {
    let raw = br#"{"name":"widget","n":[1,2.5,null],"tags":{"a":true}}"#;
    let json = serde_json::from_slice(raw).expect("fixed body");
    run_input(RequestBody::Json(json), raw.to_vec())
}

/// The promises a run report makes, whatever the script did.
pub fn check_report(report: &RunReport<RouteResponse>) {
    let limits = ENGINE.limits();
    assert!(
        report.logs.len() <= limits.max_log_lines,
        "{} log lines kept, limit {}",
        report.logs.len(),
        limits.max_log_lines
    );
    for line in &report.logs {
        assert!(
            line.message.len() <= 4096 + "… (truncated)".len(),
            "log line of {} bytes",
            line.message.len()
        );
    }
    assert!(
        report.duration <= *RUN_TIMEOUT + *MAX_OVERRUN,
        "run took {:?}, deadline {:?}: something ignored the wall clock",
        report.duration,
        *RUN_TIMEOUT
    );
    match &report.outcome {
        Ok(response) => check_response(response),
        Err(failure) => {
            // What an HTTP client would be sent; must not panic.
            let _ = failure.public_message();
        }
    }
}

pub fn check_response(response: &RouteResponse) {
    assert!(
        (100..=599).contains(&response.status),
        "status {}",
        response.status
    );
    for (name, value) in &response.headers {
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)),
            "invalid header name {name:?}"
        );
        assert!(
            !value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f),
            "control character in header {name:?}: {value:?}"
        );
    }
}
