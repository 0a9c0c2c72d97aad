//! Herald's embedded backend: one SQLite file holds the event store ([`SqliteEventStore`]) and
//! the state — read models, job queue, projector checkpoint and lease ([`SqliteState`]). Both
//! open their own connection to the same file (WAL mode), so a projector step is one SQLite
//! transaction: projection rows, job rows and the checkpoint commit together or not at all.
//!
//! rusqlite is synchronous: each connection sits behind a mutex and every call runs on tokio's
//! blocking pool, so async tasks never block on disk I/O. In-process waiters are woken through
//! tokio primitives; other processes sharing the file are noticed by a bounded re-check.

mod db;

pub use db::path_from_url;
mod state;
mod store;

pub use state::SqliteState;
pub use store::SqliteEventStore;

/// Opens both halves on one file. `url` is `sqlite://PATH` or a plain path.
pub async fn open(url: &str) -> Result<(SqliteEventStore, SqliteState), herald_core::StoreError> {
    let path = db::path_from_url(url);
    let store = SqliteEventStore::open(&path).await?;
    let state = SqliteState::open(&path)
        .await
        .map_err(|e| herald_core::StoreError::Unavailable(e.to_string()))?;
    Ok((store, state))
}
