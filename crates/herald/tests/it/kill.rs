//! Crash safety (DESIGN §4.1, §4.2): a `herald serve` process killed with SIGKILL at random
//! moments and restarted ends with every request terminal, every event projected exactly once and
//! exactly one job per event that dispatches one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::service::Service;
use herald_core::{EventStore, StateBackend};
use herald_domain::{CreateRequest, MessageRequest, Rules, Status};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::support::{KillOnDrop, serve, terminate};

const TENANT: &str = "acme";
const SECRET: &str = "whsec_a2lsbC10ZXN0LXNlY3JldC1mb3ItaGVyYWxk";

fn request(receiver: &str, i: usize) -> CreateRequest {
    let (channel, recipient, body) = match i % 4 {
        0 => (
            "log",
            "audit".to_string(),
            serde_json::json!(format!("line {i}")),
        ),
        1 => (
            "webhook",
            format!("http://{receiver}/hooks/flaky1/{TENANT}/r{i}"),
            serde_json::json!({ "n": i }),
        ),
        _ => (
            "webhook",
            format!("http://{receiver}/hooks/ok/{TENANT}/r{i}"),
            serde_json::json!({ "n": i }),
        ),
    };
    CreateRequest {
        channel: channel.into(),
        recipient,
        subject: None,
        body,
        metadata: None,
        idempotency_key: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let shutdown = CancellationToken::new();
    let receiver = herald::receiver::Receiver::new(
        HashMap::from([(TENANT.to_string(), SECRET.to_string())]),
        100,
    );
    let raddr = receiver.serve(0, shutdown.clone()).await.expect("receiver");
    let db = format!("sqlite://{}", dir.path().join("herald.db").display());
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            r#"
event_store = "{db}"
state = "{db}"
[[tenants]]
id = "{TENANT}"
api_key = "kill-test-api-key-0123456789"
webhook_secret = "{SECRET}"
[[rules]]
event = "MessageRequestFailed"
delay_ms = 100
[channels]
webhook_timeout_ms = 1000
log = "{log}"
[workers]
concurrency = 8
lease_ms = 3000
shutdown_grace_ms = 3000
[projector]
batch_size = 50
lease_ttl_ms = 1000
"#,
            log = dir.path().join("messages.log").display()
        ),
    )
    .expect("write config");
    let log = dir.path().join("serve.log");

    // This process writes requests into the same file while the server is killed and restarted.
    let (store, state) = herald_sqlite::open(&db).await.expect("open backend");
    let store: Arc<dyn EventStore> = Arc::new(store);
    let state: Arc<dyn StateBackend> = Arc::new(state);
    let service = Service::new(store.clone(), state.clone());
    let mut created = 0;
    let create = async |n: usize, created: &mut usize| {
        for _ in 0..n {
            service
                .create(
                    TENANT,
                    request(&raddr.to_string(), *created),
                    None,
                    String::new(),
                    None,
                )
                .await
                .expect("create");
            *created += 1;
        }
    };

    let kills = 6;
    for _ in 0..kills {
        create(60, &mut created).await;
        let mut child = KillOnDrop(serve(&config, "projector,worker", &log));
        let wait = rand::rng().random_range(200..1200);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.0.kill().expect("SIGKILL");
        child.0.wait().expect("reap");
    }
    create(40, &mut created).await;

    // A last, undisturbed run finishes the work; then SIGTERM stops it gracefully.
    let mut child = KillOnDrop(serve(&config, "projector,worker", &log));
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let counts = state.status_counts(Some(TENANT)).await.expect("counts");
        if counts.get(&Status::Sent).copied().unwrap_or(0) == created as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every request was sent: {counts:?}; server log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = terminate(&mut child.0, Duration::from_secs(15));
    assert!(
        status.success(),
        "graceful shutdown exits 0, got {status:?}"
    );

    // Every event was projected, exactly once: the checkpoint is the head, and every read model
    // is the fold of its whole stream.
    let head = store.head().await.expect("head");
    assert_eq!(state.checkpoint().await.expect("checkpoint"), head);
    let events = store.read_all(0, 1_000_000).await.expect("events");
    let mut streams: HashMap<String, Vec<herald_domain::RecordedEvent>> = HashMap::new();
    for e in &events {
        streams
            .entry(e.stream_id.clone())
            .or_default()
            .push(e.clone());
    }
    assert_eq!(streams.len(), created);
    for (id, evs) in &streams {
        let folded = MessageRequest::fold(evs).expect("fold");
        let doc = state.get(folded.id).await.expect("get").expect("projected");
        assert_eq!(doc, folded, "read model of {id} is the fold of its stream");
        let sent = evs
            .iter()
            .filter(|e| e.event_type == "MessageRequestSent")
            .count();
        assert_eq!(sent, 1, "{id} recorded as sent exactly once");
    }
    // Exactly one job per event that dispatches one: the queue's counters hold every job ever
    // enqueued (finished ones included), and nothing is left over or dead.
    let rules = Rules::seed();
    let dispatching = events
        .iter()
        .filter(|e| rules.dispatch(e, e.decode().ok().as_ref()).is_some())
        .count() as u64;
    let q = state.queue_info().await.expect("queue info").total;
    assert_eq!(
        q.waiting + q.active + q.delayed + q.completed + q.dead,
        dispatching,
        "{q:?}"
    );
    assert_eq!((q.waiting, q.active, q.dead), (0, 0, 0), "{q:?}");
    // A delivery may repeat only when the process died between the receiver's 2xx and the
    // recording of Sent: at most one per kill.
    let rx = receiver.stats();
    assert!(rx.duplicate_deliveries <= kills, "{rx:?}");
    assert_eq!(rx.bad_signatures, 0);
    shutdown.cancel();
}
