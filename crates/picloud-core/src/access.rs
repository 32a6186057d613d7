//! Who is calling, and with which rights.

use serde::{Deserialize, Serialize};

use crate::{ApiKeyId, AppId, UserId};

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

impl std::str::FromStr for Scope {
    type Err = crate::model::UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| crate::model::UnknownVariant {
                value: s.to_owned(),
                expected: "app:read app:admin script:read script:write script:invoke user:admin instance:admin",
            })
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user's role on one app.
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
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Editor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Editor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    /// The scopes a role grants on its app (API.md "Per-app roles").
    pub fn scopes(self) -> &'static [Scope] {
        match self {
            Role::Viewer => &[Scope::AppRead, Scope::ScriptRead, Scope::ScriptInvoke],
            Role::Editor => &[
                Scope::AppRead,
                Scope::ScriptRead,
                Scope::ScriptInvoke,
                Scope::ScriptWrite,
            ],
            Role::Admin => &[
                Scope::AppRead,
                Scope::ScriptRead,
                Scope::ScriptInvoke,
                Scope::ScriptWrite,
                Scope::AppAdmin,
            ],
        }
    }
}

impl std::str::FromStr for Role {
    type Err = crate::model::UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| crate::model::UnknownVariant {
                value: s.to_owned(),
                expected: "viewer editor admin",
            })
    }
}

/// One guarded action. Every admin route and every service call names the capability
/// it needs; [`Capability::requirement`] is the one place that says what that means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Any authenticated caller (their own profile, their own API keys).
    SignedIn,
    /// Create apps.
    AppCreate,
    /// Users admin API.
    UserAdmin,
    /// Make, unmake or change an instance admin (their password, their keys, their
    /// disabled flag): `user:admin` alone would let a key of that one scope mint an
    /// admin and hold every right.
    AdminsManage,
    /// Read an app, its routes and its execution history.
    AppRead,
    /// Rename or delete an app.
    AppAdmin,
    /// Add, change and remove an app's members.
    MembersManage,
    /// Read the audit log of an app.
    AuditRead,
    /// Read the whole instance's audit log.
    InstanceAudit,
    /// Read scripts.
    ScriptRead,
    /// Create, change and delete scripts.
    ScriptWrite,
    /// Bind and unbind routes.
    RouteManage,
    /// Call an `auth: "required"` route.
    RouteInvoke,
    /// Read an app's data from a script or the admin API (kv get, docs find, …).
    DataRead,
    /// Change an app's data (kv set, docs update, …).
    DataWrite,
    /// Create, change and delete triggers; replay and resolve dead letters.
    TriggerManage,
    /// Send an outbound request from a script (`http::*`). Any request can carry the
    /// app's data out, so it needs the write scope.
    HttpRequest,
    /// Send an email from a script (`email::*`): like an outbound request, it carries
    /// the app's data out (and spends the operator's relay reputation), so it needs the
    /// write scope.
    EmailSend,
}

/// What a capability needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Only that the caller is authenticated.
    SignedIn,
    /// A scope that only instance-level rights grant.
    Instance(Scope),
    /// A scope on the app in question.
    App(Scope),
}

impl Capability {
    pub const ALL: [Capability; 18] = [
        Capability::SignedIn,
        Capability::AppCreate,
        Capability::UserAdmin,
        Capability::AdminsManage,
        Capability::AppRead,
        Capability::AppAdmin,
        Capability::MembersManage,
        Capability::AuditRead,
        Capability::InstanceAudit,
        Capability::ScriptRead,
        Capability::ScriptWrite,
        Capability::RouteManage,
        Capability::RouteInvoke,
        Capability::DataRead,
        Capability::DataWrite,
        Capability::TriggerManage,
        Capability::HttpRequest,
        Capability::EmailSend,
    ];

    pub fn requirement(self) -> Requirement {
        match self {
            Capability::SignedIn => Requirement::SignedIn,
            Capability::AppCreate | Capability::InstanceAudit | Capability::AdminsManage => {
                Requirement::Instance(Scope::InstanceAdmin)
            }
            Capability::UserAdmin => Requirement::Instance(Scope::UserAdmin),
            Capability::AppRead => Requirement::App(Scope::AppRead),
            Capability::AppAdmin
            | Capability::MembersManage
            | Capability::AuditRead
            | Capability::RouteManage
            | Capability::TriggerManage => Requirement::App(Scope::AppAdmin),
            Capability::ScriptRead | Capability::DataRead => Requirement::App(Scope::ScriptRead),
            Capability::ScriptWrite
            | Capability::DataWrite
            | Capability::HttpRequest
            | Capability::EmailSend => Requirement::App(Scope::ScriptWrite),
            Capability::RouteInvoke => Requirement::App(Scope::ScriptInvoke),
        }
    }

