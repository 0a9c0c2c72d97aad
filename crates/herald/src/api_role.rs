//! The API role: serves the HTTP API until shutdown.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use herald_core::service::Service;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

pub fn spawn(
    _cfg: &Config,
    _service: Service,
    _listener: tokio::net::TcpListener,
    _metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    _projector_alive: Arc<AtomicBool>,
    _shutdown: CancellationToken,
    _tasks: &mut JoinSet<()>,
) {
    tracing::warn!("API role not available yet");
}
