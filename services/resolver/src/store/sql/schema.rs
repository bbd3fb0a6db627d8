//! Opening a [`SqlStore`]: the pool, the migrations, SQLite's checkpointer.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use sqlx::Executor;
use sqlx::any::AnyPoolOptions;

use crate::store::StoreError;

use super::SqlStore;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Checkpoints SQLite's write-ahead log in the background, so that no commit on
/// the request path pays for a checkpoint (SQLite's automatic checkpoint runs
/// inside whichever commit crosses the threshold).
#[derive(Debug)]
pub(super) struct Checkpointer(tokio::task::JoinHandle<()>);

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How often the background checkpointer runs.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

impl SqlStore {
    /// Connects to `url` and applies the backend's migrations. SQLite URLs
    /// (`sqlite://PATH`) create the file if it is missing: readable by its owner
    /// only (0600, as are SQLite's `-wal` and `-shm` files, which take the
    /// database file's mode), in a directory created 0700 if that is missing too.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (url, sqlite) = if let Some(rest) = url.strip_prefix("sqlite:") {
            if let Some(path) = sqlite_file(rest) {
                create_private_file(Path::new(path)).map_err(StoreError::CreateFile)?;
            }
            let sep = if rest.contains('?') { '&' } else { '?' };
            let url = if rest.contains("mode=") {
                url.to_owned()
            } else {
                format!("{url}{sep}mode=rwc")
            };
            (url, true)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_owned(), false)
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 8 } else { 16 })
            // A connection to an embedded file cannot drop, and sqlx's SQLite
            // connections live on worker threads: the ping before each use was
            // a second thread hop per query for nothing.
            .test_before_acquire(!sqlite)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
                             PRAGMA wal_autocheckpoint = 0;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        let checkpointer = if sqlite {
            SQLITE_MIGRATIONS.run(&pool).await?;
            let pool = pool.clone();
            Some(Arc::new(Checkpointer(tokio::spawn(async move {
                let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    // PASSIVE never blocks writers; a failure is retried next tick.
                    if let Err(e) = pool.execute("PRAGMA wal_checkpoint(PASSIVE)").await {
                        tracing::warn!(error = %e, "identity store checkpoint failed");
                    }
                }
            }))))
        } else {
            POSTGRES_MIGRATIONS.run(&pool).await?;
            None
        };
        Ok(Self {
            pool,
            sqlite,
            _checkpointer: checkpointer,
        })
    }
}

/// The database file a SQLite URL (after `sqlite:`) names when opening it may
/// create the file (no `mode`, or `mode=rwc`); `None` for an in-memory database
/// or a mode that never creates one.
fn sqlite_file(rest: &str) -> Option<&str> {
    let path = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let mode = query.split('&').find_map(|pair| pair.strip_prefix("mode="));
    let creates = matches!(mode, None | Some("rwc"));
    (creates && !path.is_empty() && path != ":memory:").then_some(path)
}

/// Creates `path` empty with mode 0600 if it does not exist, and its missing
/// parent directories with mode 0700; an existing file is left as it is.
fn create_private_file(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_urls_that_may_create_the_file_name_one_to_create() {
        assert_eq!(sqlite_file("//data/identity.db"), Some("data/identity.db"));
        assert_eq!(
            sqlite_file("///var/lib/t.db?mode=rwc"),
            Some("/var/lib/t.db")
        );
        assert_eq!(sqlite_file("//t.db?mode=ro"), None);
        assert_eq!(sqlite_file("//t.db?cache=shared&mode=memory"), None);
        assert_eq!(sqlite_file(":memory:"), None);
    }
}
