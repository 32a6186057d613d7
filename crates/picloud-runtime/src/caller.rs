//! Who a queued run acts for. A delivery (an async route call, its retries, a
//! dead-letter replay of it) carries the caller it was accepted from; when the run
//! starts, that caller is looked up again, so rights lost in between are lost for the
//! run too. Done once, here, for every delivery the dispatcher starts.

use picloud_core::access::{KeyGrant, Principal, Scope};
use picloud_core::{ApiKeyId, AppId, UserId};
use picloud_script::PrincipalInput;
use picloud_store::{Store, StoreError, StoreResult};

use crate::input::Caller;

/// What a queued run may do, decided when it starts.
#[derive(Debug, Clone)]
pub enum RunCaller {
    /// The delivery acts for nobody (triggers, anonymous calls): the script is the gate.
    Anonymous,
    /// The caller as they stand now. Their scopes are their rights on the app now,
    /// intersected with those they held when the call was accepted: a queued run never
    /// gains a right its caller did not have when making the call.
    Acting(Caller),
    /// The caller lost every right the call was made with: the run must not start.
    Refused(Refusal),
}

/// Why a queued run does not start; `Display` goes into the execution record and
/// the dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the user who made the call no longer exists")]
    UserDeleted,
    #[error("the user who made the call is disabled")]
    UserDisabled,
    #[error("the API key the call was made with was revoked")]
    KeyRevoked,
    #[error("the API key the call was made with expired")]
    KeyExpired,
    #[error("the caller no longer holds any right the call was made with on this app")]
    RightsLost,
}

impl Refusal {
    /// The error of a run that was not started, as records and dead letters show it.
    pub fn message(self) -> String {
        format!("forbidden: not run: {self}")
    }
}

/// Resolves the caller a delivery was queued with (`None`: anonymous) against the
/// store as it is now.
pub async fn resolve(
    store: &dyn Store,
    app: &AppId,
    queued: Option<PrincipalInput>,
) -> StoreResult<RunCaller> {
    let Some(queued) = queued else {
        return Ok(RunCaller::Anonymous);
    };
    let Ok(user_id) = UserId::parse(&queued.user_id) else {
        return Ok(RunCaller::Refused(Refusal::UserDeleted));
    };
    let user = match store.get_user(&user_id).await {
        Ok(user) => user,
        Err(StoreError::NotFound) => return Ok(RunCaller::Refused(Refusal::UserDeleted)),
        Err(e) => return Err(e),
    };
    if user.disabled {
        return Ok(RunCaller::Refused(Refusal::UserDisabled));
    }
    let key = match (queued.kind, queued.key_id.as_deref()) {
        ("api_key", Some(key_id)) => match key_grant(store, &user.id, key_id).await? {
            Ok(grant) => Some(grant),
            Err(refusal) => return Ok(RunCaller::Refused(refusal)),
        },
        // A key call whose key is not named cannot be checked: treat it as revoked.
        ("api_key", None) => return Ok(RunCaller::Refused(Refusal::KeyRevoked)),
        _ => None,
    };
    let role = if user.is_admin {
        None
    } else {
        store.member_role(app, &user.id).await?
    };
    let principal = Principal {
        user_id: user.id.clone(),
        is_instance_admin: user.is_admin,
        key,
    };
    let then: Vec<Scope> = queued
        .scopes
        .iter()
        .filter_map(|s| s.parse::<Scope>().ok())
        .collect();
    let scopes: Vec<Scope> = principal
        .scopes_on_app(app, role)
        .into_iter()
        .filter(|s| then.contains(s))
        .collect();
    // A call accepted with no right at all (a public route called with a token of a
    // non-member) ran with none before too; only a loss refuses the run.
    if scopes.is_empty() && !then.is_empty() {
        return Ok(RunCaller::Refused(Refusal::RightsLost));
    }
    Ok(RunCaller::Acting(Caller {
        principal: PrincipalInput {
            scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            ..queued
        },
        scopes,
    }))
}

