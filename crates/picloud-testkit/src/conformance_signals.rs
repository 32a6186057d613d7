//! Conformance cases for what the store announces by itself: the dispatcher's
//! wake-up after writes that queue deliveries (DESIGN.md decision 8).

use std::sync::Arc;
use std::time::Duration;

use picloud_core::model::{ExecutionSource, KvOp};
use picloud_core::EventId;
use picloud_store::{EventSignal, NewEvent, Store};
use serde_json::json;

use crate::conformance_events::{app_with_script, cause, claim_all, kv_trigger};

/// Generous: a wake-up is sent right after the commit, so only a stalled machine
/// comes near it.
const WAKE_DEADLINE: Duration = Duration::from_secs(5);
/// How long a write that queued nothing is given to (wrongly) wake the dispatcher.
const QUIET: Duration = Duration::from_millis(100);

async fn woken(signal: &EventSignal, within: Duration) -> bool {
    tokio::time::timeout(within, signal.notified())
        .await
        .is_ok()
}

/// Drops a wake-up left over from the setup, so the next check sees only its own.
async fn drain(signal: &EventSignal) {
    let _ = woken(signal, Duration::from_millis(10)).await;
}

pub async fn queuing_writes_wake_the_dispatcher(store: Arc<dyn Store>) {
    let signal = store.event_signal();
    let (app, script) = app_with_script(&store, "shop").await;
    kv_trigger(
        &store,
        &app,
        &script,
        "orders",
        vec![KvOp::Set, KvOp::Delete],
    )
    .await;
    drain(&signal).await;

    store
        .kv_set(&app, "notes", "a", &json!(1), &cause(0))
        .await
        .expect("set");
    assert!(
        !woken(&signal, QUIET).await,
        "a write that queued nothing woke the dispatcher"
    );

    store
        .kv_set(&app, "orders", "a", &json!(1), &cause(0))
        .await
        .expect("set");
    assert!(woken(&signal, WAKE_DEADLINE).await, "kv set");
    store
        .kv_delete(&app, "orders", "a", &cause(0))
        .await
        .expect("delete");
    assert!(woken(&signal, WAKE_DEADLINE).await, "kv delete");

    store
        .enqueue_event(NewEvent {
            id: EventId::new(),
            app_id: app.clone(),
            trigger_id: None,
            script_id: script.clone(),
            source: ExecutionSource::Http,
            payload: json!({}),
            retry: cause(0).default_retry,
            depth: 0,
            due_at: picloud_core::now(),
        })
        .await
        .expect("enqueue");
    assert!(woken(&signal, WAKE_DEADLINE).await, "enqueue");

    let claimed = claim_all(&store).await;
    assert_eq!(claimed.len(), 3);
    drain(&signal).await;
    let first = &claimed[0];
    assert!(store
        .retry_event(&first.id, first.lease_version, 2, picloud_core::now())
        .await
        .expect("retry"));
    assert!(woken(&signal, WAKE_DEADLINE).await, "retry");

    let second = &claimed[1];
    let dl = store
        .dead_letter_event(&second.id, second.lease_version, "boom", 8)
        .await
        .expect("dead letter")
        .expect("claimed");
    drain(&signal).await;
    store
        .replay_dead_letter(&app, &dl.id, cause(0).default_retry)
        .await
        .expect("replay");
    assert!(woken(&signal, WAKE_DEADLINE).await, "replay");
}
