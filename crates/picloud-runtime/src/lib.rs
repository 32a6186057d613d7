//! The PiCloud runtime: the bounded executor that runs scripts on dedicated threads,
//! the dispatcher that delivers queued events, the cron scheduler that queues them, the
//! background writer of execution records, metrics, and the sweepers.
//!
//! It owns every script run end to end ([`Runner`]): a route's run is one call
//! ([`Runner::run_route`], [`Runner::enqueue_route`]) whose outcome the server maps to
//! HTTP; a delivery's run is the dispatcher's. Both build their input in one place
//! (`input`), so a run's `ctx` and the rights its service calls carry never differ by
//! who started it.

mod caller;
pub mod cron;
pub mod dispatcher;
pub mod executor;
pub mod gate;
mod input;
pub mod metrics;
pub mod orphans;
mod payload;
pub mod recorder;
mod route;
mod run;
mod runner;
pub mod sweeper;

pub use cron::{CronScheduler, CronWake};
pub use dispatcher::Dispatcher;
pub use executor::{on_script_stack, ExecError, Executor, Saturated};
pub use input::Caller;
pub use metrics::Metrics;
pub use recorder::ExecutionRecorder;
pub use route::{RouteCall, RouteOutcome};
pub use runner::{RouteLimits, Runner, RunnerParts};