/// The key a call was made with, as it stands now.
async fn key_grant(
    store: &dyn Store,
    owner: &UserId,
    key_id: &str,
) -> StoreResult<Result<KeyGrant, Refusal>> {
    let Ok(id) = ApiKeyId::parse(key_id) else {
        return Ok(Err(Refusal::KeyRevoked));
    };
    let key = match store.get_api_key(&id).await {
        Ok(key) => key,
        Err(StoreError::NotFound) => return Ok(Err(Refusal::KeyRevoked)),
        Err(e) => return Err(e),
    };
    if key.user_id != *owner {
        return Ok(Err(Refusal::KeyRevoked));
    }
    if key.expires_at.is_some_and(|at| at <= picloud_core::now()) {
        return Ok(Err(Refusal::KeyExpired));
    }
    Ok(Ok(KeyGrant {
        key_id: key.id,
        scopes: key.scopes,
        app_id: key.app_id,
    }))
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use picloud_core::access::Role;
    use picloud_store::{
        ApiKeyStore, AppStore, MemberStore, NewApiKey, NewApp, NewUser, UserPatch, UserStore,
    };
    use picloud_store_sqlite::SqliteStore;

    use super::*;

    fn queued(user: &UserId, key: Option<&ApiKeyId>, scopes: &[Scope]) -> Option<PrincipalInput> {
        Some(PrincipalInput {
            kind: if key.is_some() { "api_key" } else { "user" },
            user_id: user.to_string(),
            key_id: key.map(ToString::to_string),
            scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        })
    }

    fn refusal(caller: RunCaller) -> Option<Refusal> {
        match caller {
            RunCaller::Refused(r) => Some(r),
            RunCaller::Anonymous | RunCaller::Acting(_) => None,
        }
    }

    fn scopes(caller: RunCaller) -> Option<Vec<Scope>> {
        match caller {
            RunCaller::Acting(caller) => Some(caller.scopes),
            RunCaller::Anonymous | RunCaller::Refused(_) => None,
        }
    }

    #[tokio::test]
    async fn callers_are_judged_as_they_stand_now() {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open(&dir.path().join("t.db"))
            .await
            .expect("store");
        let app = store
            .create_app(NewApp {
                slug: "shop".into(),
                name: "Shop".into(),
            })
            .await
            .expect("app")
            .id;
        let user = store
            .create_user(NewUser {
                email: "dev@example.com".into(),
                password_hash: "x".into(),
                is_admin: false,
            })
            .await
            .expect("user")
            .id;
        store
            .set_member(&app, &user, Role::Editor)
            .await
            .expect("member");
        let editor = Role::Editor.scopes();
        let viewer = Role::Viewer.scopes();
        let resolve = |q| resolve(&store, &app, q);

        assert!(matches!(resolve(None).await, Ok(RunCaller::Anonymous)));
        assert_eq!(
            scopes(resolve(queued(&user, None, editor)).await.expect("ok")),
            Some(editor.to_vec())
        );
        // Never more than when the call was made.
        assert_eq!(
            scopes(resolve(queued(&user, None, viewer)).await.expect("ok")),
            Some(viewer.to_vec())
        );
        // A call made with no right at all keeps running with none.
        assert_eq!(
            scopes(resolve(queued(&user, None, &[])).await.expect("ok")),
            Some(vec![])
        );
        assert_eq!(
            refusal(
                resolve(queued(&UserId::new(), None, editor))
                    .await
                    .expect("ok")
            ),
            Some(Refusal::UserDeleted)
        );

        let key = |expires_at| NewApiKey {
            user_id: user.clone(),
            name: "k".into(),
            key_hash: format!("hash-{expires_at:?}"),
            prefix: "pk_x".into(),
            scopes: vec![Scope::ScriptInvoke, Scope::ScriptWrite],
            app_id: None,
            expires_at,
        };
        let live = store.create_api_key(key(None)).await.expect("key").id;
        let past = picloud_core::now() - Duration::seconds(1);
        let expired = store.create_api_key(key(Some(past))).await.expect("key").id;
        assert_eq!(
            scopes(
                resolve(queued(&user, Some(&live), editor))
                    .await
                    .expect("ok")
            ),
            // The key's scopes within the owner's role.
            Some(vec![Scope::ScriptInvoke, Scope::ScriptWrite])
        );
        assert_eq!(
            refusal(
                resolve(queued(&user, Some(&expired), editor))
                    .await
                    .expect("ok")
            ),
            Some(Refusal::KeyExpired)
        );
        assert_eq!(
            refusal(
                resolve(queued(&user, Some(&ApiKeyId::new()), editor))
                    .await
                    .expect("ok")
            ),
            Some(Refusal::KeyRevoked)
        );
        // Another user's key is no key of this caller's.
        let other = store
            .create_user(NewUser {
                email: "other@example.com".into(),
                password_hash: "x".into(),
                is_admin: false,
            })
            .await
            .expect("other")
            .id;
        assert_eq!(
            refusal(
                resolve(queued(&other, Some(&live), editor))
                    .await
                    .expect("ok")
            ),
            Some(Refusal::KeyRevoked)
        );

        store.remove_member(&app, &user).await.expect("remove");
        assert_eq!(
            refusal(resolve(queued(&user, None, editor)).await.expect("ok")),
            Some(Refusal::RightsLost)
        );
        store
            .update_user(
                &user,
                UserPatch {
                    disabled: Some(true),
                    ..UserPatch::default()
                },
            )
            .await
            .expect("disable");
        assert_eq!(
            refusal(resolve(queued(&user, None, editor)).await.expect("ok")),
            Some(Refusal::UserDisabled)
        );
    }
}
