//! Upgrading a database that already holds data keeps every row. Runs against the
//! server in `PICLOUD_TEST_DATABASE_URL` (CI sets it; when set and unreachable, the test
//! fails) in a scratch database of its own.

use chrono::Duration;
use picloud_core::model::ExecutionStatus;
use picloud_core::ExecutionId;
use picloud_store::{AppStore, ExecutionFilter, ExecutionStore, NewApp, PageRequest};

use crate::scratch::Scratch;
use crate::{migrator_upto, PostgresStore};

#[tokio::test]
async fn keying_executions_by_app_keeps_every_record() {
    let Some(scratch) = Scratch::create().await else {
        eprintln!("PICLOUD_TEST_DATABASE_URL is not set: skipped");
        return;
    };
    let store = PostgresStore::connect(&scratch.url).await.expect("connect");
    migrator_upto(7).run(&store.pool).await.expect("v7");
    let app = store
        .create_app(NewApp {
            slug: "shop".into(),
            name: "Shop".into(),
        })
        .await
        .expect("app");
    let old = picloud_core::now() - Duration::days(30);
    let ids = [ExecutionId::at(old), ExecutionId::new()];
    for (id, at) in ids.iter().zip([old, picloud_core::now()]) {
        sqlx::query(
            "INSERT INTO executions (id, app_id, script_id, source, status, started_at, \
             duration_ms, logs, error, error_line) \
             VALUES ($1, $2, 'scr_x', 'http', 'error', $3, 5, '[]', 'boom', 3)",
        )
        .bind(id.as_str())
        .bind(app.id.as_str())
        .bind(at)
        .execute(&store.pool)
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
    let cutoff = picloud_core::now() - Duration::days(7);
    assert_eq!(
        store
            .delete_executions_before(cutoff, 10)
            .await
            .expect("sweep"),
        1
    );
    // The new key is the one `ON CONFLICT` names: writing the kept record again is a
    // no-op, not an error.
    store
        .insert_executions(std::slice::from_ref(&kept))
        .await
        .expect("rewrite");
    store.delete_app(&app.id).await.expect("delete app");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM executions")
        .fetch_one(&store.pool)
        .await
        .expect("count");
    assert_eq!(left, 0);
}

#[tokio::test]
async fn session_epochs_end_the_sessions_of_users_disabled_before() {
    use picloud_store::{NewUser, SessionStore, UserPatch, UserStore};

    let Some(scratch) = Scratch::create().await else {
        eprintln!("PICLOUD_TEST_DATABASE_URL is not set: skipped");
        return;
    };
    let store = PostgresStore::connect(&scratch.url).await.expect("connect");
    migrator_upto(8).run(&store.pool).await.expect("v8");
    let mut users = Vec::new();
    for (email, disabled) in [("on@example.com", false), ("off@example.com", true)] {
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
             expires_at) VALUES ($1, $2, $3, $4, $4, $5)",
        )
        .bind(picloud_core::SessionId::new().as_str())
        .bind(user.id.as_str())
        .bind(email)
        .bind(now)
        .bind(now + Duration::hours(1))
        .execute(&store.pool)
        .await
        .expect("v8 session");
        sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(disabled)
            .bind(user.id.as_str())
            .execute(&store.pool)
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
