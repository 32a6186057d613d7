//! Conformance cases for KV, triggers, the outbox, dead letters and abandoned runs.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;
use picloud_core::model::{ExecutionSource, KvOp, Resolution, ScriptKind};
use picloud_core::{AbandonedId, AppId, EventId, ExecutionId, ScriptId};
use picloud_store::{
    Abandoned, DeadLetterFilter, EventCause, NewApp, NewEvent, NewScript, NewTrigger, PageRequest,
    RetryPolicy, Store, StoreError, TriggerConfig,
};
use serde_json::json;

const RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    base_delay_ms: 10,
    max_delay_ms: 100,
};

pub(crate) fn cause(depth: u32) -> EventCause {
    EventCause {
        depth,
        max_depth: 8,
        default_retry: RETRY,
    }
}

pub(crate) async fn app_with_script(store: &Arc<dyn Store>, slug: &str) -> (AppId, ScriptId) {
    let app = store
        .create_app(NewApp {
            slug: slug.into(),
            name: slug.into(),
        })
        .await
        .expect("app");
    let script = store
        .create_script(NewScript {
            app_id: app.id.clone(),
            name: "handler".into(),
            kind: ScriptKind::Endpoint,
            source: "()".into(),
            imports: vec![],
        })
        .await
        .expect("script");
    (app.id, script.id)
}

pub(crate) async fn kv_trigger(
    store: &Arc<dyn Store>,
    app: &AppId,
    script: &ScriptId,
    collection: &str,
    ops: Vec<KvOp>,
) -> picloud_store::Trigger {
    store
        .create_trigger(NewTrigger {
            app_id: app.clone(),
            script_id: script.clone(),
            retry: None,
            config: TriggerConfig::Kv {
                collection: collection.into(),
                ops,
            },
        })
        .await
        .expect("trigger")
}

pub(crate) async fn claim_all(store: &Arc<dyn Store>) -> Vec<picloud_store::OutboxEvent> {
    store
        .claim_events(
            picloud_core::now() + Duration::seconds(1),
            100,
            StdDuration::from_secs(60),
        )
        .await
        .expect("claim")
}

pub async fn kv_crud_and_listing(store: Arc<dyn Store>) {
    let (app, _) = app_with_script(&store, "shop").await;
    let (other, _) = app_with_script(&store, "other").await;
    assert_eq!(
        store.kv_get(&app, "users", "alice").await.expect("get"),
        None
    );
    let first = store
        .kv_set(&app, "users", "alice", &json!({"age": 30}), &cause(0))
        .await
        .expect("set");
    assert_eq!(first.prev, None);
    assert!(first.events.is_empty());
    let second = store
        .kv_set(&app, "users", "alice", &json!({"age": 31}), &cause(0))
        .await
        .expect("set");
    assert_eq!(second.prev, Some(json!({"age": 30})));
    let got = store
        .kv_get(&app, "users", "alice")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.value, json!({"age": 31}));
    assert!(got.updated_at >= got.created_at);
    // Isolation: same collection and key in another app.
    assert_eq!(
        store.kv_get(&other, "users", "alice").await.expect("get"),
        None
    );
    for key in [
        "alice/a",
        "alice/b",
        "bob",
        "al",
        "alicf",
        "ä-umlaut",
        "日本",
    ] {
        store
            .kv_set(&app, "users", key, &json!(key), &cause(0))
            .await
            .expect("set");
    }
    let all = store
        .kv_list(&app, "users", None, &PageRequest::default())
        .await
        .expect("list");
    let keys: Vec<_> = all.items.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "al",
            "alice",
            "alice/a",
            "alice/b",
            "alicf",
            "bob",
            "ä-umlaut",
            "日本"
        ]
    );
    let prefixed = store
        .kv_list(&app, "users", Some("alice"), &PageRequest::first(2))
        .await
        .expect("prefix");
    assert_eq!(
        prefixed
            .items
            .iter()
            .map(|e| e.key.as_str())
            .collect::<Vec<_>>(),
        vec!["alice", "alice/a"]
    );
    let next = prefixed.next_cursor.expect("more");
    let rest = store
        .kv_list(
            &app,
            "users",
            Some("alice"),
            &PageRequest {
                limit: 10,
                after: picloud_store::Cursor::decode(next.as_str()),
            },
        )
        .await
        .expect("page 2");
    assert_eq!(
        rest.items
            .iter()
            .map(|e| e.key.as_str())
            .collect::<Vec<_>>(),
        vec!["alice/b"]
    );
    assert!(rest.next_cursor.is_none());
    let deleted = store
        .kv_delete(&app, "users", "bob", &cause(0))
        .await
        .expect("delete");
    assert_eq!(deleted.prev, Some(json!("bob")));
    let again = store
        .kv_delete(&app, "users", "bob", &cause(0))
        .await
        .expect("delete");
    assert_eq!(again.prev, None);
    assert!(matches!(
        store
            .kv_set(&AppId::new(), "c", "k", &json!(1), &cause(0))
            .await,
        Err(StoreError::NotFound)
    ));
}

