//! Blobs as files under one root: `{root}/{app}/{shard}/{random}`.
//!
//! A write goes to `{random}.tmp.{nonce}` beside its final name, is fsynced, renamed
//! into place and the directory fsynced, so after a crash a key holds either nothing or
//! every byte. Directories are 0700 and files 0600: the bytes are the apps', not the
//! machine's other users'.

use std::fs::DirBuilder;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::verify::{check_whole, verified, Meter};
use crate::{BlobError, BlobKey, BlobStore, ByteStream, Expected, Written};

/// What marks a partial upload's name; never part of a key.
const TEMP_MARK: &str = ".tmp.";
/// Read size of a download: large enough that a 4 MiB file is a few dozen reads.
const READ_CHUNK: usize = 128 << 10;
/// Bytes gathered before a write to disk.
const WRITE_BUFFER: usize = 256 << 10;

pub struct FsStore {
    root: PathBuf,
    /// Temp files of the uploads streaming in this process: the sweeper leaves them
    /// alone however old their last write (a slow upload flushes rarely).
    in_flight: InFlight,
}

type InFlight = std::sync::Arc<parking_lot::Mutex<std::collections::HashSet<PathBuf>>>;

/// A storage failure, logged here with the path (the error's `Display` has none).
fn io_error(what: &str, path: &Path, e: std::io::Error) -> BlobError {
    tracing::error!(path = %path.display(), error = %e, "blob store: {what} failed");
    BlobError::Io(e)
}

fn join_error(e: tokio::task::JoinError) -> BlobError {
    BlobError::Io(std::io::Error::other(e))
}

fn private_dir() -> DirBuilder {
    let mut b = DirBuilder::new();
    b.mode(0o700);
    b
}

/// Makes a directory's entries (a new file name, a rename) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Removes a partial upload on every way out of `put` (errors, a dropped future) but
/// the successful rename, and takes it off the in-flight list either way.
struct TempGuard(Option<PathBuf>, PathBuf, InFlight);

impl TempGuard {
    fn new(path: PathBuf, in_flight: &InFlight) -> Self {
        in_flight.lock().insert(path.clone());
        Self(Some(path.clone()), path, in_flight.clone())
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        self.2.lock().remove(&self.1);
        if let Some(path) = self.0.take() {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e,
                        "blob store: could not remove a partial upload; the sweeper will");
                }
            }
        }
    }
}

