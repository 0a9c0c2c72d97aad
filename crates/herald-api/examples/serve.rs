//! Serves the API alone over a fresh embedded backend, with a projector and workers (only the
//! `log` channel), for poking at it by hand or fuzzing it with schemathesis:
//!
//! ```text
//! cargo run -p herald-api --example serve -- 127.0.0.1:8080 /tmp/herald-api.db
//! st run http://127.0.0.1:8080/openapi.json -H 'Authorization: Bearer demo-key'
//! ```
//!
//! Keys: tenant `demo` = `demo-key`, tenant `other` = `other-key`, admin = `admin-key`.

use std::sync::Arc;

use herald_api::{ApiConfig, ApiState, ApiTenant, hash_key};
use herald_core::channel::Channels;
use herald_core::projector::{Projector, ProjectorConfig};
use herald_core::service::Service;
use herald_core::worker::{WorkerConfig, Workers};
use herald_core::{EventStore, StateBackend};
use herald_domain::{Channel, Rules};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8080".into());
    let db = args
        .next()
        .unwrap_or_else(|| "herald-api-example.db".into());
    let (store, state) = herald_sqlite::open(&db).await?;
    let store: Arc<dyn EventStore> = Arc::new(store);
    let state: Arc<dyn StateBackend> = Arc::new(state);
    let rules = Arc::new(Rules::seed());
    let shutdown = CancellationToken::new();

    let projector = Projector::new(
        store.clone(),
        state.clone(),
        rules.clone(),
        ProjectorConfig::default(),
    );
    let token = shutdown.clone();
    let projector = tokio::spawn(async move { projector.run(token).await });
    let channels =
        Channels::new().with(Channel::Log, Arc::new(herald_channels::LogChannel::null()));
    let workers = Workers::new(
        store.clone(),
        state.clone(),
        Arc::new(channels),
        rules,
        WorkerConfig::default(),
    );
    let token = shutdown.clone();
    let workers = tokio::spawn(async move { workers.run(token).await });

    let tenant = |id: &str, key: &str| ApiTenant {
        id: id.into(),
        api_key_sha256: hash_key(key),
    };
    let router = herald_api::router(ApiState {
        service: Service::new(store, state),
        config: Arc::new(ApiConfig {
            tenants: vec![tenant("demo", "demo-key"), tenant("other", "other-key")],
            admin_key_sha256: Some(hash_key("admin-key")),
            ..ApiConfig::default()
        }),
        metrics: None,
        projector_alive: Arc::new(|| true),
    });
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("serving on http://{}", listener.local_addr()?);
    let token = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        token.cancel();
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await?;
    shutdown.cancel();
    let _ = tokio::join!(projector, workers);
    Ok(())
}
