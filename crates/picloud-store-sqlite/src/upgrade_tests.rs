//! Upgrading a database that already holds data keeps every row and its links.

use picloud_core::model::ExecutionSource;
use picloud_core::{ScriptId, TriggerId};
use picloud_store::{
    App, AppStore, EventCause, EventStore, KvStore, NewApp, PageRequest, RetryPolicy,
    TriggerConfig, TriggerStore,
};
use serde_json::json;

use crate::{migrator_upto, ts, SqliteStore};

/// A store migrated only up to `version`, with one app.
async fn store_at_version(version: i64) -> (tempfile::TempDir, SqliteStore, App) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::connect(&dir.path().join("old.db"))
        .await
        .expect("open");
    store
        .migrate_with(migrator_upto(version))
        .await
        .expect("old schema");
    let app = store
        .create_app(NewApp {
            slug: "shop".into(),
            name: "Shop".into(),
        })
        .await
        .expect("app");
    (dir, store, app)
}

#[tokio::test]
async fn rebuilding_triggers_keeps_details_and_deliveries() {
    let (_dir, store, app) = store_at_version(4).await;
    // Today's store code reads and writes tables v4 lacks; write the rows as v4 did.
    let script = ScriptId::new();
    let now = ts(picloud_core::now());
    sqlx::query(
        "INSERT INTO scripts (id, app_id, name, kind, source, created_at, updated_at) \
         VALUES (?, ?, 'h', 'endpoint', '()', ?, ?)",
    )
    .bind(script.as_str())
    .bind(app.id.as_str())
    .bind(&now)
    .bind(&now)
    .execute(&store.writer)
    .await
    .expect("script");
    let trigger = TriggerId::new();
    sqlx::query(
        "INSERT INTO triggers (id, app_id, script_id, kind, enabled, created_at, updated_at) \
         VALUES (?, ?, ?, 'kv', 1, ?, ?)",
    )
    .bind(trigger.as_str())
    .bind(app.id.as_str())
    .bind(script.as_str())
    .bind(&now)
    .bind(&now)
    .execute(&store.writer)
    .await
    .expect("trigger");
    sqlx::query("INSERT INTO kv_trigger_details VALUES (?, 'orders', 1, 1)")
        .bind(trigger.as_str())
        .execute(&store.writer)
        .await
        .expect("details");
    let cause = EventCause {
        depth: 0,
        max_depth: 8,
        default_retry: RetryPolicy::ONCE,
    };
    let written = store
        .kv_set(&app.id, "orders", "o1", &json!(1), &cause)
        .await
        .expect("kv set");
    assert_eq!(written.events.len(), 1);

    store.migrate().await.expect("upgrade");

    let triggers = store
        .list_triggers(&app.id, &PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(triggers.items.len(), 1);
    assert_eq!(
        triggers.items[0].config,
        TriggerConfig::Kv {
            collection: "orders".into(),
            ops: vec![
                picloud_core::model::KvOp::Set,
                picloud_core::model::KvOp::Delete
            ],
        }
    );
    let claimed = store
        .claim_events(
            picloud_core::now() + chrono::Duration::seconds(1),
            10,
            std::time::Duration::from_secs(60),
        )
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].source, ExecutionSource::Kv);
    assert_eq!(claimed[0].trigger_id.as_ref(), Some(&trigger));
    // Foreign keys are back on for the connection the migration used.
    let orphan = sqlx::query("INSERT INTO kv_trigger_details VALUES ('trg_missing', 'x', 1, 1)")
        .execute(&store.writer)
        .await;
    assert!(orphan.is_err(), "foreign keys are off after migrating");
    // Deleting the app still cascades through the rebuilt table.
    store.delete_app(&app.id).await.expect("delete app");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM kv_trigger_details")
        .fetch_one(&store.writer)
        .await
        .expect("count");
    assert_eq!(left, 0);
}

#[tokio::test]
async fn clustering_executions_by_app_keeps_every_record() {
    use picloud_core::model::ExecutionStatus;
    use picloud_core::ExecutionId;
    use picloud_store::{ExecutionFilter, ExecutionStore};

    let (_dir, store, app) = store_at_version(7).await;
    let old = picloud_core::now() - chrono::Duration::days(30);
    let ids = [ExecutionId::at(old), ExecutionId::new()];
    for (id, at) in ids.iter().zip([old, picloud_core::now()]) {
        sqlx::query(
            "INSERT INTO executions (id, app_id, script_id, source, status, started_at, \
             duration_ms, logs, error, error_line) \
             VALUES (?, ?, 'scr_x', 'http', 'error', ?, 5, '[]', 'boom', 3)",
        )
        .bind(id.as_str())
        .bind(app.id.as_str())
        .bind(ts(at))
        .execute(&store.writer)
        .await
        .expect("v7 record");
    }

    store.migrate().await.expect("upgrade");

    let listed = store
        .list_executions(
            &app.id,
            &ExecutionFilter::default(),
            &PageRequest::first(10),
        )
        .await
        .expect("list");
    let listed: Vec<_> = listed.items.iter().map(|e| e.id.clone()).collect();
    assert_eq!(listed, vec![ids[1].clone(), ids[0].clone()]);
    let kept = store.get_execution(&app.id, &ids[0]).await.expect("get");
    assert_eq!(kept.status, ExecutionStatus::Error);
    assert_eq!((kept.error_line, kept.duration_ms), (Some(3), 5));
    // Retention still finds the old record; deleting the app still cascades.
    let cutoff = picloud_core::now() - chrono::Duration::days(7);
    assert_eq!(
        store
            .delete_executions_before(cutoff, 10)
            .await
            .expect("sweep"),
        1
    );
    store.delete_app(&app.id).await.expect("delete app");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM executions")
        .fetch_one(&store.writer)
        .await
        .expect("count");
    assert_eq!(left, 0);
}

#[tokio::test]
async fn session_epochs_end_the_sessions_of_users_disabled_before() {
    use picloud_store::{NewUser, SessionStore, UserPatch, UserStore};

    let (_dir, store, _app) = store_at_version(8).await;
    let mut users = Vec::new();
    for (email, disabled) in [("on@example.com", 0), ("off@example.com", 1)] {
        let user = store
            .create_user(NewUser {
                email: email.into(),
                password_hash: "x".into(),
                is_admin: false,
            })
            .await
            .expect("user");
        let now = picloud_core::now();
        // Written as v8 did: no epochs yet.
        sqlx::query(
            "INSERT INTO sessions (id, user_id, token_hash, created_at, last_used_at, \
             expires_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(picloud_core::SessionId::new().as_str())
        .bind(user.id.as_str())
        .bind(email)
        .bind(ts(now))
        .bind(ts(now))
        .bind(ts(now + chrono::Duration::hours(1)))
        .execute(&store.writer)
        .await
        .expect("v8 session");
        sqlx::query("UPDATE users SET disabled = ? WHERE id = ?")
            .bind(disabled)
            .bind(user.id.as_str())
            .execute(&store.writer)
            .await
            .expect("disable");
        users.push(user);
    }

    store.migrate().await.expect("upgrade");

    let now = picloud_core::now();
    assert!(store
        .session_by_token_hash("on@example.com", now)
        .await
        .is_ok());
    store
        .update_user(
            &users[1].id,
            UserPatch {
                disabled: Some(false),
                ..UserPatch::default()
            },
        )
        .await
        .expect("enable");
    assert!(
        store
            .session_by_token_hash("off@example.com", now)
            .await
            .is_err(),
        "a session of a user disabled before the upgrade came back"
    );
}
