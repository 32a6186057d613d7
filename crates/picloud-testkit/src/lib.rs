//! Test helpers shared by every PiCloud test suite.
//!
//! - [`db`]: a fresh database per test (a temp SQLite file, or a PostgreSQL database
//!   cloned from a migrated template), dropped afterwards.
//! - [`conformance`]: the store conformance suite, run against every backend by
//!   [`store_conformance!`].
#![allow(clippy::unwrap_used)]

pub mod app;
pub mod conformance;
pub mod db;

pub use app::{Backend, TestApp};

/// Generates one `#[tokio::test]` per conformance case and backend:
/// `sqlite::<case>` and `postgres::<case>`.
#[macro_export]
macro_rules! store_conformance {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let db = $crate::db::TestDb::sqlite().await;
                    $crate::conformance::$case(db.store()).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(db) = $crate::db::TestDb::postgres().await else { return };
                    $crate::conformance::$case(db.store()).await;
                }
            )+
        }
    };
}
