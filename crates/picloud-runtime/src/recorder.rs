//! Execution records are written off the request's path: runs hand their record to a
//! channel, and one task writes whatever has accumulated as a single transaction. Under
//! load, batches grow by themselves (everything queued while the last write ran).
//!
//! While the database is unavailable (a full disk, a lost connection) the records are
//! kept and written once it is back, however long that takes: every run's response
//! names its record, so an outage must not lose them. The writer keeps taking records
//! meanwhile, so runs never wait on it; only a backlog past [`MAX_BACKLOG_BYTES`]
//! gives up its oldest records, logged.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use picloud_store::{Execution, Store};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

const CHANNEL_CAPACITY: usize = 16_384;
const MAX_BATCH: usize = 512;
/// How long the writer waits for more records before writing a partial batch.
const GATHER: Duration = Duration::from_millis(2);
/// Records held while the database is unavailable, by their rough size in memory.
const MAX_BACKLOG_BYTES: usize = 64 << 20;
/// Retries during an outage: the first soon, then doubling up to the last.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);
/// Any other failure (a record the database rejects) is tried this often, then the
/// batch is dropped, so one bad record cannot stop every later one.
const ATTEMPTS: u32 = 3;
/// How long a flush (at shutdown) waits out an outage before giving the backlog up.
const FLUSH_PATIENCE: Duration = Duration::from_secs(10);

enum Msg {
    Record(Box<Execution>),
    /// Answered once everything queued before it is written (or given up on).
    Flush(oneshot::Sender<()>),
}

pub struct ExecutionRecorder {
    tx: mpsc::Sender<Msg>,
}

impl ExecutionRecorder {
    pub fn start(store: Arc<dyn Store>) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        tokio::spawn(write_loop(store, rx));
        Arc::new(Self { tx })
    }

    /// Queues a record. Waits only when the writer is far behind (backpressure
    /// instead of losing records or growing without bound).
    pub async fn record(&self, execution: Execution) {
        let msg = Msg::Record(Box::new(execution));
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(msg)) => {
                let _ = self.tx.send(msg).await;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!("execution record dropped: the recorder has stopped");
            }
        }
    }

    /// Returns once every record queued so far is written (or given up on).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// Records waiting to be written, oldest first.
struct Writer {
    store: Arc<dyn Store>,
    backlog: VecDeque<Execution>,
    bytes: usize,
    flushes: Vec<oneshot::Sender<()>>,
    /// When a waiting flush (or the channel's close) stops waiting out an outage.
    give_up_at: Option<Instant>,
    /// Set while writes fail: how long to wait before the next attempt.
    retry_in: Option<Duration>,
    failures: u32,
    /// Records the full backlog pushed out in the current outage (logged when it
    /// ends).
    overflowed: usize,
}

/// What a record costs in memory, roughly: its logs dominate.
fn weight(e: &Execution) -> usize {
    let logs: usize = e.logs.iter().map(|l| l.message.len() + 48).sum();
    256 + logs + e.error.as_ref().map_or(0, String::len)
}

impl Writer {
    fn take(&mut self, msgs: &mut Vec<Msg>) {
        for msg in msgs.drain(..) {
            match msg {
                Msg::Record(e) => {
                    self.bytes += weight(&e);
                    self.backlog.push_back(*e);
                }
                Msg::Flush(done) => {
                    self.flushes.push(done);
                    self.stop_waiting_within(FLUSH_PATIENCE);
                }
            }
        }
        while self.bytes > MAX_BACKLOG_BYTES {
            let Some(oldest) = self.backlog.pop_front() else {
                break;
            };
            if self.overflowed == 0 {
                tracing::error!(
                    "the execution record backlog is full while the database is \
                     unavailable; dropping the oldest records"
                );
            }
            self.bytes -= weight(&oldest);
            self.overflowed += 1;
        }
    }

