//! Where file bytes live (the blob store) and the limits and sweeps around them.
//! The directory itself is `Config::files_root`; this holds everything added with the
//! files service.

use std::fmt;
use std::time::Duration;

use super::{ConfigError, Source};

/// Largest file by default: 100 MiB.
pub const DEFAULT_MAX_FILE_SIZE_BYTES: u64 = 100 << 20;
/// The reference changelog's name for `PICLOUD_FILES_TMP_TTL_SEC`, still accepted.
pub const TMP_TTL_ALIAS: &str = "PICLOUD_FILES_ORPHAN_TMP_TTL_SEC";

#[derive(Debug, Clone)]
pub struct FilesConfig {
    pub max_file_size_bytes: u64,
    /// How often the orphan sweeper runs.
    pub orphan_sweep_interval: Duration,
    /// Partial uploads, and blobs without a metadata row, younger than this are left
    /// alone: it must exceed the longest upload, or the sweeper could remove the bytes
    /// of a file whose row is about to be committed.
    pub tmp_ttl: Duration,
    /// Set: blobs live in this S3-compatible bucket instead of `files_root`.
    pub s3: Option<S3Config>,
    /// Uploads streaming at once, over every app; more wait (then 503). Each holds a
    /// write buffer, so this bounds their memory together.
    pub max_concurrent_uploads: usize,
    /// An upload that sends nothing for this long is abandoned, so a stalled client
    /// cannot hold its slot and its buffer.
    pub upload_idle_timeout: Duration,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            max_file_size_bytes: DEFAULT_MAX_FILE_SIZE_BYTES,
            orphan_sweep_interval: Duration::from_secs(21_600),
            tmp_ttl: Duration::from_secs(3_600),
            s3: None,
            max_concurrent_uploads: 64,
            upload_idle_timeout: Duration::from_secs(60),
        }
    }
}

/// An S3-compatible bucket. All four values but the endpoint are required together.
#[derive(Clone)]
pub struct S3Config {
    pub bucket: String,
    /// `None`: AWS itself. Set (MinIO, Garage, R2, …): path-style requests to it;
    /// plain `http://` is allowed only when the endpoint says so.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

pub(super) fn load(src: &Source<'_>) -> Result<FilesConfig, ConfigError> {
    let d = FilesConfig::default();
    let max_file_size_bytes = src.number(
        "PICLOUD_FILES_MAX_FILE_SIZE_BYTES",
        d.max_file_size_bytes,
        1,
    )?;
    let orphan_sweep_interval = Duration::from_secs(src.number(
        "PICLOUD_FILES_ORPHAN_SWEEP_INTERVAL_SEC",
        d.orphan_sweep_interval.as_secs(),
        1,
    )?);
    // The alias only counts when the current name is not given.
    let ttl_var = match src.raw("PICLOUD_FILES_TMP_TTL_SEC") {
        None if src.raw(TMP_TTL_ALIAS).is_some() => TMP_TTL_ALIAS,
        _ => "PICLOUD_FILES_TMP_TTL_SEC",
    };
    let tmp_ttl = Duration::from_secs(src.number(ttl_var, d.tmp_ttl.as_secs(), 1)?);
    let max_concurrent_uploads = src.number(
        "PICLOUD_FILES_MAX_CONCURRENT_UPLOADS",
        d.max_concurrent_uploads,
        1,
    )?;
    let upload_idle_timeout = Duration::from_secs(src.number(
        "PICLOUD_FILES_UPLOAD_IDLE_TIMEOUT_SECS",
        d.upload_idle_timeout.as_secs(),
        1,
    )?);
    Ok(FilesConfig {
        max_file_size_bytes,
        orphan_sweep_interval,
        tmp_ttl,
        s3: load_s3(src)?,
        max_concurrent_uploads,
        upload_idle_timeout,
    })
}

fn load_s3(src: &Source<'_>) -> Result<Option<S3Config>, ConfigError> {
    const BUCKET: &str = "PICLOUD_FILES_S3_BUCKET";
    const NEEDED: [&str; 2] = [
        "PICLOUD_FILES_S3_ACCESS_KEY_ID",
        "PICLOUD_FILES_S3_SECRET_ACCESS_KEY",
    ];
    let endpoint = src.parse("PICLOUD_FILES_S3_ENDPOINT", None, |s| {
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            Ok(Some(s.trim_end_matches('/').to_owned()))
        } else {
            Err(format!(
                "invalid value {s:?}: expected an http:// or https:// URL"
            ))
        }
    })?;
    let region = src.parse("PICLOUD_FILES_S3_REGION", "us-east-1".to_owned(), |s| {
        Ok(s.to_owned())
    })?;
    let [key_id, secret] = NEEDED.map(|var| src.raw(var));
    let Some(bucket) = src.raw(BUCKET) else {
        // Anything S3 without a bucket is a half-finished set-up, not a choice of the
        // local filesystem.
        let given = [
            ("PICLOUD_FILES_S3_ENDPOINT", endpoint.is_some()),
            (NEEDED[0], key_id.is_some()),
            (NEEDED[1], secret.is_some()),
        ];
        if let Some((var, _)) = given.iter().find(|(_, set)| *set) {
            return Err(ConfigError {
                var: BUCKET,
                message: format!("required when {var} is set"),
            });
        }
        return Ok(None);
    };
    let bucket = bucket.trim().to_owned();
    // S3's rules for bucket names, loosely: what every provider accepts.
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid {
        return Err(ConfigError {
            var: BUCKET,
            message: format!(
                "invalid value {bucket:?}: expected 3 to 63 lowercase letters, digits, '-' or '.'"
            ),
        });
    }
    let (Some(access_key_id), Some(secret_access_key)) = (key_id, secret) else {
        let missing = if src.raw(NEEDED[0]).is_none() {
            NEEDED[0]
        } else {
            NEEDED[1]
        };
        return Err(ConfigError {
            var: missing,
            message: format!("required when {BUCKET} is set"),
        });
    };
    Ok(Some(S3Config {
        bucket,
        endpoint,
        region,
        access_key_id: access_key_id.trim().to_owned(),
        secret_access_key: secret_access_key.trim().to_owned(),
    }))
}
