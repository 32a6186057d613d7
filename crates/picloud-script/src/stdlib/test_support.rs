//! Helpers for the namespace tests: a real engine, built as production builds it.

use std::sync::LazyLock;
use std::time::Duration;

use picloud_core::config::ScriptLimits;
use rhai::{Dynamic, Engine, EvalAltResult};

use crate::{AppRef, RunInput, RunReport, ScriptEngine, ScriptFailure, ScriptRef};

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

static SCRIPT_ENGINE: LazyLock<ScriptEngine> =
    LazyLock::new(|| ScriptEngine::new(ScriptLimits::default(), 8, 8));

/// Runs `script` as the executor runs one: with its run state, so the wall-clock and
/// memory limits hold (this test binary counts allocations like the server).
#[track_caller]
pub(crate) fn run(script: &str) -> RunReport<Dynamic> {
    run_on(&SCRIPT_ENGINE, Duration::from_secs(5), script)
}

/// Runs `script` on `engine` with a wall-clock limit of `timeout`.
#[track_caller]
pub(crate) fn run_on(engine: &ScriptEngine, timeout: Duration, script: &str) -> RunReport<Dynamic> {
    let ast = compile(engine, script);
    engine.run(&ast, input(), timeout, Ok)
}

/// Runs `script` as a route: its value becomes a response.
#[track_caller]
pub(crate) fn route(script: &str) -> RunReport<crate::RouteResponse> {
    let engine = &*SCRIPT_ENGINE;
    let ast = compile(engine, script);
    engine.run_route(&ast, input(), Duration::from_secs(5))
}

#[track_caller]
fn compile(engine: &ScriptEngine, script: &str) -> rhai::AST {
    match engine.compile(script) {
        Ok(ast) => ast,
        Err(e) => panic!("does not compile: {e}\n{script}"),
    }
}

/// A run's input with no request, event or services.
fn input() -> RunInput {
    RunInput {
        app: AppRef {
            id: "app_test".into(),
            slug: "test".into(),
        },
        script: ScriptRef {
            id: "scr_test".into(),
            name: "test".into(),
        },
        principal: None,
        request: None,
        event: None,
        execution_id: "exe_test".into(),
        attempt: 1,
        services: None,
    }
}

/// Runs `script`, which must fail; returns how.
#[track_caller]
pub(crate) fn run_failure(script: &str) -> ScriptFailure {
    match run(script).outcome {
        Ok(value) => panic!("script did not fail but returned {value:?}\n{script}"),
        Err(failure) => failure,
    }
}
