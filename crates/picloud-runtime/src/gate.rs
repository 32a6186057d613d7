//! The execution gate: who may start a run on a script thread, and who goes first.
//!
//! Two classes share the pool. Requests (interactive) may use every thread and their
//! app's whole share; background runs (deliveries: triggers, async routes, cron,
//! dead-letter handlers) at most the background share of each, so a backlog never
//! leaves a request without a thread or its app without a slot. When a slot frees,
//! waiting requests get it first, in arrival order (skipping those whose app is at its
//! share); background runs only get what no request is waiting for. The dispatcher
//! asks for [`Gate::background_room`] before it claims, so it only claims what can
//! start now.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

/// Which kind of run wants a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A request waiting for its answer.
    Interactive,
    /// A delivery nobody waits on right now.
    Background,
}

/// How many runs may hold slots at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Runs at once (the script threads).
    pub threads: usize,
    /// Runs of one app at once.
    pub app: usize,
    /// Background runs at once.
    pub background: usize,
    /// Background runs of one app at once.
    pub app_background: usize,
}

impl Limits {
    /// The limits for `threads` threads, `app` slots per app, and the share of both
    /// background runs may take: at least one of each, and (below a share of 1) never
    /// all of an app's slots when it has two or more.
    pub fn new(threads: usize, app: usize, background_share: f64) -> Self {
        let threads = threads.max(1);
        let app = app.clamp(1, threads);
        let share = |n: usize| ((n as f64 * background_share).floor() as usize).clamp(1, n);
        Self {
            threads,
            app,
            background: share(threads),
            app_background: share(app),
        }
    }
}

/// How many background runs could start now, for the dispatcher's claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackgroundRoom {
    /// In all.
    pub total: usize,
    /// For an app not in `apps`.
    pub per_app: usize,
    /// Apps with runs in progress or waiting: their room (may be 0) and how many
    /// background runs they hold or wait for.
    pub apps: Vec<AppLoad>,
}

/// One app's background load, for the claim's turns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppLoad {
    pub app: String,
    pub room: usize,
    pub running: usize,
}

/// A run's hold on a thread and on one of its app's slots; dropping it frees both.
pub struct Slot {
    gate: Arc<Gate>,
    app: String,
    class: Class,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.release(&self.app, self.class);
    }
}

#[derive(Default)]
struct Load {
    busy: usize,
    background: usize,
    waiting_background: usize,
}

struct Waiter {
    id: u64,
    app: String,
    grant: oneshot::Sender<Slot>,
}

#[derive(Default)]
struct State {
    busy: usize,
    background: usize,
    apps: HashMap<String, Load>,
    interactive: VecDeque<Waiter>,
    queued_background: VecDeque<Waiter>,
    closed: bool,
    next_id: u64,
}

impl State {
    fn load(&self, app: &str) -> Option<&Load> {
        self.apps.get(app)
    }

    /// Whether a run of `class` for `app` may start now, a waiting request permitting.
    fn has_room(&self, limits: &Limits, app: &str, class: Class) -> bool {
        let (busy, background) = self.load(app).map_or((0, 0), |l| (l.busy, l.background));
        let thread = self.busy < limits.threads && busy < limits.app;
        match class {
            Class::Interactive => thread,
            Class::Background => {
                thread && self.background < limits.background && background < limits.app_background
            }
        }
    }

    /// Whether a run of `class` for `app` may start now: a background run never
    /// before a request that waits for a thread.
    fn fits(&self, limits: &Limits, app: &str, class: Class) -> bool {
        self.has_room(limits, app, class)
            && (class == Class::Interactive || !self.request_waits_for_a_thread(limits))
    }

    /// Whether a request waits for a thread (not for its app's share): it goes
    /// before any background run.
    fn request_waits_for_a_thread(&self, limits: &Limits) -> bool {
        self.interactive
            .iter()
            .any(|w| self.load(&w.app).map_or(0, |l| l.busy) < limits.app)
    }

    fn take(&mut self, app: &str, class: Class) {
        self.busy += 1;
        let load = self.apps.entry(app.to_owned()).or_default();
        load.busy += 1;
        if class == Class::Background {
            self.background += 1;
            load.background += 1;
        }
    }

