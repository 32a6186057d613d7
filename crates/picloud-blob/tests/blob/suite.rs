//! The behaviour every blob store must have, written once and run against each
//! (`fs_store.rs`, `s3_store.rs`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use futures_util::StreamExt;
use picloud_blob::sweep::{sweep_once, KnownKeys, SweepReport};
use picloud_blob::{put_bytes, BlobError, BlobKey, BlobStore, ByteStream, Expected};
use picloud_core::AppId;
use sha2::{Digest, Sha256};

/// A store under test and the one thing the suite cannot do through the trait.
#[async_trait]
pub trait Backend: Send + Sync {
    fn store(&self) -> &dyn BlobStore;
    /// Flips one stored byte of `key` behind the store's back (disk rot).
    async fn flip_byte(&self, key: &BlobKey);
}

pub fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Deterministic, not all one byte, so a misplaced chunk changes the digest.
pub fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// `total` bytes in `chunk`-sized pieces, counting how many were pulled.
pub fn counted_stream(total: usize, chunk: usize, pulled: Arc<AtomicU64>) -> ByteStream {
    let pieces = total.div_ceil(chunk);
    Box::pin(futures_util::stream::iter(0..pieces).map(move |i| {
        let len = chunk.min(total - i * chunk);
        pulled.fetch_add(len as u64, Ordering::SeqCst);
        Ok(Bytes::from(vec![(i % 256) as u8; len]))
    }))
}

/// `good` bytes, then the client goes away.
pub fn breaking_stream(good: usize, chunk: usize) -> ByteStream {
    let ok = counted_stream(good, chunk, Arc::new(AtomicU64::new(0)));
    let broken = futures_util::stream::once(async {
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        ))
    });
    Box::pin(ok.chain(broken))
}

pub async fn read_stream(store: &dyn BlobStore, key: &BlobKey, expect: &Expected) -> Vec<u8> {
    let mut stream = store.get(key, expect).await.expect("get");
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    out
}

async fn assert_absent(store: &dyn BlobStore, key: &BlobKey) {
    let expect = Expected {
        size: 0,
        sha256: sha(b""),
    };
    assert!(
        matches!(store.get(key, &expect).await, Err(BlobError::NotFound)),
        "something readable was left under {key}"
    );
    let listed = store
        .list_older(Utc::now() + chrono::Duration::hours(1), None, 10_000)
        .await
        .expect("list");
    assert!(!listed.contains(key), "{key} listed");
}

pub async fn roundtrip(b: &dyn Backend, sizes: &[usize]) {
    let store = b.store();
    let app = AppId::new();
    for &len in sizes {
        let bytes = data(len);
        let key = BlobKey::generate(&app);
        // In uneven chunks, as a network body arrives.
        let chunks: Vec<std::io::Result<Bytes>> = bytes
            .chunks(70_001)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let written = store
            .put(
                &key,
                Box::pin(futures_util::stream::iter(chunks)),
                len as u64,
            )
            .await
            .expect("put at exactly the limit");
        assert_eq!(written.size, len as u64);
        assert_eq!(written.sha256, sha(&bytes));
        let expect = Expected::from(written);
        assert!(
            read_stream(store, &key, &expect).await == bytes,
            "{len} bytes"
        );
        let all = store
            .read_all(&key, &expect, len as u64)
            .await
            .expect("read_all");
        assert!(all == bytes);
        if len > 0 {
            let e = store.read_all(&key, &expect, len as u64 - 1).await;
            assert!(matches!(e, Err(BlobError::TooLarge { .. })), "{e:?}");
        }
        assert!(store.delete(&key).await.expect("delete"));
        assert!(!store.delete(&key).await.expect("delete again"));
        assert_absent(store, &key).await;
    }
}

/// A 10 MiB body against `limit` (below 10 MiB).
pub async fn max_size_is_enforced_while_streaming(b: &dyn Backend, limit: u64) {
    let store = b.store();
    let key = BlobKey::generate(&AppId::new());
    let pulled = Arc::new(AtomicU64::new(0));
    let chunk = 64 << 10;
    let body = counted_stream(10 << 20, chunk, pulled.clone());
    let e = store.put(&key, body, limit).await;
    assert!(
        matches!(e, Err(BlobError::TooLarge { limit: l }) if l == limit),
        "{e:?}"
    );
    let read = pulled.load(Ordering::SeqCst);
    assert!(
        read <= limit + chunk as u64,
        "read {read} bytes of a 10 MiB body with a {limit}-byte limit"
    );
    assert_absent(store, &key).await;
    // One byte over is too much.
    let e = put_bytes(store, &key, Bytes::from(vec![1u8; 11]), 10).await;
    assert!(matches!(e, Err(BlobError::TooLarge { .. })), "{e:?}");
    assert_absent(store, &key).await;
}

