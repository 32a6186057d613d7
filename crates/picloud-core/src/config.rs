//! Typed configuration, read from `PICLOUD_*` variables and their `--flag` twins.
//!
//! [`SETTINGS`] is the one list of names: the binary builds its flags from it and
//! [`Config::load`] reads every value through it, so a name cannot exist in one place
//! and not the other. A bad value is reported as one line naming the variable.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::crypto::SecretKey;
use crate::net::IpNet;

mod edge;
mod email;
mod files;
mod secrets;
pub use edge::MetricsConfig;
pub use email::{EmailConfig, SmtpRelay, SmtpTls};
pub use files::{FilesConfig, S3Config};
pub use secrets::SecretsConfig;

/// One configurable value.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The environment variable; the flag is this without `PICLOUD_`, lower-cased, `_`→`-`.
    pub env: &'static str,
    pub help: &'static str,
    /// Whether the value must never be echoed (it is still accepted as a flag).
    pub secret: bool,
}

impl Setting {
    pub fn flag(&self) -> String {
        self.env
            .trim_start_matches("PICLOUD_")
            .to_ascii_lowercase()
            .replace('_', "-")
    }
}

macro_rules! settings {
    ($($env:literal $(secret $secret:literal)? => $help:literal),+ $(,)?) => {
        pub const SETTINGS: &[Setting] = &[
            $(Setting { env: $env, help: $help, secret: settings!(@secret $($secret)?) }),+
        ];
    };
    (@secret) => { false };
    (@secret $s:literal) => { $s };
}

