//! Herald's HTTP API (DESIGN §6): JSON over HTTP, versioned under `/v1`, one bearer API key per
//! tenant. The `herald` binary mounts [`router`]; tests serve the very same router on port 0.
//!
//! Code map:
//! - [`message_requests`]: create (single, idempotent), batch, get, list, patch, the audit trail.
//! - [`dead_letters`]: the dead-letter list and requeue (tenant keys see their own, the admin key
//!   sees every tenant's plus the queue's dead jobs).
//! - [`queue`]: queue statistics (`getQueueInfo`).
//! - [`health`]: liveness, readiness (backends, projector lag, queue), Prometheus metrics.
//! - [`docs`]: the OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`s.
//! - [`auth`]: API keys → callers. [`error`]: the one JSON error shape and the extractors that
//!   replace axum's plain-text rejections with it.
//!
//! Architecture invariants:
//! - Handlers call [`Service`] and nothing else that writes; the API holds no state of its own,
//!   so any number of API nodes can share one backend.
//! - Every response that is not a success is `{"error": {"code", "message"}}` with a 4xx (or 503
//!   when a backend is down). Problems with the URL (path, query) are 400; problems with a
//!   request body — malformed JSON, wrong types, unknown or missing fields, failed validation —
//!   are 422. Nothing a client sends can produce a 500 or a partial write: every body is fully
//!   validated before the one append (or one enqueue) that acts on it.
//! - API keys are never stored or logged: the configuration holds their SHA-256, and requests
//!   are logged with the tenant id.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use herald_core::service::Service;
use metrics_exporter_prometheus::PrometheusHandle;
use tracing::Instrument;

pub mod auth;
pub mod dead_letters;
pub mod docs;
pub mod error;
pub mod health;
pub mod message_requests;
pub mod queue;

pub use auth::hash_key;
pub use docs::openapi;

/// Default largest request body: 256 KiB (one message request with a generous webhook body).
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// The batch route accepts bodies this many times larger than [`ApiConfig::max_body_bytes`]...
pub const BATCH_BODY_FACTOR: usize = 64;
/// ...but never more than this (64 MiB), however large `max_body_bytes` is: a batch is buffered
/// and parsed in memory before any of it is accepted.
pub const MAX_BATCH_BODY_BYTES: usize = 64 * 1024 * 1024;

/// What the API needs from the configuration.
#[derive(Clone)]
pub struct ApiConfig {
    /// The tenants and the SHA-256 of their API keys; a request's tenant is the one whose key
    /// it presents.
    pub tenants: Vec<ApiTenant>,
    /// SHA-256 of the operators' key: reads the queue and every tenant's dead letters, requeues
    /// any of them. `None` disables it.
    pub admin_key_sha256: Option<[u8; 32]>,
    /// Largest request body accepted (413 beyond it). The batch route allows
    /// [`ApiConfig::batch_body_bytes`].
    pub max_body_bytes: usize,
}

impl ApiConfig {
    /// Body limit of `POST /v1/message-requests/batch`: `max_body_bytes * 64`, at most 64 MiB
    /// (and never below `max_body_bytes`). 10,000 typical requests fit in the default 16 MiB.
    pub fn batch_body_bytes(&self) -> usize {
        self.max_body_bytes
            .saturating_mul(BATCH_BODY_FACTOR)
            .min(MAX_BATCH_BODY_BYTES)
            .max(self.max_body_bytes)
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            tenants: Vec::new(),
            admin_key_sha256: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// Key hashes are not secrets, but there is no reason to print them either.
impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field(
                "tenants",
                &self.tenants.iter().map(|t| &t.id).collect::<Vec<_>>(),
            )
            .field("admin_key", &self.admin_key_sha256.is_some())
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

/// A tenant and the SHA-256 of its API key ([`hash_key`]).
#[derive(Clone)]
pub struct ApiTenant {
    pub id: String,
    pub api_key_sha256: [u8; 32],
}

/// Everything a handler can reach. Cheap to clone: axum clones it per request.
#[derive(Clone)]
pub struct ApiState {
    pub service: Service,
    pub config: Arc<ApiConfig>,
    /// Renders `GET /metrics`; `None` answers 404 there (metrics disabled).
    pub metrics: Option<PrometheusHandle>,
    /// Whether this process's projector loop is running, for `GET /health/ready`. An API-only
    /// node (another process projects) passes `|| true`.
    pub projector_alive: Arc<dyn Fn() -> bool + Send + Sync>,
}

/// The whole API, with its state applied: mount it or serve it as it is.
pub fn router(state: ApiState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let batch_limit = state.config.batch_body_bytes();
    Router::new()
        .merge(message_requests::routes(batch_limit))
        .merge(dead_letters::routes())
        .merge(queue::routes())
        .merge(health::routes())
        .merge(docs::routes())
        .fallback(error::route_not_found)
        // Must come after every route: it is installed on the routes that exist at this point.
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(observe))
        .with_state(state)
}

/// Logs and counts every request. The span carries the tenant once [`auth`] knows it, so
/// handler logs say whose request it was (never which key).
async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    // The route template, not the path: ids would make the metric's cardinality unbounded.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!(
        "http",
        method = %method,
        route = %route,
        tenant = tracing::field::Empty
    );
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status();
    let elapsed = started.elapsed();
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(
                status = status.as_u16(),
                elapsed_ms = elapsed.as_millis() as u64,
                "request"
            );
        } else {
            tracing::debug!(
                status = status.as_u16(),
                elapsed_ms = elapsed.as_millis() as u64,
                "request"
            );
        }
    });
    metrics::counter!(
        "herald_http_requests_total",
        "method" => method.to_string(),
        "route" => route.clone(),
        "status" => status.as_u16().to_string()
    )
    .increment(1);
    metrics::histogram!(
        "herald_http_request_duration_seconds",
        "method" => method.to_string(),
        "route" => route
    )
    .record(elapsed.as_secs_f64());
    response
}
