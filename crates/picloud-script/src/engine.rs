//! Building the one shared engine: limits, packages, the sandbox's closed doors.

use std::sync::Arc;
use std::time::Instant;

use picloud_core::config::ScriptLimits;
use picloud_core::model::LogLevel;
use rhai::packages::{Package, StandardPackage};
use rhai::{Dynamic, Engine};

use crate::error::{INLINE_TOKEN, MEMORY_TOKEN, TIMEOUT_TOKEN};
use crate::modules::{Resolver, SharedResolver};
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

    engine.on_progress(|ops| {
        if let Some(token) = state::stopping() {
            return Some(Dynamic::from(token));
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

    sizes::configure(&mut engine, limits);
    bounded::register(&mut engine);
    stdlib::register(&mut engine);
    services::register(&mut engine);
    engine
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
