//! The executor pool and its gate.
//!
//! Scripts are synchronous Rhai, so they run on dedicated OS threads with a large,
//! explicit stack (deep recursion must hit the call-depth limit, never the native
//! stack: a native overflow aborts the process). Admission is a gate of two tokio
//! semaphores: one per app (no app may hold more than its share of the pool) and one
//! global (no more runs than threads). A request waits for both at most
//! `queue_timeout`, then is refused: a flood queues briefly, never without bound.
//!
//! The hand-off is a queue push (waking one parked thread) and a oneshot reply; because
//! the gate never admits more jobs than threads, the queue never holds a backlog. Idle
//! threads park at once instead of spinning: on a small machine, spinning script
//! threads steal the CPU the async workers need.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use picloud_core::config::ExecutorConfig;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

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

/// One of the app's slots and one of the pool's, held from admission until the run
/// ends; dropping it frees both.
pub struct Slot {
    _app: OwnedSemaphorePermit,
    _pool: OwnedSemaphorePermit,
}

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
    global: Arc<Semaphore>,
    apps: Mutex<HashMap<String, Arc<Semaphore>>>,
    app_limit: usize,
    queue_timeout: Duration,
    waiting: AtomicUsize,
    threads: usize,
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
        Arc::new(Self {
            jobs,
            global: Arc::new(Semaphore::new(config.threads)),
            apps: Mutex::new(HashMap::new()),
            app_limit: config.app_max_concurrency.clamp(1, config.threads.max(1)),
            queue_timeout: config.queue_timeout,
            waiting: AtomicUsize::new(0),
            threads: config.threads,
        })
    }

    /// Runs `job` on a script thread once the app and the pool have a free slot,
    /// waiting at most the queue timeout for one.
    pub async fn run<T, F>(&self, app_id: &str, job: F) -> Result<T, ExecError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let slot = self.admit(app_id, Some(self.queue_timeout)).await?;
        self.run_on(slot, job).await
    }

    /// A slot for a queued event, waited for as long as it takes (the delivery's
    /// claim is kept alive meanwhile). Taken before the run is prepared, so what must
    /// be decided just before the script starts (its caller's rights) is decided
    /// after the wait, not before it.
    pub async fn queued_slot(&self, app_id: &str) -> Result<Slot, ExecError> {
        self.admit(app_id, None).await
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

    async fn admit(&self, app_id: &str, wait: Option<Duration>) -> Result<Slot, ExecError> {
        let app = self.app_semaphore(app_id);
        // Fast path: both free, no timer.
        if let Ok(a) = app.clone().try_acquire_owned() {
            if let Ok(g) = self.global.clone().try_acquire_owned() {
                return Ok(Slot { _app: a, _pool: g });
            }
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        // The app's slot is taken first; a wait that ends holding it was a wait
        // for the server's.
        let mut waited_on = Saturated::App;
        let acquire = async {
            let a = app.acquire_owned().await?;
            waited_on = Saturated::Server;
            let g = self.global.clone().acquire_owned().await?;
            Ok::<_, tokio::sync::AcquireError>(Slot { _app: a, _pool: g })
        };
        let admitted = match wait {
            Some(limit) => tokio::time::timeout(limit, acquire).await,
            None => Ok(acquire.await),
        };
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        match admitted {
            Ok(Ok(slot)) => Ok(slot),
            Ok(Err(_)) => Err(ExecError::ShutDown),
            Err(_) => Err(ExecError::Busy(waited_on)),
        }
    }

    fn app_semaphore(&self, app_id: &str) -> Arc<Semaphore> {
        let mut apps = self.apps.lock();
        if let Some(s) = apps.get(app_id) {
            return s.clone();
        }
        let s = Arc::new(Semaphore::new(self.app_limit));
        apps.insert(app_id.to_owned(), s.clone());
        s
    }

    /// One of the app's slots, if one is free right now, for a run that needs no thread
    /// (an inline attempt): those count against the app's share too, so one app cannot
    /// fill the async workers either. `None` when the executor is closed.
    pub fn try_app_slot(&self, app_id: &str) -> Option<OwnedSemaphorePermit> {
        self.app_semaphore(app_id).try_acquire_owned().ok()
    }

    /// Forgets an app's slot counter (the app was deleted).
    pub fn forget_app(&self, app_id: &str) {
        self.apps.lock().remove(app_id);
    }

    /// Whether the executor holds a slot counter for the app (it ran here and was not
    /// deleted since).
    pub fn tracks_app(&self, app_id: &str) -> bool {
        self.apps.lock().contains_key(app_id)
    }

    /// Requests waiting for a slot right now.
    pub fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Runs in progress right now.
    pub fn busy(&self) -> usize {
        self.threads - self.global.available_permits()
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn queue_timeout(&self) -> Duration {
        self.queue_timeout
    }

    /// Refuses new work; runs in progress finish.
    pub fn close(&self) {
        self.global.close();
        for s in self.apps.lock().values() {
            s.close();
        }
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
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    fn config(threads: usize, per_app: usize, timeout_ms: u64) -> ExecutorConfig {
        ExecutorConfig {
            threads,
            app_max_concurrency: per_app,
            queue_timeout: Duration::from_millis(timeout_ms),
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
