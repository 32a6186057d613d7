//! The PiCloud runtime: the bounded executor that runs scripts on dedicated threads,
//! the background writer of execution records, and the sweepers.

pub mod executor;
pub mod recorder;
pub mod sweeper;

pub use executor::{on_script_stack, ExecError, Executor};
pub use recorder::ExecutionRecorder;
