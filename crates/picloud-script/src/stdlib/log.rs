//! `log::{trace,info,warn,error}`: lines captured into the execution record.

use picloud_core::model::LogLevel;
use rhai::plugin::*;

use crate::state;

/// Records `message`: a string as it is, anything else as its text, written only as
/// far as a log line keeps (a large map's text is never built whole).
fn record(level: LogLevel, message: &Dynamic) {
    if let Some(text) = message.read_lock::<ImmutableString>() {
        return state::log(level, &text);
    }
    let cap = state::MAX_LOG_LINE_BYTES + 1;
    let (text, _) = crate::bounded::text_within(cap, |out| {
        use std::fmt::Write as _;
        write!(out, "{message}")
    });
    state::log(level, &text);
}

#[export_module]
mod log_ns {
    use super::*;

    /// Records `message` at level trace (`debug` is a Rhai keyword, hence `trace`).
    pub fn trace(message: Dynamic) {
        record(LogLevel::Trace, &message);
    }

    /// Records `message` at level info.
    pub fn info(message: Dynamic) {
        record(LogLevel::Info, &message);
    }

    /// Records `message` at level warn.
    pub fn warn(message: Dynamic) {
        record(LogLevel::Warn, &message);
    }

    /// Records `message` at level error.
    pub fn error(message: Dynamic) {
        record(LogLevel::Error, &message);
    }
}

pub(crate) fn module() -> Module {
    exported_module!(log_ns)
}
