//! Conformance cases for the identity rules a store must hold inside its own writes:
//! the last enabled instance admin, and which sessions a credential change ends.

use std::sync::Arc;

use picloud_store::{NewUser, PageRequest, Store, StoreError, User, UserPatch};

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
