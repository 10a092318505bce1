//! A PostgreSQL database made for one run of `chaos` or `bench --replicas` on the server
//! `--database-url` names, so that the run starts empty and leaves nothing behind.

use anyhow::Context as _;
use sqlx::Connection as _;

/// The run's database: its URL for the processes of the run, and what dropping it needs.
pub(crate) struct RunDatabase {
    url: String,
    server: String,
    name: String,
}

impl RunDatabase {
    /// Makes `<prefix>_<pid>_<nanos>` on the server at `server` (a `postgres://` URL);
    /// exit-2 errors name a URL that cannot be read.
    pub(crate) async fn create(server: &str, prefix: &str) -> anyhow::Result<RunDatabase> {
        let mut url = url::Url::parse(server).map_err(|e| {
            crate::bad_input(format!(
                "--database-url `{}`: {e}",
                crate::redact_url(server)
            ))
        })?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("{prefix}_{}_{nanos}", std::process::id());
        let mut conn = sqlx::postgres::PgConnection::connect(server)
            .await
            .with_context(|| format!("cannot connect to {}", crate::redact_url(server)))?;
        // The name is made of letters, digits and `_` (the prefixes are literals).
        sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .with_context(|| format!("cannot create the database {name}"))?;
        let _ = conn.close().await;
        url.set_path(&format!("/{name}"));
        Ok(RunDatabase {
            url: url.to_string(),
            server: server.to_string(),
            name,
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database (its connections cut), saying so on stderr when it cannot.
    pub(crate) async fn drop_database(&self) {
        let dropped = async {
            let mut conn = sqlx::postgres::PgConnection::connect(&self.server).await?;
            sqlx::Executor::execute(
                &mut conn,
                format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name).as_str(),
            )
            .await?;
            conn.close().await
        }
        .await;
        if let Err(e) = dropped {
            eprintln!("could not drop the database {}: {e}", self.name);
        }
    }
}
