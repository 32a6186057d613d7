//! Test helpers shared by every PiCloud test suite.
//!
//! - [`db`]: a fresh database per test (a temp SQLite file, or a PostgreSQL database
//!   cloned from a migrated template), dropped afterwards.
//! - [`conformance`]: the store conformance suite, run against every backend by
//!   [`store_conformance!`].
//! - [`http_server`]: a local HTTP server for outbound-HTTP tests.
//! - [`smtp`]: a local SMTP server (AUTH, STARTTLS, misbehaving modes) for email tests.
#![allow(clippy::unwrap_used)]

pub mod app;
pub mod conformance;
pub mod conformance_batch;
pub mod conformance_claims;
pub mod conformance_cron;
pub mod conformance_docs;
pub mod conformance_docs_index;
pub mod conformance_events;
pub mod conformance_files;
pub mod conformance_identity;
pub mod conformance_modules;
pub mod conformance_secrets;
pub mod conformance_signals;
pub mod db;
pub mod http_server;
pub mod s3;
pub mod smtp;
pub mod tmpfs;

pub use app::{Backend, TestApp};
pub use http_server::TestHttpServer;
pub use smtp::{SmtpMode, TestSmtpServer};

/// Generates one `#[tokio::test]` per conformance case (a function of the module named
/// first) and backend: `<module>::sqlite::<case>` and `<module>::postgres::<case>`.
#[macro_export]
macro_rules! store_conformance {
    ($module:ident: $($case:ident),+ $(,)?) => {
        mod $module {
            mod sqlite {
                $(
                    #[tokio::test]
                    async fn $case() {
                        let db = $crate::db::TestDb::sqlite().await;
                        $crate::$module::$case(db.store()).await;
                    }
                )+
            }
            mod postgres {
                $(
                    #[tokio::test]
                    async fn $case() {
                        let Some(db) = $crate::db::TestDb::postgres().await else { return };
                        $crate::$module::$case(db.store()).await;
                    }
                )+
            }
        }
    };
}