    fn forget_if_idle(&mut self, app: &str) {
        if self
            .apps
            .get(app)
            .is_some_and(|l| l.busy == 0 && l.waiting_background == 0)
        {
            self.apps.remove(app);
        }
    }
}

pub struct Gate {
    limits: Limits,
    state: Mutex<State>,
    /// Signalled whenever a slot frees: background room may have grown.
    freed: Notify,
}

/// Why a slot was not had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The gate is closed.
    Closed,
    /// Still waiting when the time ran out; `app_full`: the app held all its slots.
    TimedOut { app_full: bool },
}

impl Gate {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            state: Mutex::new(State::default()),
            freed: Notify::new(),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A slot now, if one is free for `class` without jumping a waiting request.
    pub fn try_slot(self: &Arc<Self>, app: &str, class: Class) -> Option<Slot> {
        let mut st = self.state.lock();
        if st.closed || !st.fits(&self.limits, app, class) {
            return None;
        }
        st.take(app, class);
        Some(self.hold(app, class))
    }

    /// A slot, waiting in line for one at most `wait` (`None`: as long as it takes).
    pub async fn slot(
        self: &Arc<Self>,
        app: &str,
        class: Class,
        wait: Option<std::time::Duration>,
    ) -> Result<Slot, Refused> {
        let (id, mut granted) = {
            let mut st = self.state.lock();
            if st.closed {
                return Err(Refused::Closed);
            }
            if st.fits(&self.limits, app, class) {
                st.take(app, class);
                return Ok(self.hold(app, class));
            }
            let (grant, granted) = oneshot::channel();
            st.next_id += 1;
            let id = st.next_id;
            let waiter = Waiter {
                id,
                app: app.to_owned(),
                grant,
            };
            match class {
                Class::Interactive => st.interactive.push_back(waiter),
                Class::Background => {
                    st.apps
                        .entry(app.to_owned())
                        .or_default()
                        .waiting_background += 1;
                    st.queued_background.push_back(waiter);
                }
            }
            (id, granted)
        };
        // Leaving the line (timed out, or the caller gave up) takes the waiter out of
        // it; a grant that raced the leaving is in the channel and is used or freed.
        let guard = InLine {
            gate: self,
            id,
            app,
            class,
        };
        let outcome = match wait {
            Some(limit) => tokio::time::timeout(limit, &mut granted).await.ok(),
            None => Some((&mut granted).await),
        };
        let left = guard.leave();
        match outcome {
            Some(Ok(slot)) => Ok(slot),
            Some(Err(_)) => Err(Refused::Closed),
            None => match granted.try_recv() {
                Ok(slot) => Ok(slot),
                Err(_) if left.closed => Err(Refused::Closed),
                Err(_) => Err(Refused::TimedOut {
                    app_full: left.app_full,
                }),
            },
        }
    }

    fn hold(self: &Arc<Self>, app: &str, class: Class) -> Slot {
        Slot {
            gate: self.clone(),
            app: app.to_owned(),
            class,
        }
    }

    fn release(self: &Arc<Self>, app: &str, class: Class) {
        let grants = {
            let mut st = self.state.lock();
            st.busy = st.busy.saturating_sub(1);
            if class == Class::Background {
                st.background = st.background.saturating_sub(1);
            }
            if let Some(load) = st.apps.get_mut(app) {
                load.busy = load.busy.saturating_sub(1);
                if class == Class::Background {
                    load.background = load.background.saturating_sub(1);
                }
            }
            st.forget_if_idle(app);
            self.grants(&mut st)
        };
        self.hand_out(grants);
        self.freed.notify_one();
    }

