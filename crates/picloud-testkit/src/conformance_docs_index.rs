//! Conformance cases for declared document indexes: declaring (idempotent, limited),
//! listing, dropping, and no database object outliving its declaration when an
//! index, a collection or an app goes.

use std::sync::Arc;

use picloud_core::AppId;
use picloud_store::docs_index::{IndexDeclared, MAX_INDEXES_PER_COLLECTION};
use picloud_store::{EventCause, FieldPath, NewApp, Query, RetryPolicy, Store, StoreError};
use serde_json::json;

const CAUSE: EventCause = EventCause {
    depth: 0,
    max_depth: 8,
    default_retry: RetryPolicy {
        max_attempts: 3,
        base_delay_ms: 10,
        max_delay_ms: 100,
    },
};

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

fn path(text: &str) -> FieldPath {
    FieldPath::parse(text).expect("path")
}

async fn fields(store: &Arc<dyn Store>, app: &AppId, collection: &str) -> Vec<String> {
    store
        .docs_indexes(app, collection)
        .await
        .expect("list")
        .into_iter()
        .map(|i| {
            assert!(i.ready, "{} is built", i.field.dotted());
            assert_eq!(i.collection, collection);
            i.field.dotted()
        })
        .collect()
}

async fn objects(store: &Arc<dyn Store>) -> usize {
    store.docs_index_objects().await.expect("objects").len()
}

