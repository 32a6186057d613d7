//! The suite against the filesystem store, plus what only a filesystem has: modes,
//! temp files, a full disk.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use picloud_blob::{put_bytes, BlobError, BlobKey, BlobStore, FsStore};
use picloud_core::AppId;

use crate::suite::{self, Backend};
use crate::tmpfs::Tmpfs;

struct Fs {
    store: FsStore,
    _dir: tempfile::TempDir,
}

impl Fs {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // A root that does not exist yet: the store creates it.
        let store = FsStore::open(&dir.path().join("files")).expect("store");
        Self { store, _dir: dir }
    }
}

#[async_trait]
impl Backend for Fs {
    fn store(&self) -> &dyn BlobStore {
        &self.store
    }

    async fn flip_byte(&self, key: &BlobKey) {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.store.path_of(key))
            .expect("open blob");
        let mut byte = [0u8; 1];
        f.seek(SeekFrom::Start(1234)).expect("seek");
        f.read_exact(&mut byte).expect("read");
        f.seek(SeekFrom::Start(1234)).expect("seek");
        f.write_all(&[byte[0] ^ 0x01]).expect("write");
    }
}

fn temp_files(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.to_string_lossy().contains(".tmp.") {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

#[tokio::test]
async fn roundtrip() {
    let fs = Fs::new();
    suite::roundtrip(&fs, &[0, 1, 100_000, 3 << 20]).await;
    assert!(temp_files(fs.store.root()).is_empty());
}

#[tokio::test]
async fn max_size_is_enforced_while_streaming() {
    let fs = Fs::new();
    suite::max_size_is_enforced_while_streaming(&fs, 1 << 20).await;
    assert!(temp_files(fs.store.root()).is_empty());
}

#[tokio::test]
async fn a_failing_body_leaves_nothing() {
    let fs = Fs::new();
    suite::a_failing_body_leaves_nothing(&fs, 300_000).await;
    assert!(temp_files(fs.store.root()).is_empty(), "temp file left");
}

#[tokio::test]
async fn corruption_is_detected_and_kept() {
    suite::corruption_is_detected_and_kept(&Fs::new()).await;
}

#[tokio::test]
async fn listing_and_the_orphan_sweep() {
    suite::listing_and_the_orphan_sweep(&Fs::new()).await;
}

#[tokio::test]
async fn directories_are_private() {
    let fs = Fs::new();
    let key = BlobKey::generate(&AppId::new());
    put_bytes(&fs.store, &key, Bytes::from_static(b"x"), 10)
        .await
        .expect("put");
    let file = fs.store.path_of(&key);
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600, "file");
    let shard = file.parent().expect("shard");
    let app = shard.parent().expect("app");
    for dir in [shard, app, fs.store.root()] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
    }
}

#[tokio::test]
async fn stale_temp_files_are_swept_and_never_listed() {
    let fs = Fs::new();
    let key = BlobKey::generate(&AppId::new());
    put_bytes(&fs.store, &key, Bytes::from_static(b"kept"), 10)
        .await
        .expect("put");
    let dir = fs.store.path_of(&key).parent().expect("shard").to_owned();
    let name = key.as_str().rsplit('/').next().expect("name").to_owned();
    // A crash mid-upload leaves one of these.
    let stale = dir.join(format!("{name}.tmp.0123456789abcdef"));
    let fresh = dir.join(format!("{name}.tmp.fedcba9876543210"));
    for path in [&stale, &fresh] {
        std::fs::write(path, b"half").expect("write temp");
    }
    let old = SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .expect("open")
        .set_modified(old)
        .expect("age it");

    let later = Utc::now() + chrono::Duration::minutes(5);
    let listed = fs.store.list_older(later, None, 100).await.expect("list");
    assert_eq!(listed, vec![key.clone()], "temp files are not blobs");
    let hour_ago = Utc::now() - chrono::Duration::hours(1);
    assert_eq!(fs.store.sweep_temp(hour_ago).await.expect("sweep"), 1);
    assert!(!stale.exists() && fresh.exists());
    assert!(fs.store.path_of(&key).exists());
}

#[tokio::test]
async fn a_full_disk_leaves_nothing_and_recovers() {
    let Some(disk) = Tmpfs::mount(2 << 20) else {
        return;
    };
    let store = FsStore::open(&disk.path().join("files")).expect("store");
    let key = BlobKey::generate(&AppId::new());
    let body = suite::counted_stream(8 << 20, 64 << 10, Default::default());
    let e = store.put(&key, body, u64::MAX).await;
    match &e {
        Err(BlobError::Io(io)) => {
            assert_eq!(io.kind(), std::io::ErrorKind::StorageFull, "{io:?}");
        }
        other => panic!("expected a storage failure, got {other:?}"),
    }
    // Nothing about the disk reaches the message.
    let msg = e.expect_err("full").to_string();
    assert!(!msg.contains('/'), "{msg}");
    assert!(temp_files(store.root()).is_empty(), "temp file left");
    assert!(!store.path_of(&key).exists());
    // The space came back with the temp file: a smaller blob fits.
    let small = BlobKey::generate(&AppId::new());
    put_bytes(&store, &small, Bytes::from(vec![3u8; 512 << 10]), u64::MAX)
        .await
        .expect("fits after the failed write was cleaned up");
}

/// A slow upload's temp file is not a stale one: the sweep leaves the temp files of
/// uploads still streaming, however old their last write (found by the hostile probe:
/// a slow upload lost its temp file and answered 500).
#[tokio::test]
async fn the_sweep_spares_uploads_in_flight() {
    let fs = Fs::new();
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(1);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let key = BlobKey::generate(&AppId::new());
    let store = std::sync::Arc::new(fs);
    let writer = {
        let store = store.clone();
        let key = key.clone();
        tokio::spawn(async move { store.store.put(&key, Box::pin(body), 1 << 20).await })
    };
    tx.send(Ok(Bytes::from_static(b"first part")))
        .await
        .expect("send");
    // Every temp file looks old to this sweep; the one in flight must survive it.
    let far = Utc::now() + chrono::Duration::days(1);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let temp_exists = std::fs::read_dir(store.store.path_of(&key).parent().expect("dir"))
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().contains(".tmp."))
            })
            .unwrap_or(false);
        if temp_exists {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.store.sweep_temp(far).await.expect("sweep"), 0);
    tx.send(Ok(Bytes::from_static(b", second part")))
        .await
        .expect("send");
    drop(tx);
    let written = writer.await.expect("join").expect("put");
    assert_eq!(written.size, 23);
    let bytes = store
        .store
        .read_all(&key, &written.clone().into(), 1 << 20)
        .await
        .expect("read");
    assert_eq!(bytes.as_ref(), b"first part, second part");
}
