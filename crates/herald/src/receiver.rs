//! A local webhook receiver that behaves like real endpoints, for `herald demo` and the tests.
//! It verifies every Standard Webhooks signature and counts, per request id (`webhook-id`), the
//! deliveries it accepted with a 2xx: more than one is a duplicate delivery.
//!
//! The path chooses the behaviour: `/hooks/<behaviour>/<anything>` where behaviour is
//! - `ok`: 200;
//! - `flaky1`, `flaky2`: 503 for the first one or two deliveries of a request, then 200;
//! - `down`: always 500;
//! - `gone`: 410 (permanent);
//! - `throttle`: 429 with `Retry-After: 1` once, then 200;
//! - `slow`: answers 503 after `slow_ms` (longer than Herald's timeout);
//! - `slowok`: answers 200 after `slow_ms`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default, Clone, Serialize)]
pub struct ReceiverStats {
    /// Deliveries that reached the receiver (any answer).
    pub received: u64,
    /// Deliveries answered with 2xx.
    pub accepted: u64,
    /// Request ids accepted more than once.
    pub duplicate_deliveries: u64,
    /// Deliveries whose signature did not verify (answered 401).
    pub bad_signatures: u64,
}

#[derive(Default)]
struct Inner {
    /// Deliveries seen per request id (any answer), to script flaky behaviour.
    seen: HashMap<String, u32>,
    /// Accepted deliveries per request id.
    accepted: HashMap<String, u32>,
    received: u64,
    bad_signatures: u64,
}

#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
    /// Webhook secret per tenant; the tenant is the first path segment after the behaviour.
    secrets: Arc<HashMap<String, String>>,
    slow_ms: u64,
}

impl Receiver {
    pub fn new(secrets: HashMap<String, String>, slow_ms: u64) -> Receiver {
        Receiver {
            inner: Arc::default(),
            secrets: Arc::new(secrets),
            slow_ms,
        }
    }

    pub fn stats(&self) -> ReceiverStats {
        let Ok(g) = self.inner.lock() else {
            return ReceiverStats::default();
        };
        ReceiverStats {
            received: g.received,
            accepted: g.accepted.values().map(|n| *n as u64).sum(),
            duplicate_deliveries: g
                .accepted
                .values()
                .filter(|n| **n > 1)
                .map(|n| (*n - 1) as u64)
                .sum(),
            bad_signatures: g.bad_signatures,
        }
    }

    /// Accepted deliveries of one request id.
    pub fn accepted_for(&self, id: &str) -> u32 {
        self.inner
            .lock()
            .ok()
            .and_then(|g| g.accepted.get(id).copied())
            .unwrap_or(0)
    }

    /// Serves on `127.0.0.1:port` (0 picks a free port) until `shutdown`.
    pub async fn serve(
        &self,
        port: u16,
        shutdown: CancellationToken,
    ) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route(
                "/hooks/{behaviour}/{tenant}/{name}",
                axum::routing::post(hook),
            )
            .with_state(self.clone());
        tokio::spawn(async move {
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "receiver stopped");
            }
        });
        Ok(addr)
    }
}

async fn hook(
    State(rx): State<Receiver>,
    Path((behaviour, tenant, _name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (id, ts, sig) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let verified = match (rx.secrets.get(&tenant), ts.parse::<i64>()) {
        (Some(secret), Ok(ts)) => herald_channels::signature::verify(secret, &id, ts, &body, &sig),
        _ => false,
    };
    let seen = {
        let Ok(mut g) = rx.inner.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        g.received += 1;
        if !verified {
            g.bad_signatures += 1;
            return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
        }
        let n = g.seen.entry(id.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let status = match behaviour.as_str() {
        "ok" => StatusCode::OK,
        "flaky1" if seen <= 1 => StatusCode::SERVICE_UNAVAILABLE,
        "flaky2" if seen <= 2 => StatusCode::SERVICE_UNAVAILABLE,
        "flaky1" | "flaky2" => StatusCode::OK,
        "down" => StatusCode::INTERNAL_SERVER_ERROR,
        "gone" => StatusCode::GONE,
        "throttle" if seen <= 1 => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                "slow down",
            )
                .into_response();
        }
        "throttle" => StatusCode::OK,
        "slowok" => {
            tokio::time::sleep(Duration::from_millis(rx.slow_ms)).await;
            StatusCode::OK
        }
        "slow" => {
            tokio::time::sleep(Duration::from_millis(rx.slow_ms)).await;
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::NOT_FOUND,
    };
    if status.is_success()
        && let Ok(mut g) = rx.inner.lock()
    {
        *g.accepted.entry(id).or_insert(0) += 1;
    }
    status.into_response()
}
