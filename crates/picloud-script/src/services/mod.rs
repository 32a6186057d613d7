//! Script bindings of the services (`kv`, `docs`, `dead_letters`, `http`): each call blocks the script
//! thread on the async service, bounded by what is left of the run's wall-clock limit,
//! and turns the outcome into a script value or a namespaced error.

mod dead_letters;
mod docs;
mod http;
mod kv;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use picloud_services::{CallContext, ServiceError, Services};
use rhai::{Dynamic, Engine, EvalAltResult, Position};

use crate::error::TIMEOUT_TOKEN;
use crate::{state, Forbidden};

pub(crate) fn register(engine: &mut Engine) {
    engine.register_type_with_name::<kv::KvCollection>("KvCollection");
    engine.register_static_module("kv", kv::module().into());
    engine.register_type_with_name::<docs::DocsCollection>("DocsCollection");
    engine.register_static_module("docs", docs::module().into());
    engine.register_static_module("dead_letters", dead_letters::module().into());
    engine.register_static_module("http", http::module().into());
}

/// A namespaced script error: `"kv: …"`.
pub(crate) fn error(namespace: &str, message: impl std::fmt::Display) -> Box<EvalAltResult> {
    format!("{namespace}: {message}").into()
}

fn map_error(namespace: &str, e: ServiceError) -> Box<EvalAltResult> {
    match e {
        ServiceError::Forbidden(message) => Box::new(EvalAltResult::ErrorRuntime(
            Dynamic::from(Forbidden(message)),
            Position::NONE,
        )),
        other => error(namespace, other),
    }
}

/// Runs one service call for the current run.
pub(crate) fn call<T, F, Fut>(namespace: &str, f: F) -> Result<T, Box<EvalAltResult>>
where
    F: FnOnce(Arc<Services>, CallContext) -> Fut,
    Fut: Future<Output = Result<T, ServiceError>>,
{
    let Some(access) = state::services() else {
        return Err(error(namespace, "not available in this context"));
    };
    let remaining = state::deadline()
        .map(|d| d.saturating_duration_since(Instant::now()))
        .unwrap_or(std::time::Duration::from_secs(30));
    let future = f(access.services.clone(), access.ctx.clone());
    // The timer must be created inside the runtime: block_on enters it first.
    match access
        .handle
        .block_on(async move { tokio::time::timeout(remaining, future).await })
    {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(map_error(namespace, e)),
        Err(_) => Err(Box::new(EvalAltResult::ErrorTerminated(
            Dynamic::from(TIMEOUT_TOKEN),
            Position::NONE,
        ))),
    }
}

/// `cursor` and `limit` of every `list(#{…})`.
#[derive(Default)]
pub(crate) struct PageOptions {
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

impl PageOptions {
    /// Takes `key` if it is `cursor` or `limit`; `false` leaves it to the caller.
    pub(crate) fn take(
        &mut self,
        namespace: &str,
        key: &str,
        value: &Dynamic,
    ) -> Result<bool, Box<EvalAltResult>> {
        match key {
            // `()` is what the last page hands back: reading on from it is the start.
            "cursor" if value.is_unit() => {}
            "cursor" => {
                self.cursor = Some(
                    value
                        .clone()
                        .into_string()
                        .map_err(|_| error(namespace, "cursor must be a string"))?,
                );
            }
            "limit" => {
                let n = value
                    .as_int()
                    .map_err(|_| error(namespace, "limit must be an integer"))?;
                self.limit =
                    Some(u32::try_from(n).map_err(|_| error(namespace, "limit must be 1 to 500"))?);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Notes in the run's log that writes were not turned into events (depth limit).
pub(crate) fn note_skipped(namespace: &str, skipped: usize) {
    if skipped > 0 {
        state::log(
            picloud_core::model::LogLevel::Warn,
            &format!(
                "{namespace}: {skipped} trigger event(s) not emitted: the trigger depth limit was reached"
            ),
        );
    }
}
