//! Races between a client and a delivery in flight.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use herald::{Config, Roles, StartOptions};
use herald_domain::{CreateRequest, Patch, Status};
use tokio_util::sync::CancellationToken;

/// A cancel that arrives while the message is being delivered comes too late: the delivery is
/// recorded, the request ends SENT, and the audit trail shows both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_during_delivery_does_not_hide_the_delivery() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = "whsec_cmFjZS10ZXN0LXNlY3JldA==".to_string();
    let shutdown = CancellationToken::new();
    let receiver =
        herald::receiver::Receiver::new(HashMap::from([("acme".to_string(), secret.clone())]), 800);
    let raddr = receiver.serve(0, shutdown.clone()).await.expect("receiver");
    let db = format!("sqlite://{}", dir.path().join("herald.db").display());
    let mut cfg = Config {
        event_store: db.clone(),
        state: db,
        tenants: vec![herald::config::TenantConfig {
            id: "acme".into(),
            api_key: Some("race-test-api-key-0123456789".into()),
            api_key_sha256: None,
            webhook_secret: Some(secret),
        }],
        ..Config::default()
    };
    cfg.channels.webhook_timeout_ms = 5000;
    let roles = Roles {
        api: false,
        projector: true,
        worker: true,
    };
    let running = herald::start(&cfg, roles, StartOptions::default(), shutdown.clone())
        .await
        .expect("start");
    let service = running.service.clone();
    let req = CreateRequest {
        channel: "webhook".into(),
        recipient: format!("http://{raddr}/hooks/slowok/acme/x"),
        subject: None,
        body: serde_json::json!({"n": 1}),
        metadata: None,
        idempotency_key: None,
    };
    let id = service
        .create("acme", req, None, String::new(), None)
        .await
        .expect("create")
        .request
        .id;
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.stats().received == 0 {
        assert!(Instant::now() < deadline, "the delivery never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cancel: Patch =
        serde_json::from_value(serde_json::json!({"status": "CANCELLED"})).expect("patch");
    let cancelled = service
        .patch("acme", id, cancel)
        .await
        .expect("cancel accepted");
    assert_eq!(cancelled.status, Status::Cancelled);
    let deadline = Instant::now() + Duration::from_secs(10);
    let state = loop {
        let s = service.load("acme", id).await.expect("load");
        if s.status == Status::Sent {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the delivery was never recorded: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(state.attempts, 1);
    let history: Vec<String> = service
        .history("acme", id)
        .await
        .expect("history")
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        history,
        [
            "MessageRequestCreated",
            "MessageRequestUpdated",
            "MessageRequestSent"
        ]
    );
    assert_eq!(receiver.accepted_for(&id.to_string()), 1);
    shutdown.cancel();
    running.wait().await;
}

/// Creates a request for tenant `acme` and enqueues its send job as the projector would dispatch
/// it, but with a single queue attempt. Returns the request.
async fn create_with_a_one_attempt_send_job(
    service: &herald_core::service::Service,
    store: &std::sync::Arc<dyn herald_core::EventStore>,
    state: &std::sync::Arc<dyn herald_core::StateBackend>,
    req: CreateRequest,
) -> herald_domain::MessageRequest {
    use herald_core::state::NewJob;
    use herald_domain::{JobName, JobPayload};

    let created = service
        .create("acme", req, None, String::new(), None)
        .await
        .expect("create")
        .request;
    let events = store
        .read_stream(&created.id.to_string())
        .await
        .expect("stream");
    state
        .enqueue(vec![NewJob {
            id: events[0].event_id.to_string(),
            name: JobName::Send,
            priority: 0,
            delay_ms: 0,
            payload: serde_json::to_value(JobPayload {
                tenant: "acme".into(),
                message_request_id: created.id,
                event_id: events[0].event_id,
                reason: None,
            })
            .expect("payload"),
            max_attempts: 1,
        }])
        .await
        .expect("enqueue");
    created
}

/// A send job that keeps failing for infrastructure reasons (here: each run times out) ends in
/// the queue's dead set; its request must not stay PENDING with nothing left to send it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_job_that_gives_up_fails_its_request() {
    use std::sync::Arc;

    use herald_core::channel::Channels;
    use herald_core::worker::{WorkerConfig, Workers};
    use herald_domain::Channel;

    let dir = tempfile::tempdir().expect("temp dir");
    let secret = "whsec_Z2l2ZS11cC10ZXN0LXNlY3JldA==".to_string();
    let shutdown = CancellationToken::new();
    let receiver = herald::receiver::Receiver::new(
        HashMap::from([("acme".to_string(), secret.clone())]),
        1000,
    );
    let raddr = receiver.serve(0, shutdown.clone()).await.expect("receiver");
    let (store, state) =
        herald_sqlite::open(&format!("sqlite://{}", dir.path().join("h.db").display()))
            .await
            .expect("open");
    let (store, state): (
        Arc<dyn herald_core::EventStore>,
        Arc<dyn herald_core::StateBackend>,
    ) = (Arc::new(store), Arc::new(state));
    let service = herald_core::service::Service::new(store.clone(), state.clone());
    let req = CreateRequest {
        channel: "webhook".into(),
        recipient: format!("http://{raddr}/hooks/slowok/acme/x"),
        subject: None,
        body: serde_json::json!({}),
        metadata: None,
        idempotency_key: None,
    };
    let created = create_with_a_one_attempt_send_job(&service, &store, &state, req).await;
    let webhook = herald_channels::WebhookChannel::new(herald_channels::WebhookConfig {
        secrets: HashMap::from([("acme".to_string(), secret)]),
        ..Default::default()
    })
    .expect("webhook");
    let workers = Workers::new(
        store.clone(),
        state.clone(),
        Arc::new(Channels::new().with(Channel::Webhook, Arc::new(webhook))),
        Arc::new(herald_domain::Rules::seed()),
        WorkerConfig {
            job_timeout: Duration::from_millis(200),
            ..WorkerConfig::default()
        },
    );
    let token = shutdown.clone();
    let run = tokio::spawn(async move { workers.run(token).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = service.load("acme", created.id).await.expect("load");
        if s.status == Status::Failed {
            assert!(!s.last_failure_retryable);
            assert!(
                s.last_error.as_deref().unwrap_or("").contains("gave up"),
                "{s:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the request stayed {}", s.status);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state.queue_info().await.expect("queue").total.dead, 1);
    shutdown.cancel();
    let _ = run.await;
}

/// A send job whose every run died with its worker (each lease expired) must not leave its
/// request PENDING forever: the run the queue grants past the last one records that it gave up,
/// without delivering again, so the request is dead-lettered and can be requeued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_job_whose_runs_all_stalled_fails_its_request() {
    use std::sync::Arc;

    use herald_core::channel::Channels;
    use herald_core::worker::{WorkerConfig, Workers};
    use herald_domain::Channel;

    let dir = tempfile::tempdir().expect("temp dir");
    let (store, state) =
        herald_sqlite::open(&format!("sqlite://{}", dir.path().join("h.db").display()))
            .await
            .expect("open");
    let (store, state): (
        Arc<dyn herald_core::EventStore>,
        Arc<dyn herald_core::StateBackend>,
    ) = (Arc::new(store), Arc::new(state));
    let service = herald_core::service::Service::new(store.clone(), state.clone());
    let log = dir.path().join("deliveries.log");
    let req = CreateRequest {
        channel: "log".into(),
        recipient: "ops".into(),
        subject: None,
        body: serde_json::json!("hello"),
        metadata: None,
        idempotency_key: None,
    };
    let created = create_with_a_one_attempt_send_job(&service, &store, &state, req).await;
    // Its only allowed run is leased by a worker that dies: the lease runs out.
    let short = Duration::from_millis(100);
    assert_eq!(
        state
            .reserve("dies", 1, short)
            .await
            .expect("reserve")
            .len(),
        1
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let last = state
        .reserve("w", 1, Duration::from_secs(30))
        .await
        .expect("reserve")
        .pop()
        .expect("the stalled last run earns one more");
    let channel = herald_channels::LogChannel::file(&log);
    let workers = Workers::new(
        store.clone(),
        state.clone(),
        Arc::new(Channels::new().with(Channel::Log, Arc::new(channel))),
        Arc::new(herald_domain::Rules::seed()),
        WorkerConfig::default(),
    );
    workers.run_one(last).await;
    let s = service.load("acme", created.id).await.expect("load");
    assert_eq!(s.status, Status::Failed, "{s:?}");
    assert!(!s.last_failure_retryable);
    assert!(
        s.last_error.as_deref().unwrap_or("").contains("gave up"),
        "{s:?}"
    );
    let delivered = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(delivered.is_empty(), "delivered again: {delivered}");
    let queue = state.queue_info().await.expect("queue").total;
    assert_eq!((queue.active, queue.completed, queue.dead), (0, 1, 0));
}
