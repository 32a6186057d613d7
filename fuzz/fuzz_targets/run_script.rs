//! Compiles and runs arbitrary scripts under the production limits, on a thread with
//! the production stack size. Any panic (ours or Rhai's), native stack overflow, abort,
//! run that overshoots its deadline, or runaway memory is a finding.

#![no_main]

mod common;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

use common::{check_report, default_run_input, on_script_thread, ENGINE, RUN_TIMEOUT};

/// `PICLOUD_FUZZ_VERBOSE=1`: print each input's outcome (for triage and seed checks).
static VERBOSE: LazyLock<bool> =
    LazyLock::new(|| std::env::var_os("PICLOUD_FUZZ_VERBOSE").is_some());

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let source = source.to_owned();
    on_script_thread(move || {
        // Compiling recurses on nesting, so it runs on the big stack too (as on save).
        let ast = match ENGINE.compile(&source) {
            Ok(ast) => ast,
            Err(e) => {
                if *VERBOSE {
                    eprintln!(
                        "compile error: {e} (line {:?}, column {:?})",
                        e.line, e.column
                    );
                }
                return;
            }
        };
        let report = ENGINE.run_route(&ast, default_run_input(), *RUN_TIMEOUT);
        if *VERBOSE {
            eprintln!(
                "{:?} in {:?}; logs: {:?}",
                report.outcome,
                report.duration,
                report.logs.iter().map(|l| &l.message).collect::<Vec<_>>()
            );
        }
        check_report(&report);
    });
});