settings! {
    "PICLOUD_LISTEN" => "address to bind [default: 127.0.0.1:8080]; port 0 picks a free port",
    "PICLOUD_DATA_DIR" => "SQLite file, blobs, generated files [default: ./picloud-data]",
    "PICLOUD_DATABASE_URL" secret true => "postgres://… for PostgreSQL [default: SQLite in the data dir]",
    "PICLOUD_BASE_DOMAIN" => "apps answer on {slug}.{base} [default: localhost]",
    "PICLOUD_SECRET_KEY" secret true => "base64 of 32 bytes; required unless dev mode",
    "PICLOUD_DEV_MODE" => "allow the deterministic dev key [default: false]",
    "PICLOUD_NEW_SECRET_KEY" secret true => "the master key a rotation moves to (`picloud rotate-key`); a server holding it reads under both keys [default: none]",
    "PICLOUD_SECRET_MAX_VALUE_BYTES" => "largest secret value, as JSON [default: 65536]",
    "PICLOUD_ADMIN_EMAIL" => "first instance admin, created when no user exists",
    "PICLOUD_ADMIN_PASSWORD" secret true => "password of that first admin",
    "PICLOUD_LOG_FORMAT" => "pretty or json [default: pretty]",
    "PICLOUD_LOG" => "log filter, e.g. info or picloud_server=debug [default: info]",
    "PICLOUD_MAX_REQUEST_BODY_BYTES" => "larger request bodies get 413 [default: 10485760]",
    "PICLOUD_FILES_ROOT" => "blob directory [default: {data dir}/files]",
    "PICLOUD_FILES_MAX_FILE_SIZE_BYTES" => "largest file, refused while it streams in [default: 104857600]",
    "PICLOUD_FILES_ORPHAN_SWEEP_INTERVAL_SEC" => "how often partial uploads and blobs without a file row are removed [default: 21600]",
    "PICLOUD_FILES_TMP_TTL_SEC" => "age past which the sweeper removes them; must exceed the longest upload [default: 3600]",
    "PICLOUD_FILES_ORPHAN_TMP_TTL_SEC" => "older name of PICLOUD_FILES_TMP_TTL_SEC",
    "PICLOUD_FILES_MAX_CONCURRENT_UPLOADS" => "uploads streaming at once; more wait, then 503 [default: 64]",
    "PICLOUD_FILES_UPLOAD_IDLE_TIMEOUT_SECS" => "an upload sending nothing this long is abandoned [default: 60]",
    "PICLOUD_FILES_S3_BUCKET" => "keep file bytes in this S3-compatible bucket instead of the blob directory [default: none]",
    "PICLOUD_FILES_S3_ENDPOINT" => "S3 endpoint URL, e.g. http://minio:9000 [default: AWS]",
    "PICLOUD_FILES_S3_REGION" => "S3 region [default: us-east-1]",
    "PICLOUD_FILES_S3_ACCESS_KEY_ID" => "S3 access key id; required with a bucket",
    "PICLOUD_FILES_S3_SECRET_ACCESS_KEY" secret true => "S3 secret key; required with a bucket",
    "PICLOUD_EXECUTOR_THREADS" => "script threads [default: 4 x CPUs]",
    "PICLOUD_APP_MAX_CONCURRENCY" => "runs one app may hold at once [default: half the executor threads]",
    "PICLOUD_BACKGROUND_SHARE" => "share of the script threads and of each app's slots background runs (triggers, async routes, cron) may hold; the rest is kept for requests [default: 0.75]",
    "PICLOUD_EXECUTOR_QUEUE_TIMEOUT_MS" => "longest wait for a script slot before 503 [default: 2000]",
    "PICLOUD_SCRIPT_MAX_OPERATIONS" => "operations per run [default: 10000000]",
    "PICLOUD_SCRIPT_TIMEOUT_MS" => "wall-clock limit of route runs [default: 5000]",
    "PICLOUD_SCRIPT_MAX_CALL_DEPTH" => "function call depth [default: 64]",
    "PICLOUD_SCRIPT_MAX_EXPR_DEPTH" => "expression nesting depth [default: 128]",
    "PICLOUD_SCRIPT_MAX_STRING_BYTES" => "largest string a script builds [default: 1048576]",
    "PICLOUD_SCRIPT_MAX_ARRAY_LEN" => "largest array a script builds [default: 100000]",
    "PICLOUD_SCRIPT_MAX_BLOB_BYTES" => "largest Blob a script holds [default: 16777216]",
    "PICLOUD_SCRIPT_MAX_MAP_LEN" => "largest map a script builds [default: 100000]",
    "PICLOUD_SCRIPT_MAX_MEMORY_BYTES" => "memory one run may hold [default: 134217728]",
    "PICLOUD_TRIGGER_TIMEOUT_MS" => "wall-clock limit of trigger runs [default: 30000]",
    "PICLOUD_ABANDON_GRACE_MS" => "how long past its limit a route run is awaited before it is abandoned [default: 2000]",
    "PICLOUD_SCRIPT_CACHE_SIZE" => "compiled scripts kept [default: 256]",
    "PICLOUD_MODULE_CACHE_SIZE" => "compiled modules kept [default: 512]",
    "PICLOUD_SESSION_TTL_SECS" => "session lifetime, renewed on use [default: 86400]",
    "PICLOUD_EXECUTION_RETENTION_DAYS" => "execution records kept this long [default: 7]",
    "PICLOUD_EXECUTION_LOG_MAX_LINES" => "log lines kept per execution [default: 100]",
    "PICLOUD_KV_MAX_VALUE_BYTES" => "largest KV value, as JSON [default: 1048576]",
    "PICLOUD_DOCS_MAX_DOC_BYTES" => "largest document, as JSON [default: 1048576]",
    "PICLOUD_MAX_TRIGGER_DEPTH" => "events caused by handlers deeper than this are skipped [default: 8]",
    "PICLOUD_TRIGGER_RETRY_MAX_ATTEMPTS" => "runs per delivery, the first included [default: 5]",
    "PICLOUD_TRIGGER_RETRY_BASE_DELAY_MS" => "first retry delay, doubled per attempt [default: 1000]",
    "PICLOUD_TRIGGER_RETRY_MAX_DELAY_MS" => "longest retry delay [default: 300000]",
    "PICLOUD_DISPATCH_LEASE_SECS" => "claim lease of a delivery, extended while it runs [default: 60]",
    "PICLOUD_DISPATCH_POLL_INTERVAL_MS" => "safety-net poll of the outbox [default: 5000]",
    "PICLOUD_CRON_TICK_INTERVAL_MS" => "longest sleep of the cron scheduler, which wakes at the next due time anyway; at least 1000 [default: 30000]",
    "PICLOUD_DEAD_LETTER_RETENTION_DAYS" => "dead letters kept this long [default: 30]",
    "PICLOUD_ABANDONED_EXECUTIONS_RETENTION_DAYS" => "abandoned-run records kept this long [default: 7]",
    "PICLOUD_HTTP_TIMEOUT_MS" => "longest outbound http:: request, redirects included [default: 10000]",
    "PICLOUD_HTTP_ALLOWED_PORTS" => "ports outbound http:: may reach, comma-separated [default: 80,443,8080,8443]",
    "PICLOUD_HTTP_MAX_REQUEST_BODY_BYTES" => "largest outbound request body [default: 10485760]",
    "PICLOUD_HTTP_MAX_RESPONSE_BODY_BYTES" => "largest response body http:: reads [default: 10485760]",
    "PICLOUD_HTTP_ALLOW_PRIVATE" => "let http:: reach private, loopback and other internal addresses (development only) [default: false]",
    "PICLOUD_SMTP_HOST" => "SMTP relay for email::send; without HOST, USER and PASSWORD email is disabled [default: none]",
    "PICLOUD_SMTP_PORT" => "SMTP relay port [default: 587]",
    "PICLOUD_SMTP_USER" => "SMTP user name [default: none]",
    "PICLOUD_SMTP_PASSWORD" secret true => "SMTP password [default: none]",
    "PICLOUD_SMTP_TLS" => "none, starttls (required, never downgraded) or tls (implicit, usually port 465) [default: starttls]",
    "PICLOUD_SMTP_TLS_CA_FILE" => "PEM file of extra root certificates for the relay, e.g. a private CA [default: none]",
    "PICLOUD_SMTP_TIMEOUT_SECS" => "longest whole send: connect, TLS, AUTH and transfer [default: 30]",
    "PICLOUD_SMTP_POOL_MAX_SIZE" => "SMTP connections kept open at most [default: 10]",
    "PICLOUD_SMTP_POOL_IDLE_SECS" => "an idle pooled connection is closed after this; keep it below the relay's own idle timeout [default: 30]",
    "PICLOUD_EMAIL_MAX_MESSAGE_BYTES" => "largest outgoing message, encoded, headers included [default: 10485760]",
    "PICLOUD_EMAIL_MAX_RECIPIENTS" => "most recipients (to + cc + bcc) of one message [default: 50]",
    "PICLOUD_TRUSTED_PROXIES" => "proxies whose X-Forwarded-For names the client: comma-separated IPs or CIDRs [default: none]",
    "PICLOUD_METRICS_TOKEN" secret true => "bearer token /metrics requires, at least 16 characters [default: none]",
    "PICLOUD_METRICS_LISTEN" => "a second address serving only /metrics, without a token [default: none]",
}

