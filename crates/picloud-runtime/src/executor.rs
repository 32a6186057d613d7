//! The executor pool.
//!
//! Scripts are synchronous Rhai, so they run on dedicated OS threads with a large,
//! explicit stack (deep recursion must hit the call-depth limit, never the native
//! stack: a native overflow aborts the process). Admission is the [`Gate`]: requests
//! before background runs, no app above its share, no more runs than threads. A request
//! waits at most `queue_timeout`, then is refused: a flood queues briefly, never
//! without bound.
//!
//! The hand-off is a queue push (waking one parked thread) and a oneshot reply; because
//! the gate never admits more jobs than threads, the queue never holds a backlog. Idle
//! threads park at once instead of spinning: on a small machine, spinning script
//! threads steal the CPU the async workers need.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use picloud_core::config::ExecutorConfig;
use tokio::sync::oneshot;

use crate::gate::{BackgroundRoom, Class, Gate, Limits, Refused, Slot};

/// Native stack of every script thread. Rhai recursion costs tens of KiB of stack per
/// level in debug builds; this leaves the call- and expression-depth limits as the
/// only stop. It is virtual memory: pages are committed only when touched.
pub const SCRIPT_THREAD_STACK_BYTES: usize = 256 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExecError {
    /// No slot freed up within the queue timeout; says whose limit was full, so the
    /// caller is told the truth (its app's share, or the whole server).
    #[error("no script slot freed up in time ({0})")]
    Busy(Saturated),
    #[error("the executor is shutting down")]
    ShutDown,
    /// The operating system would not start a thread (out of threads or memory).
    #[error("could not start a thread to run on: {0}")]
    NoThread(String),
    /// The job panicked; the thread survived. A bug of ours, never of the script.
    #[error("the run crashed")]
    Panicked,
}

/// Which limit a refused run waited on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saturated {
    /// The app holds all the slots it may (`PICLOUD_APP_MAX_CONCURRENCY`).
    App,
    /// Every script thread of the server is taken, by any apps.
    Server,
}

impl std::fmt::Display for Saturated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Saturated::App => "the app's share",
            Saturated::Server => "the whole server",
        })
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Jobs waiting for a thread; threads wait on `ready`.
#[derive(Default)]
struct JobQueue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

impl JobQueue {
    fn push(&self, job: Job) {
        self.jobs.lock().push_back(job);
        self.ready.notify_one();
    }

    fn pop(&self) -> Job {
        let mut jobs = self.jobs.lock();
        loop {
            if let Some(job) = jobs.pop_front() {
                return job;
            }
            self.ready.wait(&mut jobs);
        }
    }
}

pub struct Executor {
    jobs: Arc<JobQueue>,
    gate: Arc<Gate>,
    queue_timeout: Duration,
}

impl Executor {
    pub fn start(config: &ExecutorConfig) -> Arc<Self> {
        let jobs = Arc::new(JobQueue::default());
        for i in 0..config.threads {
            let queue = jobs.clone();
            // The threads live as long as the process: a closed executor admits no
            // more jobs, so they simply stay parked.
            let spawned = std::thread::Builder::new()
                .name(format!("picloud-script-{i}"))
                .stack_size(SCRIPT_THREAD_STACK_BYTES)
                .spawn(move || loop {
                    queue.pop()();
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a script thread");
            }
        }
        let limits = Limits::new(
            config.threads,
            config.app_max_concurrency,
            config.background_share,
        );
        Arc::new(Self {
            jobs,
            gate: Gate::new(limits),
            queue_timeout: config.queue_timeout,
        })
    }

    /// Runs a request's `job` on a script thread once the app and the pool have a
    /// free slot, waiting at most the queue timeout for one.
    pub async fn run<T, F>(&self, app_id: &str, job: F) -> Result<T, ExecError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let slot = self
            .gate
            .slot(app_id, Class::Interactive, Some(self.queue_timeout))
            .await
            .map_err(refused)?;
        self.run_on(slot, job).await
    }

    /// How many background runs could start now, in all and per app: the dispatcher
    /// claims no more than this.
    pub fn background_room(&self) -> BackgroundRoom {
        self.gate.background_room()
    }

    /// A background slot for the app if one is free now.
    pub fn try_background_slot(&self, app_id: &str) -> Option<Slot> {
        self.gate.try_slot(app_id, Class::Background)
    }

    /// A background slot for the app, waited for as long as it takes (behind every
    /// request). Taken before a delivery's run is prepared, so what must be decided
    /// just before the script starts (its caller's rights) is decided after the wait.
    pub async fn background_slot(&self, app_id: &str) -> Result<Slot, ExecError> {
        self.gate
            .slot(app_id, Class::Background, None)
            .await
            .map_err(refused)
    }

    /// Resolves when a slot has freed (background room may have grown).
    pub async fn slot_freed(&self) {
        self.gate.freed().await;
    }

