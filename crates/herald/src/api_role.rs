//! The API role: serves the HTTP API until shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use herald_core::service::Service;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, hash_key, parse_sha256};

/// The API's view of the configuration: tenants and keys as SHA-256 hashes only.
pub fn api_config(cfg: &Config) -> herald_api::ApiConfig {
    herald_api::ApiConfig {
        tenants: (0..cfg.tenants.len())
            .filter_map(|i| {
                Some(herald_api::ApiTenant {
                    id: cfg.tenants[i].id.clone(),
                    api_key_sha256: cfg.tenant_key_hash(i)?,
                })
            })
            .collect(),
        admin_key_sha256: match (&cfg.admin_key, &cfg.admin_key_sha256) {
            (Some(k), _) => Some(hash_key(k)),
            (None, Some(h)) => parse_sha256(h),
            _ => None,
        },
        max_body_bytes: cfg.max_body_bytes,
    }
}

pub fn spawn(
    cfg: &Config,
    service: Service,
    listener: tokio::net::TcpListener,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    projector_alive: Arc<AtomicBool>,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    let router = herald_api::router(herald_api::ApiState {
        service,
        config: Arc::new(api_config(cfg)),
        metrics,
        projector_alive: Arc::new(move || projector_alive.load(Ordering::SeqCst)),
    });
    tasks.spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        match served {
            Ok(()) => tracing::info!("API stopped"),
            Err(e) => tracing::error!(error = %e, "API server failed"),
        }
    });
}
