//! Operator commands that work against the configured backends: queue info, dead letters,
//! event history, projection rebuilds.

use std::sync::Arc;
use std::time::Duration;

use herald_core::projector::{Projector, ProjectorConfig, StepReport, default_holder};
use herald_core::service::Service;
use herald_core::state::{ListQuery, QueueInfo};
use herald_domain::{MessageRequest, RecordedEvent, Status};
use uuid::Uuid;

use crate::app::{AppError, Backends};
use crate::config::Config;

pub async fn queue_info(b: &Backends) -> Result<QueueInfo, AppError> {
    Ok(b.state.queue_info().await?)
}

/// Dead-lettered requests, newest first, for one tenant or all.
pub async fn dead_letters(
    b: &Backends,
    tenant: Option<String>,
    limit: usize,
) -> Result<Vec<MessageRequest>, AppError> {
    Ok(b.state
        .list(ListQuery {
            tenant,
            status: Some(Status::Dead),
            limit,
            before: None,
        })
        .await?
        .items)
}

pub async fn requeue(
    b: &Backends,
    id: Uuid,
) -> Result<MessageRequest, herald_core::service::ServiceError> {
    Service::new(b.store.clone(), b.state.clone())
        .requeue(None, id)
        .await
}

pub async fn events(
    b: &Backends,
    id: &str,
) -> Result<Vec<RecordedEvent>, herald_core::service::ServiceError> {
    Service::new(b.store.clone(), b.state.clone())
        .history_any(id)
        .await
}

/// `herald projections rebuild`. `progress` gets (position reached, head).
pub async fn rebuild(
    cfg: &Config,
    b: &Backends,
    progress: impl FnMut(u64, u64),
) -> Result<StepReport, AppError> {
    let projector = Projector::new(
        b.store.clone(),
        b.state.clone(),
        Arc::new(cfg.rules()),
        ProjectorConfig {
            batch_size: cfg.projector.batch_size,
            lease_ttl: Duration::from_millis(cfg.projector.lease_ttl_ms),
            holder: default_holder("rebuild"),
        },
    );
    // A running projector renews its lease continuously; wait up to two lease periods for it to
    // be free (stop the projector role first for a rebuild of a live system).
    projector
        .rebuild(
            Duration::from_millis(cfg.projector.lease_ttl_ms * 2),
            progress,
        )
        .await
        .map_err(|e| AppError::Setup(e.to_string()))
}
