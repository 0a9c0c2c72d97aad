//! Probes and metrics, all without authentication: `GET /health/live`, `GET /health/ready` and
//! `GET /metrics` are for orchestrators and scrapers, and say nothing about any tenant's data.

use std::future::Future;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiState;
use crate::error::{ApiError, ErrorCode};
use crate::queue::QueueInfoView;

/// How long readiness waits for each backend: a probe must answer even when a backend hangs.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LiveStatus {
    Ok,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Liveness {
    pub status: LiveStatus,
}

/// The process is up (it answers). Restart it when this fails.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    operation_id = "live",
    responses((status = 200, description = "The process answers", body = Liveness)),
)]
pub(crate) async fn live() -> Json<Liveness> {
    Json(Liveness {
        status: LiveStatus::Ok,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadyStatus {
    Ok,
    Unavailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Down,
}

/// One dependency's state. `error` says why it is down, without backend details (those are
/// in the server log: this endpoint needs no key).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Check {
    pub status: CheckStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Check {
    fn ok() -> Check {
        Check {
            status: CheckStatus::Ok,
            error: None,
        }
    }

    fn down(error: impl Into<String>) -> Check {
        Check {
            status: CheckStatus::Down,
            error: Some(error.into()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadinessChecks {
    pub event_store: Check,
    /// Read models, job queue and checkpoint.
    pub state: Check,
    /// This process's projector loop.
    pub projector: Check,
}

/// Readiness: the same shape whether ready (200) or not (503).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub status: ReadyStatus,
    pub checks: ReadinessChecks,
    /// Events the projector still has to project (event store head − checkpoint); `null` when
    /// a backend did not answer.
    pub projector_lag: Option<u64>,
    /// Queue statistics; `null` when the state backend did not answer.
    pub queue: Option<QueueInfoView>,
}

/// Runs `f` with [`READY_TIMEOUT`]; the error is logged, and summarised for the response.
async fn probe<T, E: std::fmt::Display>(
    what: &'static str,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(READY_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::warn!(backend = what, error = %e, "readiness check failed");
            Err(format!("{what} unavailable (details in the server log)"))
        }
        Err(_) => {
            tracing::warn!(backend = what, "readiness check timed out");
            Err(format!("{what} did not answer within {READY_TIMEOUT:?}"))
        }
    }
}

/// Ready to serve: both backends answer and the projector runs. The body says what is down.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    operation_id = "ready",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready: `checks` says what is down", body = Readiness),
    ),
)]
pub(crate) async fn ready(State(state): State<ApiState>) -> (StatusCode, Json<Readiness>) {
    let store = state.service.store();
    let backend = state.service.state();
    let (head, ping, checkpoint, queue) = tokio::join!(
        probe("event store", store.head()),
        probe("state backend", backend.ping()),
        probe("state backend", backend.checkpoint()),
        probe("state backend", backend.queue_info()),
    );
    let projector = if (state.projector_alive)() {
        Check::ok()
    } else {
        Check::down("the projector is not running")
    };
    let event_store = match &head {
        Ok(_) => Check::ok(),
        Err(e) => Check::down(e.clone()),
    };
    let state_check = match (&ping, &checkpoint) {
        (Ok(()), Ok(_)) => Check::ok(),
        (Err(e), _) | (_, Err(e)) => Check::down(e.clone()),
    };
    let projector_lag = match (&head, &checkpoint) {
        (Ok(h), Ok(c)) => Some(h.saturating_sub(*c)),
        _ => None,
    };
    let all_ok = [&event_store, &state_check, &projector]
        .iter()
        .all(|c| c.status == CheckStatus::Ok);
    let body = Readiness {
        status: if all_ok {
            ReadyStatus::Ok
        } else {
            ReadyStatus::Unavailable
        },
        checks: ReadinessChecks {
            event_store,
            state: state_check,
            projector,
        },
        projector_lag,
        queue: queue.ok().map(Into::into),
    };
    let status = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    operation_id = "metrics",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 404, description = "`not_found`: metrics are disabled on this server", body = crate::error::ErrorBody),
    ),
)]
pub(crate) async fn metrics(State(state): State<ApiState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "metrics are disabled on this server",
        )
        .into_response(),
    }
}
