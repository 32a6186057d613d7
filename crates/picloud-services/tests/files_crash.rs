//! Crash consistency of the files service, over a real SQLite store and a real
//! filesystem blob store wrapped in a fault injector: whatever step fails, no row
//! ever names missing bytes, a failed write leaves nothing readable, and bytes left
//! behind by a "crash" are removed by the orphan sweep.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use picloud_blob::fault::{Faulty, PutFault};
use picloud_blob::{stream_of, BlobStore, FsStore};
use picloud_core::config::Config;
use picloud_services::{CallContext, FileChanges, FilesService, ServiceError};
use picloud_store::{NewApp, PageRequest, Store};
use picloud_store_sqlite::SqliteStore;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    blobs: Arc<Faulty<FsStore>>,
    files: FilesService,
    ctx: CallContext,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("dir");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("t.db"))
            .await
            .expect("store"),
    );
    let app = store
        .create_app(NewApp {
            slug: "shop".into(),
            name: "Shop".into(),
        })
        .await
        .expect("app")
        .id;
    let blobs = Arc::new(Faulty::new(
        FsStore::open(&dir.path().join("files")).expect("blobs"),
    ));
    let config = Config::defaults();
    let files_config = picloud_core::config::FilesConfig {
        max_file_size_bytes: 1 << 20,
        ..config.files.clone()
    };
    let files = FilesService::new(store.clone(), blobs.clone(), &config.events, &files_config);
    Fixture {
        _dir: dir,
        store,
        blobs,
        files,
        ctx: CallContext {
            app_id: app,
            caller_scopes: None,
            depth: 0,
            script_id: None,
        },
    }
}

impl Fixture {
    async fn rows(&self) -> usize {
        self.store
            .files_list(&self.ctx.app_id, None, &PageRequest::default())
            .await
            .expect("list")
            .items
            .len()
    }

    /// Every blob older than the far future: all of them.
    async fn blobs_stored(&self) -> usize {
        let future = picloud_core::now() + chrono::Duration::days(1);
        self.blobs
            .list_older(future, None, 1000)
            .await
            .expect("list blobs")
            .len()
    }

    async fn create(&self, data: &'static [u8]) -> Result<picloud_store::FileMeta, ServiceError> {
        self.files
            .create(
                &self.ctx,
                "c",
                "f.bin",
                "application/octet-stream",
                stream_of(data.into()),
            )
            .await
            .map(|w| w.file)
    }
}

#[tokio::test]
async fn a_failed_write_leaves_no_row_and_nothing_readable() {
    let f = fixture().await;
    // The storage breaks mid-stream: no row, no bytes.
    f.blobs.fail_put(1, PutFault::MidStream { after_bytes: 3 });
    assert!(f.create(b"0123456789").await.is_err());
    assert_eq!((f.rows().await, f.blobs_stored().await), (0, 0));

    // The bytes land, then the call "crashes": no row; the bytes are an orphan.
    f.blobs.fail_put(1, PutFault::AfterDurable);
    assert!(f.create(b"0123456789").await.is_err());
    assert_eq!((f.rows().await, f.blobs_stored().await), (0, 1));
    let swept = picloud_runtime_like_sweep(&f).await;
    assert_eq!(swept, 1);
    assert_eq!(f.blobs_stored().await, 0);

    // The row write fails (the app is gone): the bytes written for it are removed.
    let good = f.create(b"kept").await.expect("create");
    assert_eq!((f.rows().await, f.blobs_stored().await), (1, 1));
    let ghost = CallContext {
        app_id: picloud_core::AppId::new(),
        ..f.ctx.clone()
    };
    let err = f
        .files
        .create(&ghost, "c", "g", "text/plain", stream_of("x".into()))
        .await;
    assert!(err.is_err());
    assert_eq!(f.blobs_stored().await, 1, "the ghost app's bytes stayed");

    // A failed replace keeps the old bytes and the row that names them.
    f.blobs.fail_put(1, PutFault::MidStream { after_bytes: 1 });
    let replaced = f
        .files
        .update(
            &f.ctx,
            "c",
            good.id.as_str(),
            FileChanges {
                body: Some(stream_of("new bytes".into())),
                ..FileChanges::default()
            },
        )
        .await;
    assert!(replaced.is_err());
    let (_, bytes) = f
        .files
        .read(&f.ctx, "c", good.id.as_str(), 1 << 20)
        .await
        .expect("read")
        .expect("still there");
    assert_eq!(bytes.as_ref(), b"kept");

    // A successful replace removes the old bytes once the row names the new ones.
    f.files
        .update(
            &f.ctx,
            "c",
            good.id.as_str(),
            FileChanges {
                body: Some(stream_of("new bytes".into())),
                ..FileChanges::default()
            },
        )
        .await
        .expect("replace");
    assert_eq!(f.blobs_stored().await, 1);

    // A delete whose byte removal fails still deletes the row; the bytes are an
    // orphan for the sweep, never a row without bytes.
    f.blobs.fail_deletes(true);
    let (existed, _) = f
        .files
        .delete(&f.ctx, "c", good.id.as_str())
        .await
        .expect("delete");
    assert!(existed);
    f.blobs.fail_deletes(false);
    assert_eq!((f.rows().await, f.blobs_stored().await), (0, 1));
    assert_eq!(picloud_runtime_like_sweep(&f).await, 1);
    assert_eq!(f.blobs_stored().await, 0);
}

