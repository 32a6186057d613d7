//! Starting a PiCloud server from a [`Config`]: open the store the URL names, check the
//! master key against the data, bootstrap the first admin, wire the runtime, bind.
//! The binary and the test harness both start servers through [`start`].

pub mod rotate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use picloud_core::config::{Config, ConfigError};
use picloud_core::crypto;
use picloud_core::envelope::Keyring;
use picloud_runtime::cron::CronConfig;
use picloud_runtime::dispatcher::DispatcherConfig;
use picloud_runtime::{
    sweeper, CronScheduler, CronWake, Dispatcher, ExecutionRecorder, Executor, Metrics,
    RouteLimits, Runner, RunnerParts,
};
use picloud_script::ScriptEngine;
use picloud_server::dataplane::routing::Routing;
use picloud_server::{AppState, SetupToken, Shared};
use picloud_services::http::TestHosts;
use picloud_services::{EmailService, FilesService, HttpService, SecretsService, Services};
use picloud_store::secrets::KEY_CHECK_META;
use picloud_store::{Backend, NewUser, Store, StoreError};
use picloud_store_postgres::PostgresStore;
use picloud_store_sqlite::SqliteStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why the server did not start; `Display` is the one line printed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("PICLOUD_DATA_DIR: cannot create {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("PICLOUD_LISTEN: cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The blob store (`PICLOUD_FILES_ROOT`, or the `PICLOUD_FILES_S3_*` bucket) cannot
    /// be opened; the operator sees the cause, which API answers never carry.
    #[error("files store: {0}")]
    Files(String),
    #[error("PICLOUD_METRICS_LISTEN: cannot bind {addr}: {source}")]
    MetricsBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The SMTP relay's TLS cannot be set up (its message names the variable).
    #[error("{0}")]
    Email(#[from] picloud_services::email::EmailSetupError),
}

/// Opens (and migrates) the store `config` names: PostgreSQL for a `postgres://` URL,
/// else SQLite in the data directory.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    match config.database_url.as_deref() {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Arc::new(PostgresStore::open(url).await?))
        }
        Some(url) => {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            Ok(Arc::new(
                SqliteStore::open(std::path::Path::new(path)).await?,
            ))
        }
        None => {
            std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
                path: config.data_dir.display().to_string(),
                source,
            })?;
            Ok(Arc::new(
                SqliteStore::open(&config.data_dir.join("picloud.db")).await?,
            ))
        }
    }
}

/// Refuses a key that differs from the one the data was first written under. During a
/// rotation (`PICLOUD_NEW_SECRET_KEY` set) either key may be the one the data is under
/// now: the rotation's flip moves the check value from the old key to the new one.
async fn check_key(store: &dyn Store, config: &Config) -> Result<(), StartError> {
    let key = config.effective_secret_key()?;
    let stored = store.init_meta(KEY_CHECK_META, &key.check_value()).await?;
    let new_key_matches = config
        .secrets
        .new_key
        .as_ref()
        .is_some_and(|k| k.matches_check_value(&stored));
    if key.matches_check_value(&stored) || new_key_matches {
        Ok(())
    } else {
        Err(ConfigError {
            var: "PICLOUD_SECRET_KEY",
            message: "differs from the key this instance's data was written with; \
                      start with the original key"
                .into(),
        }
        .into())
    }
}