/// A value that could not be used; `Display` is the one line printed at start-up.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Largest configurable array/map size. Rhai measures nested values recursively, so
/// nesting depth (bounded by these sizes) must stay within the script threads' stack:
/// measured at ~80 bytes of stack per level, 1,000,000 levels fit well inside 256 MiB.
/// Call and expression depth are capped at 256 each for the same reason (a call level
/// holding a maximally nested expression measured at ~125 KiB).
pub const MAX_COLLECTION_LEN: usize = 1_000_000;

/// Largest configurable Blob. Rhai's one limit for arrays and Blobs is set to the Blob
/// cap, which lets nested arrays grow past `MAX_COLLECTION_LEN` levels in principle;
/// in practice Rhai re-measures the whole value at every nesting step, so depth grows
/// with the square root of the run's time (~400,000 levels in a 30 s trigger run), and
/// the per-run memory limit stops it too.
pub const MAX_BLOB_BYTES: usize = 1 << 30;

/// The shortest cron tick interval; smaller values are raised to it.
pub const MIN_CRON_TICK_MS: u64 = 1_000;

/// The sandbox of every run.
#[derive(Debug, Clone)]
pub struct ScriptLimits {
    pub max_operations: u64,
    pub route_timeout: Duration,
    pub trigger_timeout: Duration,
    pub max_call_depth: usize,
    pub max_expr_depth: usize,
    pub max_string_bytes: usize,
    pub max_array_len: usize,
    /// Largest Blob a run may hold. Rhai counts Blob bytes against its array limit;
    /// this is larger so that values the host hands in (a request body up to its cap,
    /// an HTTP response) stay usable.
    pub max_blob_bytes: usize,
    pub max_map_len: usize,
    /// Net bytes one run may allocate (counted by the binary's allocator).
    pub max_memory_bytes: usize,
    pub max_log_lines: usize,
    /// How long past `route_timeout` the HTTP side waits before abandoning a run.
    pub abandon_grace: Duration,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        Self {
            max_operations: 10_000_000,
            route_timeout: Duration::from_millis(5_000),
            trigger_timeout: Duration::from_millis(30_000),
            max_call_depth: 64,
            max_expr_depth: 128,
            max_string_bytes: 1 << 20,
            max_array_len: 100_000,
            max_blob_bytes: 16 << 20,
            max_map_len: 100_000,
            max_memory_bytes: 128 << 20,
            max_log_lines: 100,
            abandon_grace: Duration::from_millis(2_000),
        }
    }
}

