//! One database per test.
//!
//! PostgreSQL: the tests run only when `PICLOUD_TEST_DATABASE_URL` is set (CI sets it).
//! When it is set and the server cannot be reached, the test fails — it never skips
//! silently. Each test gets `CREATE DATABASE … TEMPLATE picloud_tpl_<fingerprint>`, a
//! copy of a database migrated once per schema version, and drops it at the end.

use std::path::PathBuf;
use std::sync::Arc;

use picloud_store::Store;
use picloud_store_postgres::PostgresStore;
use picloud_store_sqlite::SqliteStore;
use sqlx::postgres::PgConnection;
use sqlx::Connection;

pub const POSTGRES_URL_VAR: &str = "PICLOUD_TEST_DATABASE_URL";

/// A database that exists for the lifetime of this value.
pub struct TestDb {
    store: Arc<dyn Store>,
    url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("picloud.db");
        let store = SqliteStore::open(&path).await.expect("open sqlite");
        Self {
            store: Arc::new(store),
            url: format!("sqlite://{}", path.display()),
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// `None` (the test skips, saying so) when no PostgreSQL URL is configured.
    pub async fn postgres() -> Option<Self> {
        let (admin_url, name, url) = fresh_postgres_database().await?;
        let store = PostgresStore::connect(&url)
            .await
            .expect("connect to the fresh test database");
        Some(Self {
            store: Arc::new(store),
            url,
            cleanup: Cleanup::Postgres { admin_url, name },
        })
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// A URL the server can be started with (`sqlite://…` or `postgres://…`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A directory for a server's data beside the database (SQLite only).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        self.url.strip_prefix("sqlite://").map(PathBuf::from)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, name } = &self.cleanup {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime, which cannot block on itself.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async {
                    if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                        let _ = sqlx::query(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .execute(&mut conn)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

/// The configured PostgreSQL URL, or `None` after printing why the test is skipped.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            eprintln!("skipped: {POSTGRES_URL_VAR} is not set (CI sets it)");
            None
        }
    }
}

fn with_database(url: &str, name: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("PICLOUD_TEST_DATABASE_URL is a URL");
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

/// Creates a database cloned from the migrated template; returns
/// `(admin_url, name, url)`.
pub async fn fresh_postgres_database() -> Option<(String, String, String)> {
    let admin_url = postgres_admin_url()?;
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR} is set but PostgreSQL is unreachable: {e}"));
    let template = format!("picloud_tpl_{}", PostgresStore::schema_fingerprint());
    // Test processes run in parallel: one lock serialises template creation and
    // cloning (CREATE DATABASE refuses a template that another session is copying).
    sqlx::query("SELECT pg_advisory_lock(7270001)")
        .execute(&mut admin)
        .await
        .expect("advisory lock");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&template)
            .fetch_one(&mut admin)
            .await
            .expect("query pg_database");
    if !exists {
        let building = format!("{template}_building");
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"
        ))
        .execute(&mut admin)
        .await
        .expect("drop stale template");
        sqlx::query(&format!("CREATE DATABASE \"{building}\""))
            .execute(&mut admin)
            .await
            .expect("create template");
        let store = PostgresStore::connect(&with_database(&admin_url, &building))
            .await
            .expect("connect to template");
        store.migrate().await.expect("migrate template");
        store.close().await;
        // A closed connection's server process may still be ending, and a database
        // with a session in it cannot be renamed: end them, and retry a while.
        let mut attempts = 0;
        loop {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&building)
            .execute(&mut admin)
            .await
            .expect("end template sessions");
            let renamed = sqlx::query(&format!(
                "ALTER DATABASE \"{building}\" RENAME TO \"{template}\""
            ))
            .execute(&mut admin)
            .await;
            match renamed {
                Ok(_) => break,
                Err(e) if attempts < 50 => {
                    attempts += 1;
                    eprintln!("template still in use ({e}); retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("publish template: {e}"),
            }
        }
    }
    let name = format!("picloud_t_{:016x}", rand::random::<u64>());
    sqlx::query(&format!(
        "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
    ))
    .execute(&mut admin)
    .await
    .expect("clone template");
    sqlx::query("SELECT pg_advisory_unlock(7270001)")
        .execute(&mut admin)
        .await
        .expect("advisory unlock");
    let _ = admin.close().await;
    let url = with_database(&admin_url, &name);
    Some((admin_url, name, url))
}
