//! The dispatcher: delivers queued events (trigger events, async route calls) to their
//! scripts, with retries, dead letters and leases.
//!
//! It claims only what can start now: the executor's background room, in all and per
//! app ([`crate::gate`]: requests keep their share of threads and of every app's slots),
//! taken in turns across apps by the store, so one app's backlog neither delays
//! another app's deliveries nor holds claims that sit waiting for a thread. It wakes
//! at once when a write queues something (the store's [`EventSignal`], signalled after
//! such commits here and on PostgreSQL on other nodes' announcements too) or a slot
//! frees, otherwise sleeps until the next delivery is due, and polls every
//! `poll_interval` as a safety net. A claim is a lease, extended while the run lives;
//! completing needs the claim's fencing token, so a worker presumed dead cannot
//! complete a delivery someone else has re-claimed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use picloud_core::model::ExecutionSource;
use picloud_core::AppId;
use picloud_core::{DeadLetterId, EventId, ExecutionId};
use picloud_script::{FailureKind, RunInput, RunReport, ScriptFailure};
use picloud_services::Services;
use picloud_store::{
    App, AppRoom, ClaimPlan, EventSignal, OutboxEvent, RetryPolicy, Script, Store, StoreError,
};
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::caller::{self, RunCaller};
use crate::gate::Slot;
use crate::run::{execution_record, failed, run_script, RunIdentity};
use crate::{payload, ExecError, Runner};

/// One attempt at a delivery, with its report.
enum Attempt {
    /// The script ran (or could not even be loaded).
    Ran(RunReport<()>),
    /// The run was not started: its caller lost the rights the call was made with.
    NotRun(RunReport<()>),
}

impl Attempt {
    fn report(&self) -> &RunReport<()> {
        match self {
            Attempt::Ran(report) | Attempt::NotRun(report) => report,
        }
    }

    fn outcome(&self) -> Outcome<'_> {
        match self {
            Attempt::Ran(r) => r
                .outcome
                .as_ref()
                .err()
                .map_or(Outcome::Succeeded, Outcome::Failed),
            Attempt::NotRun(r) => r
                .outcome
                .as_ref()
                .err()
                .map_or(Outcome::Succeeded, Outcome::Refused),
        }
    }
}

/// How an attempt ended, for settling the delivery.
enum Outcome<'a> {
    Succeeded,
    /// Retried while attempts are left, then dead-lettered.
    Failed(&'a ScriptFailure),
    /// Dead-lettered at once.
    Refused(&'a ScriptFailure),
}

/// Most deliveries claimed in one statement.
const CLAIM_BATCH: usize = 64;

/// Longest wait for more runs to end before a claim while deliveries are running.
const CLAIM_LINGER: Duration = Duration::from_millis(2);

#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    pub lease: Duration,
    pub poll_interval: Duration,
    pub trigger_timeout: Duration,
    pub max_log_lines: usize,
}

pub struct Dispatcher {
    store: Arc<dyn Store>,
    runner: Runner,
    services: Arc<Services>,
    /// The store's: it signals after commits that queued deliveries.
    signal: Arc<EventSignal>,
    config: DispatcherConfig,
    in_flight: AtomicUsize,
    /// Deliveries whose script is running, with their fencing tokens.
    running: parking_lot::Mutex<std::collections::HashMap<EventId, i64>>,
}

