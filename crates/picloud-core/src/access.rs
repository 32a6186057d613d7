//! Who is calling, and with which rights.

use serde::{Deserialize, Serialize};

use crate::UserId;

/// The seven scopes (API.md "Auth and users"). There will never be an eighth without a
/// contract change: new capabilities map onto these.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum Scope {
    #[serde(rename = "app:read")]
    AppRead,
    #[serde(rename = "app:admin")]
    AppAdmin,
    #[serde(rename = "script:read")]
    ScriptRead,
    #[serde(rename = "script:write")]
    ScriptWrite,
    #[serde(rename = "script:invoke")]
    ScriptInvoke,
    #[serde(rename = "user:admin")]
    UserAdmin,
    #[serde(rename = "instance:admin")]
    InstanceAdmin,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::AppRead,
        Scope::AppAdmin,
        Scope::ScriptRead,
        Scope::ScriptWrite,
        Scope::ScriptInvoke,
        Scope::UserAdmin,
        Scope::InstanceAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::AppRead => "app:read",
            Scope::AppAdmin => "app:admin",
            Scope::ScriptRead => "script:read",
            Scope::ScriptWrite => "script:write",
            Scope::ScriptInvoke => "script:invoke",
            Scope::UserAdmin => "user:admin",
            Scope::InstanceAdmin => "instance:admin",
        }
    }
}

/// How the caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    User,
    ApiKey,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::ApiKey => "api_key",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub kind: PrincipalKind,
    pub user_id: UserId,
    pub key_id: Option<String>,
    pub is_instance_admin: bool,
}

impl Principal {
    /// The caller's scopes on an app. Instance admins hold all seven; per-app roles
    /// arrive with the identity work, until then other users hold none.
    pub fn scopes_on_app(&self) -> Vec<Scope> {
        if self.is_instance_admin {
            Scope::ALL.to_vec()
        } else {
            Vec::new()
        }
    }
}