pub async fn triggers_belong_to_their_app(store: Arc<dyn Store>) {
    let (app, script) = app_with_script(&store, "shop").await;
    let (other, foreign) = app_with_script(&store, "other").await;
    let t = kv_trigger(&store, &app, &script, "orders", vec![KvOp::Set]).await;
    assert!(t.enabled);
    assert_eq!(
        t.config,
        TriggerConfig::Kv {
            collection: "orders".into(),
            ops: vec![KvOp::Set]
        }
    );
    assert_eq!(store.get_trigger(&app, &t.id).await.expect("get"), t);
    // Another app's script can never be a target, nor can a module.
    let cross = store
        .create_trigger(NewTrigger {
            app_id: app.clone(),
            script_id: foreign.clone(),
            retry: None,
            config: TriggerConfig::DeadLetter,
        })
        .await;
    assert!(matches!(cross, Err(StoreError::NotFound)), "{cross:?}");
    let module = store
        .create_script(NewScript {
            app_id: app.clone(),
            name: "lib".into(),
            kind: ScriptKind::Module,
            source: String::new(),
            imports: vec![],
        })
        .await
        .expect("module");
    let to_module = store
        .create_trigger(NewTrigger {
            app_id: app.clone(),
            script_id: module.id,
            retry: None,
            config: TriggerConfig::DeadLetter,
        })
        .await;
    assert!(matches!(to_module, Err(StoreError::NotFound)));
    // Another app cannot read or change it.
    assert!(matches!(
        store.get_trigger(&other, &t.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.set_trigger_enabled(&other, &t.id, false).await,
        Err(StoreError::NotFound)
    ));
    let with_retry = store
        .create_trigger(NewTrigger {
            app_id: app.clone(),
            script_id: script.clone(),
            retry: Some(RETRY),
            config: TriggerConfig::DeadLetter,
        })
        .await
        .expect("dl trigger");
    assert_eq!(with_retry.retry, Some(RETRY));
    let off = store
        .set_trigger_enabled(&app, &t.id, false)
        .await
        .expect("disable");
    assert!(!off.enabled);
    let listed = store
        .list_triggers(&app, &PageRequest::default())
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 2);
    store.delete_trigger(&app, &t.id).await.expect("delete");
    assert!(matches!(
        store.delete_trigger(&app, &t.id).await,
        Err(StoreError::NotFound)
    ));
    let _ = foreign;
}

pub async fn writes_and_events_commit_together(store: Arc<dyn Store>) {
    let (app, script) = app_with_script(&store, "shop").await;
    let on_set = kv_trigger(&store, &app, &script, "orders", vec![KvOp::Set]).await;
    let on_both = kv_trigger(
        &store,
        &app,
        &script,
        "orders",
        vec![KvOp::Set, KvOp::Delete],
    )
    .await;
    kv_trigger(&store, &app, &script, "other", vec![KvOp::Set]).await;
    let off = kv_trigger(&store, &app, &script, "orders", vec![KvOp::Set]).await;
    store
        .set_trigger_enabled(&app, &off.id, false)
        .await
        .expect("disable");

    let out = store
        .kv_set(&app, "orders", "o1", &json!({"total": 5}), &cause(0))
        .await
        .expect("set");
    assert_eq!(
        out.events.len(),
        2,
        "one delivery per matching enabled trigger"
    );
    let out = store
        .kv_delete(&app, "orders", "o1", &cause(2))
        .await
        .expect("delete");
    assert_eq!(out.events.len(), 1);
    assert_eq!(store.count_events(&app).await.expect("count"), 3);

    let claimed = claim_all(&store).await;
    assert_eq!(claimed.len(), 3);
    let set_events: Vec<_> = claimed
        .iter()
        .filter(|e| e.payload["op"] == "set")
        .collect();
    assert_eq!(set_events.len(), 2);
    let e = set_events[0];
    assert_eq!(e.source, ExecutionSource::Kv);
    assert_eq!(e.attempt, 1);
    assert_eq!(e.depth, 1);
    assert_eq!(e.retry, RETRY, "triggers without a policy get the default");
    assert_eq!(
        e.payload,
        json!({"source": "kv", "op": "set", "kv": {"collection": "orders", "key": "o1", "value": {"total": 5}, "prev": null}})
    );
    assert!([Some(on_set.id.clone()), Some(on_both.id.clone())].contains(&e.trigger_id));
    let delete = claimed
        .iter()
        .find(|e| e.payload["op"] == "delete")
        .expect("delete event");
    assert_eq!(delete.depth, 3, "depth is the cause's + 1");
    assert_eq!(delete.payload["kv"]["prev"], json!({"total": 5}));
    assert_eq!(delete.payload["kv"]["value"], serde_json::Value::Null);

    // Past the depth limit, matching triggers are skipped, not queued.
    let deep = store
        .kv_set(&app, "orders", "o2", &json!(1), &cause(8))
        .await
        .expect("set");
    assert!(deep.events.is_empty());
    assert_eq!(deep.skipped_for_depth, 2);
}

