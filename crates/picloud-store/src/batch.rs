//! Group commit: writes from concurrent callers share one transaction (and one
//! statement, where the backend can), and each caller gets its own answer.
//!
//! One task per batcher takes whatever is queued when it is free, up to `max`, and
//! writes it; callers arriving meanwhile form the next batch. Nothing waits on a
//! timer: a lone write goes at once, and batches grow only as fast as the writes
//! queue up behind the one in flight. The backend's `flush` owns per-item errors: one
//! bad item must never fail its neighbours (a multi-row statement that fails is
//! retried item by item).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::{StoreError, StoreResult};

/// What a flush returns: one result per item, in the items' order.
pub type Flushed<R> = Pin<Box<dyn Future<Output = Vec<StoreResult<R>>> + Send>>;

type Queued<I, R> = (I, oneshot::Sender<StoreResult<R>>);

pub struct Batcher<I, R> {
    queue: mpsc::UnboundedSender<Queued<I, R>>,
}

impl<I: Send + 'static, R: Send + 'static> Batcher<I, R> {
    /// Starts the batcher's task on the current tokio runtime. It ends when the
    /// batcher is dropped and its queue is empty.
    pub fn start(max: usize, flush: impl Fn(Vec<I>) -> Flushed<R> + Send + Sync + 'static) -> Self {
        let (queue, mut items) = mpsc::unbounded_channel::<Queued<I, R>>();
        let flush = Arc::new(flush);
        tokio::spawn(async move {
            let mut batch: Vec<Queued<I, R>> = Vec::new();
            while let Some(first) = items.recv().await {
                batch.push(first);
                while batch.len() < max.max(1) {
                    match items.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                let (inputs, replies): (Vec<I>, Vec<_>) = batch.drain(..).unzip();
                let n = inputs.len();
                let mut results = flush(inputs).await.into_iter();
                for reply in replies {
                    let result = results.next().unwrap_or_else(|| {
                        Err(StoreError::Other(
                            format!("a batched write returned fewer results than its {n} items")
                                .into(),
                        ))
                    });
                    // A caller that stopped waiting still had its write done.
                    let _ = reply.send(result);
                }
            }
        });
        Self { queue }
    }

    /// Queues `item` with the next batch and waits for its own result.
    pub async fn submit(&self, item: I) -> StoreResult<R> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((item, reply))
            .map_err(|_| StoreError::Other("the store is closing".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Other("the store closed before the write was done".into()))?
    }
}

/// The answers to a batch of inserts written as one statement that skipped ids
/// already present (`ON CONFLICT DO NOTHING RETURNING id`): an id the statement
/// returned is done, once (a second item with the same id in one batch lost to the
/// first); every other item is a `Conflict` with `message`.
pub fn inserted_once<'a>(
    ids: impl IntoIterator<Item = &'a str>,
    inserted: Vec<String>,
    message: &str,
) -> Vec<StoreResult<()>> {
    let mut fresh: std::collections::HashSet<String> = inserted.into_iter().collect();
    ids.into_iter()
        .map(|id| {
            if fresh.remove(id) {
                Ok(())
            } else {
                Err(StoreError::Conflict(message.to_owned()))
            }
        })
        .collect()
}

/// The answers to a batch of deletes written as one statement (`RETURNING id`):
/// whether each item's row was there to delete.
pub fn deleted<'a>(
    ids: impl IntoIterator<Item = &'a str>,
    done: Vec<String>,
) -> Vec<StoreResult<bool>> {
    let done: std::collections::HashSet<String> = done.into_iter().collect();
    ids.into_iter().map(|id| Ok(done.contains(id))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_items_share_flushes_and_get_their_own_results() {
        let flushes = Arc::new(AtomicUsize::new(0));
        let counted = flushes.clone();
        let batcher = Arc::new(Batcher::start(64, move |items: Vec<u32>| {
            counted.fetch_add(1, Ordering::Relaxed);
            Box::pin(async move {
                tokio::task::yield_now().await;
                items
                    .into_iter()
                    .map(|i| {
                        if i % 10 == 3 {
                            Err(StoreError::Conflict("odd one".into()))
                        } else {
                            Ok(i * 2)
                        }
                    })
                    .collect()
            })
        }));
        let mut waiting = Vec::new();
        for i in 0..200u32 {
            let b = batcher.clone();
            waiting.push(tokio::spawn(async move { (i, b.submit(i).await) }));
        }
        for w in waiting {
            let (i, result) = w.await.expect("joined");
            match result {
                Ok(v) => assert_eq!(v, i * 2),
                Err(StoreError::Conflict(_)) => assert_eq!(i % 10, 3),
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(
            flushes.load(Ordering::Relaxed) < 200,
            "items shared flushes"
        );
    }

    #[test]
    fn an_id_twice_in_a_batch_is_done_once() {
        let answers = inserted_once(["a", "b", "a", "c"], vec!["a".into(), "c".into()], "queued");
        assert!(answers[0].is_ok() && answers[3].is_ok());
        assert!(matches!(&answers[1], Err(StoreError::Conflict(m)) if m == "queued"));
        assert!(matches!(&answers[2], Err(StoreError::Conflict(_))));
        let gone = deleted(["x", "y"], vec!["y".into()]);
        assert!(matches!(gone[..], [Ok(false), Ok(true)]));
    }
}
