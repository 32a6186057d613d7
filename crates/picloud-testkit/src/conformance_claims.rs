//! Conformance cases for the dispatcher's claims: turns across apps, and the room the
//! executor has for each app.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;
use picloud_core::model::ExecutionSource;
use picloud_core::{AppId, EventId, ScriptId};
use picloud_store::{AppRoom, ClaimPlan, NewEvent, RetryPolicy, Store};
use serde_json::json;

use crate::conformance_events::app_with_script;

const LEASE: StdDuration = StdDuration::from_secs(60);

async fn queue(
    store: &Arc<dyn Store>,
    app: &AppId,
    script: &ScriptId,
    due: chrono::DateTime<chrono::Utc>,
) -> EventId {
    let id = EventId::new();
    store
        .enqueue_event(NewEvent {
            id: id.clone(),
            app_id: app.clone(),
            trigger_id: None,
            script_id: script.clone(),
            source: ExecutionSource::Http,
            payload: json!({"source": "http", "op": "request"}),
            retry: RetryPolicy::ONCE,
            depth: 0,
            due_at: due,
        })
        .await
        .expect("enqueue");
    id
}

fn apps_of(events: &[picloud_store::OutboxEvent], app: &AppId) -> usize {
    events.iter().filter(|e| &e.app_id == app).count()
}

/// A long backlog of one app does not push back another app's delivery: the first
/// claim takes from both, oldest first within each.
pub async fn claims_take_turns_across_apps(store: Arc<dyn Store>) {
    let (noisy, noisy_script) = app_with_script(&store, "noisy").await;
    let (quiet, quiet_script) = app_with_script(&store, "quiet").await;
    let t0 = picloud_core::now() - Duration::minutes(10);
    let mut backlog = Vec::new();
    for i in 0..40 {
        backlog.push(
            queue(
                &store,
                &noisy,
                &noisy_script,
                t0 + Duration::milliseconds(i),
            )
            .await,
        );
    }
    // Queued last and due last: FIFO across apps would reach it after all 40.
    let late = queue(&store, &quiet, &quiet_script, t0 + Duration::minutes(1)).await;
    let now = picloud_core::now();

    let first = store.claim_events(now, 4, LEASE).await.expect("claim");
    assert_eq!(first.len(), 4);
    assert!(
        first.iter().any(|e| e.id == late),
        "the quiet app had a turn"
    );
    let noisy_ids: Vec<&EventId> = first
        .iter()
        .filter(|e| e.app_id == noisy)
        .map(|e| &e.id)
        .collect();
    assert_eq!(noisy_ids, backlog.iter().take(3).collect::<Vec<_>>());

    // Each app's room holds: the noisy app may start two more, the quiet app none.
    let second_quiet = queue(&store, &quiet, &quiet_script, t0).await;
    let plan = ClaimPlan {
        limit: 10,
        per_app: 2,
        apps: vec![AppRoom {
            app: quiet.clone(),
            room: 0,
            running: 1,
        }],
    };
    let second = store.claim_planned(now, LEASE, &plan).await.expect("claim");
    assert_eq!(apps_of(&second, &noisy), 2);
    assert_eq!(apps_of(&second, &quiet), 0);
    assert!(!second.iter().any(|e| e.id == second_quiet));
    assert_eq!(
        second.iter().map(|e| &e.id).collect::<Vec<_>>(),
        backlog[3..5].iter().collect::<Vec<_>>(),
        "oldest first, never a claimed one again"
    );

    // A plan with no room claims nothing; an empty outbox claims nothing.
    let none = ClaimPlan {
        limit: 10,
        per_app: 0,
        apps: Vec::new(),
    };
    assert!(store
        .claim_planned(now, LEASE, &none)
        .await
        .expect("claim")
        .is_empty());
    let rest = store.claim_events(now, 1000, LEASE).await.expect("claim");
    assert_eq!(rest.len(), 40 - 5 + 1, "everything else, exactly once");
    assert!(store
        .claim_events(now, 1000, LEASE)
        .await
        .expect("claim")
        .is_empty());
}

/// Not-yet-due and claimed rows of an app do not use its turn: the app with only a
/// future retry is skipped, and one with its room listed gets exactly that.
pub async fn claims_skip_what_is_not_due(store: Arc<dyn Store>) {
    let (later, later_script) = app_with_script(&store, "later").await;
    let (busy, busy_script) = app_with_script(&store, "busy").await;
    let now = picloud_core::now();
    let future = queue(&store, &later, &later_script, now + Duration::hours(1)).await;
    for i in 0..5 {
        queue(&store, &busy, &busy_script, now - Duration::seconds(10 - i)).await;
    }
    let plan = ClaimPlan {
        limit: 10,
        per_app: 10,
        apps: vec![AppRoom {
            app: busy.clone(),
            room: 3,
            running: 0,
        }],
    };
    let claimed = store.claim_planned(now, LEASE, &plan).await.expect("claim");
    assert_eq!(apps_of(&claimed, &busy), 3);
    assert!(!claimed.iter().any(|e| e.id == future));
    let due: Vec<_> = claimed.iter().map(|e| e.due_at).collect();
    let mut sorted = due.clone();
    sorted.sort();
    assert_eq!(due, sorted, "returned in due order");
}

