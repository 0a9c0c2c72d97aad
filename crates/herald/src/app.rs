//! All of Herald's wiring in one place: backends chosen by URL, channels, the projector, the
//! workers and the HTTP API, started together with one shutdown token. `herald serve`, `herald
//! demo`, `herald bench` and the integration tests all start Herald through [`start`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use herald_channels::{EmailChannel, EmailConfig, LogChannel, WebhookChannel, WebhookConfig};
use herald_core::channel::Channels;
use herald_core::projector::{Projector, ProjectorConfig, default_holder};
use herald_core::service::Service;
use herald_core::worker::{WorkerConfig, Workers};
use herald_core::{EventStore, StateBackend};
use herald_domain::Channel;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("event store: {0}")]
    Store(#[from] herald_core::StoreError),
    #[error("state backend: {0}")]
    State(#[from] herald_core::StateError),
    #[error("{0}")]
    Setup(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// Which parts this process runs (`herald serve --roles api,projector,worker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub api: bool,
    pub projector: bool,
    pub worker: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        api: true,
        projector: true,
        worker: true,
    };

    /// The projector and the workers, without the HTTP API.
    pub const ALL_BUT_API: Roles = Roles {
        api: false,
        projector: true,
        worker: true,
    };

    pub fn parse(s: &str) -> Result<Roles, String> {
        let mut r = Roles {
            api: false,
            projector: false,
            worker: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "api" => r.api = true,
                "projector" => r.projector = true,
                "worker" | "workers" => r.worker = true,
                other => {
                    return Err(format!(
                        "unknown role {other:?}; use api, projector and/or worker"
                    ));
                }
            }
        }
        if !(r.api || r.projector || r.worker) {
            return Err("no role given; use api, projector and/or worker".into());
        }
        Ok(r)
    }
}

/// The two backends, opened from the configuration's URLs.
#[derive(Clone)]
pub struct Backends {
    pub store: Arc<dyn EventStore>,
    pub state: Arc<dyn StateBackend>,
}

/// Opens the event store and the state backend named by `event_store` and `state`.
pub async fn open_backends(cfg: &Config) -> Result<Backends, AppError> {
    let store: Arc<dyn EventStore> = if cfg.event_store.starts_with("sqlite:") {
        Arc::new(
            herald_sqlite::SqliteEventStore::open(&herald_sqlite::path_from_url(&cfg.event_store))
                .await?,
        )
    } else {
        crate::backends::open_store(&cfg.event_store).await?
    };
    let state: Arc<dyn StateBackend> = if cfg.state.starts_with("sqlite:") {
        Arc::new(herald_sqlite::SqliteState::open(&herald_sqlite::path_from_url(&cfg.state)).await?)
    } else {
        crate::backends::open_state(&cfg.state, &cfg.namespace).await?
    };
    Ok(Backends { store, state })
}

/// The channels the configuration describes.
pub fn channels(cfg: &Config) -> Result<Channels, AppError> {
    let webhook = WebhookChannel::new(WebhookConfig {
        timeout: cfg.webhook_timeout(),
        secrets: cfg
            .tenants
            .iter()
            .filter_map(|t| Some((t.id.clone(), t.webhook_secret.clone()?)))
            .collect(),
        ..Default::default()
    })
    .map_err(|e| AppError::Setup(e.to_string()))?;
    let mut channels = Channels::new()
        .with(Channel::Webhook, Arc::new(webhook))
        .with(
            Channel::Log,
            Arc::new(LogChannel::from_target(&cfg.channels.log)),
        );
    if let Some(url) = &cfg.channels.smtp_url {
        let email = EmailConfig::from_url(url, &cfg.channels.email_from, cfg.email_timeout())
            .and_then(EmailChannel::new)
            .map_err(|e| AppError::Setup(e.to_string()))?;
        channels = channels.with(Channel::Email, Arc::new(email));
    }
    Ok(channels)
}

/// A started Herald. Cancel the token passed to [`start`] and await [`Running::wait`] to stop.
pub struct Running {
    /// Where the API listens, when this process runs it.
    pub addr: Option<SocketAddr>,
    pub service: Service,
    pub backends: Backends,
    tasks: JoinSet<()>,
}

impl Running {
    /// Waits until every task has stopped (after the shutdown token is cancelled).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Options that callers other than `serve` set.
#[derive(Default)]
pub struct StartOptions {
    /// A listener already bound (tests bind port 0); otherwise `cfg.listen` is bound.
    pub listener: Option<tokio::net::TcpListener>,
    /// Channels to use instead of the configured ones (benchmarks).
    pub channels: Option<Channels>,
    /// Already opened backends (the demo shares them with its own reads).
    pub backends: Option<Backends>,
    /// The Prometheus handle for `/metrics`.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// Starts the roles asked for. Every task stops when `shutdown` is cancelled: the API stops
/// accepting, the projector finishes its step, workers finish or release their jobs.
pub async fn start(
    cfg: &Config,
    roles: Roles,
    opts: StartOptions,
    shutdown: CancellationToken,
) -> Result<Running, AppError> {
    let backends = match opts.backends {
        Some(b) => b,
        None => open_backends(cfg).await?,
    };
    // Bind first: a process that cannot listen must fail before it takes the projector lease or
    // leases jobs.
    let listener = if roles.api {
        Some(match opts.listener {
            Some(l) => l,
            None => tokio::net::TcpListener::bind(&cfg.listen)
                .await
                .map_err(|source| AppError::Listen {
                    addr: cfg.listen.clone(),
                    source,
                })?,
        })
    } else {
        None
    };
    let rules = Arc::new(cfg.rules());
    let service = Service::new(backends.store.clone(), backends.state.clone());
    let mut tasks = JoinSet::new();
    let projector_alive = Arc::new(AtomicBool::new(!roles.projector));
    if roles.projector {
        let projector = Projector::new(
            backends.store.clone(),
            backends.state.clone(),
            rules.clone(),
            ProjectorConfig {
                batch_size: cfg.projector.batch_size,
                lease_ttl: Duration::from_millis(cfg.projector.lease_ttl_ms),
                holder: default_holder("projector"),
            },
        );
        let token = shutdown.clone();
        let alive = projector_alive.clone();
        alive.store(true, Ordering::SeqCst);
        tasks.spawn(async move {
            projector.run(token).await;
            alive.store(false, Ordering::SeqCst);
            tracing::info!("projector stopped");
        });
    }
    if roles.worker {
        let channels = match opts.channels {
            Some(c) => c,
            None => channels(cfg)?,
        };
        let workers = Workers::new(
            backends.store.clone(),
            backends.state.clone(),
            Arc::new(channels),
            rules.clone(),
            WorkerConfig {
                concurrency: cfg.workers.concurrency,
                lease: Duration::from_millis(cfg.workers.lease_ms),
                job_timeout: Duration::from_millis(
                    cfg.workers.lease_ms.saturating_sub(1000).max(1000),
                ),
                shutdown_grace: Duration::from_millis(cfg.workers.shutdown_grace_ms),
                name: default_holder("worker"),
            },
        );
        let token = shutdown.clone();
        tasks.spawn(async move {
            workers.run(token).await;
            tracing::info!("workers stopped");
        });
    }
    let addr = listener.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(listener) = listener {
        crate::api_role::spawn(
            cfg,
            service.clone(),
            listener,
            opts.metrics,
            projector_alive,
            shutdown.clone(),
            &mut tasks,
        );
    }
    Ok(Running {
        addr,
        service,
        backends,
        tasks,
    })
}