#[tokio::test]
async fn the_size_cap_holds_while_streaming() {
    let f = fixture().await;
    // An endless body: the cap (1 MiB here) stops it, nothing is kept.
    let endless =
        futures_util::stream::repeat_with(|| Ok(bytes::Bytes::from(vec![7u8; 64 * 1024])));
    let err = f
        .files
        .create(&f.ctx, "c", "big", "text/plain", Box::pin(endless))
        .await;
    assert!(matches!(err, Err(ServiceError::TooLarge(_))), "{err:?}");
    assert_eq!((f.rows().await, f.blobs_stored().await), (0, 0));
}

/// The sweep the runtime runs, with a TTL of zero: everything unreferenced is old.
async fn picloud_runtime_like_sweep(f: &Fixture) -> u64 {
    struct Rows<'a>(&'a dyn Store);
    #[async_trait::async_trait]
    impl picloud_blob::sweep::KnownKeys for Rows<'_> {
        type Error = picloud_store::StoreError;
        async fn known(
            &self,
            keys: &[picloud_blob::BlobKey],
        ) -> Result<std::collections::HashSet<String>, Self::Error> {
            let keys: Vec<String> = keys.iter().map(|k| k.as_str().to_owned()).collect();
            self.0.files_known_blobs(&keys).await
        }
    }
    // Blob times have whole-second precision on some filesystems: sweep a moment ahead.
    let later = picloud_core::now() + chrono::Duration::seconds(5);
    let report = picloud_blob::sweep::sweep_once(
        f.blobs.as_ref(),
        &Rows(f.store.as_ref()),
        later,
        Duration::ZERO,
    )
    .await
    .expect("sweep");
    report.orphans_removed
}

/// A body that stops sending is abandoned after the idle timeout: its slot, buffer
/// and temp file are not held for ever (hostile probe: 2,000 stalled uploads held
/// 858 MB).
#[tokio::test]
async fn a_stalled_upload_is_abandoned() {
    let dir = tempfile::tempdir().expect("dir");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("t.db"))
            .await
            .expect("store"),
    );
    let app = store
        .create_app(NewApp {
            slug: "shop".into(),
            name: "Shop".into(),
        })
        .await
        .expect("app")
        .id;
    let blobs = Arc::new(FsStore::open(&dir.path().join("files")).expect("blobs"));
    let config = Config::defaults();
    let files_config = picloud_core::config::FilesConfig {
        upload_idle_timeout: Duration::from_millis(300),
        max_concurrent_uploads: 1,
        ..config.files.clone()
    };
    let files = FilesService::new(store.clone(), blobs.clone(), &config.events, &files_config);
    let ctx = CallContext {
        app_id: app,
        caller_scopes: None,
        depth: 0,
        script_id: None,
    };
    // One chunk, then silence.
    let stalled = futures_util::stream::once(async { Ok(bytes::Bytes::from_static(b"part")) })
        .chain(futures_util::stream::pending());
    let started = std::time::Instant::now();
    let err = files
        .create(&ctx, "c", "s", "text/plain", Box::pin(stalled))
        .await;
    assert!(
        matches!(&err, Err(ServiceError::Invalid(m)) if m.contains("stalled")),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // Its slot is free again: the next upload goes through.
    files
        .create(&ctx, "c", "ok", "text/plain", stream_of("fine".into()))
        .await
        .expect("the next upload");
}
