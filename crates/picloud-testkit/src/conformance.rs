//! The store conformance suite: every backend must pass every case, unchanged.
//! Cases are listed in `tests/store_conformance.rs`.

use std::sync::Arc;

use chrono::{Duration, Utc};
use picloud_core::access::{Role, Scope};
use picloud_core::model::{
    DispatchMode, ExecutionSource, ExecutionStatus, LogLevel, RouteAuth, RouteMethod, ScriptKind,
};
use picloud_core::route_pattern::RoutePattern;
use picloud_core::{AppId, AuditId, ExecutionId, ScriptId, UserId};
use picloud_store::{
    App, AppPatch, AuditEntry, Execution, ExecutionFilter, LogLine, NewApiKey, NewApp, NewRoute,
    NewScript, NewSession, NewUser, PageRequest, Route, Script, ScriptPatch, Store, StoreError,
    UserPatch,
};

async fn app(store: &Arc<dyn Store>, slug: &str) -> App {
    store
        .create_app(NewApp {
            slug: slug.into(),
            name: slug.to_uppercase(),
        })
        .await
        .expect("create app")
}

async fn script(store: &Arc<dyn Store>, app: &AppId, name: &str) -> Script {
    store
        .create_script(NewScript {
            app_id: app.clone(),
            name: name.into(),
            kind: ScriptKind::Endpoint,
            source: "1 + 1".into(),
            imports: vec![],
        })
        .await
        .expect("create script")
}

fn new_route(app: &AppId, script: &ScriptId, method: RouteMethod, path: &str) -> NewRoute {
    let pattern = RoutePattern::parse(path).expect("valid pattern");
    NewRoute {
        app_id: app.clone(),
        script_id: script.clone(),
        method,
        path: path.into(),
        path_key: pattern.normalized(),
        dispatch_mode: DispatchMode::Sync,
        auth: RouteAuth::Public,
    }
}

async fn route(
    store: &Arc<dyn Store>,
    app: &AppId,
    script: &ScriptId,
    m: RouteMethod,
    p: &str,
) -> Route {
    store
        .create_route(new_route(app, script, m, p))
        .await
        .expect("create route")
}

fn execution(
    app: &AppId,
    script: &ScriptId,
    status: ExecutionStatus,
    minutes_ago: i64,
) -> Execution {
    let started_at = picloud_core::now() - Duration::minutes(minutes_ago);
    Execution {
        id: ExecutionId::at(started_at),
        app_id: app.clone(),
        script_id: script.clone(),
        source: ExecutionSource::Http,
        status,
        started_at,
        duration_ms: 3,
        logs: vec![LogLine {
            level: LogLevel::Info,
            // Quotes, escapes and control characters survive the stores' encodings.
            message: "hello ✓ \"quoted\"\n\ttab \\ \u{1} \u{1F600}".into(),
            at: picloud_core::now(),
        }],
        error: (status != ExecutionStatus::Ok).then(|| "boom (line 1, position 1)".into()),
        error_line: (status != ExecutionStatus::Ok).then_some(1),
    }
}

/// Ids order by creation time only across milliseconds (the rest is random), so cases
/// that assert creation order wait for the clock between creations.
async fn next_millisecond() {
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, needle: &str) {
    match result {
        Err(StoreError::Conflict(message)) => {
            assert!(
                message.contains(needle),
                "conflict message {message:?} lacks {needle:?}"
            )
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::NotFound)),
        "expected NotFound, got {result:?}"
    );
}