    fn stop_waiting_within(&mut self, patience: Duration) {
        let at = Instant::now() + patience;
        self.give_up_at = Some(self.give_up_at.map_or(at, |t| t.min(at)));
    }

    fn remove(&mut self, n: usize) {
        for e in self.backlog.drain(..n) {
            self.bytes -= weight(&e);
        }
    }

    /// Writes the backlog, batch by batch, until it is empty or a write fails.
    async fn write(&mut self) {
        while !self.backlog.is_empty() {
            let n = self.backlog.len().min(MAX_BATCH);
            let batch = &self.backlog.make_contiguous()[..n];
            match self.store.insert_executions(batch).await {
                Ok(()) => {
                    self.remove(n);
                    self.failures = 0;
                    if self.retry_in.take().is_some() {
                        tracing::warn!(
                            lost = self.overflowed,
                            "execution records are written again"
                        );
                        self.overflowed = 0;
                    }
                }
                Err(e) if e.outage().is_some() => {
                    let wait = match self.retry_in {
                        None => {
                            tracing::error!(error = %e, records = self.backlog.len(),
                                "database unavailable: execution records are kept and retried");
                            FIRST_RETRY
                        }
                        Some(last) => (last * 2).min(LAST_RETRY),
                    };
                    self.retry_in = Some(wait);
                    return;
                }
                Err(e) => {
                    self.failures += 1;
                    tracing::error!(error = %e, attempt = self.failures, records = n,
                        "writing execution records failed");
                    if self.failures < ATTEMPTS {
                        self.retry_in = Some(FIRST_RETRY * self.failures);
                        return;
                    }
                    tracing::error!(
                        records = n,
                        "execution records lost after {ATTEMPTS} attempts"
                    );
                    self.remove(n);
                    self.failures = 0;
                    self.retry_in = None;
                }
            }
        }
    }

    /// Answers the flushes once the backlog is written. Past `give_up_at` the
    /// backlog is given up instead: a shutdown cannot wait out an outage forever.
    fn settle(&mut self) {
        let Some(deadline) = self.give_up_at else {
            return;
        };
        if !self.backlog.is_empty() {
            if Instant::now() < deadline {
                return;
            }
            tracing::error!(
                records = self.backlog.len(),
                "execution records lost: the database stayed unavailable through shutdown"
            );
            self.remove(self.backlog.len());
        }
        self.give_up_at = None;
        for done in self.flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn write_loop(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Msg>) {
    let mut writer = Writer {
        store,
        backlog: VecDeque::new(),
        bytes: 0,
        flushes: Vec::new(),
        give_up_at: None,
        retry_in: None,
        failures: 0,
        overflowed: 0,
    };
    let mut msgs = Vec::with_capacity(MAX_BATCH);
    let mut open = true;
    while open || !writer.backlog.is_empty() {
        match writer.retry_in {
            None => {
                if rx.recv_many(&mut msgs, MAX_BATCH).await == 0 {
                    break;
                }
                if msgs.len() < MAX_BATCH {
                    // Let a busy server's records gather for a moment: one
                    // transaction of a few hundred rows costs the database worker far
                    // less than many small ones (each statement is a hand-off to its
                    // thread).
                    tokio::time::sleep(GATHER).await;
                    while msgs.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(msg) => msgs.push(msg),
                            Err(_) => break,
                        }
                    }
                }
            }
            Some(wait) => {
                // Keep taking records while waiting, so runs never wait on an outage.
                let retry_at = Instant::now() + wait;
                while open {
                    tokio::select! {
                        () = tokio::time::sleep_until(retry_at) => break,
                        n = rx.recv_many(&mut msgs, MAX_BATCH) => {
                            open = n > 0;
                            writer.take(&mut msgs);
                            if !open {
                                writer.stop_waiting_within(FLUSH_PATIENCE);
                            }
                        }
                    }
                }
                tokio::time::sleep_until(retry_at).await;
            }
        }
        writer.take(&mut msgs);
        writer.write().await;
        writer.settle();
    }
}
