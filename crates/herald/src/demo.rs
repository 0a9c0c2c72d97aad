//! `herald demo`: the whole pipeline on the embedded backend against the bundled example
//! requests and a local receiver that behaves like real endpoints (see [`crate::receiver`]).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herald_core::service::Service;
use herald_core::state::QueueInfo;
use herald_domain::{CreateRequest, Status};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::app::{self, Roles, StartOptions};
use crate::config::{Config, RuleConfig, TenantConfig};
use crate::receiver::Receiver;

/// The bundled example requests. Webhook recipients use `{{receiver}}` for the local receiver.
pub const EXAMPLES: &str = include_str!("../../../examples/requests.jsonl");

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub data_dir: Option<PathBuf>,
    pub summary_json: Option<PathBuf>,
    /// A JSONL file of requests instead of the bundled examples.
    pub requests: Option<PathBuf>,
    /// Use only the first N requests.
    pub limit: Option<usize>,
    /// Delay of retry jobs (the seed's 5 s by default).
    pub retry_delay_ms: Option<u64>,
    pub webhook_timeout_ms: u64,
    /// Give up after this long.
    pub timeout: Duration,
    pub concurrency: usize,
    /// Event store URL instead of the data directory's SQLite file (must hold no events).
    pub event_store: Option<String>,
    /// State URL instead of the data directory's SQLite file.
    pub state: Option<String>,
    /// Redis key namespace (a fresh `demo-<id>` by default).
    pub namespace: Option<String>,
    /// Draw the progress line even when stderr is not a terminal.
    pub progress: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            data_dir: None,
            summary_json: None,
            requests: None,
            limit: None,
            retry_delay_ms: None,
            webhook_timeout_ms: 2000,
            timeout: Duration::from_secs(180),
            concurrency: 16,
            event_store: None,
            state: None,
            namespace: None,
            progress: std::io::stderr().is_terminal(),
        }
    }
}

/// One line of the examples file.
#[derive(Debug, Deserialize)]
struct ExampleLine {
    tenant: String,
    #[serde(flatten)]
    request: serde_json::Value,
}

/// The figures `herald demo` prints and writes with `--summary-json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub total: u64,
    pub sent: u64,
    pub dead: u64,
    pub cancelled: u64,
    pub pending: u64,
    pub failed: u64,
    /// Delivery attempts recorded (`Sent` + `Failed` events).
    pub attempts: u64,
    /// Retries scheduled by retry jobs.
    pub retries: u64,
    pub dead_letters: u64,
    /// Deliveries the receiver accepted (2xx).
    pub deliveries: u64,
    pub duplicate_deliveries: u64,
    pub bad_signatures: u64,
    pub elapsed_ms: u64,
    pub throughput_per_s: f64,
    pub all_terminal: bool,
    pub queue: serde_json::Value,
    pub data_dir: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    App(#[from] app::AppError),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Service(#[from] herald_core::service::ServiceError),
    #[error("{0}")]
    State(#[from] herald_core::StateError),
    #[error("{0}")]
    Store(#[from] herald_core::StoreError),
}

fn parse_requests(
    text: &str,
    receiver: &str,
    limit: Option<usize>,
) -> Result<Vec<(String, CreateRequest)>, DemoError> {
    if limit == Some(0) {
        return Err(DemoError::Input("--limit must be at least 1".into()));
    }
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let line = line.replace("{{receiver}}", receiver);
        let ex: ExampleLine = serde_json::from_str(&line)
            .map_err(|e| DemoError::Input(format!("requests line {}: {e}", n + 1)))?;
        let req: CreateRequest = serde_json::from_value(ex.request)
            .map_err(|e| DemoError::Input(format!("requests line {}: {e}", n + 1)))?;
        out.push((ex.tenant, req));
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
    }
    if out.is_empty() {
        return Err(DemoError::Input("no requests to send".into()));
    }
    Ok(out)
}

fn random_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::rng().random();
    format!("whsec_{}", hex::encode(bytes))
}

