//! The PiCloud script engine.
//!
//! One [`ScriptEngine`] per process: an immutable Rhai engine with every limit and
//! namespace registered, and an LRU of compiled scripts keyed by script id and
//! invalidated by `updated_at`. Runs are synchronous and meant for the executor's
//! dedicated threads; per-run state travels through a thread-local (see `state`).

// Unit tests count allocations as production does, so memory limits hold in them too.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: picloud_alloc::CountingAllocator = picloud_alloc::CountingAllocator;

mod bounded;
mod convert;
mod ctx;
mod engine;
mod error;
mod modules;
mod response;
pub mod sdk;
mod services;
mod sizes;
mod state;
mod stdlib;

use std::cell::Cell;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lru::LruCache;
use parking_lot::Mutex;
use picloud_core::config::ScriptLimits;
use picloud_core::model::ScriptKind;
use rhai::{Dynamic, Engine, Scope, AST};

pub use bounded::{json_value, JsonOutError};
pub use convert::json_to_dynamic;
pub use ctx::{AppRef, PrincipalInput, RequestBody, RequestInput, RunInput, ScriptRef};
pub use error::{CompileError, FailureKind, Limit, ScriptFailure};
pub use modules::{inspect, ScriptImport};
pub use response::RouteResponse;

/// Turns a route script's value into its HTTP response (SCRIPTING.md's table).
pub fn to_route_response(value: Dynamic) -> Result<RouteResponse, ScriptFailure> {
    response::to_response(value)
}
pub use state::CapturedLog;

/// A service call refused for lack of a right. A distinct type, so that a script
/// throwing the string `"forbidden: …"` itself is not mistaken for a refusal.
#[derive(Debug, Clone)]
pub struct Forbidden(pub String);

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "forbidden: {}", self.0)
    }
}

/// How a run reaches the services: the bundle, the call context (app, caller, depth)
/// and the async runtime the calls run on (scripts block on them, on their own thread).
pub struct ServiceAccess {
    pub services: Arc<picloud_services::Services>,
    pub ctx: picloud_services::CallContext,
    pub handle: tokio::runtime::Handle,
}

impl fmt::Debug for ServiceAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccess")
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

/// What a run left behind besides its result.
#[derive(Debug)]
pub struct RunReport<T> {
    pub outcome: Result<T, ScriptFailure>,
    pub logs: Vec<CapturedLog>,
    pub dropped_logs: usize,
    pub duration: Duration,
}

/// The identity a compiled script is cached under.
#[derive(Debug, Clone, Copy)]
pub struct CacheKey<'a> {
    pub script_id: &'a str,
    pub updated_at: DateTime<Utc>,
}

/// The wall-clock budget of an inline attempt ([`ScriptEngine::try_inline`]): what an
/// async worker may spend on one before other connections would notice.
pub const INLINE_MAX_WALL: Duration = Duration::from_millis(1);

thread_local! {
    static INLINE_ALLOWED: Cell<bool> = const { Cell::new(false) };
}

/// Lets [`ScriptEngine::try_inline`] run scripts on this thread. Call it from threads
/// whose stack is at least [`INLINE_STACK_BYTES`] (the runtime's `on_thread_start`).
pub fn allow_inline_runs_on_this_thread() {
    INLINE_ALLOWED.with(|a| a.set(true));
}

/// Native stack that inline runs need: the call- and expression-depth limits, not the
/// stack, must stop deep recursion (a native overflow aborts the process).
pub const INLINE_STACK_BYTES: usize = 256 << 20;

/// Compiled scripts by id, each with the `updated_at` it was compiled from.
type AstCache = LruCache<String, (DateTime<Utc>, Arc<AST>)>;

pub struct ScriptEngine {
    engine: Engine,
    limits: ScriptLimits,
    cache: Mutex<AstCache>,
}

impl ScriptEngine {
    /// `cache_size` compiled scripts and `module_cache_size` compiled modules are kept.
    pub fn new(limits: ScriptLimits, cache_size: usize, module_cache_size: usize) -> Self {
        let resolver = Arc::new(modules::Resolver::new(module_cache_size));
        let engine = engine::build(&limits, resolver);
        let capacity = NonZeroUsize::new(cache_size.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            engine,
            limits,
            cache: Mutex::new(LruCache::new(capacity)),
        }
    }

    pub fn limits(&self) -> &ScriptLimits {
        &self.limits
    }

    pub fn rhai(&self) -> &Engine {
        &self.engine
    }

    /// Compiles a script. Deeply nested sources recurse in the parser, so call this
    /// on an executor thread (large stack), not on an async worker.
    pub fn compile(&self, source: &str) -> Result<AST, CompileError> {
        self.engine.compile(source).map_err(CompileError::from)
    }

