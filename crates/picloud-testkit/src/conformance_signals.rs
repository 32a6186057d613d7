//! Conformance cases for what the store announces by itself: the dispatcher's
//! wake-up after writes that queue deliveries, and the changes to cached rows
//! (DESIGN.md decision 8).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use picloud_core::model::{DispatchMode, ExecutionSource, KvOp, RouteAuth, RouteMethod};
use picloud_core::EventId;
use picloud_store::{AppPatch, Change, EventSignal, NewEvent, NewRoute, ScriptPatch, Store};
use serde_json::json;

use crate::conformance_cron::cron_trigger;
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

/// What the store's change stream delivered since the last look. On PostgreSQL the
/// writer hears its changes right after commit and again as its own `NOTIFY` comes
/// back, so the check is "contains".
struct Heard(Arc<Mutex<Vec<Change>>>);

impl Heard {
    fn on(store: &Arc<dyn Store>) -> Self {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = heard.clone();
        store.watch_changes(Arc::new(move |c: &Change| {
            sink.lock().unwrap().push(c.clone())
        }));
        Self(heard)
    }

    /// Asserts `expected` was heard by the time the write returned, then forgets.
    fn take(&self, what: &str, expected: &[Change]) {
        let heard = std::mem::take(&mut *self.0.lock().unwrap());
        for change in expected {
            assert!(
                heard.contains(change),
                "{what}: {change:?} not in {heard:?}"
            );
        }
    }
}

pub async fn writes_to_cached_rows_announce_their_changes(store: Arc<dyn Store>) {
    let heard = Heard::on(&store);
    let (app, script) = app_with_script(&store, "shop").await;

    store
        .update_app(
            &app,
            AppPatch {
                name: Some("Shop".into()),
            },
        )
        .await
        .expect("rename");
    heard.take("rename", &[Change::App(app.clone())]);

    let route = store
        .create_route(NewRoute {
            app_id: app.clone(),
            script_id: script.clone(),
            method: RouteMethod::Get,
            path: "/v".into(),
            path_key: "/v".into(),
            dispatch_mode: DispatchMode::Sync,
            auth: RouteAuth::Public,
        })
        .await
        .expect("route");
    heard.take("route created", &[Change::Routes(app.clone())]);
    store.delete_route(&route.id).await.expect("delete route");
    heard.take("route deleted", &[Change::Routes(app.clone())]);

    store
        .update_script(
            &script,
            ScriptPatch {
                name: None,
                source: Some("1".into()),
                imports: None,
            },
        )
        .await
        .expect("edit");
    heard.take("script edited", &Change::script(&app, &script));

    let cron = cron_trigger(&store, &app, &script, "0 0 * * * *").await;
    heard.take("cron created", &[Change::CronSchedules]);
    store
        .set_trigger_enabled(&app, &cron.id, false)
        .await
        .expect("disable");
    heard.take("cron disabled", &[Change::CronSchedules]);
    store.delete_trigger(&app, &cron.id).await.expect("delete");
    heard.take("cron deleted", &[Change::CronSchedules]);

    store.delete_script(&script).await.expect("delete script");
    heard.take("script deleted", &Change::script(&app, &script));
    store.delete_app(&app).await.expect("delete app");
    heard.take("app deleted", &[Change::AppDeleted(app.clone())]);
}
