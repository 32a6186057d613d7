//! What every run shares, whoever starts it (a route, the dispatcher): compile through
//! the cache, run with the limits, and turn the report into an execution record.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use picloud_core::model::{ExecutionSource, ExecutionStatus, LogLevel};
use picloud_core::{AppId, ExecutionId, ScriptId};
use picloud_script::{CacheKey, FailureKind, RunInput, RunReport, ScriptEngine, ScriptFailure};
use picloud_store::{App, Execution, LogLine, Script, Store, StoreResult};
use rhai::Dynamic;

/// Compiles (or takes from the cache) and runs `script`; `finish` shapes the result on
/// the script thread. Meant to run on an executor thread.
pub fn run_script<T>(
    engine: &ScriptEngine,
    script: &Script,
    input: RunInput,
    timeout: Duration,
    finish: impl FnOnce(Dynamic) -> Result<T, ScriptFailure>,
) -> RunReport<T> {
    let key = CacheKey {
        script_id: script.id.as_str(),
        updated_at: script.updated_at,
    };
    match engine.compiled(key, &script.source) {
        Ok(ast) => engine.run(&ast, input, timeout, finish),
        Err(e) => failed(ScriptFailure {
            kind: FailureKind::Error,
            message: format!("compile error: {}", e.message),
            line: e.line,
        }),
    }
}

/// A report of a run that never got to run its script.
pub fn failed<T>(failure: ScriptFailure) -> RunReport<T> {
    RunReport {
        outcome: Err(failure),
        logs: Vec::new(),
        dropped_logs: 0,
        duration: Duration::ZERO,
    }
}

pub fn status_of(failure: Option<&ScriptFailure>) -> ExecutionStatus {
    match failure.map(|f| f.kind) {
        None => ExecutionStatus::Ok,
        Some(FailureKind::Error | FailureKind::Forbidden) => ExecutionStatus::Error,
        Some(FailureKind::Timeout) => ExecutionStatus::Timeout,
        Some(FailureKind::LimitExceeded(_)) => ExecutionStatus::LimitExceeded,
    }
}

/// Who ran what, for the execution record.
pub struct RunIdentity<'a> {
    pub app: &'a App,
    pub script: &'a Script,
    pub id: &'a ExecutionId,
    pub source: ExecutionSource,
    pub started_at: DateTime<Utc>,
}

/// The execution record of a finished run.
pub fn execution_record<T>(
    who: &RunIdentity<'_>,
    report: &RunReport<T>,
    max_log_lines: usize,
) -> Execution {
    let failure = report.outcome.as_ref().err();
    let mut logs: Vec<LogLine> = report
        .logs
        .iter()
        .map(|l| LogLine {
            level: l.level,
            message: l.message.clone(),
            at: l.at,
        })
        .collect();
    if report.dropped_logs > 0 {
        logs.push(LogLine {
            level: LogLevel::Warn,
            message: format!(
                "{} more log lines dropped (at most {max_log_lines} are kept per run)",
                report.dropped_logs
            ),
            at: picloud_core::now(),
        });
    }
    Execution {
        id: who.id.clone(),
        app_id: who.app.id.clone(),
        script_id: who.script.id.clone(),
        source: who.source,
        status: status_of(failure),
        started_at: who.started_at,
        duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
        logs,
        error: failure.map(|f| f.message.clone()),
        error_line: failure.and_then(|f| f.line),
    }
}

/// Script and app rows the dispatcher reads for every delivery, kept briefly: a
/// change made on this node is forgotten at once, one made on another node is seen
/// within [`ROW_CACHE_TTL`].
pub const ROW_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Default)]
pub struct RowCache {
    scripts: parking_lot::Mutex<HashMap<ScriptId, (Instant, Arc<Script>)>>,
    apps: parking_lot::Mutex<HashMap<AppId, (Instant, Arc<App>)>>,
}

fn fresh<K: std::hash::Hash + Eq, V>(
    map: &HashMap<K, (Instant, Arc<V>)>,
    key: &K,
) -> Option<Arc<V>> {
    map.get(key)
        .filter(|(at, _)| at.elapsed() < ROW_CACHE_TTL)
        .map(|(_, v)| v.clone())
}