/// An app already running deliveries waits its turn behind one running none, however
/// much older its backlog is.
pub async fn apps_running_fewer_go_first(store: Arc<dyn Store>) {
    let (noisy, noisy_script) = app_with_script(&store, "noisy").await;
    let (quiet, quiet_script) = app_with_script(&store, "quiet").await;
    let now = picloud_core::now();
    for i in 0..20 {
        queue(
            &store,
            &noisy,
            &noisy_script,
            now - Duration::minutes(30 - i),
        )
        .await;
    }
    let late = queue(&store, &quiet, &quiet_script, now).await;
    let plan = ClaimPlan {
        limit: 1,
        per_app: 6,
        apps: vec![AppRoom {
            app: noisy.clone(),
            room: 1,
            running: 5,
        }],
    };
    let claimed = store.claim_planned(now, LEASE, &plan).await.expect("claim");
    assert_eq!(
        claimed.iter().map(|e| &e.id).collect::<Vec<_>>(),
        vec![&late]
    );
}

fn http_event(app: &AppId, script: &ScriptId, id: EventId) -> NewEvent {
    NewEvent {
        id,
        app_id: app.clone(),
        trigger_id: None,
        script_id: script.clone(),
        source: ExecutionSource::Http,
        payload: json!({"source": "http", "op": "request"}),
        retry: RetryPolicy::ONCE,
        depth: 0,
        due_at: picloud_core::now() - Duration::seconds(1),
    }
}

/// Concurrent queuing and completing share statements (group commit), and every
/// caller still gets its own answer: a duplicate id or a missing app fails alone.
pub async fn concurrent_writes_get_their_own_answers(store: Arc<dyn Store>) {
    let (app, script) = app_with_script(&store, "busy").await;
    let ghost = AppId::from_trusted("app_does_not_exist".to_owned());
    let ids: Vec<EventId> = (0..120).map(|_| EventId::new()).collect();
    let mut calls = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let first = store.clone();
        // Every tenth to an app that does not exist; every id but those queued twice.
        let event = if i % 10 == 9 {
            http_event(&ghost, &script, id.clone())
        } else {
            http_event(&app, &script, id.clone())
        };
        let again = (i % 10 == 4).then(|| event.clone());
        calls.push(tokio::spawn(async move {
            (i, "first", first.enqueue_event(event).await)
        }));
        if let Some(again) = again {
            let store = store.clone();
            calls.push(tokio::spawn(async move {
                (i, "again", store.enqueue_event(again).await)
            }));
        }
    }
    let mut per_id: std::collections::HashMap<usize, (usize, usize)> = Default::default();
    for call in calls {
        let (i, _, result) = call.await.expect("joined");
        let entry = per_id.entry(i).or_default();
        match result {
            Ok(()) => entry.0 += 1,
            Err(picloud_store::StoreError::Conflict(_)) => {
                assert_eq!(i % 10, 4, "only duplicates conflict");
                entry.1 += 1;
            }
            Err(picloud_store::StoreError::NotFound) => assert_eq!(i % 10, 9),
            Err(e) => panic!("item {i}: unexpected {e}"),
        }
    }
    for i in 0..ids.len() {
        let (ok, conflict) = per_id.get(&i).copied().unwrap_or_default();
        match i % 10 {
            9 => assert_eq!((ok, conflict), (0, 0), "item {i}: missing app"),
            4 => assert_eq!((ok, conflict), (1, 1), "item {i}: one of two wins"),
            _ => assert_eq!((ok, conflict), (1, 0), "item {i}"),
        }
    }

    let claimed = store
        .claim_events(picloud_core::now(), 500, LEASE)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 108, "every queued event, once");
    let mut completions = Vec::new();
    for (n, event) in claimed.into_iter().enumerate() {
        let store = store.clone();
        // Every third with a stale fencing token: refused, its neighbours done.
        let version = if n % 3 == 0 {
            event.lease_version - 1
        } else {
            event.lease_version
        };
        completions.push(tokio::spawn(async move {
            (n, store.complete_event(&event.id, version).await)
        }));
    }
    for c in completions {
        let (n, done) = c.await.expect("joined");
        assert_eq!(done.expect("complete"), n % 3 != 0, "completion {n}");
    }
    assert_eq!(store.count_events(&app).await.expect("count"), 36);
}
