use picloud_core::access::{Capability, Requirement, Scope};
use picloud_core::{AppId, ScriptId};

use crate::{ServiceError, ServiceResult};

/// Who a service call is for, derived from the run — never from script arguments.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub app_id: AppId,
    /// The caller's scopes on the app when the run acts for an authenticated caller;
    /// `None` for anonymous runs (public routes, triggers), where the script is the gate.
    pub caller_scopes: Option<Vec<Scope>>,
    /// Depth of the run: 0 for a route, the event's depth for a handler.
    pub depth: u32,
    /// The script the run executes (the outbound User-Agent names it); `None` for calls
    /// that are not made by a script (the admin API).
    pub script_id: Option<ScriptId>,
}

impl CallContext {
    /// Checks a capability for the caller, if there is one.
    pub fn require(&self, capability: Capability) -> ServiceResult<()> {
        let Some(scopes) = &self.caller_scopes else {
            return Ok(());
        };
        let needed = match capability.requirement() {
            Requirement::SignedIn => return Ok(()),
            Requirement::Instance(scope) | Requirement::App(scope) => scope,
        };
        if scopes.contains(&needed) {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(format!(
                "this call needs the {needed} scope"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_runs_are_their_own_gate() {
        let anonymous = CallContext {
            app_id: AppId::new(),
            caller_scopes: None,
            depth: 0,
            script_id: None,
        };
        assert!(anonymous.require(Capability::DataWrite).is_ok());
        let reader = CallContext {
            caller_scopes: Some(vec![Scope::ScriptRead]),
            ..anonymous
        };
        assert!(reader.require(Capability::DataRead).is_ok());
        assert!(matches!(
            reader.require(Capability::DataWrite),
            Err(ServiceError::Forbidden(_))
        ));
    }
}
