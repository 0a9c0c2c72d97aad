//! DESIGN §4.3/§4.4: Redis restarting with no persistence — losing every projection, job and the
//! checkpoint — in the middle of a run. Herald reconnects by itself, replays from the event store,
//! and only the work that was really outstanding gets done.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::service::Service;
use herald_core::{EventStore, StateBackend};
use herald_domain::{CreateRequest, Status};
use tokio_util::sync::CancellationToken;

use crate::support::{KillOnDrop, PrivateRedis, serve, terminate, wait_until_sent};

const TENANT: &str = "acme";
const SECRET: &str = "whsec_cmVkaXMtcmVzdGFydC10ZXN0LXNlY3JldA==";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_losing_everything_mid_run_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let shutdown = CancellationToken::new();
    let receiver = herald::receiver::Receiver::new(
        HashMap::from([(TENANT.to_string(), SECRET.to_string())]),
        100,
    );
    let raddr = receiver.serve(0, shutdown.clone()).await.expect("receiver");
    let mut redis = PrivateRedis::start();
    let db = format!("sqlite://{}", dir.path().join("events.db").display());
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            r#"
event_store = "{db}"
state = "{state}"
[[tenants]]
id = "{TENANT}"
api_key = "redis-restart-api-key-0123456789"
webhook_secret = "{SECRET}"
[channels]
webhook_timeout_ms = 1000
log = "null"
[workers]
concurrency = 8
lease_ms = 3000
[projector]
batch_size = 50
lease_ttl_ms = 1000
"#,
            state = redis.url()
        ),
    )
    .expect("config");
    let log = dir.path().join("serve.log");
    let store: Arc<dyn EventStore> = Arc::new(
        herald_sqlite::SqliteEventStore::open(&dir.path().join("events.db"))
            .await
            .expect("store"),
    );
    let service_state: Arc<dyn StateBackend> = Arc::new(
        herald_redis::RedisState::connect(&redis.url(), "herald")
            .await
            .expect("redis state"),
    );
    let service = Service::new(store.clone(), service_state.clone());
    let create = |i: usize| CreateRequest {
        channel: "webhook".into(),
        recipient: format!("http://{raddr}/hooks/ok/{TENANT}/r{i}"),
        subject: None,
        body: serde_json::json!({ "n": i }),
        metadata: None,
        idempotency_key: None,
    };
    let mut child = KillOnDrop(serve(&config, "projector,worker", &log));
    let mut created = 0;
    for _ in 0..200 {
        service
            .create(TENANT, create(created), None, String::new(), None)
            .await
            .expect("create");
        created += 1;
    }
    // Let part of the work happen, then lose Redis entirely.
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.stats().accepted < 50 {
        assert!(Instant::now() < deadline, "no progress before the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart();
    for _ in 0..100 {
        service
            .create(TENANT, create(created), None, String::new(), None)
            .await
            .expect("create");
        created += 1;
    }
    wait_until_sent(
        &*service_state,
        TENANT,
        created as u64,
        Duration::from_secs(60),
        || {
            format!(
                "after the Redis restart; server log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        },
    )
    .await;
    assert!(terminate(&mut child.0, Duration::from_secs(15)).success());

    // Every request was delivered and recorded as sent exactly once; replayed send jobs for work
    // already done were skipped.
    let events = store.read_all(0, 1_000_000).await.expect("events");
    let sent_events = events
        .iter()
        .filter(|e| e.event_type == "MessageRequestSent")
        .count();
    assert_eq!(sent_events, created);
    assert_eq!(
        service_state.checkpoint().await.expect("checkpoint"),
        store.head().await.expect("head")
    );
    let rx = receiver.stats();
    assert_eq!(
        rx.accepted as usize,
        created + rx.duplicate_deliveries as usize
    );
    // Only deliveries in flight when Redis died (at most the worker concurrency) may repeat.
    assert!(rx.duplicate_deliveries <= 8, "{rx:?}");
    shutdown.cancel();
}

/// A batch accepted while no worker runs survives Redis losing everything: the batch is an event,
/// so replaying the store dispatches its create job again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_batch_survives_redis_losing_everything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut redis = PrivateRedis::start();
    let store_path = dir.path().join("events.db");
    let mut cfg = herald::Config {
        event_store: format!("sqlite://{}", store_path.display()),
        state: redis.url(),
        ..herald::Config::default()
    };
    cfg.channels.log = "null".into();
    let projector_only = herald::Roles {
        api: false,
        projector: true,
        worker: false,
    };
    // Accept the batch and project it (its create job now waits in Redis), with no worker yet.
    let shutdown = CancellationToken::new();
    let running = herald::start(
        &cfg,
        projector_only,
        herald::StartOptions::default(),
        shutdown.clone(),
    )
    .await
    .expect("start");
    let items: Vec<CreateRequest> = (0..50)
        .map(|i| CreateRequest {
            channel: "log".into(),
            recipient: "audit".into(),
            subject: None,
            body: serde_json::json!(format!("line {i}")),
            metadata: None,
            idempotency_key: None,
        })
        .collect();
    let ids = running
        .service
        .create_batch(TENANT, items)
        .await
        .expect("batch accepted");
    let deadline = Instant::now() + Duration::from_secs(10);
    while running
        .service
        .state()
        .queue_info()
        .await
        .expect("queue")
        .total
        .waiting
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the batch's create job was never dispatched"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    running.wait().await;
    redis.kill();
    redis.restart();
    // Now everything runs against the empty Redis.
    let shutdown = CancellationToken::new();
    let running = herald::start(
        &cfg,
        herald::Roles::ALL_BUT_API,
        herald::StartOptions::default(),
        shutdown.clone(),
    )
    .await
    .expect("restart");
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in &ids {
        loop {
            match running.service.load(TENANT, *id).await {
                Ok(r) if r.status == Status::Sent => break,
                _ => {
                    assert!(
                        Instant::now() < deadline,
                        "request {id} of the batch was lost"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    shutdown.cancel();
    running.wait().await;
}
