//! `herald bench`: a load generator for the whole pipeline. It appends N `MessageRequestCreated`
//! events in batches, runs the projector and the workers with the `log` channel writing nowhere,
//! and measures how fast events are projected and dispatched, how fast requests reach `SENT`,
//! the append → `SENT` latency, peak memory, lost requests and duplicate jobs.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use herald_core::channel::Channels;
use herald_core::store::AppendStream;
use herald_domain::{CreateRequest, EventMetadata, NewEvent, Rules, Status};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::app::{self, Roles, StartOptions};
use crate::config::Config;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub event_store: String,
    pub state: String,
    pub namespace: String,
    /// Delete the Redis namespace afterwards (it was made up for this run).
    pub delete_namespace: bool,
    pub requests: usize,
    pub concurrency: usize,
    pub batch: usize,
    pub timeout: Duration,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub requests: usize,
    pub event_store: String,
    pub state: String,
    pub concurrency: usize,
    pub appended_per_s: f64,
    pub projected_per_s: f64,
    pub end_to_end_per_s: f64,
    pub latency_ms: Latency,
    pub peak_rss_mb: f64,
    pub lost: u64,
    pub duplicate_jobs: i64,
    pub elapsed_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    App(#[from] app::AppError),
    #[error(transparent)]
    Store(#[from] herald_core::StoreError),
    #[error(transparent)]
    State(#[from] herald_core::StateError),
    #[error("{0}")]
    Setup(String),
}

/// Peak resident set size of this process (Linux `VmHWM`), in MiB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Clients appending at once.
const APPEND_CLIENTS: usize = 4;

pub async fn run(opts: BenchOptions) -> Result<BenchReport, BenchError> {
    let mut cfg = Config {
        event_store: opts.event_store.clone(),
        state: opts.state.clone(),
        namespace: opts.namespace.clone(),
        ..Config::default()
    };
    cfg.workers.concurrency = opts.concurrency;
    cfg.projector.batch_size = 1000;
    let issues = cfg.validate(None);
    if !issues.is_empty() {
        return Err(BenchError::Setup(
            issues
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ));
    }
    let backends = app::open_backends(&cfg).await?;
    let start_head = backends.store.head().await?;
    let start_checkpoint = backends.state.checkpoint().await?;
    if start_head != start_checkpoint {
        return Err(BenchError::Setup(format!(
            "the state is behind its event store ({start_checkpoint} of {start_head} events projected); use a fresh state namespace or database"
        )));
    }
    let channels = Channels::new().with(
        herald_domain::Channel::Log,
        Arc::new(herald_channels::LogChannel::null()),
    );
    let shutdown = CancellationToken::new();
    let roles = Roles {
        api: false,
        projector: true,
        worker: true,
    };
    let running = app::start(
        &cfg,
        roles,
        StartOptions {
            channels: Some(channels),
            backends: Some(backends.clone()),
            ..Default::default()
        },
        shutdown.clone(),
    )
    .await?;
    let bar = opts.progress.then(|| {
        let b = indicatif::ProgressBar::with_draw_target(
            Some(opts.requests as u64),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(s) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} sent · {msg}",
        ) {
            b.set_style(s);
        }
        b
    });

    let data = CreateRequest {
        channel: "log".into(),
        recipient: "ops".into(),
        subject: None,
        body: serde_json::json!("hello"),
        metadata: None,
        idempotency_key: None,
    }
    .into_event()
    .map_err(|e| BenchError::Setup(e.to_string()))?;
    let t0 = Instant::now();
    // Appends run beside the pipeline, as clients would: several of them, each appending its
    // share of the requests in batches, one batch at a time.
    let mut appenders = tokio::task::JoinSet::new();
    let (n, batch) = (opts.requests, opts.batch.max(1));
    let chunks = n.div_ceil(batch);
    for client in 0..APPEND_CLIENTS.min(chunks.max(1)) {
        let store = backends.store.clone();
        let data = data.clone();
        appenders.spawn(async move {
            let mut last = 0;
            for c in (client..chunks).step_by(APPEND_CLIENTS) {
                let now = Utc::now();
                let chunk: Vec<AppendStream> = (c * batch..((c + 1) * batch).min(n))
                    .map(|k| AppendStream {
                        stream_id: Uuid::now_v7().to_string(),
                        expected_version: 0,
                        events: vec![NewEvent::new(
                            &format!("t{}", k % 10),
                            &data,
                            EventMetadata::default(),
                            now,
                        )],
                        idempotency: None,
                    })
                    .collect();
                for r in store.append_many(chunk).await? {
                    last = last.max(r?.last().map(|e| e.position).unwrap_or(0));
                }
            }
            Ok::<u64, herald_core::StoreError>(last)
        });
    }
    let mut last_position = 0;
    while let Some(r) = appenders.join_next().await {
        let last = r.map_err(|e| BenchError::Setup(format!("appender crashed: {e}")))??;
        last_position = last_position.max(last);
    }
    let appended_in = t0.elapsed();
    let deadline = t0 + opts.timeout;
    let mut projected_in = None;
    let sent = loop {
        if projected_in.is_none() && backends.state.checkpoint().await? >= last_position {
            projected_in = Some(t0.elapsed());
        }
        let sent = backends
            .state
            .status_counts(None)
            .await?
            .get(&Status::Sent)
            .copied()
            .unwrap_or(0);
        if let Some(b) = &bar {
            b.set_position(sent);
            b.set_message(format!("{:.0} MiB peak", peak_rss_mb()));
        }
        if (sent as usize >= opts.requests && projected_in.is_some()) || Instant::now() >= deadline
        {
            break sent;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let end_to_end = t0.elapsed();
    let projected_in = projected_in.unwrap_or(end_to_end);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let queue = backends.state.queue_info().await?;
    shutdown.cancel();
    running.wait().await;

    // Latency and duplicate jobs from what was really written.
    let rules = Rules::seed();
    let mut created_at = std::collections::HashMap::new();
    let mut latencies = Vec::with_capacity(opts.requests);
    let mut dispatching: i64 = 0;
    let mut after = start_head;
    loop {
        let events = backends.store.read_all(after, 5000).await?;
        let Some(last) = events.last() else { break };
        after = last.position;
        for e in events {
            if rules.dispatch(&e, e.decode().ok().as_ref()).is_some() {
                dispatching += 1;
            }
            match e.event_type.as_str() {
                herald_domain::event::CREATED => {
                    created_at.insert(e.stream_id, e.timestamp);
                }
                herald_domain::event::SENT => {
                    if let Some(c) = created_at.get(&e.stream_id) {
                        latencies.push((e.timestamp - *c).num_milliseconds() as f64);
                    }
                }
                _ => {}
            }
        }
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    if opts.delete_namespace
        && (opts.state.starts_with("redis://") || opts.state.starts_with("rediss://"))
    {
        match herald_redis::RedisState::connect(&opts.state, &opts.namespace).await {
            Ok(r) => {
                if let Err(e) = r.delete_namespace().await {
                    tracing::warn!(error = %e, namespace = %opts.namespace, "could not delete the bench namespace");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not delete the bench namespace"),
        }
    }
    let jobs = queue.total;
    let enqueued = (jobs.waiting + jobs.active + jobs.delayed + jobs.completed + jobs.dead) as i64;
    let secs = |d: Duration| d.as_secs_f64().max(1e-9);
    Ok(BenchReport {
        requests: opts.requests,
        event_store: opts.event_store,
        state: opts.state,
        concurrency: opts.concurrency,
        appended_per_s: opts.requests as f64 / secs(appended_in),
        projected_per_s: opts.requests as f64 / secs(projected_in),
        end_to_end_per_s: sent as f64 / secs(end_to_end),
        latency_ms: Latency {
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            max: latencies.last().copied().unwrap_or(0.0),
        },
        peak_rss_mb: peak_rss_mb(),
        lost: (opts.requests as u64).saturating_sub(sent),
        // Jobs beyond one per dispatching event; only meaningful on a fresh queue.
        duplicate_jobs: enqueued - dispatching,
        elapsed_ms: end_to_end.as_millis() as u64,
    })
}

pub fn default_progress() -> bool {
    std::io::stderr().is_terminal()
}
