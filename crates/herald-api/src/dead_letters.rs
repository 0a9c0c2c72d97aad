//! `/v1/dead-letters`: requests Herald gave up on (`DEAD`), and their requeue.
//!
//! A tenant key sees and requeues its own; the admin key sees every tenant's, plus the queue's
//! own dead set — jobs that failed for infrastructure reasons until their max attempts
//! (DESIGN §3) — which belongs to no tenant.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use herald_core::state::{DeadJob, ListQuery};
use herald_domain::Status;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiState;
use crate::auth::Caller;
use crate::error::{
    ApiError, BadPath, BadQuery, Conflict, IdPath, NotFound, QueryParams, Unauthorized, Unavailable,
};
use crate::message_requests::{MessageRequestView, PageParams, encode_cursor};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/dead-letters", get(list))
        .route("/v1/dead-letters/{id}/requeue", post(requeue))
}

/// One page of dead-lettered requests, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterPage {
    pub items: Vec<MessageRequestView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    /// Admin key only: the queue's dead jobs (up to `limit`; not paged by `cursor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_jobs: Option<Vec<DeadJobView>>,
}

/// A job in the queue's dead set.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = DeadJob)]
pub struct DeadJobView {
    pub id: String,
    /// `queueSendMessageRequest`, `queueRetryFailedMessageRequest` or `createMessageRequests`.
    pub name: String,
    pub attempts: u32,
    pub last_error: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

impl From<DeadJob> for DeadJobView {
    fn from(j: DeadJob) -> Self {
        DeadJobView {
            id: j.id,
            name: j.name.as_str().to_owned(),
            attempts: j.attempts,
            last_error: j.last_error,
            payload: j.payload,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterParams {
    limit: Option<String>,
    cursor: Option<String>,
}

/// List dead-lettered message requests.
#[utoipa::path(
    get,
    path = "/v1/dead-letters",
    tag = "dead-letters",
    operation_id = "listDeadLetters",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, 1 to 1000 (default 50)"),
        ("cursor" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]{21}[AQgw]$", description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page; `dead_jobs` only with the admin key", body = DeadLetterPage),
        BadQuery, Unauthorized, Unavailable,
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    QueryParams(q): QueryParams<DeadLetterParams>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let page = PageParams::parse(q.limit.as_deref(), q.cursor.as_deref())?;
    let result = state
        .service
        .list(ListQuery {
            tenant: caller.tenant().map(str::to_owned),
            status: Some(Status::Dead),
            limit: page.limit,
            before: page.before,
        })
        .await?;
    let dead_jobs = match caller {
        Caller::Admin => Some(
            state
                .service
                .state()
                .dead_jobs(page.limit)
                .await
                .map_err(|e| ApiError::unavailable(&e.to_string()))?
                .into_iter()
                .map(Into::into)
                .collect(),
        ),
        Caller::Tenant(_) => None,
    };
    Ok(Json(DeadLetterPage {
        items: result.items.into_iter().map(Into::into).collect(),
        next_cursor: result.next.map(encode_cursor),
        dead_jobs,
    }))
}

/// Requeue a dead-lettered request: back to `PENDING` with a fresh round of attempts.
#[utoipa::path(
    post,
    path = "/v1/dead-letters/{id}/requeue",
    tag = "dead-letters",
    operation_id = "requeueDeadLetter",
    params(("id" = Uuid, Path, description = "The request id")),
    responses(
        (status = 200, description = "The request, now `PENDING`", body = MessageRequestView),
        BadPath, Unauthorized, NotFound, Conflict, Unavailable,
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn requeue(
    State(state): State<ApiState>,
    caller: Caller,
    IdPath(id): IdPath,
) -> Result<Json<MessageRequestView>, ApiError> {
    let request = state.service.requeue(caller.tenant(), id).await?;
    tracing::info!(%id, "dead letter requeued");
    Ok(Json(request.into()))
}