/// Triggers, the outbox and the dispatcher.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    pub kv_max_value_bytes: usize,
    /// Largest document, as JSON.
    pub docs_max_doc_bytes: usize,
    pub max_trigger_depth: u32,
    pub retry_max_attempts: u32,
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    pub lease: Duration,
    pub poll_interval: Duration,
    /// Longest sleep of the cron scheduler (it wakes at the next window anyway), and
    /// how often a node that is not the scheduler tries to become it.
    pub cron_tick_interval: Duration,
    pub dead_letter_retention: Duration,
    pub abandoned_retention: Duration,
}

/// Outbound HTTP from scripts (`http::*`).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub timeout: Duration,
    pub allowed_ports: Vec<u16>,
    pub max_request_body_bytes: usize,
    pub max_response_body_bytes: usize,
    /// Turns the SSRF guard's address checks off; logged as a warning at start-up.
    pub allow_private: bool,
}

#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    pub threads: usize,
    pub app_max_concurrency: usize,
    pub queue_timeout: Duration,
    /// The share of the script threads, and of each app's slots, that background runs
    /// (deliveries) may take at once; the rest is kept for requests.
    pub background_share: f64,
    pub script_cache_size: usize,
    pub module_cache_size: usize,
}

#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub base_domain: String,
    pub secret_key: Option<SecretKey>,
    pub dev_mode: bool,
    pub admin_email: Option<String>,
    pub admin_password: Option<String>,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub max_request_body_bytes: usize,
    pub files_root: PathBuf,
    pub files: FilesConfig,
    pub secrets: SecretsConfig,
    pub executor: ExecutorConfig,
    pub limits: ScriptLimits,
    pub session_ttl: Duration,
    pub execution_retention: Duration,
    pub events: EventsConfig,
    pub http: HttpConfig,
    /// Peers whose `X-Forwarded-For` is believed (empty: the TCP peer is the client).
    pub trusted_proxies: Vec<IpNet>,
    pub metrics: MetricsConfig,
    pub email: EmailConfig,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &redact(&self.database_url))
            .field("base_domain", &self.base_domain)
            .field("secret_key", &self.secret_key)
            .field("dev_mode", &self.dev_mode)
            .field("admin_email", &self.admin_email)
            .field("admin_password", &redact(&self.admin_password))
            .field("log_format", &self.log_format)
            .field("max_request_body_bytes", &self.max_request_body_bytes)
            .field("files_root", &self.files_root)
            .field("files", &self.files)
            .field("secrets", &self.secrets)
            .field("executor", &self.executor)
            .field("limits", &self.limits)
            .field("session_ttl", &self.session_ttl)
            .field("execution_retention", &self.execution_retention)
            .field("events", &self.events)
            .field("http", &self.http)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("metrics", &self.metrics)
            .field("email", &self.email)
            .finish()
    }
}

