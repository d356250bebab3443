//! Scratch PostgreSQL databases for tests and benchmarks: each one created fresh on the server
//! named by `LAPSE_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`) and dropped
//! when its handle is dropped.
//!
//! Where the server cannot be reached, [`ScratchDb::create`] answers `None` so that a
//! developer's machine without PostgreSQL still runs the SQLite half of a suite, except under
//! `CI=true`, where it panics: in CI the PostgreSQL half is required.

use std::time::Duration;

use rand::Rng;
use rand::distr::Alphanumeric;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The administrative URL used when `LAPSE_TEST_PG_URL` is not set.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database of its own on the test server; dropped (with any connections left) on drop.
#[derive(Debug)]
pub struct ScratchDb {
    admin_url: String,
    name: String,
    url: String,
}

fn admin_url() -> String {
    std::env::var("LAPSE_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// `url` with its database (the path) replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

impl ScratchDb {
    /// Creates `lapse_t_<random>`; `None` if the server is unreachable outside CI.
    pub async fn create() -> Option<Self> {
        let admin_url = admin_url();
        let connect =
            tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin_url)).await;
        let mut admin = match connect {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return unreachable(&admin_url, &e.to_string()),
            Err(_) => return unreachable(&admin_url, "timed out"),
        };
        let suffix: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(12)
            .map(|c| char::from(c).to_ascii_lowercase())
            .collect();
        let name = format!("lapse_t_{suffix}");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("creating the scratch database {name}: {e}"));
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        Some(Self {
            admin_url,
            name,
            url,
        })
    }

    /// The URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL without its password, and the password: what `database.url` and
    /// `database.password_file` hold for a daemon.
    pub fn url_and_password(&self) -> (String, Option<String>) {
        let shown = crate::pg::redact_url(&self.url);
        let password = self
            .url
            .split_once("://")
            .and_then(|(_, rest)| rest.split(['/', '?']).next())
            .and_then(|authority| authority.rsplit_once('@'))
            .and_then(|(userinfo, _)| userinfo.split_once(':'))
            .map(|(_, pw)| pw.to_owned());
        (shown, password)
    }
}

fn unreachable<T>(url: &str, why: &str) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "PostgreSQL at {} is unreachable ({why}); under CI=true the PostgreSQL tests \
             are required: start the server or set LAPSE_TEST_PG_URL",
            crate::pg::redact_url(url)
        );
    }
    eprintln!(
        "PostgreSQL at {} is unreachable ({why}); skipping the PostgreSQL case",
        crate::pg::redact_url(url)
    );
    None
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside or outside a runtime; a thread of its own works in both.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop the scratch database {}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_replaced_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/test?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres", "x"),
            "postgres://u:p@h:5432/x"
        );
    }
}
