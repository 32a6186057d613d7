//! A scratch database for this crate's own tests, on the server in
//! `PICLOUD_TEST_DATABASE_URL` (CI sets it; when set and unreachable, the test fails).

use picloud_core::ExecutionId;
use sqlx::{Connection, PgConnection};

/// A scratch database, dropped when this value is, even when the test fails.
pub(crate) struct Scratch {
    admin_url: String,
    name: String,
    pub(crate) url: String,
}

impl Scratch {
    pub(crate) async fn create() -> Option<Self> {
        let admin_url = std::env::var("PICLOUD_TEST_DATABASE_URL").ok()?;
        let name = format!(
            "picloud_scratch_{}",
            ExecutionId::new().as_str().to_lowercase()
        );
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("reach PostgreSQL");
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        let (base, _) = admin_url.rsplit_once('/').expect("a database in the URL");
        let url = format!("{base}/{name}");
        Some(Self {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot block on itself.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await?;
                sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .map(drop)
            })
            .map_err(std::io::Error::other)
        })
        .join();
    }
}
