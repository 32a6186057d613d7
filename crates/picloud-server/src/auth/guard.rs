//! Access checks: every admin handler states the [`Capability`] it needs, and these
//! methods answer 403, or 404 for an app the caller may not know about.

use picloud_core::access::{Access, Capability, Role};
use picloud_core::AppId;
use picloud_store::App;

use super::Caller;
use crate::admin::load_app;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

impl Caller {
    /// The caller's role on an app (instance admins need none).
    pub async fn role_on(&self, state: &AppState, app: &AppId) -> ApiResult<Option<Role>> {
        if self.principal.is_instance_admin {
            return Ok(None);
        }
        state
            .store
            .member_role(app, &self.user.id)
            .await
            .map_err(ApiError::from)
    }

    /// Checks a capability that is not about one app.
    pub fn require(&self, capability: Capability) -> ApiResult<()> {
        match self.principal.check(capability, None) {
            Access::Allowed => Ok(()),
            Access::Forbidden | Access::Invisible => Err(ApiError::forbidden(format!(
                "this needs {}",
                describe(capability)
            ))),
        }
    }

    /// Checks a capability on an app already identified; `what` names the resource
    /// reported missing when the caller may not see the app.
    pub async fn require_on(
        &self,
        state: &AppState,
        app: &AppId,
        capability: Capability,
        what: &str,
    ) -> ApiResult<()> {
        let role = self.role_on(state, app).await?;
        if let Some(slot) = &self.audit {
            slot.set_app(app);
        }
        match self.principal.check(capability, Some((app, role))) {
            Access::Allowed => Ok(()),
            Access::Forbidden => Err(ApiError::forbidden(format!(
                "this needs {} on the app",
                describe(capability)
            ))),
            Access::Invisible => Err(ApiError::not_found(what)),
        }
    }

    /// Loads the app a path names (id or slug) and checks the capability on it.
    pub async fn app(&self, state: &AppState, key: &str, capability: Capability) -> ApiResult<App> {
        let app = load_app(state, key).await?;
        self.require_on(state, &app.id, capability, "app").await?;
        Ok(app)
    }

    /// Whether the app exists for this caller (for listings).
    pub async fn sees(&self, state: &AppState, app: &AppId) -> ApiResult<bool> {
        let role = self.role_on(state, app).await?;
        Ok(self.principal.sees_app(app, role))
    }
}

/// The scope a capability needs, in words.
fn describe(capability: Capability) -> String {
    use picloud_core::access::Requirement;
    match capability.requirement() {
        Requirement::SignedIn => "a signed-in user".into(),
        Requirement::Instance(scope) | Requirement::App(scope) => format!("the {scope} scope"),
    }
}