pub async fn a_failing_body_leaves_nothing(b: &dyn Backend, good: usize) {
    let store = b.store();
    let key = BlobKey::generate(&AppId::new());
    let e = store
        .put(&key, breaking_stream(good, 64 << 10), u64::MAX)
        .await;
    assert!(matches!(e, Err(BlobError::Body(_))), "{e:?}");
    assert_absent(store, &key).await;
}

pub async fn corruption_is_detected_and_kept(b: &dyn Backend) {
    let store = b.store();
    let bytes = data(300_000);
    let key = BlobKey::generate(&AppId::new());
    let expect = Expected::from(
        put_bytes(store, &key, Bytes::from(bytes.clone()), u64::MAX)
            .await
            .expect("put"),
    );
    b.flip_byte(&key).await;

    let mut stream = store.get(&key, &expect).await.expect("get");
    let mut last = None;
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            last = Some(e);
            break;
        }
    }
    let e = last.expect("the stream must end with an error");
    assert!(BlobError::is_corrupted(&e), "{e:?}");
    assert!(
        matches!(BlobError::from_stream(e), BlobError::Corrupted { key: k } if k == key.as_str())
    );
    let e = store.read_all(&key, &expect, u64::MAX).await;
    assert!(matches!(e, Err(BlobError::Corrupted { .. })), "{e:?}");
    assert!(!e.expect_err("corrupted").to_string().contains('/'));

    // A recorded size that disagrees either way is corruption too.
    for size in [expect.size - 1, expect.size + 1] {
        let wrong = Expected {
            size,
            sha256: sha(&bytes),
        };
        let e = store.read_all(&key, &wrong, u64::MAX).await;
        assert!(matches!(e, Err(BlobError::Corrupted { .. })), "{e:?}");
    }
    // Never removed by a read.
    assert!(
        store.get(&key, &expect).await.is_ok(),
        "corrupted blob removed"
    );
}

struct Rows(HashSet<String>);

#[async_trait]
impl KnownKeys for Rows {
    type Error = std::convert::Infallible;
    async fn known(&self, keys: &[BlobKey]) -> Result<HashSet<String>, Self::Error> {
        Ok(keys
            .iter()
            .filter(|k| self.0.contains(k.as_str()))
            .map(|k| k.as_str().to_owned())
            .collect())
    }
}

pub async fn listing_and_the_orphan_sweep(b: &dyn Backend) {
    let store = b.store();
    let apps = [AppId::new(), AppId::new()];
    let mut keys = Vec::new();
    for i in 0..5 {
        let key = BlobKey::generate(&apps[i % 2]);
        put_bytes(store, &key, Bytes::from(data(i * 10)), u64::MAX)
            .await
            .expect("put");
        keys.push(key);
    }
    keys.sort();
    let later = Utc::now() + chrono::Duration::minutes(5);
    let all = store.list_older(later, None, 100).await.expect("list");
    assert_eq!(all, keys, "every blob, in key order");
    // Pages.
    let first = store.list_older(later, None, 2).await.expect("page 1");
    assert_eq!(first, keys[..2]);
    let second = store
        .list_older(later, first.last(), 2)
        .await
        .expect("page 2");
    assert_eq!(second, keys[2..4]);
    let third = store
        .list_older(later, second.last(), 2)
        .await
        .expect("page 3");
    assert_eq!(third, keys[4..]);
    // None is older than an hour ago.
    let earlier = Utc::now() - chrono::Duration::hours(1);
    assert!(store
        .list_older(earlier, None, 100)
        .await
        .expect("list")
        .is_empty());

    let rows = Rows(keys[..2].iter().map(|k| k.as_str().to_owned()).collect());
    let ttl = Duration::from_secs(3600);
    // Young blobs are left alone whatever the rows say: their rows may be on the way.
    let young = sweep_once(store, &rows, Utc::now(), ttl)
        .await
        .expect("sweep");
    assert_eq!(young, SweepReport::default());
    assert_eq!(
        store.list_older(later, None, 100).await.expect("list"),
        keys
    );
    // Past the TTL, only the blobs with rows stay.
    let report = sweep_once(store, &rows, Utc::now() + chrono::Duration::hours(2), ttl)
        .await
        .expect("sweep");
    assert_eq!(report.orphans_removed, 3);
    assert_eq!(
        store.list_older(later, None, 100).await.expect("list"),
        keys[..2]
    );
}
