//! Conformance cases for cron triggers: first window, due listing, the compare-and-set
//! firing, re-enabling, cascades and the scheduler's leadership.

use std::sync::Arc;

use chrono::{DateTime, Duration, Timelike, Utc};
use picloud_core::model::{ExecutionSource, ScriptKind, TriggerKind};
use picloud_core::{AppId, EventId, ScriptId};
use picloud_store::{
    cron_event, CronFire, NewApp, NewEvent, NewScript, NewTrigger, PageRequest, RetryPolicy, Store,
    StoreError, Trigger, TriggerConfig,
};

const RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 2,
    base_delay_ms: 10,
    max_delay_ms: 100,
};

async fn app_with_script(store: &Arc<dyn Store>, slug: &str) -> (AppId, ScriptId) {
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
            name: "tick".into(),
            kind: ScriptKind::Endpoint,
            source: "()".into(),
            imports: vec![],
        })
        .await
        .expect("script");
    (app.id, script.id)
}

pub(crate) async fn cron_trigger(
    store: &Arc<dyn Store>,
    app: &AppId,
    script: &ScriptId,
    schedule: &str,
) -> Trigger {
    store
        .create_trigger(NewTrigger {
            app_id: app.clone(),
            script_id: script.clone(),
            retry: Some(RETRY),
            config: TriggerConfig::Cron {
                schedule: schedule.into(),
                timezone: "UTC".into(),
            },
        })
        .await
        .expect("cron trigger")
}

fn next_of(t: &Trigger) -> Option<DateTime<Utc>> {
    t.cron.expect("cron state").next_fire_at
}

/// Moves the trigger's next window to `at` (as if the server had been down since).
async fn due_at(store: &Arc<dyn Store>, t: &Trigger, at: DateTime<Utc>) {
    assert!(store
        .reschedule_cron(&t.id, next_of(t), Some(at))
        .await
        .expect("reschedule"));
}

fn firing(t: &Trigger, expected: DateTime<Utc>, next: DateTime<Utc>) -> CronFire {
    let now = picloud_core::now();
    CronFire {
        trigger_id: t.id.clone(),
        expected_next_fire_at: expected,
        next_fire_at: Some(next),
        fired_at: now,
        event: NewEvent {
            id: EventId::new(),
            app_id: t.app_id.clone(),
            trigger_id: Some(t.id.clone()),
            script_id: t.script_id.clone(),
            source: ExecutionSource::Cron,
            payload: cron_event("0 0 * * * *", "UTC", expected, now),
            retry: RETRY,
            depth: 0,
            due_at: now,
        },
    }
}

pub async fn cron_triggers_start_at_their_first_window(store: Arc<dyn Store>) {
    let (app, script) = app_with_script(&store, "shop").await;
    let before = picloud_core::now();
    let t = cron_trigger(&store, &app, &script, "0 0 * * * *").await;
    assert_eq!(t.config.kind(), TriggerKind::Cron);
    assert_eq!(
        t.config,
        TriggerConfig::Cron {
            schedule: "0 0 * * * *".into(),
            timezone: "UTC".into(),
        }
    );
    let state = t.cron.expect("cron state");
    assert_eq!(state.last_fired_at, None);
    let next = state.next_fire_at.expect("a next window");
    // The first full hour after creation.
    assert!(next > before && next - before <= Duration::hours(1));
    assert_eq!((next.minute(), next.second(), next.nanosecond()), (0, 0, 0));
    assert_eq!(t.retry, Some(RETRY));
    assert_eq!(store.get_trigger(&app, &t.id).await.expect("get"), t);
    let listed = store
        .list_triggers(&app, &PageRequest::default())
        .await
        .expect("list");
    assert_eq!(listed.items, vec![t.clone()]);
    // Nothing is due yet.
    assert!(store
        .due_cron_triggers(picloud_core::now(), 10)
        .await
        .expect("due")
        .is_empty());
    assert_eq!(store.next_cron_due().await.expect("next"), Some(next));
    // A schedule the store cannot evaluate is refused, not stored.
    let bad = store
        .create_trigger(NewTrigger {
            app_id: app.clone(),
            script_id: script.clone(),
            retry: None,
            config: TriggerConfig::Cron {
                schedule: "* * * * *".into(),
                timezone: "UTC".into(),
            },
        })
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid(_))), "{bad:?}");
    // Like every kind, only an endpoint of the same app can be the target.
    let (_, theirs) = app_with_script(&store, "other").await;
    let foreign = store
        .create_trigger(NewTrigger {
            app_id: app.clone(),
            script_id: theirs,
            retry: None,
            config: TriggerConfig::Cron {
                schedule: "0 0 * * * *".into(),
                timezone: "UTC".into(),
            },
        })
        .await;
    assert!(matches!(foreign, Err(StoreError::NotFound)), "{foreign:?}");
}

