//! Conformance cases for secrets and data keys: ciphertext round trips, isolation,
//! cascade with the app, no trigger events, use counting, and the rotation primitives
//! (re-wrap selection, compare-and-set, the guarded flip).

use std::sync::Arc;

use picloud_core::envelope::{Sealed, Wrapped};
use picloud_core::AppId;
use picloud_store::secrets::{KEY_CHECK_META, PURPOSE_SECRETS};
use picloud_store::{DataKeyRow, Flip, NewApp, Store, StoreError};

async fn app(store: &Arc<dyn Store>, slug: &str) -> AppId {
    store
        .create_app(NewApp {
            slug: slug.into(),
            name: slug.into(),
        })
        .await
        .expect("app")
        .id
}

fn wrapping(key_id: &str, byte: u8) -> Wrapped {
    Wrapped {
        master_key_id: key_id.into(),
        nonce: vec![byte; 12],
        ciphertext: vec![byte; 48],
    }
}

fn key_row(id: &str, app: &AppId, master: &str) -> DataKeyRow {
    DataKeyRow {
        id: id.into(),
        app_id: Some(app.clone()),
        purpose: PURPOSE_SECRETS.into(),
        wrapped: wrapping(master, 1),
        spare: None,
        uses: 0,
        created_at: picloud_core::now(),
    }
}

fn sealed(byte: u8) -> Sealed {
    Sealed {
        nonce: vec![byte; 12],
        ciphertext: vec![byte; 40],
    }
}

pub async fn secrets_crud_isolation_and_cascade(store: Arc<dyn Store>) {
    store
        .init_meta(KEY_CHECK_META, "check-a")
        .await
        .expect("meta");
    let a = app(&store, "sec-a").await;
    let b = app(&store, "sec-b").await;
    store
        .insert_data_key(&key_row("dk_a", &a, "ka"), "check-a")
        .await
        .expect("data key");
    store
        .insert_data_key(&key_row("dk_b", &b, "ka"), "check-a")
        .await
        .expect("data key");

    assert!(store
        .secret_put(&a, "token", &sealed(7), "dk_a")
        .await
        .expect("created"));
    let row = store
        .secret_get(&a, "token")
        .await
        .expect("get")
        .expect("there");
    assert_eq!(row.sealed, sealed(7));
    assert_eq!(row.data_key_id, "dk_a");
    // Replacing keeps created_at, moves updated_at, answers "not created".
    assert!(!store
        .secret_put(&a, "token", &sealed(8), "dk_a")
        .await
        .expect("updated"));
    let again = store
        .secret_get(&a, "token")
        .await
        .expect("get")
        .expect("x");
    assert_eq!(again.sealed, sealed(8));
    assert_eq!(again.created_at, row.created_at);
    assert!(again.updated_at >= row.updated_at);
    // Each write counted one use of its data key.
    assert_eq!(store.data_key("dk_a").await.expect("dk").uses, 2);

    // Another app sees nothing of it.
    assert!(store.secret_get(&b, "token").await.expect("get").is_none());
    assert!(store.secret_list(&b, 100).await.expect("list").is_empty());
    store
        .secret_put(&a, "api", &sealed(9), "dk_a")
        .await
        .expect("put");
    let names: Vec<_> = store
        .secret_list(&a, 100)
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["api", "token"]);
    assert_eq!(store.secret_list(&a, 1).await.expect("list").len(), 1);

    // Writes queue no trigger events.
    assert_eq!(store.count_events(&a).await.expect("count"), 0);

    assert!(store.secret_delete(&a, "api").await.expect("delete"));
    assert!(!store.secret_delete(&a, "api").await.expect("delete"));

    // A missing app is NotFound, not a crash.
    let gone = AppId::new();
    assert!(matches!(
        store.secret_put(&gone, "x", &sealed(1), "dk_a").await,
        Err(StoreError::NotFound)
    ));

    // The app takes its secrets and data keys with it.
    store.delete_app(&a).await.expect("delete app");
    assert!(matches!(
        store.data_key("dk_a").await,
        Err(StoreError::NotFound)
    ));
    assert!(store.secret_get(&a, "token").await.expect("get").is_none());
    assert!(store.data_key("dk_b").await.is_ok());
}

