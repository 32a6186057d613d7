//! Building the one shared engine: limits, packages, the sandbox's closed doors.

use std::sync::Arc;
use std::time::Instant;

use picloud_core::config::ScriptLimits;
use picloud_core::model::LogLevel;
use rhai::packages::{Package, StandardPackage};
use rhai::{Dynamic, Engine};

use crate::modules::{Resolver, SharedResolver};
use crate::state::{INLINE_TOKEN, MEMORY_TOKEN, OPERATIONS_TOKEN, TIMEOUT_TOKEN};
use crate::{bounded, services, sizes, state, stdlib, Forbidden};

/// How often (in operations) the progress callback reads the clock: often enough that
/// a run of expensive operations cannot overshoot its deadline by much, rarely enough
/// that reading the clock costs under a percent.
const CLOCK_CHECK_EVERY: u64 = 128;

/// How often an inline attempt reads the clock.
const INLINE_CLOCK_CHECK_EVERY: u64 = 8;

/// Operations an inline attempt may use before it gives way to a script thread.
pub(crate) const INLINE_MAX_OPS: u64 = 20_000;

pub(crate) fn build(limits: &ScriptLimits, modules: Arc<Resolver>) -> Engine {
    // `new_raw`: no file-system module resolver, no printing to stdout; imports resolve
    // to the running app's modules only.
    let mut engine = Engine::new_raw();
    engine.set_module_resolver(SharedResolver(modules));
    engine.register_global_module(StandardPackage::new().as_shared_module());

    // Every limit set explicitly: Rhai's defaults differ between debug and release.
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_depth);
    engine.set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth);
    engine.set_max_modules(64);
    engine.set_max_variables(10_000);
    engine.set_max_functions(1_000);
    engine.set_max_strings_interned(1_024);

    engine.disable_symbol("eval");
    // Curried arguments are invisible to the size limits, and `f = f.curry(f)` doubles
    // a value per operation: 40 operations ask for terabytes and the process dies.
    // Closures still capture variables (Rhai curries those internally, not through
    // this keyword).
    engine.disable_symbol("curry");

    let max_operations = limits.max_operations;
    engine.on_progress(move |_| {
        if let Some(token) = state::stopping() {
            return Some(Dynamic::from(token));
        }
        // PiCloud's own count: Rhai's is lost inside closures called by native
        // functions, where a loop could otherwise run unchecked.
        let ops = state::tick()?;
        if max_operations != 0 && ops > max_operations {
            return Some(Dynamic::from(state::stop(OPERATIONS_TOKEN)));
        }
        if state::memory_exceeded() {
            return Some(Dynamic::from(state::stop(MEMORY_TOKEN)));
        }
        // An inline attempt runs on an async worker: it reads the clock more often,
        // since one native call (a sort, a pad) can take a while.
        let inline = state::inline_run();
        let every = if inline {
            INLINE_CLOCK_CHECK_EVERY
        } else {
            CLOCK_CHECK_EVERY
        };
        if ops % every != 0 {
            return None;
        }
        if inline && ops >= INLINE_MAX_OPS {
            return Some(Dynamic::from(state::stop(INLINE_TOKEN)));
        }
        match state::deadline() {
            Some(deadline) if Instant::now() >= deadline => {
                Some(Dynamic::from(state::stop(TIMEOUT_TOKEN)))
            }
            _ => None,
        }
    });
    engine.on_print(|text| state::log(LogLevel::Info, text));
    engine.on_debug(|text, _source, _pos| state::log(LogLevel::Trace, text));

    engine
        .register_type_with_name::<Forbidden>("Forbidden")
        .register_fn("to_string", |f: &mut Forbidden| f.to_string())
        .register_fn("to_debug", |f: &mut Forbidden| f.to_string())
        .register_get("message", |f: &mut Forbidden| f.to_string());

    register_sleep(&mut engine);
    sizes::configure(&mut engine, limits);
    bounded::register(&mut engine);
    stdlib::register(&mut engine);
    services::register(&mut engine);
    engine
}

/// Rhai's `sleep`, held to the run: an inline attempt gives way rather than block an
/// async worker (two `sleep(86400)` froze a server whose workers ran them), and a
/// sleep past the run's deadline ends at it, as a timeout.
fn register_sleep(engine: &mut Engine) {
    fn sleep(seconds: f64) -> Result<(), Box<rhai::EvalAltResult>> {
        let stop = |token| {
            Err(Box::new(rhai::EvalAltResult::ErrorTerminated(
                Dynamic::from(state::stop(token)),
                rhai::Position::NONE,
            )))
        };
        if state::inline_run() {
            return stop(INLINE_TOKEN);
        }
        if seconds.is_nan() || seconds <= 0.0 {
            return Ok(());
        }
        let wanted = std::time::Duration::from_secs_f64(seconds.min(1e9));
        match state::deadline() {
            Some(deadline) if deadline < Instant::now() + wanted => {
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                stop(TIMEOUT_TOKEN)
            }
            _ => {
                std::thread::sleep(wanted);
                Ok(())
            }
        }
    }
    engine
        .register_fn("sleep", |seconds: rhai::INT| sleep(seconds as f64))
        .register_fn("sleep", |seconds: rhai::FLOAT| sleep(seconds));
}