pub async fn apps_crud(store: Arc<dyn Store>) {
    let shop = app(&store, "shop").await;
    assert_eq!(store.get_app(&shop.id).await.expect("get"), shop);
    assert_eq!(store.get_app_by_slug("shop").await.expect("by slug"), shop);
    assert_conflict(
        store
            .create_app(NewApp {
                slug: "shop".into(),
                name: "again".into(),
            })
            .await,
        "shop",
    );
    let renamed = store
        .update_app(
            &shop.id,
            AppPatch {
                name: Some("The Shop".into()),
            },
        )
        .await
        .expect("update");
    assert_eq!(renamed.name, "The Shop");
    assert_eq!(renamed.slug, "shop");
    assert!(renamed.updated_at >= shop.updated_at);
    let unchanged = store
        .update_app(&shop.id, AppPatch::default())
        .await
        .expect("empty patch");
    assert_eq!(unchanged.name, "The Shop");
    store.delete_app(&shop.id).await.expect("delete");
    assert_not_found(store.get_app(&shop.id).await);
    assert_not_found(store.get_app_by_slug("shop").await);
    assert_not_found(store.delete_app(&shop.id).await);
    assert_not_found(store.update_app(&shop.id, AppPatch::default()).await);
}

pub async fn apps_paginate(store: Arc<dyn Store>) {
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(app(&store, &format!("app-{i}")).await.id);
        next_millisecond().await;
    }
    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let result = store.list_apps(&page).await.expect("list");
        assert!(result.items.len() <= 2);
        seen.extend(result.items.into_iter().map(|a| a.id));
        match result.next_cursor {
            Some(cursor) => {
                page.after = picloud_store::Cursor::decode(cursor.as_str());
                assert!(page.after.is_some());
            }
            None => break,
        }
    }
    assert_eq!(seen, created, "every app once, in creation order");
}

pub async fn delete_app_removes_everything_it_owns(store: Arc<dyn Store>) {
    let shop = app(&store, "shop").await;
    let other = app(&store, "other").await;
    let s = script(&store, &shop.id, "hello").await;
    let keep = script(&store, &other.id, "hello").await;
    route(&store, &shop.id, &s.id, RouteMethod::Get, "/x").await;
    store
        .insert_executions(&[execution(&shop.id, &s.id, ExecutionStatus::Ok, 0)])
        .await
        .expect("insert");
    store.delete_app(&shop.id).await.expect("delete");
    assert_not_found(store.get_script(&s.id).await);
    assert!(store
        .route_targets(&shop.id)
        .await
        .expect("targets")
        .is_empty());
    let runs = store
        .list_executions(
            &shop.id,
            &ExecutionFilter::default(),
            &PageRequest::default(),
        )
        .await
        .expect("list");
    assert!(runs.items.is_empty());
    assert_eq!(
        store
            .get_script(&keep.id)
            .await
            .expect("other app's script")
            .id,
        keep.id
    );
}