impl FsStore {
    /// The store under `root`, created (0700) when missing.
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        let mut b = private_dir();
        b.recursive(true);
        b.create(root).map_err(|e| {
            tracing::error!(path = %root.display(), error = %e, "blob store: cannot create the root");
            BlobError::Config(format!(
                "PICLOUD_FILES_ROOT: cannot create the blob directory ({})",
                e.kind()
            ))
        })?;
        Ok(Self {
            root: root.to_owned(),
            in_flight: InFlight::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `key`'s bytes are. Keys only ever have the generated shape, so the path
    /// stays under the root.
    pub fn path_of(&self, key: &BlobKey) -> PathBuf {
        let mut path = self.root.clone();
        path.extend(key.segments());
        path
    }

    /// Creates the key's app and shard directories when missing, making each new
    /// directory's name durable in its parent.
    fn ensure_dirs(root: &Path, dir: &Path) -> std::io::Result<()> {
        let Ok(rel) = dir.strip_prefix(root) else {
            return Err(std::io::Error::other("blob directory outside the root"));
        };
        let mut parent = root.to_owned();
        for part in rel.components() {
            let child = parent.join(part);
            match private_dir().create(&child) {
                Ok(()) => sync_dir(&parent)?,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            parent = child;
        }
        Ok(())
    }

    async fn write(
        &self,
        key: &BlobKey,
        mut body: ByteStream,
        max_size: u64,
    ) -> Result<Written, BlobError> {
        let path = self.path_of(key);
        let Some(dir) = path.parent().map(Path::to_owned) else {
            return Err(BlobError::InvalidKey);
        };
        let (root, d) = (self.root.clone(), dir.clone());
        tokio::task::spawn_blocking(move || Self::ensure_dirs(&root, &d))
            .await
            .map_err(join_error)?
            .map_err(|e| io_error("creating a directory", &dir, e))?;

        let mut nonce = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut nonce);
        let name = key.segments().last().unwrap_or_default();
        let tmp = dir.join(format!("{name}{TEMP_MARK}{}", hex::encode(nonce)));
        let mut guard = TempGuard::new(tmp.clone(), &self.in_flight);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .await
            .map_err(|e| io_error("creating a temp file", &tmp, e))?;
        // Network bodies arrive in small chunks, and each write to a tokio file is a
        // hop to the blocking pool: gather them into fewer, larger writes.
        let mut file = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);

        let mut meter = Meter::new(max_size);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(BlobError::Body)?;
            meter.take(&chunk)?;
            file.write_all(&chunk)
                .await
                .map_err(|e| io_error("writing", &tmp, e))?;
        }
        file.flush()
            .await
            .map_err(|e| io_error("writing", &tmp, e))?;
        // `sync_all` first finishes the writes tokio still has in flight.
        let file = file.into_inner();
        file.sync_all()
            .await
            .map_err(|e| io_error("syncing", &tmp, e))?;
        drop(file);
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| io_error("renaming into place", &path, e))?;
        guard.0 = None;
        let d = dir.clone();
        let synced = tokio::task::spawn_blocking(move || sync_dir(&d))
            .await
            .map_err(join_error)?;
        if let Err(e) = synced {
            // Not known durable: take it back rather than answer Err with the bytes
            // readable under the key.
            let _ = tokio::fs::remove_file(&path).await;
            return Err(io_error("syncing the directory", &dir, e));
        }
        Ok(meter.finish())
    }

    /// The app and shard directories in key order, for the sweeps.
    fn sorted_names(dir: &Path) -> std::io::Result<Vec<String>> {
        let mut names = Vec::new();
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries {
                    // A name that is not UTF-8 was never ours.
                    if let Ok(name) = entry?.file_name().into_string() {
                        names.push(name);
                    }
                }
            }
            // Removed meanwhile (or no blob written yet): nothing in it.
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        names.sort_unstable();
        Ok(names)
    }

    fn list_older_blocking(
        root: &Path,
        cutoff: DateTime<Utc>,
        after: Option<&BlobKey>,
        limit: usize,
    ) -> std::io::Result<Vec<BlobKey>> {
        let mut out = Vec::new();
        // Skip whole directories that sort before `after`. '/' sorts before every
        // character a key segment may hold, so walking app, then shard, then name in
        // order is key order.
        let (after_app, after_shard) = match after {
            Some(k) => {
                let mut s = k.segments();
                (s.next(), s.next())
            }
            None => (None, None),
        };
        for app in Self::sorted_names(root)? {
            if after_app.is_some_and(|a| app.as_str() < a) {
                continue;
            }
            let app_dir = root.join(&app);
            for shard in Self::sorted_names(&app_dir)? {
                if after_app == Some(app.as_str())
                    && after_shard.is_some_and(|s| shard.as_str() < s)
                {
                    continue;
                }
                let shard_dir = app_dir.join(&shard);
                for name in Self::sorted_names(&shard_dir)? {
                    // Partial uploads and strangers do not parse as keys.
                    let Ok(key) = BlobKey::parse(&format!("{app}/{shard}/{name}")) else {
                        continue;
                    };
                    if after.is_some_and(|a| &key <= a) {
                        continue;
                    }
                    let modified = match std::fs::metadata(shard_dir.join(&name)) {
                        Ok(m) => m.modified()?,
                        Err(e) if e.kind() == ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    };
                    if DateTime::<Utc>::from(modified) < cutoff {
                        out.push(key);
                        if out.len() >= limit {
                            return Ok(out);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    fn sweep_temp_blocking(
        root: &Path,
        cutoff: DateTime<Utc>,
        in_flight: &std::collections::HashSet<PathBuf>,
    ) -> std::io::Result<u64> {
        let mut removed = 0;
        for app in Self::sorted_names(root)? {
            let app_dir = root.join(&app);
            if !app_dir.is_dir() {
                continue;
            }
            for shard in Self::sorted_names(&app_dir)? {
                let shard_dir = app_dir.join(&shard);
                if !shard_dir.is_dir() {
                    continue;
                }
                for name in Self::sorted_names(&shard_dir)? {
                    if !name.contains(TEMP_MARK) {
                        continue;
                    }
                    let path = shard_dir.join(&name);
                    if in_flight.contains(&path) {
                        continue;
                    }
                    let old = match std::fs::metadata(&path) {
                        Ok(m) => DateTime::<Utc>::from(m.modified()?) < cutoff,
                        Err(e) if e.kind() == ErrorKind::NotFound => false,
                        Err(e) => return Err(e),
                    };
                    if !old {
                        continue;
                    }
                    match std::fs::remove_file(&path) {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(removed)
    }
}

#[async_trait]
impl BlobStore for FsStore {
    async fn put(
        &self,
        key: &BlobKey,
        body: ByteStream,
        max_size: u64,
    ) -> Result<Written, BlobError> {
        self.write(key, body, max_size).await
    }

    async fn get(&self, key: &BlobKey, expect: &Expected) -> Result<ByteStream, BlobError> {
        let path = self.path_of(key);
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(BlobError::NotFound),
            Err(e) => return Err(io_error("opening", &path, e)),
        };
        let raw = futures_util::stream::try_unfold(Some(file), |file| async move {
            let Some(mut file) = file else {
                return Ok(None);
            };
            let mut buf = BytesMut::with_capacity(READ_CHUNK);
            let n = file.read_buf(&mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            Ok(Some((Bytes::from(buf), Some(file))))
        });
        Ok(verified(Box::pin(raw), key, expect))
    }

    /// One trip to the blocking pool for the read and the digest (the digest of 4 MiB
    /// is ~2 ms: not for a tokio worker), instead of one per chunk.
    async fn read_all(
        &self,
        key: &BlobKey,
        expect: &Expected,
        max: u64,
    ) -> Result<Bytes, BlobError> {
        if expect.size > max {
            return Err(BlobError::TooLarge { limit: max });
        }
        let path = self.path_of(key);
        let (k, e, p) = (key.clone(), expect.clone(), path.clone());
        tokio::task::spawn_blocking(move || {
            let file = match std::fs::File::open(&p) {
                Ok(file) => file,
                Err(e) if e.kind() == ErrorKind::NotFound => return Err(BlobError::NotFound),
                Err(e) => return Err(io_error("opening", &p, e)),
            };
            // One byte past the recorded size is enough to know it is longer; a file
            // grown behind our back is never read whole into memory.
            let mut buf = Vec::with_capacity(usize::try_from(e.size).unwrap_or(0));
            file.take(e.size.saturating_add(1))
                .read_to_end(&mut buf)
                .map_err(|err| io_error("reading", &p, err))?;
            check_whole(&k, &e, &buf)?;
            Ok(Bytes::from(buf))
        })
        .await
        .map_err(join_error)?
    }

    async fn delete(&self, key: &BlobKey) -> Result<bool, BlobError> {
        let path = self.path_of(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("deleting", &path, e)),
        }
    }

    async fn list_older(
        &self,
        cutoff: DateTime<Utc>,
        after: Option<&BlobKey>,
        limit: usize,
    ) -> Result<Vec<BlobKey>, BlobError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let root = self.root.clone();
        let after = after.cloned();
        tokio::task::spawn_blocking(move || {
            Self::list_older_blocking(&root, cutoff, after.as_ref(), limit)
        })
        .await
        .map_err(join_error)?
        .map_err(|e| io_error("listing", &self.root, e))
    }

    async fn sweep_temp(&self, cutoff: DateTime<Utc>) -> Result<u64, BlobError> {
        let root = self.root.clone();
        let in_flight = self.in_flight.lock().clone();
        tokio::task::spawn_blocking(move || Self::sweep_temp_blocking(&root, cutoff, &in_flight))
            .await
            .map_err(join_error)?
            .map_err(|e| io_error("sweeping partial uploads", &self.root, e))
    }

    fn kind(&self) -> &'static str {
        "fs"
    }
}
