//! Per-run state, reached from inside the shared engine through a thread-local.
//!
//! The engine is built once and shared by every executor thread, so what belongs to a
//! single run (its deadline, its captured log lines) cannot live in the engine. The
//! executor thread installs a [`RunState`] for the duration of a run; SDK functions
//! and the engine's progress/print callbacks read it.

use std::cell::{Cell, RefCell};
use std::time::Instant;

use chrono::{DateTime, Utc};
use picloud_core::model::LogLevel;

use crate::modules::ModuleDeps;

/// Longest single captured log line; longer lines are cut.
/// What a run is stopped with (`ErrorTerminated`, which no `try` can catch); `error`
/// turns each back into the limit it stands for.
pub(crate) const TIMEOUT_TOKEN: &str = "picloud:timeout";
pub(crate) const MEMORY_TOKEN: &str = "picloud:memory";
/// The operation limit, as PiCloud counts operations (see [`tick`]).
pub(crate) const OPERATIONS_TOKEN: &str = "picloud:operations";
/// Stops an inline attempt that must give way to a script thread.
pub(crate) const INLINE_TOKEN: &str = "picloud:inline";

pub const MAX_LOG_LINE_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedLog {
    pub level: LogLevel,
    pub message: String,
    pub at: DateTime<Utc>,
}

pub(crate) struct RunState {
    pub deadline: Instant,
    /// How the run reaches the services; `None` in compile checks and bare tests.
    pub services: Option<std::sync::Arc<crate::ServiceAccess>>,
    pub max_memory: usize,
    /// The largest JSON text a run may answer with.
    pub max_answer_bytes: usize,
    pub logs: Vec<CapturedLog>,
    pub max_logs: usize,
    pub dropped_logs: usize,
    /// The modules being imported, outermost first.
    pub imports: Vec<ImportFrame>,
    /// An inline attempt (see `ScriptEngine::try_inline`): it gives way instead of
    /// calling a service or running long.
    pub inline: bool,
    /// The inline attempt gave way; its outcome means nothing.
    pub deferred: bool,
}

thread_local! {
    static CURRENT: RefCell<Option<RunState>> = const { RefCell::new(None) };
    /// (allocation count at the start of the run, bytes the run may add); read on
    /// every operation, so kept apart from `CURRENT` and cheap.
    static MEMORY: Cell<(isize, isize)> = const { Cell::new((0, isize::MAX)) };
    /// The token that stopped the run, once one did: returned again on every later
    /// operation, so a script cannot catch its way past a stop (errors raised inside
    /// closures reach `try` wrapped, and the wrapper is catchable).
    static STOP: Cell<Option<&'static str>> = const { Cell::new(None) };
    /// Whether the run is an inline attempt; read on every operation.
    static INLINE: Cell<bool> = const { Cell::new(false) };
    /// Operations the run has taken, counted here rather than trusted to Rhai: a
    /// closure that a native function calls (`map`, `reduce`, `sort_by`…) runs on a
    /// copy of Rhai's counter that is thrown away after each call, so Rhai's own count
    /// (and any clock check keyed to it) never advances inside it. 0 outside a run.
    static OPS: Cell<u64> = const { Cell::new(0) };
}

/// Counts one operation of the current run; returns how many it has taken, `None`
/// outside a run (a compile check, a bare engine in tests).
pub(crate) fn tick() -> Option<u64> {
    OPS.with(|o| {
        let n = o.get();
        if n == 0 {
            return None;
        }
        o.set(n + 1);
        Some(n)
    })
}

/// The token that stopped the current run, if one has.
pub(crate) fn stopping() -> Option<&'static str> {
    STOP.with(Cell::get)
}

pub(crate) fn inline_run() -> bool {
    INLINE.with(Cell::get)
}

/// Stops the current run for good with `token`; an inline attempt gives way instead
/// (and the token says so). Returns the token to raise.
pub(crate) fn stop(token: &'static str) -> &'static str {
    let token = if defer_if_inline() {
        INLINE_TOKEN
    } else {
        token
    };
    STOP.with(|s| s.set(Some(token)));
    token
}

/// Whether the current run holds more memory than it may.
pub(crate) fn memory_exceeded() -> bool {
    let (base, max) = MEMORY.with(Cell::get);
    picloud_alloc::thread_allocated().saturating_sub(base) > max
}

/// Bytes the current run may still allocate (unbounded outside a run).
pub(crate) fn memory_left() -> usize {
    let (base, max) = MEMORY.with(Cell::get);
    let used = picloud_alloc::thread_allocated().saturating_sub(base);
    usize::try_from(max.saturating_sub(used)).unwrap_or(0)
}

/// Stops the current run at its memory limit: what a step that would allocate past
/// it raises instead of allocating.
pub(crate) fn memory_stop() -> Box<rhai::EvalAltResult> {
    Box::new(rhai::EvalAltResult::ErrorTerminated(
        rhai::Dynamic::from(stop(MEMORY_TOKEN)),
        rhai::Position::NONE,
    ))
}

/// Installs `state` for the closure's duration and returns what the run left in it.
pub(crate) fn with_run<T>(state: RunState, f: impl FnOnce() -> T) -> (T, RunState) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CURRENT.with(|c| c.borrow_mut().take());
            MEMORY.with(|m| m.set((0, isize::MAX)));
            STOP.with(|s| s.set(None));
            INLINE.with(|i| i.set(false));
            OPS.with(|o| o.set(0));
        }
    }
    let max = isize::try_from(state.max_memory).unwrap_or(isize::MAX);
    STOP.with(|s| s.set(None));
    OPS.with(|o| o.set(1));
    INLINE.with(|i| i.set(state.inline));
    MEMORY.with(|m| m.set((picloud_alloc::thread_allocated(), max)));
    CURRENT.with(|c| *c.borrow_mut() = Some(state));
    let reset = Reset;
    let out = f();
    let state = CURRENT.with(|c| c.borrow_mut().take());
    drop(reset);
    match state {
        Some(state) => (out, state),
        None => unreachable!("run state is removed only by with_run"),
    }
}