pub async fn scripts_crud(store: Arc<dyn Store>) {
    let shop = app(&store, "shop").await;
    let other = app(&store, "other").await;
    let s = script(&store, &shop.id, "hello").await;
    assert_eq!(store.get_script(&s.id).await.expect("get"), s);
    assert_conflict(
        store
            .create_script(NewScript {
                app_id: shop.id.clone(),
                name: "hello".into(),
                kind: ScriptKind::Module,
                source: String::new(),
                imports: vec![],
            })
            .await,
        "hello",
    );
    // Names are per app.
    script(&store, &other.id, "hello").await;
    assert_not_found(
        store
            .create_script(NewScript {
                app_id: AppId::new(),
                name: "orphan".into(),
                kind: ScriptKind::Endpoint,
                source: String::new(),
                imports: vec![],
            })
            .await,
    );

    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let updated = store
        .update_script(
            &s.id,
            ScriptPatch {
                source: Some("2 + 2".into()),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    assert_eq!(updated.source, "2 + 2");
    assert_eq!(updated.name, "hello");
    assert!(updated.updated_at > s.updated_at, "update bumps updated_at");
    assert_eq!(updated.created_at, s.created_at);

    script(&store, &shop.id, "second").await;
    assert_conflict(
        store
            .update_script(
                &s.id,
                ScriptPatch {
                    name: Some("second".into()),
                    ..Default::default()
                },
            )
            .await,
        "second",
    );
    let listed = store
        .list_scripts(&shop.id, &PageRequest::default())
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 2);
    assert!(listed.next_cursor.is_none());

    let r = route(&store, &shop.id, &s.id, RouteMethod::Get, "/hello").await;
    store.delete_script(&s.id).await.expect("delete");
    assert_not_found(store.get_script(&s.id).await);
    assert_not_found(store.get_route(&r.id).await);
    assert_not_found(store.delete_script(&s.id).await);
    assert_not_found(store.update_script(&s.id, ScriptPatch::default()).await);
}

pub async fn routes_clash_by_shape_and_method(store: Arc<dyn Store>) {
    let shop = app(&store, "shop").await;
    let s = script(&store, &shop.id, "hello").await;
    let get = route(&store, &shop.id, &s.id, RouteMethod::Get, "/users/{id}").await;
    assert_eq!(store.get_route(&get.id).await.expect("get"), get);

    // Same shape, other parameter name: still a clash.
    assert_conflict(
        store
            .create_route(new_route(
                &shop.id,
                &s.id,
                RouteMethod::Get,
                "/users/{name}",
            ))
            .await,
        "GET /users/{id}",
    );
    // ANY overlaps every method, both ways round.
    assert_conflict(
        store
            .create_route(new_route(&shop.id, &s.id, RouteMethod::Any, "/users/{x}"))
            .await,
        "/users/{id}",
    );
    route(&store, &shop.id, &s.id, RouteMethod::Post, "/users/{uid}").await;
    route(&store, &shop.id, &s.id, RouteMethod::Any, "/files/{*rest}").await;
    assert_conflict(
        store
            .create_route(new_route(
                &shop.id,
                &s.id,
                RouteMethod::Delete,
                "/files/{*path}",
            ))
            .await,
        "ANY /files/{*rest}",
    );
    // Other shapes and other apps are free.
    route(&store, &shop.id, &s.id, RouteMethod::Get, "/users/me").await;
    let other = app(&store, "other").await;
    let t = script(&store, &other.id, "hello").await;
    route(&store, &other.id, &t.id, RouteMethod::Get, "/users/{id}").await;

    let targets = store.route_targets(&shop.id).await.expect("targets");
    assert_eq!(targets.len(), 4);
    assert!(targets
        .iter()
        .all(|t| t.script.id == s.id && t.route.app_id == shop.id));
    let listed = store
        .list_routes(&shop.id, &PageRequest::first(3))
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 3);
    assert!(listed.next_cursor.is_some());

    store.delete_route(&get.id).await.expect("delete");
    assert_not_found(store.get_route(&get.id).await);
    assert_not_found(store.delete_route(&get.id).await);
    route(&store, &shop.id, &s.id, RouteMethod::Get, "/users/{again}").await;
}

pub async fn users_and_first_user(store: Arc<dyn Store>) {
    assert_eq!(store.count_users().await.expect("count"), 0);
    let first = store
        .create_first_user(NewUser {
            email: "Admin@Example.com".into(),
            password_hash: "$argon2id$fake".into(),
            is_admin: true,
        })
        .await
        .expect("first user");
    assert_eq!(first.email, "admin@example.com");
    assert_conflict(
        store
            .create_first_user(NewUser {
                email: "second@example.com".into(),
                password_hash: "x".into(),
                is_admin: true,
            })
            .await,
        "",
    );
    assert_conflict(
        store
            .create_user(NewUser {
                email: "ADMIN@example.com".into(),
                password_hash: "x".into(),
                is_admin: false,
            })
            .await,
        "admin@example.com",
    );
    let bob = store
        .create_user(NewUser {
            email: "bob@example.com".into(),
            password_hash: "x".into(),
            is_admin: false,
        })
        .await
        .expect("bob");
    assert_eq!(store.count_users().await.expect("count"), 2);
    assert_eq!(
        store
            .get_user_by_email("BOB@example.com")
            .await
            .expect("by email"),
        bob
    );
    let disabled = store
        .update_user(
            &bob.id,
            UserPatch {
                disabled: Some(true),
                ..UserPatch::default()
            },
        )
        .await
        .expect("disable");
    assert!(disabled.disabled && !disabled.is_admin);
    assert_eq!(disabled.password_hash, "x");
    let page = store
        .list_users(&PageRequest::first(1))
        .await
        .expect("list");
    assert_eq!(page.items.len(), 1);
    assert!(page.next_cursor.is_some());
    store.delete_user(&bob.id).await.expect("delete");
    assert_not_found(store.get_user(&bob.id).await);
    assert_not_found(store.get_user(&UserId::new()).await);
}

