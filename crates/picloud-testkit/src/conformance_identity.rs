//! Conformance cases for the identity rules a store must hold inside its own writes:
//! the last enabled instance admin, and which sessions a credential change ends.

use std::sync::Arc;

use chrono::Duration;
use picloud_core::access::Scope;
use picloud_store::{
    KeyRevocation, NewApiKey, NewSession, NewUser, PageRequest, Session, Store, StoreError, User,
    UserPatch,
};

async fn admin(store: &Arc<dyn Store>, email: &str) -> User {
    store
        .create_user(NewUser {
            email: email.into(),
            password_hash: "x".into(),
            is_admin: true,
        })
        .await
        .expect("admin")
}

async fn enabled_admins(store: &Arc<dyn Store>) -> usize {
    store
        .list_users(&PageRequest::first(500))
        .await
        .expect("list")
        .items
        .iter()
        .filter(|u| u.is_admin && !u.disabled)
        .count()
}

fn demote() -> UserPatch {
    UserPatch {
        is_admin: Some(false),
        ..UserPatch::default()
    }
}

fn disable() -> UserPatch {
    UserPatch {
        disabled: Some(true),
        ..UserPatch::default()
    }
}

fn restore() -> UserPatch {
    UserPatch {
        is_admin: Some(true),
        disabled: Some(false),
        ..UserPatch::default()
    }
}

/// Exactly one of two racing changes may win; the loser is a `Conflict` naming the rule.
fn one_wins<A: std::fmt::Debug, B: std::fmt::Debug>(
    round: &str,
    a: Result<A, StoreError>,
    b: Result<B, StoreError>,
) {
    let refused = |e: &StoreError| matches!(e, StoreError::Conflict(m) if m.contains("last enabled instance admin"));
    match (&a, &b) {
        (Ok(_), Err(e)) | (Err(e), Ok(_)) if refused(e) => {}
        _ => panic!("{round}: exactly one change may win, got {a:?} and {b:?}"),
    }
}

