//! Production backends, chosen by URL scheme.

use std::sync::Arc;

use herald_core::{EventStore, StateBackend};

use crate::app::AppError;

pub async fn open_store(url: &str) -> Result<Arc<dyn EventStore>, AppError> {
    Err(AppError::Setup(format!(
        "unsupported event store URL {url:?}"
    )))
}

pub async fn open_state(url: &str, _namespace: &str) -> Result<Arc<dyn StateBackend>, AppError> {
    Err(AppError::Setup(format!("unsupported state URL {url:?}")))
}