#[cfg(test)]
mod tests {
    use rhai::INT;

    use crate::stdlib::test_support::{engine, eval};

    /// Found while fuzzing: curried arguments escape the size limits, so doubling a
    /// function pointer into itself reached gigabytes in a few dozen operations.
    #[test]
    fn curry_is_disabled() {
        for script in [
            r#"let f = Fn("x"); for i in 0..40 { f = f.curry(f); } 1"#,
            r#"let f = Fn("x"); curry(f, f)"#,
        ] {
            assert!(engine().compile(script).is_err(), "{script}");
        }
    }

    /// Found while fuzzing: captured variables are shared cells the size limits do not
    /// see; a chain of closures each capturing the previous one overflowed the native
    /// stack when dropped (aborting the process), and a closure stored in the map it
    /// captured leaked forever. Rhai is built without closures (`no_closure`):
    /// anonymous functions work, capturing does not.
    #[test]
    fn closures_do_not_capture() {
        assert_eq!(
            eval::<INT>("[1, 2].map(|x| x * 2).reduce(|a, b| a + b, 0)"),
            6
        );
        // The fuzzer's chain: without captures no chain forms, so the loop simply
        // runs into the operation limit instead of aborting the process.
        let chain = "let f = 0; loop { let a = f; f = || a; }";
        let err = engine().run(chain).expect_err("stops");
        assert!(err.to_string().contains("Too many operations"), "{err}");
        let err = engine()
            .run("let a = 1; let f = || a; f.call()")
            .expect_err("no capture");
        assert!(err.to_string().contains("Variable not found"), "{err}");
        assert!(engine()
            .run("let n = 2; let f = |x| x * n; f.call(1)")
            .is_err());
    }
}

/// Found by an outside probe of the release binary: work inside native calls that the
/// limits did not see.
#[cfg(test)]
mod probe_tests {
    use std::time::{Duration, Instant};

    use picloud_core::config::ScriptLimits;

    use crate::stdlib::test_support::{engine, run_on};
    use crate::{FailureKind, Limit, ScriptEngine};

    /// Closures called by native functions (`map`, `reduce`) count their operations:
    /// Rhai's own count restarts for each such call, so a million closure calls ran
    /// under a 200,000-operation limit (and past the clock, never checked).
    #[test]
    fn closures_called_by_native_functions_count_operations() {
        let limits = ScriptLimits {
            max_operations: 200_000,
            ..ScriptLimits::default()
        };
        let engine = ScriptEngine::new(limits, 4, 4);
        let report = run_on(
            &engine,
            Duration::from_secs(60),
            r#"let a = []; a.pad(1000, 0);
               a.map(|x| { let b = []; b.pad(1000, 1); b.reduce(|acc, y| acc + y, 0) }); "done""#,
        );
        let failure = report.outcome.expect_err("stopped");
        assert_eq!(
            failure.kind,
            FailureKind::LimitExceeded(Limit::Operations),
            "{failure:?}"
        );
    }

    /// A sort of long strings that differ only at their ends stops at the deadline, not
    /// after every comparison (it ran for minutes).
    #[test]
    fn sorting_long_strings_stops_at_the_deadline() {
        let engine = ScriptEngine::new(ScriptLimits::default(), 4, 4);
        let started = Instant::now();
        let report = run_on(
            &engine,
            Duration::from_millis(200),
            r#"let base = ""; base.pad(1000000, "a");
               let keys = []; for i in 0..64 { keys.push(base + i); }
               let a = []; for i in 0..100000 { a.push(keys[i % 64]); }
               a.sort(); a.sort_desc(); a.len()"#,
        );
        let failure = report.outcome.expect_err("stopped");
        assert_eq!(failure.kind, FailureKind::Timeout, "{failure:?}");
        // Generous: the sort alone took tens of seconds before.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        // Sorting itself still works.
        let report = run_on(
            &engine,
            Duration::from_secs(5),
            r#"let a = ["b", "c", "a"]; a.sort(); let d = a.order_desc(); `${a}${d}`"#,
        );
        let text = report
            .outcome
            .expect("sorted")
            .into_string()
            .expect("string");
        assert_eq!(text, r#"["a", "b", "c"]["c", "b", "a"]"#);
    }

    /// `sleep` is held to the run's deadline.
    #[test]
    fn sleep_ends_at_the_deadline() {
        let engine = ScriptEngine::new(ScriptLimits::default(), 4, 4);
        let report = run_on(&engine, Duration::from_millis(100), "sleep(86400); 1");
        assert_eq!(
            report.outcome.expect_err("stopped").kind,
            FailureKind::Timeout
        );
        assert!(report.duration < Duration::from_secs(10));
        let report = run_on(&engine, Duration::from_secs(5), "sleep(0.01); sleep(0); 1");
        assert!(report.outcome.is_ok());
    }

    /// Saving a script of many statements is linear in its length (Rhai's optimizer
    /// was quadratic: 20,000 `{1}` took 10 s, 80,000 `{}` 87 s).
    #[test]
    fn compiling_many_blocks_is_linear() {
        for unit in ["{1}", "{}", "1;", "{{1};{}}"] {
            let source = unit.repeat(100_000);
            assert!(engine().compile(&source).is_ok(), "{unit}");
        }
    }
}
