//! `GET /v1/queue`: the job queue's statistics (the seed's `getQueueInfo`). They hold no tenant
//! data, so any tenant key may read them, as may the admin key.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use herald_core::state::{QueueCounts, QueueInfo};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{ApiError, Unauthorized, Unavailable};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new().route("/v1/queue", get(info))
}

/// Jobs in each state. `waiting`, `active`, `delayed` and `dead` are current; `completed` and
/// `failed` count every completed and every errored run since the queue was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = QueueCounts)]
pub struct QueueCountsView {
    pub waiting: u64,
    pub active: u64,
    pub delayed: u64,
    pub completed: u64,
    pub failed: u64,
    pub dead: u64,
}

impl From<QueueCounts> for QueueCountsView {
    fn from(c: QueueCounts) -> Self {
        QueueCountsView {
            waiting: c.waiting,
            active: c.active,
            delayed: c.delayed,
            completed: c.completed,
            failed: c.failed,
            dead: c.dead,
        }
    }
}

/// Counts in total and per job name (`queueSendMessageRequest`,
/// `queueRetryFailedMessageRequest`, `createMessageRequests`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = QueueInfo)]
pub struct QueueInfoView {
    pub total: QueueCountsView,
    pub by_name: BTreeMap<String, QueueCountsView>,
}

impl From<QueueInfo> for QueueInfoView {
    fn from(q: QueueInfo) -> Self {
        QueueInfoView {
            total: q.total.into(),
            by_name: q.by_name.into_iter().map(|(k, v)| (k, v.into())).collect(),
        }
    }
}

/// Queue statistics.
#[utoipa::path(
    get,
    path = "/v1/queue",
    tag = "queue",
    operation_id = "getQueueInfo",
    responses(
        (status = 200, description = "Job counts", body = QueueInfoView),
        Unauthorized, Unavailable,
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn info(
    State(state): State<ApiState>,
    _caller: Caller,
) -> Result<Json<QueueInfoView>, ApiError> {
    let info = state
        .service
        .state()
        .queue_info()
        .await
        .map_err(|e| ApiError::unavailable(&e.to_string()))?;
    Ok(Json(info.into()))
}