/// Reads raw values by variable name: a flag if given, else the environment.
struct Source<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Source<'_> {
    fn raw(&self, var: &'static str) -> Option<String> {
        (self.lookup)(var).filter(|v| !v.trim().is_empty())
    }

    fn parse<T>(
        &self,
        var: &'static str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.raw(var) {
            None => Ok(default),
            Some(raw) => parse(raw.trim()).map_err(|message| ConfigError { var, message }),
        }
    }

    fn number<T>(&self, var: &'static str, default: T, min: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        self.parse(var, default, |s| {
            let value: T = s
                .parse()
                .map_err(|_| format!("invalid value {s:?}: expected a whole number"))?;
            if value < min {
                return Err(format!("invalid value {s:?}: must be at least {min}"));
            }
            Ok(value)
        })
    }

    /// A number with an upper bound as well.
    fn bounded<T>(&self, var: &'static str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let value = self.number(var, default, min)?;
        if value > max {
            return Err(ConfigError {
                var,
                message: format!("invalid value {value}: must be at most {max}"),
            });
        }
        Ok(value)
    }

    fn millis(&self, var: &'static str, default_ms: u64) -> Result<Duration, ConfigError> {
        self.number(var, default_ms, 1).map(Duration::from_millis)
    }

    fn flag(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        self.parse(var, default, |s| match s.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(format!("invalid value {s:?}: expected true or false")),
        })
    }
}

/// `80,443,8080`: a non-empty list of ports 1 to 65535.
fn parse_ports(s: &str) -> Result<Vec<u16>, String> {
    s.split(',')
        .map(|p| match p.trim().parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(format!(
                "invalid port {:?}: expected a comma-separated list of ports 1 to 65535",
                p.trim()
            )),
        })
        .collect()
}

impl Config {
    /// Builds the configuration from `lookup` (flag value, else environment variable).
    /// `dev` is `picloud dev`: dev mode on unless explicitly configured.
    pub fn load(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let src = Source { lookup };
        let listen = src.parse("PICLOUD_LISTEN", ([127, 0, 0, 1], 8080).into(), |s| {
            s.parse::<SocketAddr>().map_err(|_| {
                format!("invalid value {s:?}: expected host:port, like 127.0.0.1:8080")
            })
        })?;
        let data_dir = src.parse("PICLOUD_DATA_DIR", PathBuf::from("./picloud-data"), |s| {
            Ok(PathBuf::from(s))
        })?;
        let database_url = src.parse("PICLOUD_DATABASE_URL", None, |s| {
            if s.starts_with("postgres://")
                || s.starts_with("postgresql://")
                || s.starts_with("sqlite:")
            {
                Ok(Some(s.to_owned()))
            } else {
                Err("expected a postgres://… or sqlite:… URL".into())
            }
        })?;
        let base_domain = src.parse("PICLOUD_BASE_DOMAIN", "localhost".to_owned(), |s| {
            let s = s.trim_end_matches('.').to_ascii_lowercase();
            let ok = !s.is_empty()
                && s.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if ok {
                Ok(s)
            } else {
                Err(format!("invalid value {s:?}: expected a domain name"))
            }
        })?;
        let secret_key = src.parse("PICLOUD_SECRET_KEY", None, |s| {
            SecretKey::parse(s).map(Some).map_err(|e| e.to_string())
        })?;
        let dev_mode = src.flag("PICLOUD_DEV_MODE", false)?;
        let admin_email = src.parse("PICLOUD_ADMIN_EMAIL", None, |s| {
            crate::email::normalize(s)
                .map(Some)
                .map_err(|e| e.to_string())
        })?;
        let admin_password = src.raw("PICLOUD_ADMIN_PASSWORD");
        if admin_email.is_some() != admin_password.is_some() {
            let var = if admin_email.is_some() {
                "PICLOUD_ADMIN_PASSWORD"
            } else {
                "PICLOUD_ADMIN_EMAIL"
            };
            return Err(ConfigError {
                var,
                message: "PICLOUD_ADMIN_EMAIL and PICLOUD_ADMIN_PASSWORD must be set together"
                    .into(),
            });
        }
        let log_format = src.parse("PICLOUD_LOG_FORMAT", LogFormat::Pretty, |s| match s {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("invalid value {s:?}: expected pretty or json")),
        })?;
        let log_filter = src.raw("PICLOUD_LOG").unwrap_or_else(|| "info".to_owned());
        let max_request_body_bytes = src.number("PICLOUD_MAX_REQUEST_BODY_BYTES", 10 << 20, 1)?;
        let files_root = src.parse("PICLOUD_FILES_ROOT", data_dir.join("files"), |s| {
            Ok(PathBuf::from(s))
        })?;
        let files = files::load(&src)?;
        let secrets = secrets::load(&src)?;

        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = src.number("PICLOUD_EXECUTOR_THREADS", 4 * cpus, 1)?;
        let app_max_concurrency =
            src.number("PICLOUD_APP_MAX_CONCURRENCY", (threads / 2).max(1), 1)?;
        let background_share = src.parse("PICLOUD_BACKGROUND_SHARE", 0.75, |s| {
            match s.parse::<f64>() {
                Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
                _ => Err(format!(
                    "invalid value {s:?}: expected a fraction above 0 and at most 1"
                )),
            }
        })?;
        let executor = ExecutorConfig {
            threads,
            app_max_concurrency: app_max_concurrency.min(threads),
            queue_timeout: src.millis("PICLOUD_EXECUTOR_QUEUE_TIMEOUT_MS", 2_000)?,
            background_share,
            script_cache_size: src.number("PICLOUD_SCRIPT_CACHE_SIZE", 256, 1)?,
            module_cache_size: src.number("PICLOUD_MODULE_CACHE_SIZE", 512, 1)?,
        };

