//! Storage faults at the store's surface: a full disk under SQLite (a small tmpfs),
//! a connection lost mid-transaction under PostgreSQL. Whatever fails, the store
//! reports it as an outage, no write is reported done unless it committed, and
//! writes resume once the fault is gone — without reopening the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use picloud_core::model::{ExecutionSource, ExecutionStatus, KvOp, ScriptKind};
use picloud_core::{AppId, ExecutionId, ScriptId};
use picloud_store::{
    EventCause, Execution, NewApp, NewScript, NewTrigger, Outage, RetryPolicy, Store, StoreError,
    TriggerConfig,
};
use picloud_store_sqlite::SqliteStore;
use picloud_testkit::db::TestDb;
use picloud_testkit::tmpfs::Tmpfs;
use serde_json::json;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::Connection;

fn cause() -> EventCause {
    EventCause {
        depth: 0,
        max_depth: 8,
        default_retry: RetryPolicy::ONCE,
    }
}

fn record(app: &AppId) -> Execution {
    let started_at = picloud_core::now();
    Execution {
        id: ExecutionId::at(started_at),
        app_id: app.clone(),
        script_id: ScriptId::new(),
        source: ExecutionSource::Http,
        status: ExecutionStatus::Ok,
        started_at,
        duration_ms: 1,
        logs: vec![],
        error: None,
        error_line: None,
    }
}

fn new_app(slug: &str) -> NewApp {
    NewApp {
        slug: slug.into(),
        name: slug.into(),
    }
}

/// An app whose KV writes to `c` each queue one delivery (the outbox).
async fn app_with_trigger(store: &Arc<dyn Store>, slug: &str) -> AppId {
    let app = store.create_app(new_app(slug)).await.expect("app");
    let script = store
        .create_script(NewScript {
            app_id: app.id.clone(),
            name: "on-set".into(),
            kind: ScriptKind::Endpoint,
            source: "1".into(),
            imports: vec![],
        })
        .await
        .expect("script");
    store
        .create_trigger(NewTrigger {
            app_id: app.id.clone(),
            script_id: script.id,
            retry: None,
            config: TriggerConfig::Kv {
                collection: "c".into(),
                ops: vec![KvOp::Set],
            },
        })
        .await
        .expect("trigger");
    app.id
}

/// What was acknowledged, and what was refused, while the disk was full.
#[derive(Default)]
struct Ledger {
    apps: Vec<String>,
    keys: Vec<String>,
    records: Vec<ExecutionId>,
    refused_apps: Vec<String>,
    refused_keys: Vec<String>,
    refusals: usize,
}

