//! The PiCloud runtime: the bounded executor that runs scripts on dedicated threads,
//! the dispatcher that delivers queued events, the cron scheduler that queues them, the background writer of execution
//! records, metrics, and the sweepers.

pub mod caller;
pub mod cron;
pub mod dispatcher;
pub mod executor;
mod input;
pub mod metrics;
pub mod payload;
pub mod recorder;
mod route;
pub mod run;
mod runner;
pub mod sweeper;

pub use cron::{CronScheduler, CronWake};
pub use dispatcher::Dispatcher;
pub use executor::{on_script_stack, ExecError, Executor};
pub use input::Caller;
pub use metrics::Metrics;
pub use recorder::ExecutionRecorder;
pub use route::{RouteCall, RouteOutcome};
pub use runner::{RouteLimits, Runner, RunnerParts};