pub async fn docs_indexes_declare_list_and_drop(store: Arc<dyn Store>) {
    let shop = app(&store, "shop").await;
    for i in 0..5 {
        store
            .docs_create(
                &shop,
                "users",
                &json!({"i": i, "user": {"email": format!("u{i}@x.io")}}),
                &CAUSE,
            )
            .await
            .expect("create");
    }
    assert!(fields(&store, &shop, "users").await.is_empty());

    let (made, declared) = store
        .docs_create_index(&shop, "users", &path("user.email"))
        .await
        .expect("declare");
    assert_eq!(declared, IndexDeclared::Created);
    assert_eq!(made.field.dotted(), "user.email");
    assert!(made.ready);
    // Declaring it again changes nothing.
    let (again, declared) = store
        .docs_create_index(&shop, "users", &path("user.email"))
        .await
        .expect("declare again");
    assert_eq!(declared, IndexDeclared::Existing);
    assert_eq!(again.created_at, made.created_at);
    store
        .docs_create_index(&shop, "users", &path("i"))
        .await
        .expect("declare");
    assert_eq!(fields(&store, &shop, "users").await, ["i", "user.email"]);
    assert_eq!(objects(&store).await, 2);

    // Queries over indexed fields answer as before.
    let q = Query::parse(&json!({"user.email": "u3@x.io"})).expect("q");
    let found = store.docs_find(&shop, "users", &q).await.expect("find");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].data["i"], 3);
    let q = Query::parse(&json!({"i": {"$gte": 2}, "$sort": "-i"})).expect("q");
    let found = store.docs_find(&shop, "users", &q).await.expect("find");
    let order: Vec<_> = found.iter().map(|d| d.data["i"].clone()).collect();
    assert_eq!(order, [json!(4), json!(3), json!(2)]);

    // A limit per collection; other collections are not affected.
    for i in 2..MAX_INDEXES_PER_COLLECTION {
        store
            .docs_create_index(&shop, "users", &path(&format!("f{i}")))
            .await
            .expect("within the limit");
    }
    match store
        .docs_create_index(&shop, "users", &path("one.too.many"))
        .await
    {
        Err(StoreError::Conflict(message)) => {
            assert!(message.contains("users"), "{message}");
            assert!(
                message.contains(&MAX_INDEXES_PER_COLLECTION.to_string()),
                "{message}"
            );
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    // An index at the limit can still be declared again.
    store
        .docs_create_index(&shop, "users", &path("i"))
        .await
        .expect("idempotent at the limit");
    store
        .docs_create_index(&shop, "orders", &path("i"))
        .await
        .expect("another collection");
    assert_eq!(objects(&store).await, MAX_INDEXES_PER_COLLECTION + 1);

    // Dropping takes the declaration and its object.
    store
        .docs_drop_index(&shop, "users", &path("user.email"))
        .await
        .expect("drop");
    assert!(!fields(&store, &shop, "users")
        .await
        .contains(&"user.email".to_owned()));
    assert_eq!(objects(&store).await, MAX_INDEXES_PER_COLLECTION);
    assert!(matches!(
        store
            .docs_drop_index(&shop, "users", &path("user.email"))
            .await,
        Err(StoreError::NotFound)
    ));
    let found = store
        .docs_find(
            &shop,
            "users",
            &Query::parse(&json!({"user.email": "u3@x.io"})).expect("q"),
        )
        .await
        .expect("find without the index");
    assert_eq!(found.len(), 1);

    // No app, no index; and nothing is built for it.
    assert!(matches!(
        store
            .docs_create_index(&AppId::new(), "users", &path("i"))
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(objects(&store).await, MAX_INDEXES_PER_COLLECTION);
}

pub async fn dropping_a_collection_or_an_app_drops_its_indexes(store: Arc<dyn Store>) {
    let shop = app(&store, "shop").await;
    let other = app(&store, "other").await;
    for (a, collection, n) in [
        (&shop, "users", 3),
        (&shop, "orders", 2),
        (&other, "users", 1),
    ] {
        for i in 0..n {
            store
                .docs_create(
                    a,
                    collection,
                    &json!({"i": i, "email": format!("{i}@x.io")}),
                    &CAUSE,
                )
                .await
                .expect("create");
        }
    }
    for (a, collection, field) in [
        (&shop, "users", "email"),
        (&shop, "users", "i"),
        (&shop, "orders", "i"),
        (&other, "users", "email"),
    ] {
        store
            .docs_create_index(a, collection, &path(field))
            .await
            .expect("declare");
    }
    assert_eq!(objects(&store).await, 4);

    let deleted = store
        .docs_drop_collection(&shop, "users")
        .await
        .expect("drop collection");
    assert_eq!(deleted, 3);
    assert!(fields(&store, &shop, "users").await.is_empty());
    let everything = Query::parse(&json!({})).expect("q");
    assert!(store
        .docs_find(&shop, "users", &everything)
        .await
        .expect("find")
        .is_empty());
    assert_eq!(
        objects(&store).await,
        2,
        "the collection's two indexes are gone"
    );
    // Its neighbours keep their documents and indexes.
    assert_eq!(
        store
            .docs_find(&shop, "orders", &everything)
            .await
            .expect("find")
            .len(),
        2
    );
    assert_eq!(fields(&store, &shop, "orders").await, ["i"]);
    assert_eq!(
        store
            .docs_find(&other, "users", &everything)
            .await
            .expect("find")
            .len(),
        1
    );
    assert_eq!(fields(&store, &other, "users").await, ["email"]);
    // A dropped collection can be used, and indexed, again.
    store
        .docs_create(&shop, "users", &json!({"email": "new@x.io"}), &CAUSE)
        .await
        .expect("create");
    store
        .docs_create_index(&shop, "users", &path("email"))
        .await
        .expect("declare again");
    assert_eq!(objects(&store).await, 3);
    assert_eq!(
        store
            .docs_drop_collection(&shop, "never")
            .await
            .expect("an empty one"),
        0
    );

    store.delete_app(&shop).await.expect("delete app");
    let left = store.docs_index_objects().await.expect("objects");
    assert_eq!(
        left.len(),
        1,
        "only the other app's index is left: {left:?}"
    );
    assert_eq!(fields(&store, &other, "users").await, ["email"]);
    let found = store
        .docs_find(
            &other,
            "users",
            &Query::parse(&json!({"email": "0@x.io"})).expect("q"),
        )
        .await
        .expect("find");
    assert_eq!(found.len(), 1);
}

/// A value too long for a backend's index row (PostgreSQL's B-tree holds ~2,700 bytes)
/// is refused as the request's mistake, never a storage error; a neighbouring
/// short value still goes in.
pub async fn long_values_on_an_indexed_field_fail_cleanly(store: Arc<dyn Store>) {
    let shop = app(&store, "shop").await;
    store
        .docs_create_index(&shop, "notes", &path("s"))
        .await
        .expect("declare");
    // Hex of a counter's hash-like spread: text PostgreSQL cannot compress below the
    // limit.
    let long: String = (0..1200u32)
        .map(|i| format!("{:x}", i.wrapping_mul(2_654_435_761)))
        .collect();
    assert!(long.len() > 4_000);
    match store
        .docs_create(&shop, "notes", &json!({"s": long}), &CAUSE)
        .await
    {
        Ok(_) => {}
        Err(StoreError::Invalid(message)) => assert!(message.contains("index"), "{message}"),
        Err(e) => panic!("a long value must not be a storage error: {e:?}"),
    }
    store
        .docs_create(&shop, "notes", &json!({"s": "short"}), &CAUSE)
        .await
        .expect("a short value");
}
