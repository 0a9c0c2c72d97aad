//! Production backends, chosen by URL scheme.

use std::sync::Arc;

use herald_core::{EventStore, StateBackend};

use crate::app::AppError;

pub async fn open_store(url: &str) -> Result<Arc<dyn EventStore>, AppError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // `?schema=NAME` selects a schema (default `public`); migrations run at connect.
        return Ok(Arc::new(herald_postgres::PgEventStore::connect(url).await?));
    }
    Err(AppError::Setup(format!(
        "unsupported event store URL {url:?}; use sqlite://PATH or postgres://USER@HOST/DB"
    )))
}

pub async fn open_state(url: &str, namespace: &str) -> Result<Arc<dyn StateBackend>, AppError> {
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        return Ok(Arc::new(
            herald_redis::RedisState::connect(url, namespace).await?,
        ));
    }
    Err(AppError::Setup(format!(
        "unsupported state URL {url:?}; use sqlite://PATH or redis://HOST:PORT/DB"
    )))
}
