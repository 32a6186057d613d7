//! Execution records are written off the request's path: runs hand their record to a
//! channel, and one task writes whatever has accumulated as a single transaction. Under
//! load, batches grow by themselves (everything queued while the last write ran).

use std::sync::Arc;
use std::time::Duration;

use picloud_store::{Execution, Store};
use tokio::sync::{mpsc, oneshot};

const CHANNEL_CAPACITY: usize = 16_384;
const MAX_BATCH: usize = 512;
/// How long the writer waits for more records before writing a partial batch.
const GATHER: Duration = Duration::from_millis(2);

enum Msg {
    Record(Box<Execution>),
    /// Answered once everything queued before it is written.
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

async fn write_loop(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Msg>) {
    let mut msgs = Vec::with_capacity(MAX_BATCH);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut msgs, MAX_BATCH).await > 0 {
        if msgs.len() < MAX_BATCH {
            // Let a busy server's records gather for a moment: one transaction of a
            // few hundred rows costs the database worker far less than many small ones
            // (each statement is a hand-off to its thread).
            tokio::time::sleep(GATHER).await;
            while msgs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(msg) => msgs.push(msg),
                    Err(_) => break,
                }
            }
        }
        let mut flushes = Vec::new();
        for msg in msgs.drain(..) {
            match msg {
                Msg::Record(e) => batch.push(*e),
                Msg::Flush(done) => flushes.push(done),
            }
        }
        if !batch.is_empty() {
            write_batch(&store, &batch).await;
            batch.clear();
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn write_batch(store: &Arc<dyn Store>, batch: &[Execution]) {
    for attempt in 1..=3u64 {
        match store.insert_executions(batch).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(error = %e, attempt, records = batch.len(), "writing execution records failed");
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
        }
    }
    tracing::error!(
        records = batch.len(),
        "execution records lost after 3 attempts"
    );
}