pub async fn sessions_expire_and_slide(store: Arc<dyn Store>) {
    let user = store
        .create_user(NewUser {
            email: "a@example.com".into(),
            password_hash: "x".into(),
            is_admin: false,
        })
        .await
        .expect("user");
    let now = picloud_core::now();
    let session = store
        .create_session(NewSession {
            user_id: user.id.clone(),
            token_hash: "hash-1".into(),
            expires_at: now + Duration::hours(1),
            session_epoch: user.session_epoch,
        })
        .await
        .expect("session");
    let (found, found_user) = store
        .session_by_token_hash("hash-1", now)
        .await
        .expect("lookup");
    assert_eq!(found, session);
    assert_eq!(found_user, user);
    assert_not_found(store.session_by_token_hash("hash-2", now).await);
    assert_not_found(
        store
            .session_by_token_hash("hash-1", now + Duration::hours(2))
            .await,
    );
    store
        .touch_session(&session.id, now, now + Duration::hours(3))
        .await
        .expect("touch");
    store
        .session_by_token_hash("hash-1", now + Duration::hours(2))
        .await
        .expect("renewed");
    store
        .create_session(NewSession {
            user_id: user.id.clone(),
            token_hash: "hash-old".into(),
            expires_at: now - Duration::seconds(1),
            session_epoch: user.session_epoch,
        })
        .await
        .expect("expired session");
    assert_eq!(store.delete_expired_sessions(now).await.expect("sweep"), 1);
    store
        .create_session(NewSession {
            user_id: user.id.clone(),
            token_hash: "hash-2b".into(),
            expires_at: now + Duration::hours(1),
            session_epoch: user.session_epoch,
        })
        .await
        .expect("second session");
    store.delete_session(&session.id).await.expect("logout");
    store
        .session_by_token_hash("hash-2b", now)
        .await
        .expect("other session lives");
    assert_eq!(store.delete_user_sessions(&user.id).await.expect("all"), 1);
    assert_not_found(store.session_by_token_hash("hash-2b", now).await);
    assert_not_found(store.session_by_token_hash("hash-1", now).await);
    // Deleting a user ends their sessions.
    store
        .create_session(NewSession {
            user_id: user.id.clone(),
            token_hash: "hash-3".into(),
            expires_at: now + Duration::hours(1),
            session_epoch: user.session_epoch,
        })
        .await
        .expect("session");
    store.delete_user(&user.id).await.expect("delete user");
    assert_not_found(store.session_by_token_hash("hash-3", now).await);
}