/// Two admins each removed by a concurrent request (demote, disable, delete, in every
/// pairing): one change wins and the other is refused inside its own write, so the
/// instance never ends without an enabled admin.
pub async fn last_admin_survives_concurrent_changes(store: Arc<dyn Store>) {
    let a = admin(&store, "a@example.com").await;
    let b = admin(&store, "b@example.com").await;
    // A plain user is not an admin to keep: removing them is never refused.
    let plain = store
        .create_user(NewUser {
            email: "plain@example.com".into(),
            password_hash: "x".into(),
            is_admin: false,
        })
        .await
        .expect("plain user");

    let pairs: [(&str, UserPatch, UserPatch); 3] = [
        ("demote/demote", demote(), demote()),
        ("disable/demote", disable(), demote()),
        ("disable/disable", disable(), disable()),
    ];
    for (round, pa, pb) in pairs {
        for _ in 0..5 {
            let (ra, rb) = tokio::join!(
                store.update_user(&a.id, pa.clone()),
                store.update_user(&b.id, pb.clone()),
            );
            one_wins(round, ra, rb);
            assert_eq!(enabled_admins(&store).await, 1, "{round}");
            for id in [&a.id, &b.id] {
                store.update_user(id, restore()).await.expect("restore");
            }
        }
    }
    // Deleting races demoting, and deleting races deleting.
    let (ra, rb) = tokio::join!(store.delete_user(&a.id), store.update_user(&b.id, demote()));
    one_wins("delete/demote", ra, rb);
    assert_eq!(enabled_admins(&store).await, 1);
    let survivor = if store.get_user(&a.id).await.is_ok() {
        a.clone()
    } else {
        b.clone()
    };
    let c = admin(&store, "c@example.com").await;
    let (ra, rb) = tokio::join!(store.delete_user(&survivor.id), store.delete_user(&c.id));
    one_wins("delete/delete", ra, rb);
    assert_eq!(enabled_admins(&store).await, 1);

    // Alone, the last admin can neither be demoted, disabled nor deleted...
    let last = store
        .list_users(&PageRequest::first(500))
        .await
        .expect("list")
        .items
        .into_iter()
        .find(|u| u.is_admin && !u.disabled)
        .expect("an admin is left");
    for patch in [demote(), disable()] {
        assert!(matches!(
            store.update_user(&last.id, patch).await,
            Err(StoreError::Conflict(_))
        ));
    }
    assert!(matches!(
        store.delete_user(&last.id).await,
        Err(StoreError::Conflict(_))
    ));
    // ...while changes that keep them an enabled admin, and anything done to others, pass.
    store
        .update_user(
            &last.id,
            UserPatch {
                password_hash: Some("y".into()),
                is_admin: Some(true),
                disabled: Some(false),
                ..UserPatch::default()
            },
        )
        .await
        .expect("a change that keeps the admin");
    store
        .update_user(&plain.id, disable())
        .await
        .expect("disable a plain user");
    store
        .delete_user(&plain.id)
        .await
        .expect("delete a plain user");
    // A disabled admin is no admin to keep, and does not count as one either.
    let d = admin(&store, "d@example.com").await;
    store
        .update_user(&d.id, disable())
        .await
        .expect("disable d");
    assert!(matches!(
        store.update_user(&last.id, demote()).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .delete_user(&d.id)
        .await
        .expect("delete a disabled admin");
}

async fn plain_user(store: &Arc<dyn Store>, email: &str) -> User {
    store
        .create_user(NewUser {
            email: email.into(),
            password_hash: "x".into(),
            is_admin: false,
        })
        .await
        .expect("user")
}

/// A session for `user` as a login that read `seen` (the user row whose credentials
/// it checked) would write it.
async fn session(store: &Arc<dyn Store>, seen: &User, token_hash: &str) -> Session {
    store
        .create_session(NewSession {
            user_id: seen.id.clone(),
            token_hash: token_hash.into(),
            expires_at: picloud_core::now() + Duration::hours(1),
            session_epoch: seen.session_epoch,
        })
        .await
        .expect("session")
}

async fn live(store: &Arc<dyn Store>, token_hash: &str) -> bool {
    match store
        .session_by_token_hash(token_hash, picloud_core::now())
        .await
    {
        Ok(_) => true,
        Err(StoreError::NotFound) => false,
        Err(e) => panic!("session lookup: {e}"),
    }
}

async fn key(store: &Arc<dyn Store>, user: &User, hash: &str) {
    store
        .create_api_key(NewApiKey {
            user_id: user.id.clone(),
            name: hash.into(),
            key_hash: hash.into(),
            prefix: "pk_x".into(),
            scopes: vec![Scope::AppRead],
            app_id: None,
            expires_at: None,
        })
        .await
        .expect("key");
}

/// A disable ends a user's sessions for good, including one written by a login that
/// checked the password before the disable committed; a new password ends all but the
/// kept one; revoking keys deletes exactly the user's keys, in the same write.
pub async fn credential_changes_end_sessions(store: Arc<dyn Store>) {
    let boss = admin(&store, "boss@example.com").await;
    let dev = plain_user(&store, "dev@example.com").await;
    let other = plain_user(&store, "other@example.com").await;
    session(&store, &dev, "before").await;
    session(&store, &other, "bystander").await;
    // A login reads the user and checks the password...
    let seen = store.get_user(&dev.id).await.expect("read");
    store
        .update_user(&dev.id, disable())
        .await
        .expect("disable");
    // ...and writes its session only after the disable committed.
    session(&store, &seen, "racing").await;
    assert!(!live(&store, "before").await);
    assert!(!live(&store, "racing").await);
    let enabled = store
        .update_user(
            &dev.id,
            UserPatch {
                disabled: Some(false),
                ..UserPatch::default()
            },
        )
        .await
        .expect("enable");
    assert!(!enabled.disabled);
    assert!(
        !live(&store, "before").await,
        "re-enabling revived a session"
    );
    assert!(
        !live(&store, "racing").await,
        "re-enabling revived a racing login"
    );
    assert!(
        live(&store, "bystander").await,
        "another user's session ended"
    );
    // A login after the re-enable works, and changes that are no credential change
    // (enable, promote, demote) leave it alone.
    let now = store.get_user(&dev.id).await.expect("read");
    session(&store, &now, "after").await;
    for patch in [
        UserPatch {
            disabled: Some(false),
            ..UserPatch::default()
        },
        UserPatch {
            is_admin: Some(true),
            ..UserPatch::default()
        },
        demote(),
    ] {
        store.update_user(&dev.id, patch).await.expect("change");
    }
    assert!(live(&store, "after").await);

    // A new password ends every session but the kept one (the caller's own).
    let now = store.get_user(&dev.id).await.expect("read");
    let mine = session(&store, &now, "mine").await;
    session(&store, &now, "stolen").await;
    store
        .update_user(
            &dev.id,
            UserPatch {
                password_hash: Some("new".into()),
                keep_session: Some(mine.id.clone()),
                ..UserPatch::default()
            },
        )
        .await
        .expect("new password");
    assert!(live(&store, "mine").await);
    assert!(!live(&store, "stolen").await);
    assert!(!live(&store, "after").await);
    // Another user's session cannot be kept through this user's change.
    let theirs = session(&store, &other, "theirs").await;
    store
        .update_user(
            &dev.id,
            UserPatch {
                password_hash: Some("newer".into()),
                keep_session: Some(theirs.id),
                ..UserPatch::default()
            },
        )
        .await
        .expect("new password");
    assert!(live(&store, "theirs").await, "untouched, as another user's");
    assert!(!live(&store, "mine").await);
    // A disable keeps nothing, even when asked to.
    let now = store.get_user(&dev.id).await.expect("read");
    let kept = session(&store, &now, "kept?").await;
    store
        .update_user(
            &dev.id,
            UserPatch {
                disabled: Some(true),
                keep_session: Some(kept.id),
                ..UserPatch::default()
            },
        )
        .await
        .expect("disable");
    store
        .update_user(
            &dev.id,
            UserPatch {
                disabled: Some(false),
                ..UserPatch::default()
            },
        )
        .await
        .expect("enable");
    assert!(!live(&store, "kept?").await);

    // Keys: kept by default, deleted on request — the user's only.
    key(&store, &dev, "dev-key").await;
    key(&store, &other, "other-key").await;
    store
        .update_user(
            &dev.id,
            UserPatch {
                password_hash: Some("newest".into()),
                ..UserPatch::default()
            },
        )
        .await
        .expect("new password");
    let at = picloud_core::now();
    assert!(store.api_key_by_hash("dev-key", at).await.is_ok());
    store
        .update_user(
            &dev.id,
            UserPatch {
                api_keys: KeyRevocation::RevokeAll,
                ..UserPatch::default()
            },
        )
        .await
        .expect("revoke keys");
    assert!(matches!(
        store.api_key_by_hash("dev-key", at).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.api_key_by_hash("other-key", at).await.is_ok());
    // A refused change revokes nothing: the rule and the revocation share the write.
    key(&store, &boss, "boss-key").await;
    let boss_now = store.get_user(&boss.id).await.expect("read");
    session(&store, &boss_now, "boss-session").await;
    assert_eq!(enabled_admins(&store).await, 1, "boss is the only admin");
    let refused = store
        .update_user(
            &boss.id,
            UserPatch {
                disabled: Some(true),
                api_keys: KeyRevocation::RevokeAll,
                ..UserPatch::default()
            },
        )
        .await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))));
    assert!(store.api_key_by_hash("boss-key", at).await.is_ok());
    assert!(live(&store, "boss-session").await);
}

/// A password change conditioned on the old hash applies once: a second change made
/// with the same (now stale) proof is a `Conflict`, and changes nothing.
pub async fn password_changes_compare_and_set(store: Arc<dyn Store>) {
    let user = admin(&store, "racer@example.com").await;
    let change = |hash: &str| UserPatch {
        password_hash: Some(hash.to_owned()),
        if_password_hash: Some(user.password_hash.clone()),
        ..UserPatch::default()
    };
    let won = store
        .update_user(&user.id, change("first"))
        .await
        .expect("first");
    assert_eq!(won.password_hash, "first");
    match store.update_user(&user.id, change("second")).await {
        Err(StoreError::Conflict(message)) => {
            assert_eq!(message, picloud_store::identity::PASSWORD_CHANGED);
        }
        other => panic!("a stale proof must not apply: {other:?}"),
    }
    let now = store.get_user(&user.id).await.expect("user");
    assert_eq!(now.password_hash, "first");
    assert_eq!(now.session_epoch, won.session_epoch, "nothing else changed");
}
