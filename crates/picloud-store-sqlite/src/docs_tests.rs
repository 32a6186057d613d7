//! The planner uses declared indexes: `find` by equality (and by range) on a declared
//! field searches its expression index, whose expression is the query's own,
//! character for character; another app's collection never touches it.

use picloud_core::AppId;
use picloud_store::docs_index::index_name;
use picloud_store::{AppStore, DocsIndexStore, DocsStore, FieldPath, NewApp, Query};
use serde_json::{json, Value};
use sqlx::Row;

use super::{extract_expr, find_ids_sql};
use crate::SqliteStore;

async fn plan(store: &SqliteStore, app: &AppId, filter: &Value) -> String {
    let query = Query::parse(filter).expect("filter");
    let mut conn = store.reader.acquire().await.expect("reader");
    let sql = find_ids_sql(&mut conn, app, "users", &query)
        .await
        .expect("sql");
    let rows = sqlx::query_with(&format!("EXPLAIN QUERY PLAN {}", sql.text), sql.args)
        .fetch_all(&mut *conn)
        .await
        .expect("explain");
    rows.iter()
        .map(|r| r.get::<String, _>("detail"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn seed(store: &SqliteStore, app: &AppId) {
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
         INSERT INTO docs (id, app_id, collection, data, created_at, updated_at) \
         SELECT ? || printf('%020d', i), ?, 'users', jsonb(json_object('i', i, \
             'email', 'u' || i || '@x.io', 'flag', json(iif(i % 4 = 3, 'true', 'false')), \
             'profile', json_object('age', i % 90))), \
             '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z' FROM n",
    )
    .bind(format!("doc_{}", &app.as_str()[20..]))
    .bind(app.as_str())
    .execute(&store.writer)
    .await
    .expect("seed");
}

#[tokio::test]
async fn finds_search_declared_expression_indexes() {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteStore::open(&dir.path().join("db"))
        .await
        .expect("open");
    let mut apps = Vec::new();
    for slug in ["shop", "other"] {
        let app = store
            .create_app(NewApp {
                slug: slug.into(),
                name: slug.into(),
            })
            .await
            .expect("app")
            .id;
        seed(&store, &app).await;
        apps.push(app);
    }
    let (shop, other) = (&apps[0], &apps[1]);
    let equal = json!({"email": "u77@x.io"});
    let nested = json!({"profile.age": 7, "flag": true, "i": {"$lt": 400}});
    let range = json!({"profile.age": {"$gte": 88}});
    let before = plan(&store, shop, &equal).await;
    assert!(
        !before.contains("docs_ix_"),
        "no index declared yet:\n{before}"
    );

    let email = FieldPath::parse("email").expect("path");
    let age = FieldPath::parse("profile.age").expect("path");
    for path in [&email, &age] {
        store
            .docs_create_index(shop, "users", path)
            .await
            .expect("declare");
    }
    let on_email = index_name(shop, "users", &email);
    let on_age = index_name(shop, "users", &age);
    for (filter, index) in [(&equal, &on_email), (&nested, &on_age), (&range, &on_age)] {
        let plan = plan(&store, shop, filter).await;
        assert!(
            plan.contains(&format!("USING INDEX {index}")),
            "{filter} should search {index}:\n{plan}"
        );
    }
    let plan_other = plan(&store, other, &equal).await;
    assert!(
        !plan_other.contains("docs_ix_"),
        "another app's collection:\n{plan_other}"
    );

    // The index is built over exactly the expression the query compares.
    let ddl: String = sqlx::query_scalar("SELECT sql FROM sqlite_schema WHERE name = ?")
        .bind(&on_age)
        .fetch_one(&store.reader)
        .await
        .expect("ddl");
    let expression = extract_expr(&age);
    assert_eq!(expression, r#"json_extract(data, '$."profile"."age"')"#);
    assert!(ddl.contains(&expression), "{ddl}");
    let query = Query::parse(&nested).expect("filter");
    let mut conn = store.reader.acquire().await.expect("reader");
    let sql = find_ids_sql(&mut conn, shop, "users", &query)
        .await
        .expect("sql");
    assert!(
        sql.text.contains(&format!("{expression} = ")),
        "{}",
        sql.text
    );
    drop(conn);

    // And the answers are the query language's.
    let find = |filter: &Value| {
        let query = Query::parse(filter).expect("filter");
        let store = &store;
        async move { store.docs_find(shop, "users", &query).await.expect("find") }
    };
    let ids = |docs: Vec<picloud_store::Doc>| -> Vec<i64> {
        docs.iter()
            .map(|d| d.data["i"].as_i64().expect("i"))
            .collect()
    };
    assert_eq!(ids(find(&equal).await), [77]);
    let any = json!({"email": {"$in": ["u5@x.io", "u6@x.io"]}});
    assert_eq!(ids(find(&any).await), [5, 6]);
    assert_eq!(ids(find(&nested).await), [7, 187, 367]);
    let all_in_range = json!({"profile.age": {"$gte": 88}, "$limit": 1000});
    assert_eq!(find(&all_in_range).await.len(), 5000 / 90 * 2);
    assert_eq!(
        ids(find(&json!({"email": {"$ne": "u1@x.io"}, "i": {"$lt": 4}})).await),
        [2, 3]
    );
}