pub async fn executions_record_filter_and_expire(store: Arc<dyn Store>) {
    let shop = app(&store, "shop").await;
    let other = app(&store, "other").await;
    let s = script(&store, &shop.id, "a").await;
    let t = script(&store, &shop.id, "b").await;
    let mut batch = Vec::new();
    for (script, status, minutes_ago) in [
        (&s.id, ExecutionStatus::Ok, 60 * 24 * 10),
        (&s.id, ExecutionStatus::Error, 5),
        (&t.id, ExecutionStatus::Timeout, 4),
        (&t.id, ExecutionStatus::Ok, 3),
    ] {
        batch.push(execution(&shop.id, script, status, minutes_ago));
        next_millisecond().await;
    }
    // A record whose app was deleted meanwhile is dropped, not an error.
    batch.push(execution(&AppId::new(), &s.id, ExecutionStatus::Ok, 1));
    store.insert_executions(&batch).await.expect("insert batch");
    store.insert_executions(&[]).await.expect("empty batch");
    // Log lines of megabytes are written and read back whole.
    let mut large = Vec::new();
    for _ in 0..2 {
        let mut e = execution(&other.id, &s.id, ExecutionStatus::Ok, 2);
        e.logs[0].message = "x".repeat(3 << 20);
        large.push(e);
    }
    store.insert_executions(&large).await.expect("large batch");
    for e in &large {
        let back = store.get_execution(&other.id, &e.id).await.expect("large");
        assert_eq!(&back, e);
    }

    let all = store
        .list_executions(
            &shop.id,
            &ExecutionFilter::default(),
            &PageRequest::default(),
        )
        .await
        .expect("list");
    let ids: Vec<_> = all.items.iter().map(|e| e.id.clone()).collect();
    let newest_first: Vec<_> = batch[..4].iter().rev().map(|e| e.id.clone()).collect();
    assert_eq!(ids, newest_first);
    assert_eq!(all.items[3], batch[0], "round trip keeps every field");

    let errors = store
        .list_executions(
            &shop.id,
            &ExecutionFilter {
                status: Some(ExecutionStatus::Error),
                ..ExecutionFilter::default()
            },
            &PageRequest::default(),
        )
        .await
        .expect("by status");
    assert_eq!(errors.items.len(), 1);
    assert_eq!(errors.items[0].error_line, Some(1));
    let of_t = store
        .list_executions(
            &shop.id,
            &ExecutionFilter {
                script_id: Some(t.id.clone()),
                source: Some(ExecutionSource::Http),
                ..ExecutionFilter::default()
            },
            &PageRequest::first(1),
        )
        .await
        .expect("by script");
    assert_eq!(of_t.items.len(), 1);
    let cursor = of_t.next_cursor.expect("a second page");
    let rest = store
        .list_executions(
            &shop.id,
            &ExecutionFilter {
                script_id: Some(t.id.clone()),
                ..ExecutionFilter::default()
            },
            &PageRequest {
                limit: 10,
                after: picloud_store::Cursor::decode(cursor.as_str()),
            },
        )
        .await
        .expect("page 2");
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].id, batch[2].id);

    assert_eq!(
        store
            .get_execution(&shop.id, &batch[1].id)
            .await
            .expect("get"),
        batch[1]
    );
    assert_not_found(store.get_execution(&other.id, &batch[1].id).await);

    let cutoff = Utc::now() - Duration::days(7);
    assert_eq!(
        store
            .delete_executions_before(cutoff, 100)
            .await
            .expect("sweep"),
        1
    );
    assert_eq!(
        store
            .delete_executions_before(cutoff, 100)
            .await
            .expect("sweep"),
        0
    );
    let recent = Utc::now() + Duration::minutes(1);
    assert_eq!(
        store
            .delete_executions_before(recent, 2)
            .await
            .expect("batch"),
        2
    );
    // Five were left (three of shop's, two of other's) and the sweep above took two:
    // the rest come from both apps.
    assert_eq!(
        store
            .delete_executions_before(recent, 100)
            .await
            .expect("rest"),
        3
    );
    for a in [&shop.id, &other.id] {
        let left = store
            .list_executions(a, &ExecutionFilter::default(), &PageRequest::default())
            .await
            .expect("list");
        assert!(left.items.is_empty());
    }
}

pub async fn meta_first_value_wins(store: Arc<dyn Store>) {
    assert_eq!(store.get_meta("key_check").await.expect("get"), None);
    assert_eq!(store.init_meta("key_check", "a").await.expect("init"), "a");
    assert_eq!(store.init_meta("key_check", "b").await.expect("init"), "a");
    assert_eq!(
        store.get_meta("key_check").await.expect("get").as_deref(),
        Some("a")
    );
    store.ping().await.expect("ping");
}

async fn user(store: &Arc<dyn Store>, email: &str) -> picloud_store::User {
    store
        .create_user(NewUser {
            email: email.into(),
            password_hash: "x".into(),
            is_admin: false,
        })
        .await
        .expect("user")
}