    /// Runs `job` on a script thread in `slot`, which is freed when the job ends,
    /// even if nobody waits for it any more.
    pub async fn run_on<T, F>(&self, slot: Slot, job: F) -> Result<T, ExecError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let out = catch_unwind(AssertUnwindSafe(job));
            drop(slot);
            let _ = reply.send(out);
        });
        self.jobs.push(job);
        match result.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(ExecError::Panicked),
            Err(_) => Err(ExecError::ShutDown),
        }
    }

    /// Forgets an app's counters (the app was deleted).
    pub fn forget_app(&self, app_id: &str) {
        self.gate.forget_app(app_id);
    }

    /// Whether the executor holds state for the app (runs of it in progress or
    /// waiting).
    pub fn tracks_app(&self, app_id: &str) -> bool {
        self.gate.tracks_app(app_id)
    }

    /// Runs waiting for a slot right now.
    pub fn queue_depth(&self) -> usize {
        self.gate.waiting()
    }

    /// Runs in progress right now.
    pub fn busy(&self) -> usize {
        self.gate.busy()
    }

    pub fn threads(&self) -> usize {
        self.gate.limits().threads
    }

    pub fn limits(&self) -> Limits {
        self.gate.limits()
    }

    pub fn queue_timeout(&self) -> Duration {
        self.queue_timeout
    }

    /// Refuses new work; runs in progress finish.
    pub fn close(&self) {
        self.gate.close();
    }
}

fn refused(r: Refused) -> ExecError {
    match r {
        Refused::Closed => ExecError::ShutDown,
        Refused::TimedOut { app_full: true } => ExecError::Busy(Saturated::App),
        Refused::TimedOut { app_full: false } => ExecError::Busy(Saturated::Server),
    }
}

/// Runs `job` on a fresh thread with a script-sized stack, outside the gate: for rare
/// control-plane work that recurses on user input (compiling a script on save).
pub async fn on_script_stack<T, F>(job: F) -> Result<T, ExecError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (reply, result) = oneshot::channel();
    std::thread::Builder::new()
        .name("picloud-compile".into())
        .stack_size(SCRIPT_THREAD_STACK_BYTES)
        .spawn(move || {
            let _ = reply.send(catch_unwind(AssertUnwindSafe(job)));
        })
        .map_err(|e| ExecError::NoThread(e.to_string()))?;
    match result.await {
        Ok(Ok(value)) => Ok(value),
        // The thread always replies unless it died, and a panic is caught: a reply
        // that never comes is a crash, not a shutdown (nothing closes this thread).
        Ok(Err(_)) | Err(_) => Err(ExecError::Panicked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    fn config(threads: usize, per_app: usize, timeout_ms: u64) -> ExecutorConfig {
        ExecutorConfig {
            threads,
            app_max_concurrency: per_app,
            queue_timeout: Duration::from_millis(timeout_ms),
            background_share: 0.75,
            script_cache_size: 8,
            module_cache_size: 8,
        }
    }

    #[tokio::test]
    async fn runs_jobs_on_script_threads() {
        let ex = Executor::start(&config(2, 2, 1000));
        let name = ex
            .run("app", || std::thread::current().name().map(str::to_owned))
            .await
            .expect("ran");
        assert_eq!(
            name.as_deref().map(|n| n.starts_with("picloud-script-")),
            Some(true)
        );
    }

    #[tokio::test]
    async fn one_app_cannot_take_the_whole_pool() {
        let ex = Executor::start(&config(4, 2, 200));
        let release = Arc::new(AtomicBool::new(false));
        let mut hogs = Vec::new();
        for _ in 0..2 {
            let ex = ex.clone();
            let release = release.clone();
            hogs.push(tokio::spawn(async move {
                ex.run("greedy", move || {
                    while !release.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
                .await
            }));
        }
        while ex.busy() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The greedy app is at its share: its next run waits, then is refused.
        let started = Instant::now();
        assert_eq!(
            ex.run("greedy", || ()).await,
            Err(ExecError::Busy(Saturated::App))
        );
        assert!(started.elapsed() >= Duration::from_millis(200));
        // Another app still gets a slot at once.
        assert_eq!(ex.run("polite", || 7).await, Ok(7));
        release.store(true, Ordering::Relaxed);
        for h in hogs {
            assert_eq!(h.await.expect("joined"), Ok(()));
        }
        assert_eq!(ex.run("greedy", || 1).await, Ok(1));
    }

    #[tokio::test]
    async fn a_full_server_is_told_apart_from_a_full_app() {
        let ex = Executor::start(&config(2, 1, 100));
        let release = Arc::new(AtomicBool::new(false));
        let mut hogs = Vec::new();
        for app in ["one", "two"] {
            let ex = ex.clone();
            let release = release.clone();
            hogs.push(tokio::spawn(async move {
                ex.run(app, move || {
                    while !release.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
                .await
            }));
        }
        while ex.busy() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A third app has its own share free: it waited on the server.
        assert_eq!(
            ex.run("three", || ()).await,
            Err(ExecError::Busy(Saturated::Server))
        );
        assert_eq!(
            ex.run("one", || ()).await,
            Err(ExecError::Busy(Saturated::App))
        );
        release.store(true, Ordering::Relaxed);
        for h in hogs {
            assert_eq!(h.await.expect("joined"), Ok(()));
        }
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_kill_the_thread() {
        let ex = Executor::start(&config(1, 1, 1000));
        assert_eq!(
            ex.run("app", || -> u8 { panic!("boom") }).await,
            Err(ExecError::Panicked)
        );
        assert_eq!(ex.run("app", || 5).await, Ok(5));
    }

    #[tokio::test]
    async fn closed_executor_refuses_work() {
        let ex = Executor::start(&config(1, 1, 1000));
        ex.close();
        assert_eq!(ex.run("app", || 1).await, Err(ExecError::ShutDown));
    }
}