impl RowCache {
    pub async fn script(&self, store: &dyn Store, id: &ScriptId) -> StoreResult<Arc<Script>> {
        if let Some(script) = fresh(&self.scripts.lock(), id) {
            return Ok(script);
        }
        let script = Arc::new(store.get_script(id).await?);
        self.scripts
            .lock()
            .insert(id.clone(), (Instant::now(), script.clone()));
        Ok(script)
    }

    pub async fn app(&self, store: &dyn Store, id: &AppId) -> StoreResult<Arc<App>> {
        if let Some(app) = fresh(&self.apps.lock(), id) {
            return Ok(app);
        }
        let app = Arc::new(store.get_app(id).await?);
        self.apps
            .lock()
            .insert(id.clone(), (Instant::now(), app.clone()));
        Ok(app)
    }

    pub fn forget_script(&self, id: &ScriptId) {
        self.scripts.lock().remove(id);
    }

    pub fn forget_app(&self, id: &AppId) {
        self.apps.lock().remove(id);
    }

    pub fn clear(&self) {
        self.scripts.lock().clear();
        self.apps.lock().clear();
    }
}

/// Scripts (by id, with the `updated_at` it holds for) whose inline attempt gave way:
/// they call services or run long, so they go straight to a script thread.
#[derive(Default)]
pub struct ThreadedScripts(parking_lot::Mutex<HashMap<ScriptId, DateTime<Utc>>>);

/// Forgetting everything now and then keeps the set bounded; a forgotten script costs
/// one more inline attempt.
const THREADED_SCRIPTS_MAX: usize = 4096;

impl ThreadedScripts {
    pub fn contains(&self, script: &Script) -> bool {
        self.0.lock().get(&script.id) == Some(&script.updated_at)
    }

    pub fn insert(&self, script: &Script) {
        let mut set = self.0.lock();
        if set.len() >= THREADED_SCRIPTS_MAX {
            set.clear();
        }
        set.insert(script.id.clone(), script.updated_at);
    }
}

/// The engine and the pool, shared by everything that runs scripts.
#[derive(Clone)]
pub struct Runner {
    pub engine: Arc<ScriptEngine>,
    pub executor: Arc<crate::Executor>,
    pub recorder: Arc<crate::ExecutionRecorder>,
    pub metrics: Arc<crate::Metrics>,
    pub rows: Arc<RowCache>,
    pub threaded: Arc<ThreadedScripts>,
}

impl Runner {
    /// Runs a route script inline on this async worker if it is compiled, has not
    /// needed a script thread before, and finishes within the inline budget; `None`:
    /// run it on a script thread.
    pub fn try_inline<T>(
        &self,
        script: &Script,
        input: &RunInput,
        finish: fn(Dynamic) -> Result<T, ScriptFailure>,
    ) -> Option<RunReport<T>> {
        if self.threaded.contains(script) {
            return None;
        }
        let _slot = self.executor.try_app_slot(script.app_id.as_str())?;
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

    /// A script changed or is gone: drop its compiled copy and cached row.
    pub fn forget_script(&self, id: &ScriptId) {
        self.engine.forget(id.as_str());
        self.rows.forget_script(id);
    }

    /// An app changed (renamed): drop its cached row.
    pub fn app_changed(&self, id: &AppId) {
        self.rows.forget_app(id);
    }

    /// An app is gone: drop its cached row and the executor's state for it.
    pub fn app_deleted(&self, id: &AppId) {
        self.rows.forget_app(id);
        self.executor.forget_app(id.as_str());
    }

    /// Anything may have changed: drop every cached row. (Compiled scripts are keyed
    /// by `updated_at`, so a fresh row never runs stale code.)
    pub fn forget_all(&self) {
        self.rows.clear();
    }

    /// Whether this node keeps per-app state for the app (tests check that a deleted
    /// app leaves none behind on any node).
    pub fn holds_app_state(&self, id: &AppId) -> bool {
        self.executor.tracks_app(id.as_str())
    }

    /// Records a finished run and counts it.
    pub async fn record(&self, execution: Execution) {
        self.metrics.observe_execution(execution.status.as_str());
        self.recorder.record(execution).await;
    }
}