/// Exponential backoff with ±20 % jitter: `base · 2^(attempt-1)`, at most `max`.
pub fn backoff(retry: &RetryPolicy, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(32);
    let raw = retry
        .base_delay_ms
        .saturating_mul(1u64 << exponent)
        .min(retry.max_delay_ms);
    let jitter = rand::thread_rng().gen_range(0.8..=1.2);
    Duration::from_millis((raw as f64 * jitter) as u64)
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        runner: Runner,
        services: Arc<Services>,
        config: DispatcherConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            signal: store.event_signal(),
            store,
            runner,
            services,
            config,
            in_flight: AtomicUsize::new(0),
            running: parking_lot::Mutex::default(),
        })
    }

    /// Deliveries running right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn spawn(self: &Arc<Self>, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(self.clone().lease_loop(shutdown.clone()));
        tokio::spawn(self.clone().claim_loop(shutdown))
    }

    async fn claim_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let executor = self.runner.executor.clone();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let mut room = executor.background_room();
            let full = executor.limits().background;
            if self.in_flight() > 0 && room.total > 0 && room.total < full {
                // Linger a moment for more runs to end, so that one claim (a round
                // trip) starts several: short deliveries otherwise came back one claim
                // per delivery, bounded by the database's round trip.
                let until = tokio::time::Instant::now() + CLAIM_LINGER;
                while self.in_flight() > 0 && executor.background_room().total < full {
                    if tokio::time::timeout_at(until, executor.slot_freed())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                room = executor.background_room();
            }
            // Claim in batches: waiting until a quarter of the background slots are
            // free turns one claim round trip per delivery into one per several, under
            // load.
            if room.total == 0 || (self.in_flight() > 0 && room.total < self.claim_batch_floor()) {
                tokio::select! {
                    () = executor.slot_freed() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let plan = ClaimPlan {
                limit: u32::try_from(room.total.min(CLAIM_BATCH)).unwrap_or(1),
                per_app: u32::try_from(room.per_app).unwrap_or(u32::MAX),
                apps: room
                    .apps
                    .into_iter()
                    .map(|load| AppRoom {
                        app: AppId::from_trusted(load.app),
                        room: u32::try_from(load.room).unwrap_or(u32::MAX),
                        running: u32::try_from(load.running).unwrap_or(u32::MAX),
                    })
                    .collect(),
            };
            let claimed = match self
                .store
                .claim_planned(picloud_core::now(), self.config.lease, &plan)
                .await
            {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::error!(error = %e, "claiming events failed; retrying in a second");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if claimed.is_empty() {
                let wait = self.until_next_due().await;
                // Something is due but was not claimed: its app is at its share (or
                // another node holds it this instant). Its turn comes when a slot
                // frees; claiming again at once would only spin on the database.
                let blocked = wait.is_zero();
                let wait = if blocked {
                    self.config.poll_interval
                } else {
                    wait
                };
                tokio::select! {
                    () = self.signal.notified() => {}
                    () = executor.slot_freed(), if blocked => {}
                    () = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let filled = claimed.len() >= plan.limit as usize;
            for event in claimed {
                // Taken here, before the next round's room is read. A request that came
                // in since the room was read goes first: then the delivery waits for
                // the next free background slot.
                let slot = executor.try_background_slot(event.app_id.as_str());
                self.in_flight.fetch_add(1, Ordering::Relaxed);
                let me = self.clone();
                tokio::spawn(async move {
                    me.deliver(event, slot).await;
                    me.in_flight.fetch_sub(1, Ordering::Relaxed);
                });
            }
            if !filled {
                // Fewer than there was room for: what is due is claimed, or its apps
                // are at their share. Claiming again before a run ends or a write
                // queues more would come back empty (one more round trip per round).
                tokio::select! {
                    () = self.signal.notified() => {}
                    () = executor.slot_freed() => {}
                    () = tokio::time::sleep(self.config.poll_interval) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    fn claim_batch_floor(&self) -> usize {
        (self.runner.executor.limits().background / 4).max(1)
    }

    /// How long to sleep when nothing is due: until the next due delivery, at most the
    /// poll interval.
    async fn until_next_due(&self) -> Duration {
        match self.store.next_event_due().await {
            Ok(Some(due)) => (due - picloud_core::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(self.config.poll_interval),
            Ok(None) => self.config.poll_interval,
            Err(e) => {
                tracing::warn!(error = %e, "reading the next due event failed");
                self.config.poll_interval
            }
        }
    }

    /// Keeps the claims of running deliveries alive: one task for all of them, every
    /// third of a lease, instead of a timer per delivery.
    async fn lease_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let lease = self.config.lease;
        loop {
            tokio::select! {
                () = tokio::time::sleep(lease / 3) => {}
                _ = shutdown.changed() => return,
            }
            let running: Vec<(EventId, i64)> = self
                .running
                .lock()
                .iter()
                .map(|(id, version)| (id.clone(), *version))
                .collect();
            let until = picloud_core::now()
                + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60));
            for (id, version) in running {
                match self.store.extend_lease(&id, version, until).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(event = %id, "lost the claim of a running delivery")
                    }
                    Err(e) => tracing::warn!(event = %id, error = %e, "extending a lease failed"),
                }
            }
        }
    }

    async fn deliver(self: &Arc<Self>, event: OutboxEvent, slot: Option<Slot>) {
        let app = match self
            .runner
            .rows
            .app(self.store.as_ref(), &event.app_id)
            .await
        {
            Ok(app) => app,
            Err(StoreError::NotFound) => {
                // The app went away with its outbox rows; nothing left to deliver to.
                let _ = self
                    .store
                    .complete_event(&event.id, event.lease_version)
                    .await;
                return;
            }
            Err(e) => {
                tracing::error!(event = %event.id, error = %e, "loading the app of an event failed");
                return;
            }
        };
        self.running
            .lock()
            .insert(event.id.clone(), event.lease_version);
        let started_at = picloud_core::now();
        let execution_id = ExecutionId::at(started_at);
        let script = match self
            .runner
            .rows
            .script(self.store.as_ref(), &event.script_id)
            .await
        {
            Ok(script) => Some(script),
            Err(e) => {
                tracing::warn!(event = %event.id, error = %e, "the event's script cannot be loaded");
                None
            }
        };
        let attempt = match &script {
            Some(script) => {
                self.attempt(slot, &app, script, &event, &execution_id)
                    .await
            }
            None => Some(Attempt::Ran(failed(ScriptFailure::error(
                "the script no longer exists",
            )))),
        };
        self.running.lock().remove(&event.id);
        let Some(attempt) = attempt else {
            // Shutting down: the claim stays until its lease runs out (or, on SQLite,
            // the next start releases it).
            return;
        };
        self.settle(&event, attempt.outcome()).await;
        if let Some(script) = &script {
            let who = RunIdentity {
                app: &app,
                script,
                id: &execution_id,
                source: event.source,
                started_at,
            };
            self.runner
                .record(execution_record(
                    &who,
                    attempt.report(),
                    self.config.max_log_lines,
                ))
                .await;
        }
    }

    /// Waits for a slot, then prepares and runs the delivery; `None` when the executor
    /// is shutting down.
    async fn attempt(
        &self,
        slot: Option<Slot>,
        app: &App,
        script: &Arc<Script>,
        event: &OutboxEvent,
        execution_id: &ExecutionId,
    ) -> Option<Attempt> {
        // The slot first, the caller second: a delivery may wait long for a slot, and
        // rights its caller lost meanwhile must be lost for the run too.
        let slot = match slot {
            Some(slot) => slot,
            None => match self.runner.executor.background_slot(app.id.as_str()).await {
                Ok(slot) => slot,
                Err(ExecError::ShutDown) => return None,
                Err(e) => return Some(Attempt::Ran(failed(ScriptFailure::error(e.to_string())))),
            },
        };
        match self.prepare(app, script, event, execution_id).await {
            Ok(input) => self.run(slot, script, input).await.map(Attempt::Ran),
            Err(refused) => Some(refused),
        }
    }

    /// The run's input, with its caller looked up again now (not when the delivery
    /// was queued); `Err` with the attempt to record when the run must not start.
    async fn prepare(
        &self,
        app: &App,
        script: &Script,
        event: &OutboxEvent,
        execution_id: &ExecutionId,
    ) -> Result<RunInput, Attempt> {
        let (subject, queued) = payload::delivery(event);
        let caller = match caller::resolve(self.store.as_ref(), &app.id, queued).await {
            Ok(RunCaller::Anonymous) => None,
            Ok(RunCaller::Acting(caller)) => Some(caller),
            Ok(RunCaller::Refused(refusal)) => {
                tracing::info!(event = %event.id, %refusal, "a queued run was not started");
                return Err(Attempt::NotRun(failed(ScriptFailure {
                    kind: FailureKind::Forbidden,
                    message: refusal.message(),
                    line: None,
                })));
            }
            Err(e) => {
                // The store is unwell: a plain failed attempt, retried by the policy.
                tracing::error!(event = %event.id, error = %e, "looking up the caller of a queued run failed");
                return Err(Attempt::Ran(failed(ScriptFailure::error(
                    "internal error: the caller could not be looked up; see the server log",
                ))));
            }
        };
        Ok(self
            .runner
            .input(app, script, execution_id, caller, subject))
    }

    /// Runs the script; `None` when the executor is shutting down.
    async fn run(
        &self,
        slot: Slot,
        script: &Arc<Script>,
        input: RunInput,
    ) -> Option<picloud_script::RunReport<()>> {
        let engine = self.runner.engine.clone();
        // The row is shared, not copied: a script's source may be large.
        let script = script.clone();
        let timeout = self.config.trigger_timeout;
        let job = move || run_script(&engine, &script, input, timeout, |_| Ok(()));
        match self.runner.executor.run_on(slot, job).await {
            Ok(report) => Some(report),
            Err(ExecError::ShutDown) => None,
            Err(e) => Some(failed(ScriptFailure::error(e.to_string()))),
        }
    }

    /// Completes, retries or dead-letters the delivery after its attempt.
    async fn settle(&self, event: &OutboxEvent, outcome: Outcome<'_>) {
        let store = &self.store;
        let (id, version) = (&event.id, event.lease_version);
        let result = match outcome {
            Outcome::Succeeded => store.complete_event(id, version).await.map(|_| ()),
            Outcome::Failed(failure) | Outcome::Refused(failure)
                if event.source == ExecutionSource::DeadLetter =>
            {
                // A failing dead-letter handler is never retried and never produces
                // another dead letter: its dead letter is marked instead.
                let dead_letter = event.payload["dead_letter"]["id"]
                    .as_str()
                    .and_then(|d| DeadLetterId::parse(d).ok());
                tracing::warn!(event = %id, error = %failure.message, "dead-letter handler failed");
                match dead_letter {
                    Some(dl) => store
                        .fail_dead_letter_handler(id, version, &dl)
                        .await
                        .map(|_| ()),
                    None => store.complete_event(id, version).await.map(|_| ()),
                }
            }
            Outcome::Failed(_) if event.attempt < event.retry.max_attempts => {
                let delay = backoff(&event.retry, event.attempt);
                let due = picloud_core::now()
                    + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
                // (The store wakes the claim loop, which may be asleep until its next
                // poll, so that it sleeps until `due` instead.)
                store
                    .retry_event(id, version, event.attempt + 1, due)
                    .await
                    .map(|_| ())
            }
            // Attempts exhausted, or a run that may not start: retrying cannot give
            // a caller back the rights they lost, and the dead letter keeps the call
            // visible and replayable (a replay looks the caller up again).
            Outcome::Failed(failure) | Outcome::Refused(failure) => {
                let max_depth = self.services.kv.max_depth();
                match store
                    .dead_letter_event(id, version, &failure.message, max_depth)
                    .await
                {
                    Ok(Some(dl)) => {
                        tracing::warn!(event = %id, dead_letter = %dl.id, "delivery exhausted its attempts");
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = result {
            tracing::error!(event = %id, error = %e, "settling a delivery failed; it will be retried after its lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let retry = RetryPolicy {
            max_attempts: 10,
            base_delay_ms: 1000,
            max_delay_ms: 5000,
        };
        for (attempt, base) in [(1u32, 1000u64), (2, 2000), (3, 4000), (4, 5000), (9, 5000)] {
            let d = backoff(&retry, attempt).as_millis() as u64;
            assert!(
                d >= base * 8 / 10 && d <= base * 12 / 10,
                "attempt {attempt}: {d}"
            );
        }
        assert_eq!(backoff(&RetryPolicy::ONCE, 1), Duration::ZERO);
    }
}