impl Ledger {
    fn refused(&mut self, what: &str, e: &StoreError) {
        assert_eq!(
            e.outage(),
            Some(Outage::DiskFull),
            "{what} on a full disk: {e}"
        );
        self.refusals += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_disk_acknowledges_only_what_it_commits() {
    let Some(fs) = Tmpfs::mount(8 << 20) else {
        return;
    };
    let path = fs.path().join("picloud.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.expect("open"));
    let shop = app_with_trigger(&store, "shop").await;
    let mut ledger = Ledger {
        apps: vec!["shop".into()],
        ..Ledger::default()
    };
    for i in 0..3 {
        let key = format!("before-{i}");
        store
            .kv_set(&shop, "c", &key, &json!(i), &cause())
            .await
            .expect("before the fault");
        ledger.keys.push(key);
    }
    // Room for a few writes, then none: every kind of write, interleaved, so a
    // failed transaction is followed by single statements and by other transactions.
    fs.fill_leaving(256 << 10);
    let big = json!("x".repeat(32 << 10));
    for i in 0..200 {
        let key = format!("k{i}");
        match store.kv_set(&shop, "c", &key, &big, &cause()).await {
            Ok(_) => ledger.keys.push(key),
            Err(e) => {
                ledger.refused("kv set", &e);
                ledger.refused_keys.push(key);
            }
        }
        let slug = format!("during-{i}");
        match store.create_app(new_app(&slug)).await {
            Ok(_) => ledger.apps.push(slug),
            Err(e) => {
                ledger.refused("create app", &e);
                ledger.refused_apps.push(slug);
            }
        }
        let r = record(&shop);
        match store.insert_executions(std::slice::from_ref(&r)).await {
            Ok(()) => ledger.records.push(r.id),
            Err(e) => ledger.refused("execution records", &e),
        }
        if ledger.refusals >= 30 {
            break;
        }
    }
    assert!(ledger.refusals >= 30, "the disk never filled");
    assert!(ledger.keys.len() > 3, "some writes fitted before it did");

    fs.free();
    store
        .create_app(new_app("after"))
        .await
        .expect("writes resume once space is back");
    store
        .kv_set(&shop, "c", "after", &json!(1), &cause())
        .await
        .expect("transactions resume too");
    ledger.apps.push("after".into());
    ledger.keys.push("after".into());
    check(&store, &shop, &ledger).await;

    store.close().await;
    drop(store);
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("raw connection");
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .expect("integrity check");
    assert_eq!(integrity, "ok");
    conn.close().await.expect("close");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.expect("reopen"));
    check(&store, &shop, &ledger).await;
}

/// Everything acknowledged is there, with its delivery; nothing refused is.
async fn check(store: &Arc<dyn Store>, shop: &AppId, ledger: &Ledger) {
    for slug in &ledger.apps {
        store
            .get_app_by_slug(slug)
            .await
            .unwrap_or_else(|e| panic!("app {slug} was acknowledged: {e}"));
    }
    for slug in &ledger.refused_apps {
        assert!(
            matches!(store.get_app_by_slug(slug).await, Err(StoreError::NotFound)),
            "app {slug} was refused"
        );
    }
    for key in &ledger.keys {
        let entry = store.kv_get(shop, "c", key).await.expect("kv get");
        assert!(entry.is_some(), "key {key} was acknowledged");
    }
    for key in &ledger.refused_keys {
        let entry = store.kv_get(shop, "c", key).await.expect("kv get");
        assert!(entry.is_none(), "key {key} was refused");
    }
    for id in &ledger.records {
        store
            .get_execution(shop, id)
            .await
            .unwrap_or_else(|e| panic!("record {id} was acknowledged: {e}"));
    }
    let queued = store.count_events(shop).await.expect("count events");
    assert_eq!(
        queued,
        ledger.keys.len() as u64,
        "one delivery per acknowledged KV write, none for a refused one"
    );
}

/// Blocks the next write to `table` behind a lock held by another session, waits
/// until a backend of `store`'s database waits for it, and terminates that backend:
/// a connection dropped mid-write.
async fn kill_the_write_waiting_on(
    admin_url: &str,
    table: &str,
    write: impl std::future::Future<Output = Result<(), StoreError>>,
) -> StoreError {
    let mut blocker = PgConnection::connect(admin_url).await.expect("blocker");
    sqlx::query("BEGIN")
        .execute(&mut blocker)
        .await
        .expect("begin");
    sqlx::query(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        .execute(&mut blocker)
        .await
        .expect("lock");
    let killer = async {
        let mut admin = PgConnection::connect(admin_url).await.expect("admin");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let killed: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock' \
                 AND pid <> pg_backend_pid()",
            )
            .fetch_all(&mut admin)
            .await
            .expect("terminate");
            if killed.contains(&true) {
                return;
            }
            assert!(Instant::now() < deadline, "the write never waited");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (outcome, ()) = tokio::join!(write, killer);
    sqlx::query("ROLLBACK")
        .execute(&mut blocker)
        .await
        .expect("release the lock");
    outcome.expect_err("the write's connection was killed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connection_killed_mid_write_is_an_outage_and_the_pool_recovers() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let store = db.store();
    let shop = app_with_trigger(&store, "shop").await;
    store
        .kv_set(&shop, "c", "before", &json!(1), &cause())
        .await
        .expect("before");

    // A KV write and its delivery: one transaction, killed after it began.
    let e = kill_the_write_waiting_on(db.url(), "kv_entries", async {
        store
            .kv_set(&shop, "c", "killed", &json!(2), &cause())
            .await
            .map(drop)
    })
    .await;
    assert_eq!(e.outage(), Some(Outage::ConnectionLost), "{e}");
    store
        .kv_set(&shop, "c", "after", &json!(3), &cause())
        .await
        .expect("the pool replaced the dead connection");

    // A single statement, and a batch of execution records.
    let e = kill_the_write_waiting_on(db.url(), "apps", async {
        store.create_app(new_app("killed")).await.map(drop)
    })
    .await;
    assert_eq!(e.outage(), Some(Outage::ConnectionLost), "{e}");
    let r = record(&shop);
    let e = kill_the_write_waiting_on(db.url(), "executions", async {
        store.insert_executions(std::slice::from_ref(&r)).await
    })
    .await;
    assert_eq!(e.outage(), Some(Outage::ConnectionLost), "{e}");
    store
        .create_app(new_app("after"))
        .await
        .expect("writes resume");

    assert!(store
        .kv_get(&shop, "c", "before")
        .await
        .expect("get")
        .is_some());
    assert!(store
        .kv_get(&shop, "c", "after")
        .await
        .expect("get")
        .is_some());
    assert!(store
        .kv_get(&shop, "c", "killed")
        .await
        .expect("get")
        .is_none());
    assert!(matches!(
        store.get_app_by_slug("killed").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.get_execution(&shop, &r.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.count_events(&shop).await.expect("count"),
        2,
        "no delivery for the killed write"
    );
}