    /// Compiles a script about to be saved and returns what it imports; a module must
    /// also have a module's shape. Call on an executor thread, as [`Self::compile`].
    pub fn check(&self, source: &str, kind: ScriptKind) -> Result<Vec<ScriptImport>, CompileError> {
        modules::inspect(&self.compile(source)?, kind)
    }

    /// The compiled script, from the cache when its `updated_at` still matches.
    pub fn compiled(&self, key: CacheKey<'_>, source: &str) -> Result<Arc<AST>, CompileError> {
        if let Some((updated_at, ast)) = self.cache.lock().get(key.script_id) {
            if *updated_at == key.updated_at {
                return Ok(ast.clone());
            }
        }
        let ast = Arc::new(self.compile(source)?);
        self.cache
            .lock()
            .put(key.script_id.to_owned(), (key.updated_at, ast.clone()));
        Ok(ast)
    }

    /// Drops a script's compiled copy (it was changed or deleted).
    pub fn forget(&self, script_id: &str) {
        self.cache.lock().pop(script_id);
    }

    /// The compiled script if the cache holds it for this `updated_at`; never compiles.
    pub fn cached(&self, key: CacheKey<'_>) -> Option<Arc<AST>> {
        match self.cache.lock().get(key.script_id) {
            Some((updated_at, ast)) if *updated_at == key.updated_at => Some(ast.clone()),
            _ => None,
        }
    }

    /// Runs `ast` with `input` as `ctx`, stopped at `timeout` of wall-clock time, and
    /// turns the returned value into `T` with `finish` while still on this thread.
    pub fn run<T>(
        &self,
        ast: &AST,
        mut input: RunInput,
        timeout: Duration,
        finish: impl FnOnce(Dynamic) -> Result<T, ScriptFailure>,
    ) -> RunReport<T> {
        let body_raw = input
            .request
            .as_mut()
            .map(|r| std::mem::take(&mut r.body_raw))
            .unwrap_or_default();
        self.attempt(ast, &input, body_raw, timeout, false, finish)
            .0
    }

    /// Tries a run right here, on an async worker, within a budget of
    /// [`INLINE_MAX_WALL`] and a few thousand operations: a short script that calls no
    /// service (most glue code does not) answers without the two thread switches of a
    /// hand-off to a script thread. A service call, the budget or any limit makes the
    /// attempt give way with nothing observable done (service calls are where effects
    /// happen, and the attempt stops before its first), and `None` says: run it on a
    /// script thread. Only on threads that [`allow_inline_runs_on_this_thread`] marked:
    /// their stacks are as large as the limits assume.
    pub fn try_inline<T>(
        &self,
        ast: &AST,
        input: &RunInput,
        finish: fn(Dynamic) -> Result<T, ScriptFailure>,
    ) -> Option<RunReport<T>> {
        if !INLINE_ALLOWED.with(Cell::get) {
            return None;
        }
        // A panic here would take the connection's task down; on a script thread the
        // executor catches it and reports the run as crashed, so give way instead.
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let body_raw = input
                .request
                .as_ref()
                .map(|r| r.body_raw.clone())
                .unwrap_or_default();
            self.attempt(ast, input, body_raw, INLINE_MAX_WALL, true, finish)
        }));
        match attempt {
            Ok((report, false)) => Some(report),
            Ok((_, true)) | Err(_) => None,
        }
    }

    fn attempt<T>(
        &self,
        ast: &AST,
        input: &RunInput,
        body_raw: Vec<u8>,
        timeout: Duration,
        inline: bool,
        finish: impl FnOnce(Dynamic) -> Result<T, ScriptFailure>,
    ) -> (RunReport<T>, bool) {
        let started = Instant::now();
        let run_state = state::RunState {
            deadline: started + timeout,
            services: input.services.clone(),
            max_memory: self.limits.max_memory_bytes,
            max_answer_bytes: self.limits.max_blob_bytes,
            logs: Vec::new(),
            max_logs: self.limits.max_log_lines,
            dropped_logs: 0,
            imports: Vec::new(),
            inline,
            deferred: false,
        };
        let (outcome, run_state) = state::with_run(run_state, || {
            let mut scope = Scope::new();
            scope.push("ctx", ctx::build(input, body_raw));
            let value = self
                .engine
                .eval_ast_with_scope::<Dynamic>(&mut scope, ast)
                .map_err(|e| error::classify(&e))?;
            finish(value)
        });
        let report = RunReport {
            outcome,
            logs: run_state.logs,
            dropped_logs: run_state.dropped_logs,
            duration: started.elapsed(),
        };
        (report, run_state.deferred)
    }

    /// Runs a route script: the value becomes an HTTP response.
    pub fn run_route(
        &self,
        ast: &AST,
        input: RunInput,
        timeout: Duration,
    ) -> RunReport<RouteResponse> {
        self.run(ast, input, timeout, response::to_response)
    }
}