pub async fn members_roles(store: Arc<dyn Store>) {
    let shop = app(&store, "shop").await;
    let other = app(&store, "other").await;
    let alice = user(&store, "alice@example.com").await;
    let bob = user(&store, "bob@example.com").await;
    assert_eq!(
        store.member_role(&shop.id, &alice.id).await.expect("role"),
        None
    );
    let m = store
        .set_member(&shop.id, &alice.id, Role::Viewer)
        .await
        .expect("add");
    assert_eq!(m.role, Role::Viewer);
    let m = store
        .set_member(&shop.id, &alice.id, Role::Admin)
        .await
        .expect("change");
    assert_eq!(m.role, Role::Admin);
    store
        .set_member(&shop.id, &bob.id, Role::Editor)
        .await
        .expect("add bob");
    store
        .set_member(&other.id, &alice.id, Role::Editor)
        .await
        .expect("other app");
    assert_eq!(
        store.member_role(&shop.id, &alice.id).await.expect("role"),
        Some(Role::Admin)
    );
    let listed = store
        .list_members(&shop.id, &PageRequest::first(1))
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 1);
    assert!(listed.next_cursor.is_some());
    let mine = store.memberships_of(&alice.id).await.expect("mine");
    assert_eq!(mine.len(), 2);
    assert_not_found(
        store
            .set_member(&AppId::new(), &alice.id, Role::Viewer)
            .await,
    );
    assert_not_found(
        store
            .set_member(&shop.id, &UserId::new(), Role::Viewer)
            .await,
    );
    store
        .remove_member(&shop.id, &bob.id)
        .await
        .expect("remove");
    assert_not_found(store.remove_member(&shop.id, &bob.id).await);
    // Deleting the app or the user removes their memberships.
    store.delete_app(&other.id).await.expect("delete app");
    assert_eq!(
        store.memberships_of(&alice.id).await.expect("mine").len(),
        1
    );
    store.delete_user(&alice.id).await.expect("delete user");
    assert!(store
        .list_members(&shop.id, &PageRequest::default())
        .await
        .expect("list")
        .items
        .is_empty());
}

pub async fn api_keys_lifecycle(store: Arc<dyn Store>) {
    let shop = app(&store, "shop").await;
    let alice = user(&store, "alice@example.com").await;
    let bob = user(&store, "bob@example.com").await;
    let now = picloud_core::now();
    let key = store
        .create_api_key(NewApiKey {
            user_id: alice.id.clone(),
            name: "ci".into(),
            key_hash: "hash-a".into(),
            prefix: "pk_abcd".into(),
            scopes: vec![Scope::ScriptRead, Scope::ScriptInvoke],
            app_id: Some(shop.id.clone()),
            expires_at: Some(now + Duration::hours(1)),
        })
        .await
        .expect("create");
    let (found, owner) = store.api_key_by_hash("hash-a", now).await.expect("lookup");
    assert_eq!(found, key);
    assert_eq!(owner.id, alice.id);
    assert_not_found(
        store
            .api_key_by_hash("hash-a", now + Duration::hours(2))
            .await,
    );
    assert_not_found(store.api_key_by_hash("hash-x", now).await);
    store
        .create_api_key(NewApiKey {
            user_id: bob.id.clone(),
            name: "bob's".into(),
            key_hash: "hash-b".into(),
            prefix: "pk_efgh".into(),
            scopes: vec![Scope::InstanceAdmin],
            app_id: None,
            expires_at: None,
        })
        .await
        .expect("create");
    assert_not_found(
        store
            .create_api_key(NewApiKey {
                user_id: bob.id.clone(),
                name: "ghost app".into(),
                key_hash: "hash-c".into(),
                prefix: "pk_ijkl".into(),
                scopes: vec![],
                app_id: Some(AppId::new()),
                expires_at: None,
            })
            .await,
    );
    assert_eq!(
        store
            .list_api_keys(Some(&alice.id), &PageRequest::default())
            .await
            .expect("list")
            .items,
        vec![key.clone()]
    );
    let all = store
        .list_api_keys(None, &PageRequest::default())
        .await
        .expect("all");
    assert_eq!(all.items.len(), 2);
    assert_eq!(all.items[1].id, key.id, "newest first");
    store.touch_api_key(&key.id, now).await.expect("touch");
    assert_eq!(
        store.get_api_key(&key.id).await.expect("get").last_used_at,
        Some(now)
    );
    store.delete_api_key(&key.id).await.expect("delete");
    assert_not_found(store.api_key_by_hash("hash-a", now).await);
    assert_not_found(store.delete_api_key(&key.id).await);
    // A user's keys go with the user.
    store.delete_user(&bob.id).await.expect("delete bob");
    assert_not_found(store.api_key_by_hash("hash-b", now).await);
}

