//! Script bindings of the services (`kv`, `docs`, `dead_letters`, `http`): each call blocks the script
//! thread on the async service, bounded by what is left of the run's wall-clock limit,
//! and turns the outcome into a script value or a namespaced error.

mod dead_letters;
mod docs;
mod email;
mod files;
mod http;
mod kv;
mod pubsub;
mod secrets;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use picloud_services::{CallContext, ServiceError, Services};
use rhai::{Dynamic, Engine, EvalAltResult, Position};

use crate::bounded::JsonOutError;
use crate::state::{INLINE_TOKEN, TIMEOUT_TOKEN};
use crate::{state, Forbidden};

pub(crate) fn register(engine: &mut Engine) {
    engine.register_type_with_name::<kv::KvCollection>("KvCollection");
    engine.register_static_module("kv", kv::module().into());
    engine.register_type_with_name::<docs::DocsCollection>("DocsCollection");
    engine.register_static_module("docs", docs::module().into());
    engine.register_type_with_name::<files::FilesCollection>("FilesCollection");
    engine.register_static_module("files", files::module().into());
    engine.register_static_module("dead_letters", dead_letters::module().into());
    engine.register_static_module("http", http::module().into());
    engine.register_static_module("pubsub", pubsub::module().into());
    engine.register_static_module("email", email::module().into());
    engine.register_static_module("secrets", secrets::module().into());
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

/// The current run's way to the services. An inline attempt gives way here: service
/// calls block, and it runs on an async worker.
fn access(namespace: &str) -> Result<Arc<crate::ServiceAccess>, Box<EvalAltResult>> {
    if state::inline_run() {
        return Err(Box::new(EvalAltResult::ErrorTerminated(
            Dynamic::from(state::stop(INLINE_TOKEN)),
            Position::NONE,
        )));
    }
    state::services().ok_or_else(|| error(namespace, "not available in this context"))
}

/// A limit from the services' configuration, for a value about to be handed to them.
pub(crate) fn limit(
    namespace: &str,
    pick: impl FnOnce(&Services) -> usize,
) -> Result<usize, Box<EvalAltResult>> {
    Ok(pick(&access(namespace)?.services))
}

/// A script value as JSON for a service call, its text at most the limit `cap` picks
/// from the services: measured before the tree is built, so a value whose text would
/// be gigabytes (one string shared by many entries) is refused without building it.
pub(crate) fn to_json(
    namespace: &str,
    what: &str,
    value: &Dynamic,
    (cap, setting): (impl FnOnce(&Services) -> usize, &str),
) -> Result<serde_json::Value, Box<EvalAltResult>> {
    let cap = limit(namespace, cap)?;
    crate::bounded::json_value(value, cap).map_err(|e| match e {
        JsonOutError::TooLarge(cap) => error(
            namespace,
            format!("the {what} is larger than the limit of {cap} bytes as JSON ({setting})"),
        ),
        e @ JsonOutError::TooDeep => error(namespace, format!("the {what} is refused: {e}")),
        JsonOutError::NotJson(message) => {
            error(namespace, format!("the {what} is not JSON: {message}"))
        }
    })
}

/// [`call`], charging the run for `weigh(result)` bytes at least: what a call hands
/// back may have been allocated on the I/O threads (a response body read by the
/// connection's task), and its free here would otherwise count against memory the run
/// never was charged for, so the run's memory limit would not see it.
pub(crate) fn call_weighed<T, F, Fut>(
    namespace: &str,
    f: F,
    weigh: impl FnOnce(&T) -> usize,
) -> Result<T, Box<EvalAltResult>>
where
    F: FnOnce(Arc<Services>, CallContext) -> Fut,
    Fut: Future<Output = Result<T, ServiceError>>,
{
    let before = picloud_alloc::thread_allocated();
    let value = call(namespace, f)?;
    let counted = picloud_alloc::thread_allocated().saturating_sub(before);
    let counted = usize::try_from(counted).unwrap_or(0);
    let weight = weigh(&value);
    if weight > counted {
        picloud_alloc::charge(weight - counted);
    }
    Ok(value)
}

/// Runs one service call for the current run. Refused while a module's top level
/// runs (a function its constants call): a module loads once for many runs, and its
/// constants must not depend on, or act for, whichever run loaded it.
pub(crate) fn call<T, F, Fut>(namespace: &str, f: F) -> Result<T, Box<EvalAltResult>>
where
    F: FnOnce(Arc<Services>, CallContext) -> Fut,
    Fut: Future<Output = Result<T, ServiceError>>,
{
    if let Some(module) = state::loading_module() {
        return Err(error(
            namespace,
            format!(
                "not available while module {module:?} loads: a module's constants cannot \
                 call {namespace}::; call it inside a function the script calls"
            ),
        ));
    }
    call_while_importing(namespace, f)
}

/// [`call`] for the module resolver, whose lookups are how modules load.
pub(crate) fn call_while_importing<T, F, Fut>(
    namespace: &str,
    f: F,
) -> Result<T, Box<EvalAltResult>>
where
    F: FnOnce(Arc<Services>, CallContext) -> Fut,
    Fut: Future<Output = Result<T, ServiceError>>,
{
    let access = access(namespace)?;
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
            Dynamic::from(state::stop(TIMEOUT_TOKEN)),
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