/// Runs the demo and returns its summary. The caller prints it.
pub async fn run(opts: DemoOptions) -> Result<Summary, DemoError> {
    let started = Instant::now();
    let (dir, _tmp) = match &opts.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            if d.join("herald.db").exists() {
                return Err(DemoError::Input(format!(
                    "{} already holds a demo run (herald.db); give an empty --data-dir",
                    d.display()
                )));
            }
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new().prefix("herald-demo-").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let text = match &opts.requests {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| DemoError::Input(format!("cannot read {}: {e}", p.display())))?,
        None => EXAMPLES.to_string(),
    };
    // Tenants come from the requests; each gets a fresh signing secret shared with the receiver.
    let tenants: Vec<String> = {
        let mut t: Vec<String> = parse_requests(&text, "http://placeholder.invalid", opts.limit)?
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        t.sort();
        t.dedup();
        t
    };
    let secrets: HashMap<String, String> = tenants
        .iter()
        .map(|t| (t.clone(), random_secret()))
        .collect();
    let shutdown = CancellationToken::new();
    let receiver = Receiver::new(secrets.clone(), opts.webhook_timeout_ms + 1000);
    let raddr = receiver.serve(0, shutdown.clone()).await?;
    let requests = parse_requests(&text, &format!("http://{raddr}"), opts.limit)?;

    let db = format!("sqlite://{}", dir.join("herald.db").display());
    let mut cfg = Config {
        event_store: opts.event_store.clone().unwrap_or_else(|| db.clone()),
        state: opts.state.clone().unwrap_or(db),
        namespace: opts
            .namespace
            .clone()
            .unwrap_or_else(|| format!("demo-{}", uuid::Uuid::new_v4().simple())),
        tenants: tenants
            .iter()
            .map(|t| TenantConfig {
                id: t.clone(),
                api_key: Some(random_secret()),
                api_key_sha256: None,
                webhook_secret: secrets.get(t).cloned(),
            })
            .collect(),
        ..Config::default()
    };
    cfg.channels.webhook_timeout_ms = opts.webhook_timeout_ms;
    cfg.channels.log = dir.join("messages.log").display().to_string();
    cfg.workers.concurrency = opts.concurrency;
    cfg.workers.shutdown_grace_ms = 2000;
    if let Some(ms) = opts.retry_delay_ms {
        cfg.rules.push(RuleConfig {
            event: herald_domain::event::FAILED.into(),
            priority: None,
            delay_ms: Some(ms),
            backoff: None,
            max_attempts: None,
        });
    }
    let roles = Roles {
        api: false,
        projector: true,
        worker: true,
    };
    let issues = cfg.validate(None);
    if let Some(i) = issues.first() {
        return Err(DemoError::Input(i.to_string()));
    }
    let backends = app::open_backends(&cfg).await?;
    // The demo's figures count every request in the state: both must start empty, or old work
    // would be counted (and an old store's events re-dispatched into a new state).
    if backends.store.head().await? > 0 || backends.state.checkpoint().await? > 0 {
        return Err(DemoError::Input(
            "the event store or state already holds data; give the demo an empty schema/database and a fresh namespace"
                .into(),
        ));
    }
    let running = app::start(
        &cfg,
        roles,
        StartOptions {
            backends: Some(backends),
            ..Default::default()
        },
        shutdown.clone(),
    )
    .await?;
    let service = running.service.clone();

    for (tenant, req) in requests.iter().cloned() {
        service
            .create(&tenant, req, None, String::new(), Some("demo".into()))
            .await?;
    }
    let total = requests.len() as u64;
    let deadline = started + opts.timeout;
    let bar = progress_bar(total, opts.progress);
    let mut last_plain = Instant::now();
    let all_terminal = loop {
        let counts = service.state().status_counts(None).await?;
        let c = |s: Status| counts.get(&s).copied().unwrap_or(0);
        let terminal = c(Status::Sent) + c(Status::Dead) + c(Status::Cancelled);
        let line = format!(
            "sent {} · failed {} · dead {} · pending {} · receiver accepted {}",
            c(Status::Sent),
            c(Status::Failed),
            c(Status::Dead),
            c(Status::Pending),
            receiver.stats().accepted
        );
        match &bar {
            Some(b) => {
                b.set_position(terminal);
                b.set_message(line);
            }
            None if last_plain.elapsed() >= Duration::from_secs(2) => {
                eprintln!(
                    "[{:>5.1}s] {terminal}/{total} terminal · {line}",
                    started.elapsed().as_secs_f64()
                );
                last_plain = Instant::now();
            }
            None => {}
        }
        if terminal >= total && c(Status::Pending) + c(Status::Failed) == 0 {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let elapsed = started.elapsed();
    let queue = service.state().queue_info().await?;
    shutdown.cancel();
    running.wait().await;
    let mut summary = summarize(&service, &receiver, total, elapsed, queue).await?;
    summary.all_terminal = all_terminal;
    summary.data_dir = dir.display().to_string();
    if let Some(p) = &opts.summary_json {
        write_json(p, &summary)?;
    }
    // Keep a named data dir; a temporary one goes away with `_tmp`.
    Ok(summary)
}

fn write_json(p: &Path, s: &Summary) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(s).map_err(std::io::Error::other)?;
    std::fs::write(p, text + "\n")
}