    /// Stable name, as declared on routes (`x-capability` in the OpenAPI document).
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::SignedIn => "signed_in",
            Capability::AppCreate => "app.create",
            Capability::UserAdmin => "user.admin",
            Capability::AdminsManage => "admins.manage",
            Capability::AppRead => "app.read",
            Capability::AppAdmin => "app.admin",
            Capability::MembersManage => "members.manage",
            Capability::AuditRead => "audit.read",
            Capability::InstanceAudit => "audit.read_all",
            Capability::ScriptRead => "script.read",
            Capability::ScriptWrite => "script.write",
            Capability::RouteManage => "route.manage",
            Capability::RouteInvoke => "route.invoke",
            Capability::DataRead => "data.read",
            Capability::DataWrite => "data.write",
            Capability::TriggerManage => "trigger.manage",
            Capability::HttpRequest => "http.request",
            Capability::EmailSend => "email.send",
        }
    }

    pub fn from_name(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.as_str() == name)
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

/// The API key a principal acts through, and what it restricts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    pub key_id: ApiKeyId,
    pub scopes: Vec<Scope>,
    /// When set, the key works on this app only.
    pub app_id: Option<AppId>,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    pub is_instance_admin: bool,
    /// `Some` when the caller authenticated with an API key.
    pub key: Option<KeyGrant>,
}

/// The scopes a user holds: all seven for an instance admin, else those their roles
/// grant (a key can carry no more than this; API.md "The seven scopes").
pub fn scopes_held(is_instance_admin: bool, roles: impl IntoIterator<Item = Role>) -> Vec<Scope> {
    if is_instance_admin {
        return Scope::ALL.to_vec();
    }
    let mut held: Vec<Scope> = roles
        .into_iter()
        .flat_map(|role| role.scopes().iter().copied())
        .collect();
    held.sort();
    held.dedup();
    held
}

/// The outcome of an access check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// The caller sees the app but lacks the right: 403.
    Forbidden,
    /// The caller may not know the app exists: 404.
    Invisible,
}

fn expand(scopes: &[Scope]) -> Vec<Scope> {
    if scopes.contains(&Scope::InstanceAdmin) {
        Scope::ALL.to_vec()
    } else {
        scopes.to_vec()
    }
}

impl Principal {
    pub fn kind(&self) -> PrincipalKind {
        if self.key.is_some() {
            PrincipalKind::ApiKey
        } else {
            PrincipalKind::User
        }
    }

    /// The scopes this caller holds on `app`, given the owner's role there: the role's
    /// scopes (all seven for instance admins), intersected with the key's scopes when
    /// acting through a key, and nothing on apps outside an app-scoped key.
    pub fn scopes_on_app(&self, app: &AppId, role: Option<Role>) -> Vec<Scope> {
        let mut scopes: Vec<Scope> = if self.is_instance_admin {
            Scope::ALL.to_vec()
        } else {
            role.map(|r| r.scopes().to_vec()).unwrap_or_default()
        };
        if let Some(key) = &self.key {
            if key.app_id.as_ref().is_some_and(|only| only != app) {
                return Vec::new();
            }
            let allowed = expand(&key.scopes);
            scopes.retain(|s| allowed.contains(s));
        }
        scopes
    }

    /// Instance-level scopes: all seven for instance admins (within a key's scopes).
    pub fn instance_scopes(&self) -> Vec<Scope> {
        if !self.is_instance_admin {
            return Vec::new();
        }
        match &self.key {
            Some(key) if key.app_id.is_some() => Vec::new(),
            Some(key) => expand(&key.scopes),
            None => Scope::ALL.to_vec(),
        }
    }

    /// Whether the app exists for this caller at all.
    pub fn sees_app(&self, app: &AppId, role: Option<Role>) -> bool {
        let member = self.is_instance_admin || role.is_some();
        let in_key = self
            .key
            .as_ref()
            .and_then(|k| k.app_id.as_ref())
            .is_none_or(|only| only == app);
        member && in_key
    }

