//! A store that fails on command, for crash-consistency tests (feature `testing`):
//! "no file row without its bytes, no readable half file" is proved by making each
//! step fail in turn over a real store.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use parking_lot::Mutex;

use crate::{BlobError, BlobKey, BlobStore, ByteStream, Expected, Written};

/// How a planned `put` fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutFault {
    /// The storage fails once `after_bytes` bytes have gone in (a full disk, a lost
    /// connection): the inner store sees its body break and must leave nothing.
    MidStream { after_bytes: u64 },
    /// The bytes are stored and durable, then the call reports a storage failure (a
    /// crash right after the write): the bytes are an orphan for the sweeper.
    AfterDurable,
}

#[derive(Debug, Default)]
struct Plan {
    /// (which put, counted from 1 over the store's life; how).
    put: Option<(u64, PutFault)>,
    fail_gets: bool,
    fail_deletes: bool,
    fail_lists: bool,
}

/// Wraps `B`, failing the calls it is told to.
pub struct Faulty<B> {
    inner: B,
    plan: Mutex<Plan>,
    puts: AtomicU64,
}

fn injected(what: &str) -> BlobError {
    BlobError::Io(std::io::Error::other(format!("injected fault: {what}")))
}

impl<B: BlobStore> Faulty<B> {
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            plan: Mutex::new(Plan::default()),
            puts: AtomicU64::new(0),
        }
    }

    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Fails the `nth` put from now on (1: the next one) as `fault`.
    pub fn fail_put(&self, nth: u64, fault: PutFault) {
        let base = self.puts.load(Ordering::SeqCst);
        self.plan.lock().put = Some((base + nth.max(1), fault));
    }

    pub fn fail_gets(&self, on: bool) {
        self.plan.lock().fail_gets = on;
    }

    pub fn fail_deletes(&self, on: bool) {
        self.plan.lock().fail_deletes = on;
    }

    pub fn fail_lists(&self, on: bool) {
        self.plan.lock().fail_lists = on;
    }

    /// Puts attempted so far.
    pub fn puts(&self) -> u64 {
        self.puts.load(Ordering::SeqCst)
    }
}

/// `body` cut after `after_bytes` bytes, then broken (an error, whatever followed).
fn cut(body: ByteStream, after_bytes: u64) -> ByteStream {
    let head = body.scan(after_bytes, |left, chunk| {
        let item = match chunk {
            _ if *left == 0 => None,
            Ok(chunk) => {
                let n = (chunk.len() as u64).min(*left);
                *left -= n;
                Some(Ok(chunk.slice(..usize::try_from(n).unwrap_or(0))))
            }
            Err(e) => Some(Err(e)),
        };
        futures_util::future::ready(item)
    });
    let broken = futures_util::stream::once(async {
        Err(std::io::Error::other(
            "injected fault: storage failed mid-write",
        ))
    });
    Box::pin(head.chain(broken))
}

#[async_trait]
impl<B: BlobStore> BlobStore for Faulty<B> {
    async fn put(
        &self,
        key: &BlobKey,
        body: ByteStream,
        max_size: u64,
    ) -> Result<Written, BlobError> {
        let n = self.puts.fetch_add(1, Ordering::SeqCst) + 1;
        let fault = {
            let mut plan = self.plan.lock();
            match plan.put {
                Some((at, fault)) if at == n => {
                    plan.put = None;
                    Some(fault)
                }
                _ => None,
            }
        };
        match fault {
            None => self.inner.put(key, body, max_size).await,
            Some(PutFault::AfterDurable) => {
                self.inner.put(key, body, max_size).await?;
                Err(injected("failed after the bytes were stored"))
            }
            Some(PutFault::MidStream { after_bytes }) => {
                // The inner store sees a broken body and cleans up as it would for a
                // failing disk; the caller sees a storage failure.
                match self.inner.put(key, cut(body, after_bytes), max_size).await {
                    Err(BlobError::Body(_)) | Ok(_) => Err(injected("storage failed mid-write")),
                    Err(other) => Err(other),
                }
            }
        }
    }

    async fn get(&self, key: &BlobKey, expect: &Expected) -> Result<ByteStream, BlobError> {
        if self.plan.lock().fail_gets {
            return Err(injected("get"));
        }
        self.inner.get(key, expect).await
    }

    async fn read_all(
        &self,
        key: &BlobKey,
        expect: &Expected,
        max: u64,
    ) -> Result<Bytes, BlobError> {
        if self.plan.lock().fail_gets {
            return Err(injected("get"));
        }
        self.inner.read_all(key, expect, max).await
    }

    async fn delete(&self, key: &BlobKey) -> Result<bool, BlobError> {
        if self.plan.lock().fail_deletes {
            return Err(injected("delete"));
        }
        self.inner.delete(key).await
    }

    async fn list_older(
        &self,
        cutoff: DateTime<Utc>,
        after: Option<&BlobKey>,
        limit: usize,
    ) -> Result<Vec<BlobKey>, BlobError> {
        if self.plan.lock().fail_lists {
            return Err(injected("list"));
        }
        self.inner.list_older(cutoff, after, limit).await
    }

    async fn sweep_temp(&self, cutoff: DateTime<Utc>) -> Result<u64, BlobError> {
        self.inner.sweep_temp(cutoff).await
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{put_bytes, FsStore};

    #[tokio::test]
    async fn planned_faults_fire_once_and_leave_nothing_readable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Faulty::new(FsStore::open(dir.path()).expect("store"));
        let app = picloud_core::AppId::new();
        let body = Bytes::from(vec![7u8; 100_000]);

        store.fail_put(2, PutFault::MidStream { after_bytes: 10 });
        let first = BlobKey::generate(&app);
        put_bytes(&store, &first, body.clone(), u64::MAX)
            .await
            .expect("first put is not the planned one");
        let key = BlobKey::generate(&app);
        let err = put_bytes(&store, &key, body.clone(), u64::MAX)
            .await
            .expect_err("planned failure");
        assert!(matches!(err, BlobError::Io(_)), "{err:?}");
        assert!(!store.inner().path_of(&key).exists());
        let shard = store.inner().path_of(&key);
        let leftovers = std::fs::read_dir(shard.parent().expect("shard"))
            .expect("shard dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .count();
        assert_eq!(leftovers, 0, "a temp file was left");
        // Once only.
        put_bytes(&store, &key, body.clone(), u64::MAX)
            .await
            .expect("fault fired once");

        store.fail_put(1, PutFault::AfterDurable);
        let orphan = BlobKey::generate(&app);
        assert!(put_bytes(&store, &orphan, body.clone(), u64::MAX)
            .await
            .is_err());
        assert!(
            store.inner().path_of(&orphan).exists(),
            "bytes stored anyway"
        );

        store.fail_deletes(true);
        assert!(store.delete(&orphan).await.is_err());
        store.fail_deletes(false);
        assert!(store.delete(&orphan).await.expect("delete"));
        assert_eq!(store.puts(), 4);
    }
}