        let d = ScriptLimits::default();
        let limits = ScriptLimits {
            max_operations: src.number("PICLOUD_SCRIPT_MAX_OPERATIONS", d.max_operations, 1)?,
            route_timeout: src.millis("PICLOUD_SCRIPT_TIMEOUT_MS", 5_000)?,
            trigger_timeout: src.millis("PICLOUD_TRIGGER_TIMEOUT_MS", 30_000)?,
            max_call_depth: src.bounded(
                "PICLOUD_SCRIPT_MAX_CALL_DEPTH",
                d.max_call_depth,
                1,
                256,
            )?,
            max_expr_depth: src.bounded(
                "PICLOUD_SCRIPT_MAX_EXPR_DEPTH",
                d.max_expr_depth,
                1,
                256,
            )?,
            max_string_bytes: src.number(
                "PICLOUD_SCRIPT_MAX_STRING_BYTES",
                d.max_string_bytes,
                1,
            )?,
            // Values nest as deep as these allow, and Rhai walks nesting recursively:
            // the caps keep that within the script threads' stack.
            max_array_len: src.bounded(
                "PICLOUD_SCRIPT_MAX_ARRAY_LEN",
                d.max_array_len,
                1,
                MAX_COLLECTION_LEN,
            )?,
            max_blob_bytes: src.bounded(
                "PICLOUD_SCRIPT_MAX_BLOB_BYTES",
                d.max_blob_bytes,
                1,
                MAX_BLOB_BYTES,
            )?,
            max_map_len: src.bounded(
                "PICLOUD_SCRIPT_MAX_MAP_LEN",
                d.max_map_len,
                1,
                MAX_COLLECTION_LEN,
            )?,
            max_memory_bytes: src.number(
                "PICLOUD_SCRIPT_MAX_MEMORY_BYTES",
                d.max_memory_bytes,
                1 << 20,
            )?,
            max_log_lines: src.number("PICLOUD_EXECUTION_LOG_MAX_LINES", d.max_log_lines, 0)?,
            abandon_grace: Duration::from_millis(src.number(
                "PICLOUD_ABANDON_GRACE_MS",
                2_000u64,
                0,
            )?),
        };
        let session_ttl =
            Duration::from_secs(src.number("PICLOUD_SESSION_TTL_SECS", 86_400u64, 60)?);
        let execution_retention =
            Duration::from_secs(86_400 * src.number("PICLOUD_EXECUTION_RETENTION_DAYS", 7u64, 1)?);