/// Creates the `PICLOUD_ADMIN_*` admin when no user exists.
async fn bootstrap_admin(store: &dyn Store, config: &Config) -> Result<(), StartError> {
    let (Some(email), Some(password)) = (&config.admin_email, &config.admin_password) else {
        return Ok(());
    };
    if store.count_users().await? > 0 {
        return Ok(());
    }
    let password = password.clone();
    let hash = tokio::task::spawn_blocking(move || crypto::hash_password(&password))
        .await
        .map_err(|e| StoreError::other(std::io::Error::other(e.to_string())))?;
    match store
        .create_first_user(NewUser {
            email: email.trim().to_lowercase(),
            password_hash: hash,
            is_admin: true,
        })
        .await
    {
        Ok(user) => {
            tracing::info!(user = %user.id, "instance admin created from PICLOUD_ADMIN_EMAIL");
            Ok(())
        }
        // Another node won the race.
        Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A running server.
/// The async runtime the server runs on. Its threads get a script-sized stack and may
/// run short scripts inline (`ScriptEngine::try_inline`); `workers` overrides the
/// number of worker threads (tests use 2).
pub fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .enable_all()
        .thread_stack_size(picloud_script::INLINE_STACK_BYTES)
        .on_thread_start(picloud_script::allow_inline_runs_on_this_thread);
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    builder.build()
}

pub struct Started {
    pub addr: SocketAddr,
    /// The address of the metrics-only listener (`PICLOUD_METRICS_LISTEN`), if any.
    pub metrics_addr: Option<SocketAddr>,
    /// Set when no user exists yet: the token for `POST /api/v1/auth/setup`.
    pub setup_token: Option<String>,
    pub state: AppState,
    pub dispatcher: Arc<Dispatcher>,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
    metrics_task: Option<JoinHandle<std::io::Result<()>>>,
    dispatching: JoinHandle<()>,
    scheduling: JoinHandle<()>,
}

impl Started {
    /// Stops accepting, lets in-flight requests finish, writes pending execution
    /// records and closes the database.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        self.finish().await
    }

    /// Serves until `signal` resolves, then shuts down gracefully.
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        signal.await;
        self.shutdown().await
    }

    async fn finish(self) -> std::io::Result<()> {
        let served = self
            .task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        if let Some(metrics) = self.metrics_task {
            if let Ok(Err(e)) = metrics.await {
                tracing::warn!(error = %e, "the metrics listener stopped with an error");
            }
        }
        // Claim nothing more; deliveries in flight finish (or keep their lease).
        let _ = self.dispatching.await;
        // Gives up the cron leadership, so another node takes over without a wait.
        let _ = self.scheduling.await;
        self.state.runner.close().await;
        self.state.store.close().await;
        served
    }
}

/// Starts a server: store, key check, admin bootstrap, runtime, listener.
pub async fn start(config: Config) -> Result<Started, StartError> {
    start_with_hosts(config, TestHosts::default()).await
}

