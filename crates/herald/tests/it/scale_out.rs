//! DESIGN §5: three `herald serve` processes on one PostgreSQL event store and one Redis state.
//! API on all, workers competing, exactly one projector active; SIGKILL the active projector's
//! process mid-run and a standby takes over. Every request ends terminal, no event has two jobs,
//! and only deliveries in flight at the kill may repeat.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::service::Service;
use herald_core::{EventStore, StateBackend};
use herald_domain::{CreateRequest, Rules};
use tokio_util::sync::CancellationToken;

use crate::support::{
    Cleanup, KillOnDrop, postgres_url, redis_url, serve_with, terminate, wait_until_sent,
};

const TENANT: &str = "acme";
const SECRET: &str = "whsec_c2NhbGUtb3V0LXRlc3Qtc2VjcmV0";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_survive_killing_the_projector() {
    let schema = format!("herald_scale_{}", uuid::Uuid::new_v4().simple());
    let namespace = format!("test-scale-{}", uuid::Uuid::new_v4().simple());
    let _cleanup = Cleanup {
        schema: Some(schema.clone()),
        namespace: Some(namespace.clone()),
    };
    let store_url = format!("{}?schema={schema}", postgres_url());
    let state_url = redis_url();
    let dir = tempfile::tempdir().expect("temp dir");
    let shutdown = CancellationToken::new();
    let receiver = herald::receiver::Receiver::new(
        HashMap::from([(TENANT.to_string(), SECRET.to_string())]),
        100,
    );
    let raddr = receiver.serve(0, shutdown.clone()).await.expect("receiver");
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            r#"
event_store = "{store_url}"
state = "{state_url}"
namespace = "{namespace}"
[[tenants]]
id = "{TENANT}"
api_key = "scale-out-api-key-0123456789"
webhook_secret = "{SECRET}"
[[rules]]
event = "MessageRequestFailed"
delay_ms = 100
[channels]
webhook_timeout_ms = 1000
log = "null"
[workers]
concurrency = 4
lease_ms = 3000
[projector]
batch_size = 20
lease_ttl_ms = 1000
"#
        ),
    )
    .expect("config");
    // The store is created (migrations) by this process before the servers start.
    let store: Arc<dyn EventStore> = Arc::new(
        herald_postgres::PgEventStore::connect(&store_url)
            .await
            .expect("pg"),
    );
    let state: Arc<dyn StateBackend> = Arc::new(
        herald_redis::RedisState::connect(&state_url, &namespace)
            .await
            .expect("redis"),
    );
    let service = Service::new(store.clone(), state.clone());

    let logs: Vec<_> = (0..3)
        .map(|i| dir.path().join(format!("serve-{i}.log")))
        .collect();
    let mut procs: Vec<Option<KillOnDrop>> = logs
        .iter()
        .map(|log| {
            Some(KillOnDrop(serve_with(
                &config,
                "api,projector,worker",
                log,
                &[("HERALD_LISTEN", format!("127.0.0.1:{}", free_port()))],
            )))
        })
        .collect();
    let create = |i: usize| CreateRequest {
        channel: "webhook".into(),
        recipient: format!(
            "http://{raddr}/hooks/{}/{TENANT}/r{i}",
            if i.is_multiple_of(5) { "flaky1" } else { "ok" }
        ),
        subject: None,
        body: serde_json::json!({ "n": i }),
        metadata: None,
        idempotency_key: None,
    };
    let mut created = 0;
    for _ in 0..150 {
        service
            .create(TENANT, create(created), None, String::new(), None)
            .await
            .expect("create");
        created += 1;
    }
    // Find the active projector: the one process whose log says it took the lease.
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        let holders: Vec<usize> = (0..3)
            .filter(|i| {
                std::fs::read_to_string(&logs[*i])
                    .unwrap_or_default()
                    .contains("projector lease taken")
            })
            .collect();
        assert!(
            holders.len() <= 1,
            "more than one projector took the lease: {holders:?}"
        );
        if let [one] = holders[..] {
            break one;
        }
        assert!(Instant::now() < deadline, "no projector took the lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    while receiver.stats().accepted < 30 {
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(mut p) = procs[leader].take() {
        p.0.kill().expect("SIGKILL the projector's process");
        let _ = p.0.wait();
    }
    for _ in 0..100 {
        service
            .create(TENANT, create(created), None, String::new(), None)
            .await
            .expect("create");
        created += 1;
    }
    wait_until_sent(
        &*state,
        TENANT,
        created as u64,
        Duration::from_secs(60),
        || "after the projector was killed".to_string(),
    )
    .await;
    let takeovers = (0..3)
        .filter(|i| *i != leader)
        .filter(|i| {
            std::fs::read_to_string(&logs[*i])
                .unwrap_or_default()
                .contains("projector lease taken")
        })
        .count();
    assert_eq!(takeovers, 1, "exactly one standby took over");
    for (i, p) in procs.iter_mut().enumerate() {
        if let Some(p) = p {
            let status = terminate(&mut p.0, Duration::from_secs(15));
            assert!(
                status.success(),
                "process {i} exited with {status:?}:\n{}",
                std::fs::read_to_string(&logs[i]).unwrap_or_default()
            );
        }
    }

    let events = store.read_all(0, 1_000_000).await.expect("events");
    assert_eq!(
        state.checkpoint().await.expect("checkpoint"),
        store.head().await.expect("head")
    );
    let sent_events = events
        .iter()
        .filter(|e| e.event_type == "MessageRequestSent")
        .count();
    assert_eq!(
        sent_events, created,
        "every request recorded as sent exactly once"
    );
    let rules = Rules::seed();
    let dispatching = events
        .iter()
        .filter(|e| rules.dispatch(e, e.decode().ok().as_ref()).is_some())
        .count() as u64;
    let q = state.queue_info().await.expect("queue").total;
    assert_eq!(
        q.waiting + q.active + q.delayed + q.completed + q.dead,
        dispatching,
        "one job per event: {q:?}"
    );
    let rx = receiver.stats();
    // The killed process ran at most 4 jobs at once.
    assert!(rx.duplicate_deliveries <= 4, "{rx:?}");
    assert_eq!(rx.bad_signatures, 0);
    shutdown.cancel();
}