        let days = |var: &'static str, default: u64| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(86_400 * src.number(var, default, 1)?))
        };
        let events = EventsConfig {
            kv_max_value_bytes: src.number("PICLOUD_KV_MAX_VALUE_BYTES", 1 << 20, 1)?,
            docs_max_doc_bytes: src.number("PICLOUD_DOCS_MAX_DOC_BYTES", 1 << 20, 1)?,
            max_trigger_depth: src.number("PICLOUD_MAX_TRIGGER_DEPTH", 8, 1)?,
            retry_max_attempts: src.number("PICLOUD_TRIGGER_RETRY_MAX_ATTEMPTS", 5, 1)?,
            retry_base_delay: src.millis("PICLOUD_TRIGGER_RETRY_BASE_DELAY_MS", 1_000)?,
            retry_max_delay: src.millis("PICLOUD_TRIGGER_RETRY_MAX_DELAY_MS", 300_000)?,
            lease: Duration::from_secs(src.number("PICLOUD_DISPATCH_LEASE_SECS", 60u64, 1)?),
            poll_interval: src.millis("PICLOUD_DISPATCH_POLL_INTERVAL_MS", 5_000)?,
            // Floored: a shorter tick only costs queries, since due windows wake the
            // scheduler by themselves.
            cron_tick_interval: Duration::from_millis(
                src.number("PICLOUD_CRON_TICK_INTERVAL_MS", 30_000u64, 0)?
                    .max(MIN_CRON_TICK_MS),
            ),
            dead_letter_retention: days("PICLOUD_DEAD_LETTER_RETENTION_DAYS", 30)?,
            abandoned_retention: days("PICLOUD_ABANDONED_EXECUTIONS_RETENTION_DAYS", 7)?,
        };
        if events.lease <= limits.trigger_timeout {
            return Err(ConfigError {
                var: "PICLOUD_DISPATCH_LEASE_SECS",
                message: format!(
                    "must be longer than the trigger run limit ({} ms, PICLOUD_TRIGGER_TIMEOUT_MS)",
                    limits.trigger_timeout.as_millis()
                ),
            });
        }

        let http = HttpConfig {
            timeout: src.millis("PICLOUD_HTTP_TIMEOUT_MS", 10_000)?,
            allowed_ports: src.parse(
                "PICLOUD_HTTP_ALLOWED_PORTS",
                vec![80, 443, 8080, 8443],
                parse_ports,
            )?,
            max_request_body_bytes: src.number(
                "PICLOUD_HTTP_MAX_REQUEST_BODY_BYTES",
                10 << 20,
                0,
            )?,
            max_response_body_bytes: src.number(
                "PICLOUD_HTTP_MAX_RESPONSE_BODY_BYTES",
                10 << 20,
                0,
            )?,
            allow_private: src.flag("PICLOUD_HTTP_ALLOW_PRIVATE", false)?,
        };

        let (trusted_proxies, metrics) = edge::load(&src)?;
        let email = email::load(&src)?;

        Ok(Self {
            events,
            http,
            trusted_proxies,
            metrics,
            email,
            listen,
            data_dir,
            database_url,
            base_domain,
            secret_key,
            dev_mode,
            admin_email,
            admin_password,
            log_format,
            log_filter,
            max_request_body_bytes,
            files_root,
            files,
            secrets,
            executor,
            limits,
            session_ttl,
            execution_retention,
        })
    }

    /// The key to encrypt with: the configured one, or in dev mode the dev key.
    pub fn effective_secret_key(&self) -> Result<SecretKey, ConfigError> {
        match (&self.secret_key, self.dev_mode) {
            (Some(key), _) => Ok(key.clone()),
            (None, true) => Ok(SecretKey::development()),
            (None, false) => Err(ConfigError {
                var: "PICLOUD_SECRET_KEY",
                message: "required (base64 of 32 bytes, e.g. `openssl rand -base64 32`); \
                          `picloud dev` runs without one"
                    .into(),
            }),
        }
    }

    /// A configuration with every default, for tests.
    pub fn defaults() -> Self {
        match Self::load(&|_| None) {
            Ok(config) => config,
            Err(e) => unreachable!("defaults are valid: {e}"),
        }
    }
}

#[cfg(test)]
mod tests;