    /// Takes slots for the waiters that fit now: requests in arrival order first, then
    /// background runs.
    fn grants(self: &Arc<Self>, st: &mut State) -> Vec<(Waiter, Slot)> {
        let mut out = Vec::new();
        for class in [Class::Interactive, Class::Background] {
            let mut i = 0;
            loop {
                if st.busy >= self.limits.threads {
                    return out;
                }
                let queue = match class {
                    Class::Interactive => &st.interactive,
                    Class::Background => &st.queued_background,
                };
                let Some(app) = queue.get(i).map(|w| w.app.clone()) else {
                    break;
                };
                // (No request waiting for a thread is left once the requests' pass
                // ends with threads free: each was granted or waits for its app.)
                if !st.has_room(&self.limits, &app, class) {
                    i += 1;
                    continue;
                }
                let waiter = match class {
                    Class::Interactive => st.interactive.remove(i),
                    Class::Background => st.queued_background.remove(i),
                };
                let Some(waiter) = waiter else { break };
                if class == Class::Background {
                    if let Some(load) = st.apps.get_mut(&app) {
                        load.waiting_background = load.waiting_background.saturating_sub(1);
                    }
                }
                st.take(&app, class);
                out.push((waiter, self.hold(&app, class)));
            }
        }
        out
    }

    /// Sends the grants outside the lock; one whose waiter is gone frees its slot
    /// again (which grants it to the next in line).
    fn hand_out(&self, grants: Vec<(Waiter, Slot)>) {
        for (waiter, slot) in grants {
            drop(waiter.grant.send(slot));
        }
    }

    /// How many background runs could start now without taking a thread or a slot a
    /// request is waiting for.
    pub fn background_room(&self) -> BackgroundRoom {
        let st = self.state.lock();
        let limits = &self.limits;
        let queued = st.queued_background.len();
        let total = if st.closed || st.request_waits_for_a_thread(limits) {
            0
        } else {
            (limits.background.saturating_sub(st.background))
                .min(limits.threads.saturating_sub(st.busy))
                .saturating_sub(queued)
        };
        let apps = st
            .apps
            .iter()
            .map(|(app, load)| {
                let room = limits
                    .app_background
                    .saturating_sub(load.background)
                    .min(limits.app.saturating_sub(load.busy))
                    .saturating_sub(load.waiting_background);
                AppLoad {
                    app: app.clone(),
                    room,
                    running: load.background + load.waiting_background,
                }
            })
            .collect();
        BackgroundRoom {
            total,
            per_app: limits.app_background,
            apps,
        }
    }

    /// Resolves when a slot has freed since the last call (or now, if one did).
    pub async fn freed(&self) {
        self.freed.notified().await;
    }

    /// Runs waiting for a slot right now.
    pub fn waiting(&self) -> usize {
        let st = self.state.lock();
        st.interactive.len() + st.queued_background.len()
    }

    /// Runs holding a slot right now.
    pub fn busy(&self) -> usize {
        self.state.lock().busy
    }

    pub fn tracks_app(&self, app: &str) -> bool {
        self.state.lock().apps.contains_key(app)
    }

    pub fn forget_app(&self, app: &str) {
        let mut st = self.state.lock();
        if st.apps.get(app).is_some_and(|l| l.waiting_background == 0) {
            st.apps.remove(app);
        }
    }

    /// Refuses new slots and sends every waiter away; runs in progress finish.
    pub fn close(&self) {
        let waiters: Vec<Waiter> = {
            let mut st = self.state.lock();
            st.closed = true;
            let mut all: Vec<Waiter> = st.interactive.drain(..).collect();
            all.extend(st.queued_background.drain(..));
            all
        };
        // Dropping a waiter's sender tells it the gate closed.
        drop(waiters);
        self.freed.notify_waiters();
    }
}

/// A place in line; leaving it (however the wait ended) takes the waiter out.
struct InLine<'a> {
    gate: &'a Arc<Gate>,
    id: u64,
    app: &'a str,
    class: Class,
}

/// What was true when a waiter left the line.
struct Left {
    closed: bool,
    app_full: bool,
}