/// The current run's way to the services, if it has one.
pub(crate) fn services() -> Option<std::sync::Arc<crate::ServiceAccess>> {
    CURRENT.with(|c| c.borrow().as_ref().and_then(|s| s.services.clone()))
}

/// The largest JSON text the current run may answer with (unbounded outside a run).
pub(crate) fn max_answer_bytes() -> usize {
    CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .map_or(usize::MAX, |s| s.max_answer_bytes)
    })
}

/// The current run's deadline; `None` outside a run (compile checks, tests).
pub(crate) fn deadline() -> Option<Instant> {
    CURRENT.with(|c| c.borrow().as_ref().map(|s| s.deadline))
}

pub(crate) fn log(level: LogLevel, message: &str) {
    CURRENT.with(|c| {
        let mut guard = c.borrow_mut();
        let Some(state) = guard.as_mut() else { return };
        if state.logs.len() >= state.max_logs {
            state.dropped_logs += 1;
            return;
        }
        // Cut before copying: a host value's text can be megabytes.
        let text = if message.len() > MAX_LOG_LINE_BYTES {
            let mut cut = MAX_LOG_LINE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}… (truncated)", &message[..cut])
        } else {
            message.to_owned()
        };
        state.logs.push(CapturedLog {
            level,
            message: text,
            at: picloud_core::now(),
        });
    });
}

/// A module being imported, and what its evaluation has imported so far.
pub(crate) struct ImportFrame {
    name: String,
    below: ModuleDeps,
}

/// Why an import may not start.
pub(crate) enum ImportRefused {
    /// The chain from the module's first import back to itself.
    Cycle(Vec<String>),
    /// The whole chain, one past the limit.
    TooDeep(Vec<String>),
}

/// Leaves the import on drop, whatever way the import ends.
pub(crate) struct ImportEntered(bool);

impl ImportEntered {
    /// What the imports inside this one loaded: the evaluated module's dependencies.
    pub(crate) fn dependencies(&self) -> ModuleDeps {
        if !self.0 {
            return ModuleDeps::default();
        }
        CURRENT.with(|c| {
            c.borrow()
                .as_ref()
                .and_then(|s| s.imports.last())
                .map(|f| f.below.clone())
                .unwrap_or_default()
        })
    }

    /// Leaves the import, loaded at `version` from `below`: the import around it, if
    /// any, depends on both.
    pub(crate) fn leave(mut self, version: DateTime<Utc>, below: &ModuleDeps) {
        if !std::mem::take(&mut self.0) {
            return;
        }
        CURRENT.with(|c| {
            let mut guard = c.borrow_mut();
            let Some(state) = guard.as_mut() else { return };
            let Some(frame) = state.imports.pop() else {
                return;
            };
            if let Some(outer) = state.imports.last_mut() {
                outer.below.add(&frame.name, version, below);
            }
        });
    }
}

impl Drop for ImportEntered {
    fn drop(&mut self) {
        if self.0 {
            CURRENT.with(|c| {
                if let Some(state) = c.borrow_mut().as_mut() {
                    state.imports.pop();
                }
            });
        }
    }
}

/// Enters the import of `name`, refusing a cycle or a chain deeper than `max`.
pub(crate) fn enter_import(name: &str, max: usize) -> Result<ImportEntered, ImportRefused> {
    CURRENT.with(|c| {
        let mut guard = c.borrow_mut();
        let Some(state) = guard.as_mut() else {
            return Ok(ImportEntered(false));
        };
        let names = || state.imports.iter().map(|f| f.name.clone());
        if let Some(first) = state.imports.iter().position(|f| f.name == name) {
            let mut chain: Vec<String> = names().skip(first).collect();
            chain.push(name.to_owned());
            return Err(ImportRefused::Cycle(chain));
        }
        if state.imports.len() >= max {
            let mut chain: Vec<String> = names().collect();
            chain.push(name.to_owned());
            return Err(ImportRefused::TooDeep(chain));
        }
        state.imports.push(ImportFrame {
            name: name.to_owned(),
            below: ModuleDeps::default(),
        });
        Ok(ImportEntered(true))
    })
}

/// The modules being imported, outermost first (the innermost is the one loading).
pub(crate) fn import_chain() -> Vec<String> {
    CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .map(|s| s.imports.iter().map(|f| f.name.clone()).collect())
            .unwrap_or_default()
    })
}

/// The module whose top level is running, if one is: imports are evaluated while
/// their frame is entered, and only then.
pub(crate) fn loading_module() -> Option<String> {
    CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .and_then(|s| s.imports.last())
            .map(|f| f.name.clone())
    })
}

/// In an inline attempt, marks it as given way and returns `true`; otherwise `false`.
pub(crate) fn defer_if_inline() -> bool {
    CURRENT.with(|c| match c.borrow_mut().as_mut() {
        Some(state) if state.inline => {
            state.deferred = true;
            true
        }
        _ => false,
    })
}
