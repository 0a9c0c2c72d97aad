//! DESIGN §4.4: PostgreSQL restarting mid-run is survived without losing or duplicating events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::service::{Service, ServiceError};
use herald_core::{EventStore, StateBackend};
use herald_domain::CreateRequest;
use tokio_util::sync::CancellationToken;

use crate::support::{KillOnDrop, PrivatePostgres, serve, terminate, wait_until_sent};

const TENANT: &str = "acme";
const SECRET: &str = "whsec_cGctcmVzdGFydC10ZXN0LXNlY3JldA==";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarting_mid_run_loses_and_duplicates_nothing() {
    let pg = PrivatePostgres::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let shutdown = CancellationToken::new();
    let receiver = herald::receiver::Receiver::new(
        HashMap::from([(TENANT.to_string(), SECRET.to_string())]),
        100,
    );
    let raddr = receiver.serve(0, shutdown.clone()).await.expect("receiver");
    let state_path = dir.path().join("state.db");
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            r#"
event_store = "{store}"
state = "sqlite://{state}"
[[tenants]]
id = "{TENANT}"
api_key = "pg-restart-api-key-0123456789"
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
            store = pg.url(),
            state = state_path.display()
        ),
    )
    .expect("config");
    let log = dir.path().join("serve.log");
    let store: Arc<dyn EventStore> = Arc::new(
        herald_postgres::PgEventStore::connect(&pg.url())
            .await
            .expect("pg"),
    );
    let state: Arc<dyn StateBackend> = Arc::new(
        herald_sqlite::SqliteState::open(&state_path)
            .await
            .expect("state"),
    );
    let service = Service::new(store.clone(), state.clone());
    let request = |i: usize| CreateRequest {
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
            .create(TENANT, request(created), None, String::new(), None)
            .await
            .expect("create");
        created += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.stats().accepted < 40 {
        assert!(Instant::now() < deadline, "no progress before the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pg.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg.start_server();
    // The test's own store reconnects too; creates may fail until it has.
    let deadline = Instant::now() + Duration::from_secs(30);
    while created < 300 {
        match service
            .create(TENANT, request(created), None, String::new(), None)
            .await
        {
            Ok(_) => created += 1,
            Err(ServiceError::Unavailable(e)) => {
                assert!(
                    Instant::now() < deadline,
                    "the store did not come back: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    wait_until_sent(
        &*state,
        TENANT,
        created as u64,
        Duration::from_secs(60),
        || {
            format!(
                "after the PostgreSQL restart; server log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        },
    )
    .await;
    assert!(terminate(&mut child.0, Duration::from_secs(15)).success());
    let events = store.read_all(0, 1_000_000).await.expect("events");
    let mut per_stream: HashMap<&str, (usize, usize)> = HashMap::new();
    for e in &events {
        let c = per_stream.entry(e.stream_id.as_str()).or_default();
        match e.event_type.as_str() {
            "MessageRequestCreated" => c.0 += 1,
            "MessageRequestSent" => c.1 += 1,
            _ => {}
        }
    }
    assert_eq!(per_stream.len(), created);
    assert!(
        per_stream.values().all(|c| *c == (1, 1)),
        "one Created and one Sent per request"
    );
    assert_eq!(
        state.checkpoint().await.expect("checkpoint"),
        store.head().await.expect("head")
    );
    let rx = receiver.stats();
    // An append cut off mid-commit may have to be retried; a delivery may repeat only then.
    assert!(rx.duplicate_deliveries <= 8, "{rx:?}");
    shutdown.cancel();
}