pub async fn data_keys_follow_the_check_value(store: Arc<dyn Store>) {
    store
        .init_meta(KEY_CHECK_META, "check-a")
        .await
        .expect("meta");
    let a = app(&store, "dk-a").await;
    // Refused under a check value that is not the stored one.
    assert!(matches!(
        store
            .insert_data_key(&key_row("dk_1", &a, "ka"), "check-b")
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .insert_data_key(&key_row("dk_1", &a, "ka"), "check-a")
        .await
        .expect("insert");
    // The current key is the newest one under its use limit.
    let current = store
        .current_data_key(&a, PURPOSE_SECRETS, 10)
        .await
        .expect("current")
        .expect("one");
    assert_eq!(current.id, "dk_1");
    assert_eq!(current.wrapped, wrapping("ka", 1));
    assert!(store
        .current_data_key(&a, PURPOSE_SECRETS, 0)
        .await
        .expect("none under 0")
        .is_none());
    assert!(store
        .current_data_key(&a, "other", 10)
        .await
        .expect("other purpose")
        .is_none());
}

pub async fn rotation_rewraps_then_flips_atomically(store: Arc<dyn Store>) {
    store
        .init_meta(KEY_CHECK_META, "check-old")
        .await
        .expect("meta");
    let a = app(&store, "rot-a").await;
    for id in ["dk_1", "dk_2", "dk_3"] {
        store
            .insert_data_key(&key_row(id, &a, "old"), "check-old")
            .await
            .expect("insert");
    }
    let todo = store.data_keys_to_rewrap("new", 2).await.expect("todo");
    assert_eq!(
        todo.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        ["dk_1", "dk_2"]
    );
    // A re-wrap is a compare-and-set on the current wrapping.
    assert!(!store
        .set_spare_wrapping("dk_1", &wrapping("other", 1), &wrapping("new", 2))
        .await
        .expect("cas"));
    assert!(store
        .set_spare_wrapping("dk_1", &wrapping("old", 1), &wrapping("new", 2))
        .await
        .expect("cas"));
    assert_eq!(
        store
            .data_keys_to_rewrap("new", 10)
            .await
            .expect("todo")
            .len(),
        2
    );
    // Not every key has the new wrapping: the flip changes nothing.
    assert_eq!(
        store
            .flip_master_key("check-old", "check-new", "new")
            .await
            .expect("flip"),
        Flip::Incomplete
    );
    for id in ["dk_2", "dk_3"] {
        assert!(store
            .set_spare_wrapping(id, &wrapping("old", 1), &wrapping("new", 2))
            .await
            .expect("cas"));
    }
    assert!(store
        .data_keys_to_rewrap("new", 10)
        .await
        .expect("none")
        .is_empty());
    assert_eq!(
        store
            .flip_master_key("check-wrong", "check-new", "new")
            .await
            .expect("flip"),
        Flip::WrongKey
    );
    assert_eq!(
        store
            .flip_master_key("check-old", "check-new", "new")
            .await
            .expect("flip"),
        Flip::Flipped
    );
    assert_eq!(
        store
            .get_meta(KEY_CHECK_META)
            .await
            .expect("meta")
            .as_deref(),
        Some("check-new")
    );
    let page = store.data_keys_after(None, 10).await.expect("all");
    assert_eq!(page.len(), 3);
    for key in &page {
        assert_eq!(key.wrapped, wrapping("new", 2));
        assert_eq!(key.spare.as_ref(), Some(&wrapping("old", 1)));
    }
    assert_eq!(
        store
            .data_keys_after(Some("dk_1"), 10)
            .await
            .expect("after")
            .len(),
        2
    );
    assert_eq!(
        store
            .flip_master_key("check-old", "check-new", "new")
            .await
            .expect("again"),
        Flip::AlreadyFlipped
    );
    // Data keys now need the new check value; the old wrapping can be forgotten.
    assert!(matches!(
        store
            .insert_data_key(&key_row("dk_4", &a, "old"), "check-old")
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.forget_spare_wrappings("new").await.expect("forget"),
        3
    );
    assert!(store.data_key("dk_1").await.expect("dk").spare.is_none());
}
