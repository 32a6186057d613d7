//! A scratch PostgreSQL database for one run, created and dropped with `psql`.

use anyhow::{bail, Context, Result};
use tokio::process::Command;

pub struct ScratchDatabase {
    /// The server URL we were given (its database is used for admin commands).
    admin_url: String,
    pub name: String,
    /// The URL of the scratch database.
    pub url: String,
}

impl ScratchDatabase {
    pub async fn create(admin_url: &str) -> Result<Self> {
        let name = format!("picloud_bench_{}", std::process::id());
        let url = with_database(admin_url, &name)?;
        psql(
            admin_url,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await?;
        psql(admin_url, &format!("CREATE DATABASE {name}")).await?;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url,
        })
    }

    /// Runs `sql` in the scratch database.
    pub async fn execute(&self, sql: &str) -> Result<()> {
        psql(&self.url, sql).await
    }

    pub async fn drop_database(self) -> Result<()> {
        psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await
    }
}

async fn psql(url: &str, sql: &str) -> Result<()> {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .await
        .context("running psql (is the PostgreSQL client installed?)")?;
    if !out.status.success() {
        bail!(
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `postgres://user@host:port/db?opts` with `db` replaced by `name`.
fn with_database(url: &str, name: &str) -> Result<String> {
    let (scheme, rest) = url.split_once("://").context("not a postgres:// URL")?;
    let (authority, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let query = tail.split_once('?').map(|(_, q)| q);
    Ok(match query {
        Some(q) => format!("{scheme}://{authority}/{name}?{q}"),
        None => format!("{scheme}://{authority}/{name}"),
    })
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_only_the_database() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "postgres://postgres@127.0.0.1:5432/x",
            ),
            (
                "postgres://u:p@h/db?sslmode=disable",
                "postgres://u:p@h/x?sslmode=disable",
            ),
            ("postgresql://h:5432", "postgresql://h:5432/x"),
        ];
        for (input, expected) in cases {
            assert_eq!(with_database(input, "x").ok().as_deref(), Some(expected));
        }
    }
}
