//! The writer after a failed transaction: it recovers, and nothing it reports done
//! is lost. (The real full disk, a small tmpfs, is in the testkit's `store_faults`.)

use picloud_core::AppId;
use picloud_store::{
    AppStore, EventCause, KvStore, NewApp, Outage, RetryPolicy, Store, StoreError, StoreResult,
};
use serde_json::json;
use sqlx::Connection;

use crate::{options, SqliteStore};

fn cause() -> EventCause {
    EventCause {
        depth: 0,
        max_depth: 8,
        default_retry: RetryPolicy::ONCE,
    }
}

fn new_app(slug: &str) -> NewApp {
    NewApp {
        slug: slug.into(),
        name: slug.into(),
    }
}

async fn kv_set(store: &SqliteStore, app: &AppId, key: &str, value: &str) -> StoreResult<()> {
    store
        .kv_set(app, "c", key, &json!(value), &cause())
        .await
        .map(drop)
}

/// What a COMMIT that fails on a full disk leaves behind: SQLite has already rolled
/// the transaction back, so sqlx's rollback on drop fails too and it still counts the
/// connection as inside a transaction.
async fn leave_writer_stuck(store: &SqliteStore) {
    let mut conn = store.writer.acquire().await.expect("writer");
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.expect("begin");
    sqlx::query("ROLLBACK")
        .execute(&mut *tx)
        .await
        .expect("end it behind sqlx's back");
    assert!(tx.commit().await.is_err(), "nothing left to commit");
    assert!(conn.is_in_transaction(), "sqlx still counts a transaction");
}

#[tokio::test]
async fn a_writer_left_inside_a_dead_transaction_is_replaced() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("picloud.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let shop = store.create_app(new_app("shop")).await.expect("app");
    leave_writer_stuck(&store).await;
    // Transactions begin again (they used to fail: "begin_with at non-zero depth")…
    kv_set(&store, &shop.id, "a", "1").await.expect("kv after");
    leave_writer_stuck(&store).await;
    // …and a plain `begin` (the execution recorder's, then) that fails is rolled back
    // whole: it used to be a SAVEPOINT opening a transaction that its rollback left
    // open, so the next single statements went into it, were reported done, and
    // vanished when the connection closed.
    {
        let mut tx = store.writer.begin().await.expect("begin");
        let failed = sqlx::query("INSERT INTO no_such_table VALUES (1)")
            .execute(&mut *tx)
            .await;
        assert!(failed.is_err());
    }
    store.create_app(new_app("later")).await.expect("app after");
    store.close().await;
    let store = SqliteStore::open(&path).await.expect("reopen");
    store.get_app_by_slug("later").await.expect("committed");
    assert!(store
        .kv_get(&shop.id, "c", "a")
        .await
        .expect("get")
        .is_some());
}

#[tokio::test]
async fn a_full_database_answers_unavailable_then_writes_resume() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("picloud.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let shop = store.create_app(new_app("shop")).await.expect("app");
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&store.writer)
        .await
        .expect("page count");
    store.close().await;
    // `max_page_count` makes the database "full" a few pages from now, on every
    // connection the store opens (a replaced writer included).
    let limit = (pages + 24).to_string();
    let store = SqliteStore::connect_with(options(&path).pragma("max_page_count", limit))
        .await
        .expect("reopen with a page limit");
    let value = "x".repeat(12 << 10);
    let mut acknowledged = Vec::new();
    let full = loop {
        let key = format!("k{}", acknowledged.len());
        match kv_set(&store, &shop.id, &key, &value).await {
            Ok(()) => acknowledged.push(key),
            Err(e) => break e,
        }
        assert!(acknowledged.len() < 100, "the page limit never bit");
    };
    assert!(!acknowledged.is_empty(), "some writes fit");
    assert!(
        matches!(full.outage(), Some(Outage::DiskFull)),
        "a full database is an outage, not an internal error: {full:?}"
    );
    let refused = store
        .create_app(NewApp {
            slug: "big".into(),
            name: "x".repeat(40_000),
        })
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Unavailable { .. })),
        "{refused:?}"
    );
    // Freeing space inside the database: the next writes fit, with no restart.
    for key in acknowledged.drain(..2) {
        store
            .kv_delete(&shop.id, "c", &key, &cause())
            .await
            .expect("delete");
    }
    kv_set(&store, &shop.id, "after", "1")
        .await
        .expect("kv after");
    store.create_app(new_app("after")).await.expect("app after");
    store.close().await;
    let store = SqliteStore::open(&path).await.expect("reopen");
    for key in acknowledged.iter().map(String::as_str).chain(["after"]) {
        assert!(
            store
                .kv_get(&shop.id, "c", key)
                .await
                .expect("get")
                .is_some(),
            "{key} was acknowledged"
        );
    }
    store.get_app_by_slug("after").await.expect("app after");
}

/// Text that is not JSON, reaching a JSON function, is the request's mistake: an
/// `Invalid` naming it, never an outage or an opaque internal error.
#[tokio::test]
async fn malformed_json_is_invalid_input() {
    let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
        .await
        .expect("in-memory database");
    let e = sqlx::query("SELECT json('apple')")
        .execute(&mut conn)
        .await
        .expect_err("not JSON");
    match crate::db_err(e) {
        StoreError::Invalid(message) => assert!(message.contains("not valid JSON"), "{message}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}
