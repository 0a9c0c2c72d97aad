//! Connection handling shared by the event store and the state halves.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

/// `sqlite://herald.db`, `sqlite:herald.db` or a plain path.
pub fn path_from_url(url: &str) -> PathBuf {
    let p = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    PathBuf::from(p)
}

/// A connection usable from async code.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("sqlite task failed: {0}")]
    Join(String),
    #[error("sqlite connection poisoned by a panic")]
    Poisoned,
    #[error("{0}")]
    Data(String),
}

impl DbError {
    /// Busy/locked and I/O errors are worth retrying; the rest are data problems.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::DiskFull
            ),
            DbError::Join(_) | DbError::Poisoned => true,
            _ => false,
        }
    }
}

impl Db {
    pub async fn open(path: &Path, schema: &'static str) -> Result<Db, DbError> {
        let path = path.to_path_buf();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, DbError> {
            if let Some(dir) = path.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| DbError::Data(format!("cannot create {}: {e}", dir.display())))?;
            }
            let conn = Connection::open(&path)?;
            // Another process (the CLI, a second server) may hold the write lock briefly.
            conn.busy_timeout(Duration::from_secs(10))?;
            // WAL: readers never block the writer. synchronous=NORMAL in WAL mode keeps every
            // committed transaction across a process crash (SIGKILL); only an OS crash or power
            // loss may drop the last few commits.
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            conn.execute_batch(schema)?;
            Ok(conn)
        })
        .await
        .map_err(|e| DbError::Join(e.to_string()))??;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The connection itself, for a caller that gives it a thread of its own.
    pub fn into_connection(self) -> Option<Connection> {
        Arc::try_unwrap(self.conn).ok()?.into_inner().ok()
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| DbError::Poisoned)?;
            f(&mut guard)
        })
        .await
        .map_err(|e| DbError::Join(e.to_string()))?
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