fn progress_bar(total: u64, enabled: bool) -> Option<indicatif::ProgressBar> {
    if !enabled {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} terminal · {msg}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}

async fn summarize(
    service: &Service,
    receiver: &Receiver,
    total: u64,
    elapsed: Duration,
    queue: QueueInfo,
) -> Result<Summary, DemoError> {
    let counts = service.state().status_counts(None).await?;
    let c = |s: Status| counts.get(&s).copied().unwrap_or(0);
    let mut s = Summary {
        total,
        sent: c(Status::Sent),
        dead: c(Status::Dead),
        cancelled: c(Status::Cancelled),
        pending: c(Status::Pending),
        failed: c(Status::Failed),
        ..Default::default()
    };
    // Attempts, retries and dead letters come from the audit trail itself.
    let mut after = 0;
    loop {
        let events = service.store().read_all(after, 1000).await?;
        let Some(last) = events.last() else { break };
        after = last.position;
        for e in &events {
            match e.event_type.as_str() {
                herald_domain::event::SENT | herald_domain::event::FAILED => s.attempts += 1,
                herald_domain::event::DEAD_LETTERED => s.dead_letters += 1,
                herald_domain::event::UPDATED
                    if e.data.get("reason").and_then(|r| r.as_str())
                        == Some(herald_domain::command::REASON_RETRY) =>
                {
                    s.retries += 1
                }
                _ => {}
            }
        }
    }
    let rx = receiver.stats();
    s.deliveries = rx.accepted;
    s.duplicate_deliveries = rx.duplicate_deliveries;
    s.bad_signatures = rx.bad_signatures;
    s.elapsed_ms = elapsed.as_millis() as u64;
    s.throughput_per_s = total as f64 / elapsed.as_secs_f64().max(0.001);
    s.queue = serde_json::to_value(&queue).unwrap_or_default();
    Ok(s)
}

/// The summary as a table for people.
pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    let row = |out: &mut String, k: &str, v: String| out.push_str(&format!("  {k:<22} {v:>10}\n"));
    out.push_str("Herald demo summary\n");
    row(&mut out, "requests", s.total.to_string());
    row(&mut out, "sent", s.sent.to_string());
    row(&mut out, "dead (dead-lettered)", s.dead.to_string());
    row(&mut out, "cancelled", s.cancelled.to_string());
    row(&mut out, "pending", s.pending.to_string());
    row(&mut out, "failed", s.failed.to_string());
    row(&mut out, "attempts", s.attempts.to_string());
    row(&mut out, "retries", s.retries.to_string());
    row(&mut out, "receiver deliveries", s.deliveries.to_string());
    row(
        &mut out,
        "duplicate deliveries",
        s.duplicate_deliveries.to_string(),
    );
    row(&mut out, "bad signatures", s.bad_signatures.to_string());
    row(
        &mut out,
        "elapsed",
        format!("{:.1} s", s.elapsed_ms as f64 / 1000.0),
    );
    row(
        &mut out,
        "throughput",
        format!("{:.1}/s", s.throughput_per_s),
    );
    out.push_str("  queue (waiting/active/delayed/completed/failed/dead)\n");
    if let Some(by) = s.queue.get("by_name").and_then(|v| v.as_object()) {
        for (name, c) in by {
            let g = |k: &str| c.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
            out.push_str(&format!(
                "    {name:<32} {}/{}/{}/{}/{}/{}\n",
                g("waiting"),
                g("active"),
                g("delayed"),
                g("completed"),
                g("failed"),
                g("dead")
            ));
        }
    }
    out
}
