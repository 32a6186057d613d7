//! `log::{trace,info,warn,error}`: lines captured into the execution record.

use picloud_core::model::LogLevel;
use rhai::plugin::*;

use crate::state;

#[export_module]
mod log_ns {
    use super::*;

    /// Records `message` at level trace (`debug` is a Rhai keyword, hence `trace`).
    pub fn trace(message: Dynamic) {
        state::log(LogLevel::Trace, &message.to_string());
    }

    /// Records `message` at level info.
    pub fn info(message: Dynamic) {
        state::log(LogLevel::Info, &message.to_string());
    }

    /// Records `message` at level warn.
    pub fn warn(message: Dynamic) {
        state::log(LogLevel::Warn, &message.to_string());
    }

    /// Records `message` at level error.
    pub fn error(message: Dynamic) {
        state::log(LogLevel::Error, &message.to_string());
    }
}

pub(crate) fn module() -> Module {
    exported_module!(log_ns)
}