pub async fn due_cron_triggers_skip_disabled_ones(store: Arc<dyn Store>) {
    let (app, script) = app_with_script(&store, "shop").await;
    let a = cron_trigger(&store, &app, &script, "0 0 * * * *").await;
    let b = cron_trigger(&store, &app, &script, "0 0 * * * *").await;
    // Not due (its first window is ahead): never listed.
    let _later = cron_trigger(&store, &app, &script, "0 0 * * * *").await;
    let now = picloud_core::now();
    due_at(&store, &a, now - Duration::minutes(5)).await;
    due_at(&store, &b, now - Duration::minutes(10)).await;
    let due = store.due_cron_triggers(now, 10).await.expect("due");
    let ids: Vec<_> = due.iter().map(|d| d.trigger_id.clone()).collect();
    assert_eq!(ids, vec![b.id.clone(), a.id.clone()], "earliest first");
    assert_eq!(due[0].app_id, app);
    assert_eq!(due[0].script_id, script);
    assert_eq!(due[0].schedule, "0 0 * * * *");
    assert_eq!(due[0].timezone, "UTC");
    assert_eq!(due[0].retry, Some(RETRY));
    assert_eq!(due[0].next_fire_at, now - Duration::minutes(10));
    assert_eq!(store.due_cron_triggers(now, 1).await.expect("due").len(), 1);
    assert_eq!(
        store.next_cron_due().await.expect("next"),
        Some(now - Duration::minutes(10))
    );

    // Disabled: neither due nor counted for the next window.
    store
        .set_trigger_enabled(&app, &b.id, false)
        .await
        .expect("disable");
    let due = store.due_cron_triggers(now, 10).await.expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].trigger_id, a.id);
    assert_eq!(
        store.next_cron_due().await.expect("next"),
        Some(now - Duration::minutes(5))
    );

    // Enabling again starts from now: the windows missed while off do not fire.
    let b = store
        .set_trigger_enabled(&app, &b.id, true)
        .await
        .expect("enable");
    assert!(next_of(&b).expect("next") > now);
    // Enabling an enabled trigger changes nothing (its missed window still fires).
    let a_again = store
        .set_trigger_enabled(&app, &a.id, true)
        .await
        .expect("enable again");
    assert_eq!(next_of(&a_again), Some(now - Duration::minutes(5)));
    assert!(matches!(
        store
            .set_trigger_enabled(&app, &picloud_core::TriggerId::new(), true)
            .await,
        Err(StoreError::NotFound)
    ));
}

pub async fn firing_is_a_compare_and_set(store: Arc<dyn Store>) {
    let (app, script) = app_with_script(&store, "shop").await;
    let t = cron_trigger(&store, &app, &script, "0 0 * * * *").await;
    let window = picloud_core::now() - Duration::minutes(1);
    due_at(&store, &t, window).await;
    let next = window + Duration::hours(1);
    let first = firing(&t, window, next);
    assert!(store.fire_cron(&first).await.expect("fire"));
    assert_eq!(store.count_events(&app).await.expect("count"), 1);
    let after = store.get_trigger(&app, &t.id).await.expect("get");
    let state = after.cron.expect("state");
    assert_eq!(state.next_fire_at, Some(next));
    assert_eq!(state.last_fired_at, Some(first.fired_at));

    // The same window again (a second scheduler with a stale read): refused, nothing
    // queued.
    let stale = firing(&t, window, next);
    assert!(!store.fire_cron(&stale).await.expect("stale fire"));
    assert_eq!(store.count_events(&app).await.expect("count"), 1);

    // The queued delivery is the cron event, with the trigger's policy.
    let claimed = store
        .claim_events(
            picloud_core::now() + Duration::seconds(1),
            10,
            std::time::Duration::from_secs(60),
        )
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, first.event.id);
    assert_eq!(claimed[0].source, ExecutionSource::Cron);
    assert_eq!(claimed[0].trigger_id, Some(t.id.clone()));
    assert_eq!(claimed[0].retry, RETRY);
    assert_eq!(claimed[0].payload["source"], "cron");
    assert_eq!(claimed[0].payload["op"], "tick");
    assert_eq!(claimed[0].payload["cron"]["schedule"], "0 0 * * * *");

    // Disabled: refused even with the right expected window.
    store
        .set_trigger_enabled(&app, &t.id, false)
        .await
        .expect("disable");
    assert!(!store
        .fire_cron(&firing(&t, next, next + Duration::hours(1)))
        .await
        .expect("fire disabled"));

    // The last window of a schedule leaves it without a next one.
    let t2 = cron_trigger(&store, &app, &script, "0 0 * * * *").await;
    due_at(&store, &t2, window).await;
    let mut last = firing(&t2, window, next);
    last.next_fire_at = None;
    assert!(store.fire_cron(&last).await.expect("fire last"));
    let t2 = store.get_trigger(&app, &t2.id).await.expect("get");
    assert_eq!(next_of(&t2), None);
    assert_eq!(store.next_cron_due().await.expect("next"), None);
}

