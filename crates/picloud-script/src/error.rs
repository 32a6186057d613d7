//! How a failed compile or run is described: to the owner (full message, position) and
//! to the public (a short message, no internals).

use crate::state::{MEMORY_TOKEN, OPERATIONS_TOKEN, TIMEOUT_TOKEN};
use picloud_core::ErrorCode;
use rhai::{EvalAltResult, ParseError, Position};

/// A script that does not compile, with the position of the first error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CompileError {
    pub message: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
}

impl From<ParseError> for CompileError {
    fn from(e: ParseError) -> Self {
        let (line, column) = position(e.position());
        Self {
            message: e.err_type().to_string(),
            line,
            column,
        }
    }
}

/// Which limit stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Operations,
    CallDepth,
    DataSize,
    Variables,
    Modules,
    Memory,
}

impl Limit {
    pub fn describe(self) -> &'static str {
        match self {
            Limit::Operations => "too many operations",
            Limit::CallDepth => "call depth limit reached (runaway recursion?)",
            Limit::DataSize => "a value grew past the size limit",
            Limit::Variables => "too many variables",
            Limit::Modules => "too many modules imported",
            Limit::Memory => "the run holds more memory than it may",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The script threw, or an SDK call failed.
    Error,
    /// The wall-clock limit.
    Timeout,
    LimitExceeded(Limit),
    /// A service call refused for the caller's lack of a right.
    Forbidden,
}

impl FailureKind {
    /// The public error code a caller waiting on the run gets (its status follows).
    pub fn code(self) -> ErrorCode {
        match self {
            FailureKind::Error => ErrorCode::ScriptError,
            FailureKind::Timeout => ErrorCode::Timeout,
            FailureKind::LimitExceeded(_) => ErrorCode::LimitExceeded,
            FailureKind::Forbidden => ErrorCode::Forbidden,
        }
    }
}

/// A run that did not return a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptFailure {
    pub kind: FailureKind,
    /// Full message for the execution record (may name functions and positions).
    pub message: String,
    pub line: Option<u32>,
}

impl ScriptFailure {
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Error,
            message: message.into(),
            line: None,
        }
    }

    /// What an HTTP client may see.
    pub fn public_message(&self) -> String {
        match self.kind {
            FailureKind::Error => match self.line {
                Some(line) => format!("the script failed at line {line}"),
                None => "the script failed".into(),
            },
            FailureKind::Timeout => "the script ran past its time limit".into(),
            FailureKind::LimitExceeded(limit) => {
                format!("the script hit a limit: {}", limit.describe())
            }
            FailureKind::Forbidden => self.message.clone(),
        }
    }
}

fn position(pos: Position) -> (Option<u32>, Option<u32>) {
    let to_u32 = |v: Option<usize>| v.and_then(|v| u32::try_from(v).ok());
    (to_u32(pos.line()), to_u32(pos.position()))
}

/// The innermost error of a chain of function-call wrappers: that is what happened.
fn innermost(err: &EvalAltResult) -> &EvalAltResult {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => innermost(inner),
        other => other,
    }
}

/// Longest error message kept: a thrown value's text can be as large as the value.
const MAX_ERROR_BYTES: usize = 16 << 10;

/// The error's text, written only as far as it is kept.
fn error_text(err: &EvalAltResult) -> String {
    let (mut text, complete) = crate::bounded::text_within(MAX_ERROR_BYTES, |out| {
        use std::fmt::Write as _;
        write!(out, "{err}")
    });
    if !complete {
        text.push_str("… (truncated)");
    }
    text
}

pub(crate) fn classify(err: &EvalAltResult) -> ScriptFailure {
    let inner = innermost(err);
    let kind = match inner {
        EvalAltResult::ErrorTerminated(token, _)
            if token.clone().into_string().ok().as_deref() == Some(TIMEOUT_TOKEN) =>
        {
            FailureKind::Timeout
        }
        EvalAltResult::ErrorTerminated(token, _)
            if token.clone().into_string().ok().as_deref() == Some(MEMORY_TOKEN) =>
        {
            FailureKind::LimitExceeded(Limit::Memory)
        }
        EvalAltResult::ErrorTooManyOperations(_) => FailureKind::LimitExceeded(Limit::Operations),
        EvalAltResult::ErrorTerminated(token, _)
            if token.clone().into_string().ok().as_deref() == Some(OPERATIONS_TOKEN) =>
        {
            FailureKind::LimitExceeded(Limit::Operations)
        }
        EvalAltResult::ErrorStackOverflow(_) => FailureKind::LimitExceeded(Limit::CallDepth),
        EvalAltResult::ErrorDataTooLarge(..) => FailureKind::LimitExceeded(Limit::DataSize),
        EvalAltResult::ErrorTooManyVariables(_) => FailureKind::LimitExceeded(Limit::Variables),
        EvalAltResult::ErrorTooManyModules(_) => FailureKind::LimitExceeded(Limit::Modules),
        EvalAltResult::ErrorRuntime(value, _) if value.is::<crate::Forbidden>() => {
            FailureKind::Forbidden
        }
        _ => FailureKind::Error,
    };
    // The outermost position is where the script's own code was when it failed.
    let (mut line, _) = position(err.position());
    if line.is_none() {
        line = position(inner.position()).0;
    }
    let message = match (kind, inner) {
        (FailureKind::Timeout, _) => "wall-clock time limit exceeded".to_owned(),
        (FailureKind::LimitExceeded(Limit::Memory), _) => "memory limit exceeded".to_owned(),
        (FailureKind::LimitExceeded(Limit::Operations), EvalAltResult::ErrorTerminated(..)) => {
            "too many operations".to_owned()
        }
        (FailureKind::Forbidden, EvalAltResult::ErrorRuntime(value, _)) => value
            .read_lock::<crate::Forbidden>()
            .map(|f| f.to_string())
            .unwrap_or_else(|| "forbidden".into()),
        _ => error_text(err),
    };
    ScriptFailure {
        kind,
        message,
        line,
    }
}