/// [`start`], with fixed host-name answers for outbound HTTP. Only tests call this:
/// there is deliberately no setting that fills `hosts`.
pub async fn start_with_hosts(config: Config, hosts: TestHosts) -> Result<Started, StartError> {
    // Fail on a missing key before anything is created on disk.
    let key = config.effective_secret_key()?;
    let store = open_store(&config).await?;
    check_key(store.as_ref(), &config).await?;
    bootstrap_admin(store.as_ref(), &config).await?;

    let setup = Arc::new(SetupToken::default());
    let setup_token = if store.count_users().await? == 0 {
        Some(setup.issue())
    } else {
        None
    };

    let engine = Arc::new(ScriptEngine::new(
        config.limits.clone(),
        config.executor.script_cache_size,
        config.executor.module_cache_size,
    ));
    let executor = Executor::start(&config.executor);
    let recorder = ExecutionRecorder::start(store.clone());
    let metrics = Arc::new(Metrics::default());
    // Deliveries queued by other nodes (PostgreSQL LISTEN/NOTIFY) wake this one too.
    store.watch_events();
    if config.http.allow_private {
        tracing::warn!(
            "PICLOUD_HTTP_ALLOW_PRIVATE is on: scripts can reach loopback, private and \
             link-local addresses (cloud metadata included); use only in development"
        );
    }
    let http = HttpService::new(&config.http, hosts);
    let blobs = picloud_blob::from_config(&config).map_err(|e| {
        let cause = std::error::Error::source(&e).map(|s| format!(": {s}"));
        StartError::Files(format!("{e}{}", cause.unwrap_or_default()))
    })?;
    let files = FilesService::new(store.clone(), blobs.clone(), &config.events, &config.files);
    let email = EmailService::new(&config.email)?;
    let secrets = SecretsService::new(
        store.clone(),
        Arc::new(Keyring::new(key.clone(), config.secrets.new_key.clone())),
        config.secrets.max_value_bytes,
    );
    let services = Arc::new(
        Services::new(store.clone(), &config.events, http, files, secrets).with_email(email),
    );
    let runner = Runner::new(RunnerParts {
        store: store.clone(),
        services: services.clone(),
        engine,
        executor,
        recorder,
        metrics: metrics.clone(),
        limits: RouteLimits {
            timeout: config.limits.route_timeout,
            abandon_grace: config.limits.abandon_grace,
            max_log_lines: config.limits.max_log_lines,
            retry: picloud_services::default_retry(&config.events),
        },
    });
    if store.backend() == Backend::Sqlite {
        // One process owns a SQLite file: whatever was claimed died with the last one.
        let released = store.release_claims().await?;
        if released > 0 {
            tracing::info!(
                released,
                "re-queued deliveries that were running at the last stop"
            );
        }
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let metrics_listener = match config.metrics.listen {
        Some(at) => {
            let bound = TcpListener::bind(at)
                .await
                .map_err(|source| StartError::MetricsBind { addr: at, source })?;
            let local = bound
                .local_addr()
                .map_err(|source| StartError::MetricsBind { addr: at, source })?;
            Some((bound, local))
        }
        None => None,
    };

    let (stop, stopped) = watch::channel(false);
    sweeper::spawn(
        store.clone(),
        sweeper::SweeperConfig {
            execution_retention: config.execution_retention,
            dead_letter_retention: config.events.dead_letter_retention,
            abandoned_retention: config.events.abandoned_retention,
            interval: Duration::from_secs(3600),
        },
        stopped.clone(),
    );
    picloud_runtime::orphans::spawn(
        store.clone(),
        blobs,
        config.files.orphan_sweep_interval,
        config.files.tmp_ttl,
        stopped.clone(),
    );
    let dispatcher = Dispatcher::new(
        store.clone(),
        runner.clone(),
        services.clone(),
        DispatcherConfig {
            lease: config.events.lease,
            poll_interval: config.events.poll_interval,
            trigger_timeout: config.limits.trigger_timeout,
            max_log_lines: config.limits.max_log_lines,
        },
    );
    let dispatching = dispatcher.spawn(stopped.clone());
    let cron_wake = Arc::new(CronWake::default());
    let scheduling = CronScheduler::new(
        store.clone(),
        cron_wake.clone(),
        metrics,
        CronConfig {
            tick_interval: config.events.cron_tick_interval,
            default_retry: picloud_services::default_retry(&config.events),
        },
    )
    .spawn(stopped.clone());
    let state = AppState::new(Shared {
        config: Arc::new(config),
        store,
        runner,
        services,
        cron_wake,
        routing: Arc::new(Routing::default()),
        setup,
        csrf_key: Arc::new(key.derive("csrf")),
        login_limiter: Arc::default(),
    });
    // Every committed change to cached rows, this node's and (PostgreSQL) other
    // nodes', reaches this node's caches; nothing else invalidates them.
    state.watch_changes();
    let metrics_addr = metrics_listener.as_ref().map(|(_, local)| *local);
    let metrics_task = metrics_listener.map(|(bound, _)| {
        let mut stop_signal = stopped.clone();
        tokio::spawn(picloud_server::serve_metrics(
            bound,
            state.clone(),
            async move {
                let _ = stop_signal.wait_for(|stop| *stop).await;
            },
        ))
    });
    let mut stop_signal = stopped;
    let task = tokio::spawn(picloud_server::serve(listener, state.clone(), async move {
        let _ = stop_signal.wait_for(|stop| *stop).await;
    }));
    Ok(Started {
        addr,
        metrics_addr,
        setup_token,
        state,
        dispatcher,
        stop,
        task,
        metrics_task,
        dispatching,
        scheduling,
    })
}
