//! The planner uses declared indexes: on a realistic collection (20,000 documents,
//! analysed), ranges and `$sort` on a declared field walk its B-tree, equality keeps
//! the GIN index, and another app's collection never touches the index.

use picloud_core::AppId;
use picloud_store::docs_index::index_name;
use picloud_store::{AppStore, DocsIndexStore, DocsStore, FieldPath, NewApp, Query};
use serde_json::{json, Value};

use super::find_sql;
use crate::scratch::Scratch;
use crate::PostgresStore;

async fn plan(store: &PostgresStore, app: &AppId, filter: &Value) -> String {
    let query = Query::parse(filter).expect("filter");
    let sql = find_sql(app, "users", &query);
    let lines: Vec<String> = sqlx::query_scalar_with(&format!("EXPLAIN {}", sql.text), sql.args)
        .persistent(false)
        .fetch_all(&store.pool)
        .await
        .expect("explain");
    lines.join("\n")
}

async fn seed(store: &PostgresStore, app: &AppId) {
    sqlx::query(
        "INSERT INTO docs (id, app_id, collection, data, created_at, updated_at) \
         SELECT $1 || lpad(i::text, 20, '0'), $2, 'users', jsonb_build_object('i', i, \
             'email', 'u' || i || '@x.io', 'tier', (ARRAY['gold', 'free'])[i % 2 + 1], \
             'profile', jsonb_build_object('age', i % 90)), now(), now() \
         FROM generate_series(1, 20000) AS i",
    )
    .bind(format!("doc_{}", &app.as_str()[20..]))
    .bind(app.as_str())
    .execute(&store.pool)
    .await
    .expect("seed");
}

fn numbers(docs: &[picloud_store::Doc], field: &str) -> Vec<i64> {
    docs.iter()
        .map(|d| d.data[field].as_i64().expect("number"))
        .collect()
}

#[tokio::test]
async fn ranges_and_sorts_walk_declared_indexes() {
    let Some(scratch) = Scratch::create().await else {
        eprintln!("PICLOUD_TEST_DATABASE_URL is not set: skipped");
        return;
    };
    let store = PostgresStore::open(&scratch.url).await.expect("open");
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
    let range = json!({"i": {"$gte": 19990}});
    let sorted = json!({"$sort": "-i", "$limit": 10});
    let ranged_and_sorted = json!({"profile.age": {"$lt": 2}, "$sort": "profile.age", "$limit": 5});
    let equal = json!({"email": "u77@x.io"});
    sqlx::query("ANALYZE docs")
        .execute(&store.pool)
        .await
        .expect("analyze");
    assert!(!plan(&store, shop, &range).await.contains("docs_ix_"));

    for field in ["i", "profile.age"] {
        let path = FieldPath::parse(field).expect("path");
        store
            .docs_create_index(shop, "users", &path)
            .await
            .expect("declare");
    }
    // Statistics of the index expressions, as autovacuum would gather them.
    sqlx::query("ANALYZE docs")
        .execute(&store.pool)
        .await
        .expect("analyze");
    let on_i = index_name(shop, "users", &FieldPath::parse("i").expect("path"));
    let on_age = index_name(
        shop,
        "users",
        &FieldPath::parse("profile.age").expect("path"),
    );
    for (filter, index) in [
        (&range, &on_i),
        (&sorted, &on_i),
        (&ranged_and_sorted, &on_age),
    ] {
        let plan = plan(&store, shop, filter).await;
        assert!(
            plan.contains(index.as_str()),
            "{filter} should use {index}:\n{plan}"
        );
    }
    let plan_eq = plan(&store, shop, &equal).await;
    assert!(
        plan_eq.contains("docs_data"),
        "equality keeps GIN:\n{plan_eq}"
    );
    let plan_other = plan(&store, other, &sorted).await;
    assert!(
        !plan_other.contains("docs_ix_"),
        "another app's collection:\n{plan_other}"
    );

    // And the answers are the query language's.
    let find = |filter: Value| {
        let store = &store;
        async move {
            let query = Query::parse(&filter).expect("filter");
            store.docs_find(shop, "users", &query).await.expect("find")
        }
    };
    assert_eq!(
        numbers(&find(range).await, "i"),
        (19990..=20000).collect::<Vec<_>>()
    );
    assert_eq!(
        numbers(&find(sorted).await, "i"),
        (19991..=20000).rev().collect::<Vec<_>>()
    );
    let young = find(ranged_and_sorted).await;
    assert_eq!(
        numbers(&young, "i"),
        [90, 180, 270, 360, 450],
        "age 0 first, by id"
    );
}
