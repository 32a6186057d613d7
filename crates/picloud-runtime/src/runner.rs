//! The runner: everything that runs scripts shares it (routes, the dispatcher). Its
//! parts are its own; the server asks for what it needs by intent.

use std::sync::Arc;
use std::time::Duration;

use picloud_core::model::ScriptKind;
use picloud_core::{AppId, ExecutionId, ScriptId};
use picloud_script::sdk::SdkDescription;
use picloud_script::{
    CacheKey, CompileError, RunInput, RunReport, ScriptEngine, ScriptFailure, ScriptImport,
};
use picloud_services::Services;
use picloud_store::{App, Execution, RetryPolicy, Script, Store};
use rhai::Dynamic;

use crate::input::{self, Caller, Subject};
use crate::run::{RowCache, ThreadedScripts};
use crate::{on_script_stack, ExecError, ExecutionRecorder, Executor, Metrics};

/// The limits and policies of route runs.
#[derive(Debug, Clone)]
pub struct RouteLimits {
    /// How long a route's script may run.
    pub timeout: Duration,
    /// How much longer than queue time + run time the client waits before the run is
    /// abandoned (answered 504, recorded when it ends).
    pub abandon_grace: Duration,
    /// Log lines kept per run.
    pub max_log_lines: usize,
    /// Retries of an async route's delivery.
    pub retry: RetryPolicy,
}

/// What a runner is made of.
pub struct RunnerParts {
    pub store: Arc<dyn Store>,
    pub services: Arc<Services>,
    pub engine: Arc<ScriptEngine>,
    pub executor: Arc<Executor>,
    pub recorder: Arc<ExecutionRecorder>,
    pub metrics: Arc<Metrics>,
    pub limits: RouteLimits,
}

/// The engine, the pool, the records and the metrics, behind one `Arc`: a route run
/// that outlives its request (abandoned, or its client gone) takes a clone along.
#[derive(Clone)]
pub struct Runner(Arc<Inner>);

/// What a runner holds. Reachable only inside this crate (the module is private and
/// every field crate-only): the `Deref` is this crate's shorthand, not an interface.
pub struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) services: Arc<Services>,
    pub(crate) engine: Arc<ScriptEngine>,
    pub(crate) executor: Arc<Executor>,
    pub(crate) recorder: Arc<ExecutionRecorder>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) rows: RowCache,
    pub(crate) threaded: ThreadedScripts,
    pub(crate) limits: RouteLimits,
}

impl std::ops::Deref for Runner {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Runner {
    pub fn new(parts: RunnerParts) -> Self {
        Self(Arc::new(Inner {
            store: parts.store,
            services: parts.services,
            engine: parts.engine,
            executor: parts.executor,
            recorder: parts.recorder,
            metrics: parts.metrics,
            rows: RowCache::default(),
            threaded: ThreadedScripts::default(),
            limits: parts.limits,
        }))
    }

    /// The input of a run of `script`, for every kind of run.
    pub(crate) fn input(
        &self,
        app: &App,
        script: &Script,
        execution_id: &ExecutionId,
        caller: Option<Caller>,
        subject: Subject,
    ) -> RunInput {
        input::run_input(&self.services, app, script, execution_id, caller, subject)
    }

    /// Runs a route script inline on this async worker if it is compiled, has not
    /// needed a script thread before, and finishes within the inline budget; `None`:
    /// run it on a script thread. An inline attempt takes no slot: it is bounded by
    /// its budget like any other request handling, and counting it against the app's
    /// share serialised an app whose share is one or two slots.
    pub(crate) fn try_inline<T>(
        &self,
        script: &Script,
        input: &RunInput,
        finish: fn(Dynamic) -> Result<T, ScriptFailure>,
    ) -> Option<RunReport<T>> {
        if self.threaded.contains(script) {
            return None;
        }
        let key = CacheKey {
            script_id: script.id.as_str(),
            updated_at: script.updated_at,
        };
        let ast = self.engine.cached(key)?;
        let report = self.engine.try_inline(&ast, input, finish);
        match &report {
            Some(_) => self.metrics.observe_inline_run(),
            None => self.threaded.insert(script),
        }
        report
    }

    /// Records a finished run and counts it.
    pub(crate) async fn record(&self, execution: Execution) {
        self.metrics.observe_execution(execution.status.as_str());
        self.recorder.record(execution).await;
    }

    /// Compiles `source` on a thread with a script-sized stack (the parser recurses on
    /// nesting) and returns what it imports; a module must have a module's shape.
    pub async fn check_script(
        &self,
        source: String,
        kind: ScriptKind,
    ) -> Result<Result<Vec<ScriptImport>, CompileError>, ExecError> {
        let engine = self.engine.clone();
        on_script_stack(move || engine.check(&source, kind)).await
    }

    /// The script SDK as the engine has it registered.
    pub fn sdk_description(&self) -> SdkDescription {
        picloud_script::sdk::describe(self.engine.rhai())
    }

    /// Counts an answered data-plane request.
    pub fn observe_request(&self, app: &str, status: u16, seconds: f64) {
        self.metrics.observe_request(app, status, seconds);
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render_metrics(&self) -> String {
        self.metrics
            .render(self.executor.queue_depth(), self.executor.busy())
    }

    /// An app changed (renamed): drop its cached row.
    pub fn app_changed(&self, id: &AppId) {
        self.rows.forget_app(id);
    }

    /// An app is gone: drop its cached row and the executor's state for it.
    pub fn app_deleted(&self, id: &AppId) {
        self.executor.forget_app(id.as_str());
        self.rows.forget_app(id);
    }

    /// Whether this node's executor keeps state for the app (runs of it in progress
    /// or waiting; tests check that a deleted app leaves none behind on any node).
    pub fn holds_app_state(&self, id: &AppId) -> bool {
        self.executor.tracks_app(id.as_str())
    }

    /// A script changed or is gone: drop its compiled copy and cached row.
    pub fn forget_script(&self, id: &ScriptId) {
        self.engine.forget(id.as_str());
        self.rows.forget_script(id);
    }

    /// Anything may have changed: drop every cached row. (Compiled scripts are keyed
    /// by `updated_at`, so a fresh row never runs stale code.)
    pub fn forget_all(&self) {
        self.rows.clear();
    }

    /// Refuses new runs (those in progress finish), then writes every record queued.
    pub async fn close(&self) {
        self.executor.close();
        self.recorder.flush().await;
    }
}