pub async fn claims_leases_and_fencing(store: Arc<dyn Store>) {
    let (app, script) = app_with_script(&store, "shop").await;
    let now = picloud_core::now();
    let event = |due: chrono::DateTime<chrono::Utc>| NewEvent {
        id: EventId::new(),
        app_id: app.clone(),
        trigger_id: None,
        script_id: script.clone(),
        source: ExecutionSource::Http,
        payload: json!({"source": "http", "op": "request"}),
        retry: RETRY,
        depth: 0,
        due_at: due,
    };
    let a = event(now - Duration::seconds(1));
    let b = event(now + Duration::hours(1));
    store.enqueue_event(a.clone()).await.expect("enqueue");
    store.enqueue_event(b.clone()).await.expect("enqueue");
    assert!(matches!(
        store.enqueue_event(a.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.next_event_due().await.expect("due"), Some(a.due_at));

    let claimed = store
        .claim_events(now, 10, StdDuration::from_secs(60))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1, "only due events");
    let first = claimed[0].clone();
    assert_eq!(first.id, a.id);
    assert!(
        store
            .claim_events(now, 10, StdDuration::from_secs(60))
            .await
            .expect("claim")
            .is_empty(),
        "claimed once"
    );
    assert_eq!(store.next_event_due().await.expect("due"), Some(b.due_at));
    assert!(store
        .extend_lease(&first.id, first.lease_version, now + Duration::minutes(5))
        .await
        .expect("extend"));

    // After the lease runs out another claimer gets it, with a new fencing token...
    let later = now + Duration::minutes(6);
    let reclaimed = store
        .claim_events(later, 10, StdDuration::from_secs(60))
        .await
        .expect("claim");
    assert_eq!(reclaimed.len(), 1);
    assert!(reclaimed[0].lease_version > first.lease_version);
    // ...and the presumed-dead first worker can no longer complete or retry it.
    assert!(!store
        .complete_event(&first.id, first.lease_version)
        .await
        .expect("complete"));
    assert!(!store
        .retry_event(&first.id, first.lease_version, 2, later)
        .await
        .expect("retry"));
    assert!(!store
        .extend_lease(&first.id, first.lease_version, later)
        .await
        .expect("extend"));
    let current = &reclaimed[0];
    assert!(store
        .retry_event(
            &current.id,
            current.lease_version,
            2,
            later + Duration::seconds(1)
        )
        .await
        .expect("retry"));
    let again = store
        .claim_events(later + Duration::seconds(2), 10, StdDuration::from_secs(60))
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
    assert!(store
        .complete_event(&again[0].id, again[0].lease_version)
        .await
        .expect("complete"));
    assert_eq!(store.count_events(&app).await.expect("count"), 1);

    // Start-up after a crash: claims are released.
    let c = event(now - Duration::seconds(1));
    store.enqueue_event(c.clone()).await.expect("enqueue");
    assert_eq!(
        store
            .claim_events(now, 10, StdDuration::from_secs(600))
            .await
            .expect("claim")
            .len(),
        1
    );
    assert!(store.release_claims().await.expect("release") >= 1);
    assert_eq!(
        store
            .claim_events(now, 10, StdDuration::from_secs(600))
            .await
            .expect("claim")
            .len(),
        1
    );
}

pub async fn dead_letters_fire_replay_and_resolve(store: Arc<dyn Store>) {
    let (app, script) = app_with_script(&store, "shop").await;
    let t = kv_trigger(&store, &app, &script, "orders", vec![KvOp::Set]).await;
    let dl_trigger = store
        .create_trigger(NewTrigger {
            app_id: app.clone(),
            script_id: script.clone(),
            retry: None,
            config: TriggerConfig::DeadLetter,
        })
        .await
        .expect("dl trigger");
    store
        .kv_set(&app, "orders", "o1", &json!(1), &cause(0))
        .await
        .expect("set");
    let event = claim_all(&store).await.remove(0);
    // A stale fencing token cannot dead-letter it.
    assert!(store
        .dead_letter_event(&event.id, event.lease_version - 1, "x", 8)
        .await
        .expect("stale")
        .is_none());
    let dl = store
        .dead_letter_event(&event.id, event.lease_version, "boom at line 3", 8)
        .await
        .expect("dead letter")
        .expect("written");
    assert_eq!(dl.event_id, event.id);
    assert_eq!(dl.trigger_id, Some(t.id.clone()));
    assert_eq!(dl.attempts, 1);
    assert_eq!(dl.resolution, None);
    // Its event is what the handler saw as `ctx.event`, id and attempt included, as
    // written and as read back.
    let seen = event.ctx_event();
    assert_eq!(seen["id"], event.id.as_str());
    assert_eq!(seen["attempt"], 1);
    assert_eq!(seen["kv"]["key"], "o1");
    assert_eq!(dl.event(), seen);
    assert_eq!(
        store
            .get_dead_letter(&app, &dl.id)
            .await
            .expect("get")
            .event(),
        seen
    );
    // The dead-letter trigger got an event (depth + 1, one attempt).
    let handler = claim_all(&store).await;
    assert_eq!(handler.len(), 1);
    let h = &handler[0];
    assert_eq!(h.source, ExecutionSource::DeadLetter);
    assert_eq!(h.trigger_id, Some(dl_trigger.id.clone()));
    assert_eq!(h.retry, RetryPolicy::ONCE);
    assert_eq!(h.depth, event.depth + 1);
    assert_eq!(h.payload["dead_letter"]["id"], dl.id.as_str());
    assert_eq!(h.payload["dead_letter"]["source_kind"], "kv");
    assert_eq!(h.payload["dead_letter"]["error"], "boom at line 3");
    assert_eq!(h.payload["dead_letter"]["event"], seen);
    // A failing handler marks the dead letter and produces nothing new.
    assert!(store
        .fail_dead_letter_handler(&h.id, h.lease_version, &dl.id)
        .await
        .expect("fail"));
    assert_eq!(store.count_events(&app).await.expect("count"), 0);
    let marked = store.get_dead_letter(&app, &dl.id).await.expect("get");
    assert_eq!(marked.resolution, Some(Resolution::HandlerFailed));
    let open = store
        .list_dead_letters(&app, DeadLetterFilter::Unresolved, &PageRequest::default())
        .await
        .expect("list");
    assert_eq!(open.items.len(), 1, "handler_failed counts as unresolved");

    // Replay: same event id, attempt 1, the given policy; the row is `replayed`.
    let replayed_id = store
        .replay_dead_letter(&app, &dl.id, RETRY)
        .await
        .expect("replay");
    assert_eq!(replayed_id, event.id);
    assert!(matches!(
        store.replay_dead_letter(&app, &dl.id, RETRY).await,
        Err(StoreError::Conflict(_))
    ));
    let again = claim_all(&store).await.remove(0);
    assert_eq!(again.id, event.id);
    assert_eq!(again.attempt, 1);
    assert_eq!(
        again.ctx_event(),
        seen,
        "the replay delivers the same event"
    );
    assert_eq!(again.retry, RETRY);
    assert_eq!(again.replay_of, Some(dl.id.clone()));
    assert_eq!(
        store
            .get_dead_letter(&app, &dl.id)
            .await
            .expect("get")
            .resolution,
        Some(Resolution::Replayed)
    );
    // Exhausted again: a new dead letter naming the first.
    let second = store
        .dead_letter_event(&again.id, again.lease_version, "still broken", 8)
        .await
        .expect("dl")
        .expect("row");
    assert_eq!(second.replay_of, Some(dl.id.clone()));
    let resolved = store
        .resolve_dead_letter(&app, &second.id)
        .await
        .expect("resolve");
    assert_eq!(resolved.resolution, Some(Resolution::Resolved));
    let done = store
        .list_dead_letters(&app, DeadLetterFilter::Resolved, &PageRequest::default())
        .await
        .expect("list");
    assert_eq!(done.items.len(), 2);
    assert_eq!(
        store
            .list_dead_letters(&app, DeadLetterFilter::All, &PageRequest::first(1))
            .await
            .expect("all")
            .items[0]
            .id,
        second.id
    );
    // Another app sees none of it.
    let (other, _) = app_with_script(&store, "other").await;
    assert!(matches!(
        store.get_dead_letter(&other, &dl.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.replay_dead_letter(&other, &dl.id, RETRY).await,
        Err(StoreError::NotFound)
    ));
    // Retention.
    assert_eq!(
        store
            .delete_dead_letters_before(picloud_core::now() + Duration::seconds(1), 1)
            .await
            .expect("sweep"),
        1
    );
}

pub async fn abandoned_runs_are_kept_for_forensics(store: Arc<dyn Store>) {
    let (app, script) = app_with_script(&store, "shop").await;
    let entry = Abandoned {
        id: AbandonedId::new(),
        app_id: app.clone(),
        script_id: script.clone(),
        execution_id: ExecutionId::new(),
        started_at: picloud_core::now(),
        abandoned_at: picloud_core::now(),
        reason: "no answer within 7s".into(),
    };
    store.record_abandoned(&entry).await.expect("record");
    let ghost = Abandoned {
        id: AbandonedId::new(),
        app_id: AppId::new(),
        ..entry.clone()
    };
    store
        .record_abandoned(&ghost)
        .await
        .expect("a deleted app's record is dropped");
    let listed = store
        .list_abandoned(&app, &PageRequest::default())
        .await
        .expect("list");
    assert_eq!(listed.items, vec![entry]);
    assert_eq!(
        store
            .delete_abandoned_before(picloud_core::now() + Duration::seconds(1), 10)
            .await
            .expect("sweep"),
        1
    );
}

pub async fn deleting_a_script_drops_its_pending_deliveries(store: Arc<dyn Store>) {
    let (app, script) = app_with_script(&store, "shop").await;
    kv_trigger(&store, &app, &script, "c", vec![KvOp::Set]).await;
    store
        .kv_set(&app, "c", "k", &json!(1), &cause(0))
        .await
        .expect("set");
    assert_eq!(store.count_events(&app).await.expect("count"), 1);
    store.delete_script(&script).await.expect("delete script");
    assert_eq!(store.count_events(&app).await.expect("count"), 0);
    assert!(store
        .list_triggers(&app, &PageRequest::default())
        .await
        .expect("list")
        .items
        .is_empty());
    let _ = ScriptId::new();
}

/// Several dispatchers (on SQLite, one writer serialises them; on PostgreSQL, nodes
/// sharing the database) claim from one outbox: every delivery is claimed exactly once.
pub async fn concurrent_claims_never_overlap(store: Arc<dyn Store>) {
    const EVENTS: usize = 200;
    let (app, script) = app_with_script(&store, "shop").await;
    let due = picloud_core::now() - Duration::seconds(1);
    let mut queued = Vec::with_capacity(EVENTS);
    for _ in 0..EVENTS {
        let id = EventId::new();
        store
            .enqueue_event(NewEvent {
                id: id.clone(),
                app_id: app.clone(),
                trigger_id: None,
                script_id: script.clone(),
                source: ExecutionSource::Http,
                payload: json!({"source": "http", "op": "request"}),
                retry: RETRY,
                depth: 0,
                due_at: due,
            })
            .await
            .expect("enqueue");
        queued.push(id);
    }
    let claimers = (0..4).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .claim_events(picloud_core::now(), 7, StdDuration::from_secs(60))
                    .await
                    .expect("claim");
                if batch.is_empty() {
                    return mine;
                }
                for e in batch {
                    assert!(store
                        .complete_event(&e.id, e.lease_version)
                        .await
                        .expect("complete"));
                    mine.push(e.id);
                }
            }
        })
    });
    let mut claimed = Vec::with_capacity(EVENTS);
    for claimer in claimers.collect::<Vec<_>>() {
        claimed.extend(claimer.await.expect("claimer"));
    }
    claimed.sort();
    queued.sort();
    assert_eq!(claimed, queued, "every delivery claimed exactly once");
    assert_eq!(store.count_events(&app).await.expect("count"), 0);
}