impl InLine<'_> {
    fn leave(self) -> Left {
        let left = self.remove();
        std::mem::forget(self);
        left
    }

    fn remove(&self) -> Left {
        let mut st = self.gate.state.lock();
        let queue = match self.class {
            Class::Interactive => &mut st.interactive,
            Class::Background => &mut st.queued_background,
        };
        if let Some(at) = queue.iter().position(|w| w.id == self.id) {
            queue.remove(at);
            if self.class == Class::Background {
                if let Some(load) = st.apps.get_mut(self.app) {
                    load.waiting_background = load.waiting_background.saturating_sub(1);
                }
                st.forget_if_idle(self.app);
            }
        }
        let app_full = st
            .load(self.app)
            .is_some_and(|l| l.busy >= self.gate.limits.app);
        Left {
            closed: st.closed,
            app_full,
        }
    }
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        // The caller's future was dropped mid-wait.
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn limits_leave_requests_their_share() {
        assert_eq!(
            Limits::new(8, 4, 0.75),
            Limits {
                threads: 8,
                app: 4,
                background: 6,
                app_background: 3
            }
        );
        // Two threads, two per app: background gets one of each.
        let small = Limits::new(2, 2, 0.75);
        assert_eq!((small.background, small.app_background), (1, 1));
        // Never none: one thread is shared.
        let one = Limits::new(1, 1, 0.75);
        assert_eq!((one.background, one.app_background), (1, 1));
        assert_eq!(Limits::new(4, 9, 1.0).app, 4);
    }

    #[tokio::test]
    async fn background_runs_leave_threads_and_app_slots_to_requests() {
        let gate = Gate::new(Limits::new(4, 2, 0.75));
        let bg = gate
            .try_slot("a", Class::Background)
            .expect("first background");
        // The app's background share (1 of 2) is used up; its requests are not.
        assert!(gate.try_slot("a", Class::Background).is_none());
        let room = gate.background_room();
        assert_eq!(room.total, 2);
        assert_eq!(
            room.apps,
            vec![AppLoad {
                app: "a".to_owned(),
                room: 0,
                running: 1
            }]
        );
        let req = gate.try_slot("a", Class::Interactive).expect("request");
        assert!(gate.try_slot("a", Class::Interactive).is_none(), "app full");
        drop((bg, req));
        assert_eq!(gate.busy(), 0);
        assert!(!gate.tracks_app("a"), "no state left for an idle app");
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_a_waiting_request_first() {
        let gate = Gate::new(Limits::new(1, 1, 1.0));
        let held = gate.try_slot("a", Class::Background).expect("slot");
        let background = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.slot("b", Class::Background, None).await.is_ok() })
        };
        while gate.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        let request = {
            let gate = gate.clone();
            tokio::spawn(async move {
                let slot = gate
                    .slot("c", Class::Interactive, Some(Duration::from_secs(30)))
                    .await
                    .expect("granted");
                // The background waiter still waits while the request holds the slot.
                let waiting = gate.waiting();
                drop(slot);
                waiting
            })
        };
        while gate.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.background_room().total, 0, "a request waits");
        drop(held);
        assert_eq!(request.await.expect("joined"), 1);
        assert!(background.await.expect("joined"));
        assert_eq!(gate.busy(), 0);
    }

    #[tokio::test]
    async fn a_timed_out_or_abandoned_wait_leaves_the_line() {
        let gate = Gate::new(Limits::new(2, 1, 0.5));
        let held = gate.try_slot("a", Class::Interactive).expect("slot");
        let refused = gate
            .slot("a", Class::Interactive, Some(Duration::from_millis(20)))
            .await
            .err();
        assert_eq!(refused, Some(Refused::TimedOut { app_full: true }));
        let other = gate.try_slot("b", Class::Interactive).expect("slot");
        let refused = gate
            .slot("c", Class::Interactive, Some(Duration::from_millis(20)))
            .await
            .err();
        assert_eq!(refused, Some(Refused::TimedOut { app_full: false }));
        // A wait whose caller gives up is taken out of the line.
        let abandoned = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.slot("c", Class::Background, None).await.is_ok() })
        };
        while gate.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        abandoned.abort();
        let _ = abandoned.await;
        assert_eq!(gate.waiting(), 0);
        drop((held, other));
        assert_eq!(gate.busy(), 0);
        gate.close();
        assert_eq!(
            gate.slot("a", Class::Interactive, None).await.err(),
            Some(Refused::Closed)
        );
    }
}
