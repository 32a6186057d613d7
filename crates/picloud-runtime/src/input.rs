//! What a run is given, built in one place for every run, whoever starts it (a route,
//! the dispatcher): `ctx` (app, script, caller, request or event) and the services it
//! may call, bound to its app, caller and depth.

use std::sync::Arc;

use picloud_core::access::{Principal, Scope};
use picloud_core::ExecutionId;
use picloud_script::{AppRef, PrincipalInput, RequestInput, RunInput, ScriptRef, ServiceAccess};
use picloud_services::{CallContext, Services};
use picloud_store::{App, Script};

/// An authenticated caller a run acts for: as `ctx.principal` shows them, and the
/// scopes the services check on every call.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: PrincipalInput,
    pub scopes: Vec<Scope>,
}

impl Caller {
    /// `principal`, holding `scopes` on the app of the run.
    pub fn new(principal: &Principal, scopes: Vec<Scope>) -> Self {
        Self {
            principal: PrincipalInput {
                kind: principal.kind().as_str(),
                user_id: principal.user_id.to_string(),
                key_id: principal.key.as_ref().map(|k| k.key_id.to_string()),
                scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            },
            scopes,
        }
    }
}

/// What a run is about, besides its app, script and caller.
pub(crate) struct Subject {
    pub request: Option<RequestInput>,
    pub event: Option<serde_json::Value>,
    pub attempt: u32,
    /// 0 for a route; the event's depth for a delivery (bounds trigger chains).
    pub depth: u32,
}

/// The run's input. With no caller the run is anonymous (a public route, a trigger):
/// services then check no scopes, the script is the gate.
pub(crate) fn run_input(
    services: &Arc<Services>,
    app: &App,
    script: &Script,
    execution_id: &ExecutionId,
    caller: Option<Caller>,
    subject: Subject,
) -> RunInput {
    let (principal, caller_scopes) = match caller {
        Some(Caller { principal, scopes }) => (Some(principal), Some(scopes)),
        None => (None, None),
    };
    RunInput {
        app: AppRef {
            id: app.id.to_string(),
            slug: app.slug.clone(),
        },
        script: ScriptRef {
            id: script.id.to_string(),
            name: script.name.clone(),
        },
        principal,
        request: subject.request,
        event: subject.event,
        execution_id: execution_id.to_string(),
        attempt: subject.attempt,
        services: Some(Arc::new(ServiceAccess {
            services: services.clone(),
            ctx: CallContext {
                app_id: app.id.clone(),
                caller_scopes,
                depth: subject.depth,
                script_id: Some(script.id.clone()),
            },
            handle: tokio::runtime::Handle::current(),
        })),
    }
}