pub async fn audit_log_appends_and_filters(store: Arc<dyn Store>) {
    let shop = app(&store, "shop").await;
    let entry = |app_id: Option<AppId>, action: &str| AuditEntry {
        id: AuditId::new(),
        at: picloud_core::now(),
        user_id: Some(UserId::new()),
        key_id: None,
        action: action.into(),
        app_id,
        target: Some("scr_x".into()),
        ip: Some("127.0.0.1".into()),
        status: 201,
    };
    let a = entry(
        Some(shop.id.clone()),
        "POST /api/v1/admin/apps/{app}/scripts",
    );
    let b = entry(None, "POST /api/v1/admin/users");
    let c = entry(Some(shop.id.clone()), "DELETE /api/v1/admin/scripts/{id}");
    for e in [&a, &b, &c] {
        store.append_audit(e).await.expect("append");
    }
    let all = store
        .list_audit(None, &PageRequest::default())
        .await
        .expect("all");
    assert_eq!(all.items, vec![c.clone(), b.clone(), a.clone()]);
    let of_shop = store
        .list_audit(Some(&shop.id), &PageRequest::first(1))
        .await
        .expect("shop");
    assert_eq!(of_shop.items, vec![c.clone()]);
    let cursor = of_shop.next_cursor.expect("more");
    let rest = store
        .list_audit(
            Some(&shop.id),
            &PageRequest {
                limit: 10,
                after: picloud_store::Cursor::decode(cursor.as_str()),
            },
        )
        .await
        .expect("page 2");
    assert_eq!(rest.items, vec![a]);
    // Written before its request ran, finished after: the outcome and the app.
    let mut d = entry(None, "POST /api/v1/admin/apps");
    d.status = AuditEntry::PENDING;
    store.append_audit(&d).await.expect("append pending");
    store
        .finish_audit(&d.id, 201, Some(&shop.id))
        .await
        .expect("finish");
    let finished = store
        .list_audit(None, &PageRequest::first(1))
        .await
        .expect("newest");
    assert_eq!(finished.items[0].status, 201);
    assert_eq!(finished.items[0].app_id.as_ref(), Some(&shop.id));
    store
        .finish_audit(&d.id, 403, None)
        .await
        .expect("refinish");
    let kept = store
        .list_audit(None, &PageRequest::first(1))
        .await
        .expect("newest");
    assert_eq!(
        kept.items[0].app_id.as_ref(),
        Some(&shop.id),
        "no app keeps the app"
    );
    assert!(matches!(
        store.finish_audit(&AuditId::new(), 201, None).await,
        Err(StoreError::NotFound)
    ));
    // An entry for a request that was no one's goes away.
    let e = entry(None, "POST /api/v1/admin/apps");
    store.append_audit(&e).await.expect("append");
    store.delete_audit(&e.id).await.expect("delete entry");
    let left = store
        .list_audit(None, &PageRequest::default())
        .await
        .expect("all");
    assert!(left.items.iter().all(|x| x.id != e.id));
    store.delete_audit(&d.id).await.expect("delete entry");
    // The trail outlives the app.
    store.delete_app(&shop.id).await.expect("delete");
    assert_eq!(
        store
            .list_audit(Some(&shop.id), &PageRequest::default())
            .await
            .expect("kept")
            .items
            .len(),
        2
    );
}
