//! Helpers for the namespace tests: a real engine, built as production builds it.

use std::sync::LazyLock;

use picloud_core::config::ScriptLimits;
use rhai::{Dynamic, Engine, EvalAltResult};

static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    crate::engine::build(
        &ScriptLimits::default(),
        std::sync::Arc::new(crate::modules::Resolver::new(8)),
    )
});

/// The shared test engine (default limits, the whole standard library registered).
pub(crate) fn engine() -> &'static Engine {
    &ENGINE
}

/// Evaluates `script`, which must succeed with a `T`.
#[track_caller]
pub(crate) fn eval<T: rhai::Variant + Clone>(script: &str) -> T {
    match engine().eval::<T>(script) {
        Ok(value) => value,
        Err(e) => panic!("script failed: {e}\n{script}"),
    }
}

/// Evaluates `script`, which must throw; returns the thrown message (a runtime error's
/// value, unwrapped from any function-call frames), or the error's text otherwise.
#[track_caller]
pub(crate) fn eval_err(script: &str) -> String {
    match engine().eval::<Dynamic>(script) {
        Ok(value) => panic!("script did not throw but returned {value:?}\n{script}"),
        Err(e) => message(&e),
    }
}

fn message(e: &EvalAltResult) -> String {
    match e {
        EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => message(inner),
        other => other.to_string(),
    }
}