/// Schedulers racing for one window (two nodes that both think they lead): exactly
/// one queues a delivery.
pub async fn concurrent_fires_queue_one_delivery(store: Arc<dyn Store>) {
    let (app, script) = app_with_script(&store, "shop").await;
    let t = cron_trigger(&store, &app, &script, "0 0 * * * *").await;
    let window = picloud_core::now() - Duration::seconds(30);
    due_at(&store, &t, window).await;
    let next = window + Duration::hours(1);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let fire = firing(&t, window, next);
            tokio::spawn(async move { store.fire_cron(&fire).await.expect("fire") })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        if task.await.expect("join") {
            won += 1;
        }
    }
    assert_eq!(won, 1);
    assert_eq!(store.count_events(&app).await.expect("count"), 1);
}

pub async fn cron_details_go_with_their_trigger(store: Arc<dyn Store>) {
    let (app, script) = app_with_script(&store, "shop").await;
    let t = cron_trigger(&store, &app, &script, "0 0 * * * *").await;
    let past = picloud_core::now() - Duration::minutes(1);
    due_at(&store, &t, past).await;
    store.delete_trigger(&app, &t.id).await.expect("delete");
    assert!(store
        .due_cron_triggers(picloud_core::now(), 10)
        .await
        .expect("due")
        .is_empty());
    assert!(!store
        .reschedule_cron(&t.id, Some(past), None)
        .await
        .expect("reschedule"));
    assert!(!store
        .fire_cron(&firing(&t, past, past + Duration::hours(1)))
        .await
        .expect("fire deleted"));

    // Deleting the script (or the app) takes its cron triggers along.
    let t = cron_trigger(&store, &app, &script, "0 0 * * * *").await;
    due_at(&store, &t, past).await;
    store.delete_script(&script).await.expect("delete script");
    assert!(store
        .due_cron_triggers(picloud_core::now(), 10)
        .await
        .expect("due")
        .is_empty());
    assert_eq!(store.next_cron_due().await.expect("next"), None);
}

pub async fn reschedule_is_a_compare_and_set(store: Arc<dyn Store>) {
    let (app, script) = app_with_script(&store, "shop").await;
    let t = cron_trigger(&store, &app, &script, "0 0 * * * *").await;
    let first = next_of(&t);
    let other = picloud_core::now() - Duration::hours(3);
    // Wrong expectation: nothing moves.
    assert!(!store
        .reschedule_cron(&t.id, Some(other), Some(other))
        .await
        .expect("reschedule"));
    // Parked, then moved from the parked state.
    assert!(store
        .reschedule_cron(&t.id, first, None)
        .await
        .expect("park"));
    assert_eq!(
        next_of(&store.get_trigger(&app, &t.id).await.expect("get")),
        None
    );
    assert!(store
        .reschedule_cron(&t.id, None, Some(other))
        .await
        .expect("unpark"));
    assert_eq!(
        next_of(&store.get_trigger(&app, &t.id).await.expect("get")),
        Some(other)
    );
}

/// One leader per database: a second contender is refused until the first releases.
pub async fn one_cron_leader_at_a_time(store: Arc<dyn Store>) {
    let mut first = store.cron_leadership();
    assert!(first.hold().await.expect("hold"));
    assert!(first.hold().await.expect("still held"));
    let mut second = store.cron_leadership();
    match store.backend() {
        // One process owns a SQLite file: every handle leads.
        picloud_store::Backend::Sqlite => {
            assert!(second.hold().await.expect("sqlite"));
        }
        picloud_store::Backend::Postgres => {
            assert!(!second.hold().await.expect("refused"));
            first.release().await;
            assert!(second.hold().await.expect("taken over"));
            assert!(!first.hold().await.expect("refused now"));
        }
    }
    second.release().await;
    first.release().await;
}
