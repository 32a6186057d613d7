//! Indexes declared on document fields, end to end on both backends, through the
//! admin API and the scripts that query the collection.

use picloud_testkit::{Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

/// Declared indexes through the admin API: create (201, then 200 when it exists),
/// list, drop; a bad field path is 422 naming `field`; the limit is 409; scripts find
/// the same documents with the index; deleting the collection or the app leaves no
/// index behind; and every change is in the audit log.
async fn admin_declares_and_drops_indexes(backend: Backend) {
    let app = TestApp::start(backend).await.expect("server");
    app.create_app("shop").await;
    app.deploy(
        "shop",
        "POST",
        "/seed",
        r#"
        let users = docs::collection("users");
        for i in 0..20 { users.create(#{i: i, profile: #{email: `u${i}@x.io`}, tier: if i % 2 == 0 { "gold" } else { "free" }}); }
    "#,
    )
    .await;
    app.deploy(
        "shop",
        "GET",
        "/find",
        r#"
        let users = docs::collection("users");
        #{
            email: users.find(#{"profile.email": "u7@x.io"}).map(|d| d.data.i),
            gold: users.find(#{tier: "gold", i: #{"$gte": 14}, "$sort": "-i"}).map(|d| d.data.i),
        }
    "#,
    )
    .await;
    app.on_host("shop", Method::POST, "/seed")
        .send()
        .await
        .expect("seed");
    let found = |app: &TestApp| {
        let request = app.on_host("shop", Method::GET, "/find");
        async move {
            let r = request.send().await.expect("find");
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.expect("json")
        }
    };
    let before = found(&app).await;
    assert_eq!(before, json!({"email": [7], "gold": [18, 16, 14]}));

    let indexes = "/api/v1/admin/apps/shop/docs/users/indexes";
    let made = app
        .admin_ok(
            Method::POST,
            indexes,
            Some(json!({"field": "profile.email"})),
            201,
        )
        .await;
    assert_eq!(made["collection"], "users");
    assert_eq!(made["field"], "profile.email");
    assert_eq!(made["ready"], true);
    let again = app
        .admin_ok(
            Method::POST,
            indexes,
            Some(json!({"field": "profile.email"})),
            200,
        )
        .await;
    assert_eq!(again, made, "declaring again answers the same index");
    app.admin_ok(Method::POST, indexes, Some(json!({"field": "i"})), 201)
        .await;
    let list = app.admin_ok(Method::GET, indexes, None, 200).await;
    let listed: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["field"].as_str().expect("field"))
        .collect();
    assert_eq!(listed, ["i", "profile.email"]);
    assert_eq!(list["next_cursor"], Value::Null);
    assert_eq!(
        found(&app).await,
        before,
        "the same answers with the indexes"
    );

    // Bad paths are refused before anything is built, naming the field.
    for bad in [
        json!({"field": "a b"}),
        json!({"field": ""}),
        json!({"field": "a.b.c.d.e.f"}),
        json!({"field": "x'); DROP TABLE docs; --"}),
        json!({"field": "a..b"}),
    ] {
        let r = app.admin(Method::POST, indexes, Some(bad.clone())).await;
        assert_eq!(r.status(), 422, "{bad}");
        let error: Value = r.json().await.expect("json");
        assert_eq!(error["error"]["field"], "field", "{bad}: {error}");
    }
    let r = app
        .admin(
            Method::POST,
            indexes,
            Some(json!({"field": "a", "unique": true})),
        )
        .await;
    assert_eq!(r.status(), 422, "unknown options are refused");
    let r = app
        .admin(
            Method::POST,
            "/api/v1/admin/apps/shop/docs/no%20spaces/indexes",
            Some(json!({"field": "a"})),
        )
        .await;
    assert_eq!(r.status(), 422);
    let error: Value = r.json().await.expect("json");
    assert_eq!(error["error"]["field"], "collection");
    // Ten per collection.
    for i in 0..8 {
        app.admin_ok(
            Method::POST,
            indexes,
            Some(json!({"field": format!("f{i}")})),
            201,
        )
        .await;
    }
    let r = app
        .admin(Method::POST, indexes, Some(json!({"field": "eleventh"})))
        .await;
    assert_eq!(r.status(), 409);
    let list = app.admin_ok(Method::GET, indexes, None, 200).await;
    assert_eq!(list["items"].as_array().expect("items").len(), 10);

    // Dropping: 204, then 404.
    let r = app
        .admin(Method::DELETE, &format!("{indexes}/profile.email"), None)
        .await;
    assert_eq!(r.status(), 204);
    let r = app
        .admin(Method::DELETE, &format!("{indexes}/profile.email"), None)
        .await;
    assert_eq!(r.status(), 404);
    let r = app
        .admin(Method::DELETE, &format!("{indexes}/a%20b"), None)
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(found(&app).await, before);

    // Deleting the collection takes its documents and indexes.
    let store = app.started().state.store.clone();
    assert_eq!(store.docs_index_objects().await.expect("objects").len(), 9);
    let r = app
        .admin(Method::DELETE, "/api/v1/admin/apps/shop/docs/users", None)
        .await;
    assert_eq!(r.status(), 204);
    assert!(store
        .docs_index_objects()
        .await
        .expect("objects")
        .is_empty());
    let list = app.admin_ok(Method::GET, indexes, None, 200).await;
    assert_eq!(list["items"], json!([]));
    let page = app
        .admin_ok(Method::GET, "/api/v1/admin/apps/shop/docs/users", None, 200)
        .await;
    assert_eq!(page["items"], json!([]));

    // Deleting the app takes the indexes of every collection.
    app.admin_ok(
        Method::POST,
        "/api/v1/admin/apps/shop/docs/orders/indexes",
        Some(json!({"field": "total"})),
        201,
    )
    .await;
    assert_eq!(store.docs_index_objects().await.expect("objects").len(), 1);
    let r = app
        .admin(Method::DELETE, "/api/v1/admin/apps/shop", None)
        .await;
    assert_eq!(r.status(), 204);
    assert!(store
        .docs_index_objects()
        .await
        .expect("objects")
        .is_empty());

    // Every change is audited.
    let audit = app
        .admin_ok(Method::GET, "/api/v1/admin/audit?limit=100", None, 200)
        .await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    for action in [
        "POST /api/v1/admin/apps/{app}/docs/{collection}/indexes",
        "DELETE /api/v1/admin/apps/{app}/docs/{collection}/indexes/{field}",
        "DELETE /api/v1/admin/apps/{app}/docs/{collection}",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    app.shutdown().await;
}

picloud_testkit::backend_tests!(
    admin_declares_and_drops_indexes => admin_declares_and_drops_indexes,
);