    /// Checks `capability`; for app capabilities `app` is the app and the caller's
    /// role on it.
    pub fn check(&self, capability: Capability, app: Option<(&AppId, Option<Role>)>) -> Access {
        match (capability.requirement(), app) {
            (Requirement::SignedIn, _) => Access::Allowed,
            (Requirement::Instance(scope), _) => {
                if self.instance_scopes().contains(&scope) {
                    Access::Allowed
                } else {
                    Access::Forbidden
                }
            }
            (Requirement::App(_), None) => Access::Forbidden,
            (Requirement::App(scope), Some((app, role))) => {
                if !self.sees_app(app, role) {
                    Access::Invisible
                } else if self.scopes_on_app(app, role).contains(&scope) {
                    Access::Allowed
                } else {
                    Access::Forbidden
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(admin: bool) -> Principal {
        Principal {
            user_id: UserId::new(),
            is_instance_admin: admin,
            key: None,
        }
    }

    #[test]
    fn roles_grant_the_documented_scopes() {
        let app = AppId::new();
        let p = user(false);
        assert_eq!(
            p.check(Capability::AppRead, Some((&app, None))),
            Access::Invisible
        );
        assert_eq!(
            p.check(Capability::ScriptRead, Some((&app, Some(Role::Viewer)))),
            Access::Allowed
        );
        assert_eq!(
            p.check(Capability::RouteInvoke, Some((&app, Some(Role::Viewer)))),
            Access::Allowed
        );
        assert_eq!(
            p.check(Capability::ScriptWrite, Some((&app, Some(Role::Viewer)))),
            Access::Forbidden
        );
        assert_eq!(
            p.check(Capability::ScriptWrite, Some((&app, Some(Role::Editor)))),
            Access::Allowed
        );
        assert_eq!(
            p.check(Capability::RouteManage, Some((&app, Some(Role::Editor)))),
            Access::Forbidden
        );
        assert_eq!(
            p.check(Capability::RouteManage, Some((&app, Some(Role::Admin)))),
            Access::Allowed
        );
        assert_eq!(p.check(Capability::AppCreate, None), Access::Forbidden);
        assert_eq!(p.check(Capability::UserAdmin, None), Access::Forbidden);
        assert_eq!(p.check(Capability::SignedIn, None), Access::Allowed);
        let admin = user(true);
        for c in Capability::ALL {
            assert_eq!(admin.check(c, Some((&app, None))), Access::Allowed, "{c:?}");
        }
    }

    #[test]
    fn keys_intersect_with_the_owner_and_stay_in_their_app() {
        let app = AppId::new();
        let other = AppId::new();
        let mut p = user(false);
        p.key = Some(KeyGrant {
            key_id: ApiKeyId::new(),
            scopes: vec![Scope::ScriptRead, Scope::ScriptWrite, Scope::AppAdmin],
            app_id: Some(app.clone()),
        });
        // Owner is a viewer: write and admin are not theirs to give.
        assert_eq!(
            p.scopes_on_app(&app, Some(Role::Viewer)),
            vec![Scope::ScriptRead]
        );
        assert_eq!(
            p.check(Capability::ScriptWrite, Some((&app, Some(Role::Viewer)))),
            Access::Forbidden
        );
        assert_eq!(
            p.check(Capability::ScriptWrite, Some((&app, Some(Role::Editor)))),
            Access::Allowed
        );
        // Another app does not exist for this key, even where the owner is admin.
        assert_eq!(
            p.check(Capability::ScriptRead, Some((&other, Some(Role::Admin)))),
            Access::Invisible
        );

        let mut admin = user(true);
        admin.key = Some(KeyGrant {
            key_id: ApiKeyId::new(),
            scopes: vec![Scope::ScriptInvoke],
            app_id: None,
        });
        assert_eq!(
            admin.check(Capability::RouteInvoke, Some((&app, None))),
            Access::Allowed
        );
        assert_eq!(
            admin.check(Capability::ScriptRead, Some((&app, None))),
            Access::Forbidden
        );
        assert_eq!(admin.check(Capability::AppCreate, None), Access::Forbidden);
        admin.key = Some(KeyGrant {
            key_id: ApiKeyId::new(),
            scopes: vec![Scope::InstanceAdmin],
            app_id: None,
        });
        assert_eq!(admin.check(Capability::UserAdmin, None), Access::Allowed);
    }

    #[test]
    fn held_scopes_are_the_union_of_roles() {
        assert_eq!(scopes_held(false, []), Vec::<Scope>::new());
        assert_eq!(
            scopes_held(false, [Role::Viewer, Role::Editor, Role::Viewer]),
            vec![
                Scope::AppRead,
                Scope::ScriptRead,
                Scope::ScriptWrite,
                Scope::ScriptInvoke
            ]
        );
        assert_eq!(scopes_held(true, []), Scope::ALL.to_vec());
        assert!(!scopes_held(false, [Role::Admin]).contains(&Scope::UserAdmin));
    }

    #[test]
    fn names_round_trip() {
        for c in Capability::ALL {
            assert_eq!(Capability::from_name(c.as_str()), Some(c));
        }
        for s in Scope::ALL {
            assert_eq!(s.as_str().parse::<Scope>().ok(), Some(s));
        }
    }
}
