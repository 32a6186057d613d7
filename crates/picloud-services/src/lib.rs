//! The services scripts call — kv, docs, dead letters and outbound HTTP today; files,
//! pubsub, secrets and email to come — as rules and validation over the store.
//!
//! Every call takes a [`CallContext`]: the app comes from it, never from script
//! arguments (DESIGN.md decision 5), and so do the caller's rights. When a script runs
//! for an authenticated caller, each call checks that caller's capability here, below
//! the script; an anonymous run (public route, trigger) is its own gate.

mod context;
mod dead_letters;
mod docs;
pub mod email;
mod error;

pub mod files;
pub mod http;
mod kv;
mod modules;
mod pubsub;
pub mod secrets;

use std::sync::Arc;

use picloud_core::config::EventsConfig;
use picloud_store::{RetryPolicy, Store};

pub use context::CallContext;
pub use dead_letters::DeadLetterService;
pub use docs::{DocWrite, DocsPage, DocsService};
pub use email::{EmailService, OutgoingEmail};
pub use error::{ServiceError, ServiceResult};
pub use files::{FileChanges, FileWrite, FilesPage, FilesService};
pub use http::HttpService;
pub use kv::{KvPage, KvService};
pub use modules::ModuleService;
pub use pubsub::{Published, PubsubService};
pub use secrets::SecretsService;

/// Everything scripts can call, bundled.
pub struct Services {
    pub kv: KvService,
    pub docs: DocsService,
    pub files: FilesService,
    pub dead_letters: DeadLetterService,
    pub modules: ModuleService,
    pub pubsub: PubsubService,
    pub http: HttpService,
    /// Disabled until [`Services::with_email`] hands in a configured one.
    pub email: EmailService,
    pub secrets: SecretsService,
}

impl Services {
    pub fn new(
        store: Arc<dyn Store>,
        config: &EventsConfig,
        http: HttpService,
        files: FilesService,
        secrets: SecretsService,
    ) -> Self {
        let defaults = default_retry(config);
        Self {
            kv: KvService::new(store.clone(), config),
            docs: DocsService::new(store.clone(), config),
            files,
            modules: ModuleService::new(store.clone()),
            pubsub: PubsubService::new(store.clone(), config),
            dead_letters: DeadLetterService::new(store, defaults),
            http,
            email: EmailService::disabled(),
            secrets,
        }
    }

    /// The email service to use (built separately: it needs a runtime for its pool).
    pub fn with_email(mut self, email: EmailService) -> Self {
        self.email = email;
        self
    }
}

/// The retry policy of triggers that set none.
pub fn default_retry(config: &EventsConfig) -> RetryPolicy {
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    RetryPolicy {
        max_attempts: config.retry_max_attempts,
        base_delay_ms: ms(config.retry_base_delay),
        max_delay_ms: ms(config.retry_max_delay),
    }
}

/// The length of `value`'s JSON text, counted as it is written: no buffer for a check
/// that throws the text away.
pub(crate) fn json_len(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}
