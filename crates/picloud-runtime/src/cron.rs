//! The cron scheduler: turns due cron windows into outbox deliveries; the dispatcher
//! runs them.
//!
//! It sleeps until the earliest next window (never longer than the tick interval),
//! and wakes at once when a cron trigger changes on this node ([`CronWake`]). Only the
//! node holding the store's [`Leadership`] fires (on PostgreSQL an advisory lock;
//! others retry every tick, so one takes over within a tick of the leader's death).
//! Each firing is a compare-and-set on the trigger's next window in the transaction
//! that queues the delivery, so even two schedulers at once cannot fire a window twice.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use picloud_core::cron::{plan, CronSchedule};
use picloud_core::model::ExecutionSource;
use picloud_core::EventId;
use picloud_store::{cron_event, CronFire, DueCron, NewEvent, RetryPolicy, Store};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::Metrics;

/// Most due triggers read in one statement.
const BATCH: u32 = 100;
/// Firings in flight at once: each is a transaction of its own, and on PostgreSQL
/// most of one is waiting for its commit to be flushed (measured on 200 triggers due
/// in the same second, debug build: 870 ms one after another, 140 ms eight at a time).
const CONCURRENT_FIRES: usize = 8;
/// Pause after a pass that could not make progress (the database failing).
const BACKOFF: Duration = Duration::from_secs(1);

/// Wakes the scheduler at once: a cron trigger was created, enabled, disabled or
/// deleted, so the next window may have moved.
#[derive(Default)]
pub struct CronWake(Notify);

impl CronWake {
    pub fn notify(&self) {
        self.0.notify_one();
    }

    async fn notified(&self) {
        self.0.notified().await;
    }
}

#[derive(Debug, Clone)]
pub struct CronConfig {
    /// The longest sleep between passes, and how often a follower tries to lead.
    pub tick_interval: Duration,
    /// Retry policy of triggers that set none.
    pub default_retry: RetryPolicy,
}

pub struct CronScheduler {
    store: Arc<dyn Store>,
    wake: Arc<CronWake>,
    metrics: Arc<Metrics>,
    config: CronConfig,
}

/// The outcome of firing one due trigger.
enum Fired {
    Yes,
    /// Another scheduler fired it, or the trigger changed meanwhile.
    Lost,
    Failed,
}

impl CronScheduler {
    pub fn new(
        store: Arc<dyn Store>,
        wake: Arc<CronWake>,
        metrics: Arc<Metrics>,
        config: CronConfig,
    ) -> Self {
        Self {
            store,
            wake,
            metrics,
            config,
        }
    }

    /// Runs until `shutdown` turns true, then gives up the leadership.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut leadership = self.store.cron_leadership();
        let mut leading = false;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now_leading = match leadership.hold().await {
                Ok(held) => held,
                Err(e) => {
                    tracing::warn!(error = %e, "cron leadership check failed");
                    false
                }
            };
            if now_leading != leading {
                if now_leading {
                    tracing::info!("this node now runs the cron scheduler");
                } else {
                    tracing::info!("this node no longer runs the cron scheduler");
                }
                self.metrics.set_cron_leader(now_leading);
                leading = now_leading;
            }
            let wait = if leading {
                self.pass().await
            } else {
                self.config.tick_interval
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
        leadership.release().await;
        self.metrics.set_cron_leader(false);
    }

    /// Fires every due trigger; returns how long to sleep before the next pass.
    async fn pass(&self) -> Duration {
        let mut progress = false;
        loop {
            let due = match self
                .store
                .due_cron_triggers(picloud_core::now(), BATCH)
                .await
            {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "reading due cron triggers failed");
                    return BACKOFF.min(self.config.tick_interval);
                }
            };
            let full = due.len() >= BATCH as usize;
            let outcomes: Vec<Fired> = futures_util::stream::iter(due)
                .map(|trigger| self.fire(trigger))
                .buffer_unordered(CONCURRENT_FIRES)
                .collect()
                .await;
            let fired = outcomes.iter().filter(|o| matches!(o, Fired::Yes)).count();
            let failed = outcomes
                .iter()
                .filter(|o| matches!(o, Fired::Failed))
                .count();
            progress |= fired > 0;
            // A batch that failed entirely would come back unchanged.
            if !full || failed > 0 {
                break;
            }
        }
        let now = picloud_core::now();
        match self.store.next_cron_due().await {
            Ok(Some(next)) if next <= now => {
                // Still due: a window that came during the pass (go again at once), or
                // one whose firing failed (do not spin on it).
                if progress {
                    Duration::ZERO
                } else {
                    BACKOFF.min(self.config.tick_interval)
                }
            }
            Ok(Some(next)) => (next - now)
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(self.config.tick_interval),
            Ok(None) => self.config.tick_interval,
            Err(e) => {
                tracing::warn!(error = %e, "reading the next cron window failed");
                BACKOFF.min(self.config.tick_interval)
            }
        }
    }

    async fn fire(&self, due: DueCron) -> Fired {
        let schedule = match CronSchedule::parse(&due.schedule, &due.timezone) {
            Ok(schedule) => schedule,
            Err(e) => {
                // Validated when created; only a change in the parser's rules gets
                // here. Parked (no next window) rather than retried forever.
                tracing::error!(trigger = %due.trigger_id, error = %e,
                    "cron schedule no longer evaluates; the trigger is parked");
                return match self
                    .store
                    .reschedule_cron(&due.trigger_id, Some(due.next_fire_at), None)
                    .await
                {
                    Ok(_) => Fired::Lost,
                    Err(_) => Fired::Failed,
                };
            }
        };
        let now = picloud_core::now();
        let firing = plan(&schedule, due.next_fire_at, now);
        let event = NewEvent {
            id: EventId::new(),
            app_id: due.app_id,
            trigger_id: Some(due.trigger_id.clone()),
            script_id: due.script_id,
            source: ExecutionSource::Cron,
            payload: cron_event(&due.schedule, &due.timezone, firing.scheduled_at, now),
            retry: due.retry.unwrap_or(self.config.default_retry),
            // A root event, like an async route call.
            depth: 0,
            due_at: now,
        };
        let fire = CronFire {
            trigger_id: due.trigger_id,
            expected_next_fire_at: due.next_fire_at,
            next_fire_at: firing.next_fire_at,
            fired_at: now,
            event,
        };
        match self.store.fire_cron(&fire).await {
            Ok(true) => {
                self.metrics.observe_cron_fired();
                tracing::debug!(trigger = %fire.trigger_id, scheduled_at = %firing.scheduled_at,
                    "cron window fired");
                Fired::Yes
            }
            Ok(false) => Fired::Lost,
            Err(e) => {
                tracing::warn!(trigger = %fire.trigger_id, error = %e, "firing a cron window failed");
                Fired::Failed
            }
        }
    }
}
