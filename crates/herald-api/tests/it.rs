//! The HTTP API end to end: the real router on a real port, over the embedded SQLite backend,
//! with a real projector and real workers delivering through the `log` channel.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use herald_api::{ApiConfig, ApiState, ApiTenant, hash_key};
use herald_core::channel::Channels;
use herald_core::projector::{Projector, ProjectorConfig};
use herald_core::service::Service;
use herald_core::worker::{WorkerConfig, Workers};
use herald_core::{EventStore, StateBackend};
use herald_domain::{Channel, Delay, Rules, event};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const ACME: &str = "acme-key";
const GLOBEX: &str = "globex-key";
const ADMIN: &str = "admin-key";

// --- harness ----------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Opts {
    /// Run workers; without them requests stay PENDING (an API + projector node).
    workers: bool,
    metrics: bool,
}

const FULL: Opts = Opts {
    workers: true,
    metrics: false,
};

/// One Herald: API, projector and (optionally) workers over one SQLite file.
struct Herald {
    base: String,
    http: reqwest::Client,
    store: Arc<dyn EventStore>,
    state: Arc<dyn StateBackend>,
    projector_alive: Arc<AtomicBool>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

/// The process-wide Prometheus recorder (a recorder can be installed once per process).
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("install the Prometheus recorder")
        })
        .clone()
}

async fn start(opts: Opts) -> Herald {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut h = start_on(&dir.path().join("herald.db"), opts).await;
    h._dir = Some(dir);
    h
}

async fn start_on(path: &Path, opts: Opts) -> Herald {
    let (store, state) = herald_sqlite::open(path.to_str().expect("utf-8 path"))
        .await
        .expect("open sqlite");
    let store: Arc<dyn EventStore> = Arc::new(store);
    let state: Arc<dyn StateBackend> = Arc::new(state);
    // Retries without the seed's 5 s delay, so a permanent failure is dead-lettered at once.
    let mut rules = Rules::seed();
    assert!(rules.override_rule(event::FAILED, None, Some(Delay::Fixed { ms: 0 }), None));
    let rules = Arc::new(rules);
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();

    let projector = Projector::new(
        store.clone(),
        state.clone(),
        rules.clone(),
        ProjectorConfig::default(),
    );
    let token = shutdown.clone();
    tasks.push(tokio::spawn(async move { projector.run(token).await }));

    if opts.workers {
        // Only `log` is configured: an `email` request fails permanently and goes DEAD.
        let channels =
            Channels::new().with(Channel::Log, Arc::new(herald_channels::LogChannel::null()));
        let workers = Workers::new(
            store.clone(),
            state.clone(),
            Arc::new(channels),
            rules,
            WorkerConfig {
                concurrency: 8,
                ..WorkerConfig::default()
            },
        );
        let token = shutdown.clone();
        tasks.push(tokio::spawn(async move { workers.run(token).await }));
    }

    let projector_alive = Arc::new(AtomicBool::new(true));
    let alive = projector_alive.clone();
    let config = ApiConfig {
        tenants: vec![
            ApiTenant {
                id: "acme".into(),
                api_key_sha256: hash_key(ACME),
            },
            ApiTenant {
                id: "globex".into(),
                api_key_sha256: hash_key(GLOBEX),
            },
        ],
        admin_key_sha256: Some(hash_key(ADMIN)),
        ..ApiConfig::default()
    };
    let router = herald_api::router(ApiState {
        service: Service::new(store.clone(), state.clone()),
        config: Arc::new(config),
        metrics: opts.metrics.then(prometheus),
        projector_alive: Arc::new(move || alive.load(Ordering::SeqCst)),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let token = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(token.cancelled_owned())
            .await
            .expect("serve");
    }));
    Herald {
        base,
        http: reqwest::Client::new(),
        store,
        state,
        projector_alive,
        shutdown,
        tasks,
        _dir: None,
    }
}

/// A response: status, headers and the body parsed as JSON (`Value::Null` when it is not).
struct Resp {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    json: Value,
}

impl Resp {
    fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }

    fn field(&self) -> &str {
        self.json["error"]["field"].as_str().unwrap_or("")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn id(&self) -> String {
        self.json["id"].as_str().expect("id").to_owned()
    }

    /// Asserts a JSON error with this status and code, and returns self for more checks.
    fn is_error(&self, status: u16, code: &str) -> &Resp {
        assert_eq!(self.status.as_u16(), status, "{}", self.json);
        assert_eq!(self.code(), code, "{}", self.json);
        assert!(
            self.json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}",
            self.json
        );
        self
    }
}

impl Herald {
    async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let r = req.send().await.expect("request");
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.expect("body");
        Resp {
            status,
            headers,
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    fn req(&self, method: Method, path: &str, key: Option<&str>) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut r = self.req(method, path, key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        self.send(r).await
    }

    async fn get(&self, path: &str, key: &str) -> Resp {
        self.call(Method::GET, path, Some(key), None).await
    }

    /// POSTs a raw body as JSON text.
    async fn post_raw(&self, path: &str, key: &str, body: &str, headers: &[(&str, &str)]) -> Resp {
        let mut r = self
            .req(Method::POST, path, Some(key))
            .header("content-type", "application/json")
            .body(body.to_owned());
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        self.send(r).await
    }

    async fn create(&self, key: &str, body: Value) -> Resp {
        self.call(Method::POST, "/v1/message-requests", Some(key), Some(body))
            .await
    }

    /// Creates a `log` request and returns its id.
    async fn create_log(&self, key: &str, label: &str) -> String {
        let r = self.create(key, log_request(label)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        r.id()
    }

    /// Polls `GET /v1/message-requests/{id}` until it has `status`.
    async fn wait_status(&self, key: &str, id: &str, status: &str) -> Value {
        eventually(&format!("{id} reaches {status}"), || async {
            let r = self.get(&format!("/v1/message-requests/{id}"), key).await;
            (r.json["status"] == status).then_some(r.json)
        })
        .await
    }

    /// Waits until the projector has caught up with the event store.
    async fn wait_projected(&self) {
        eventually("projector catches up", || async {
            let head = self.store.head().await.ok()?;
            let checkpoint = self.state.checkpoint().await.ok()?;
            (checkpoint >= head).then_some(())
        })
        .await
    }

    /// Waits until every event is projected and every job has run.
    async fn wait_idle(&self) {
        eventually("projector and queue idle", || async {
            let head = self.store.head().await.ok()?;
            let checkpoint = self.state.checkpoint().await.ok()?;
            let queue = self.state.queue_info().await.ok()?;
            (checkpoint >= head && queue.total.outstanding() == 0).then_some(())
        })
        .await
    }

    async fn head(&self) -> u64 {
        self.store.head().await.expect("head")
    }

    async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            t.await.expect("task ends cleanly");
        }
    }
}

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn log_request(label: &str) -> Value {
    json!({"channel": "log", "recipient": label, "body": format!("hello {label}")})
}

fn ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .expect("array")
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect()
}

fn event_types(history: &Value) -> Vec<String> {
    history["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event_type"].as_str().expect("type").to_owned())
        .collect()
}

// --- message requests -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_is_delivered_and_audited() {
    let h = start(FULL).await;
    let r = h
        .create(
            ACME,
            json!({"channel": "log", "recipient": "audit", "body": "hi", "metadata": {"k": "v"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let id = r.id();
    assert_eq!(r.header("location"), format!("/v1/message-requests/{id}"));
    assert_eq!(r.json["status"], "PENDING");
    assert_eq!(r.json["tenant"], "acme");
    assert_eq!(r.json["channel"], "log");
    assert_eq!(r.json["attempts"], 0);
    assert_eq!(r.json["metadata"], json!({"k": "v"}));
    assert_eq!(r.json["version"], 1);
    // Internal fields stay internal.
    for internal in ["last_failed_event", "last_failure_retryable"] {
        assert!(
            r.json.get(internal).is_none(),
            "{internal} leaked: {}",
            r.json
        );
    }

    let sent = h.wait_status(ACME, &id, "SENT").await;
    assert_eq!(sent["attempts"], 1);
    let history = h
        .get(&format!("/v1/message-requests/{id}/events"), ACME)
        .await;
    assert_eq!(history.status, StatusCode::OK);
    assert_eq!(
        event_types(&history.json),
        ["MessageRequestCreated", "MessageRequestSent"]
    );
    let first = &history.json["events"][0];
    assert_eq!(first["stream_id"], id.as_str());
    assert_eq!(first["version"], 1);
    assert_eq!(first["tenant"], "acme");
    assert_eq!(first["data"]["recipient"], "audit");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_replays_refuses_other_bodies_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path: PathBuf = dir.path().join("herald.db");
    let h = start_on(&path, FULL).await;
    let body =
        r#"{"channel": "log", "recipient": "idem", "body": "once", "metadata": {"a": 1, "b": 2}}"#;
    // The same JSON with other whitespace and key order.
    let same = r#"{"metadata":{"b":2,"a":1},"body":"once","recipient":"idem","channel":"log"}"#;
    let other = r#"{"channel": "log", "recipient": "idem", "body": "twice"}"#;
    let key = [("Idempotency-Key", "order-42")];

    let first = h.post_raw("/v1/message-requests", ACME, body, &key).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.json);
    let id = first.id();
    assert_eq!(first.json["idempotency_key"], "order-42");

    let replay = h.post_raw("/v1/message-requests", ACME, same, &key).await;
    assert_eq!(replay.status, StatusCode::OK, "{}", replay.json);
    assert_eq!(replay.id(), id);
    assert_eq!(replay.header("idempotent-replayed"), "true");

    // Once delivered, nothing else writes: the head only moves if the refused reuse wrote.
    h.wait_status(ACME, &id, "SENT").await;
    let head = h.head().await;
    h.post_raw("/v1/message-requests", ACME, other, &key)
        .await
        .is_error(422, "idempotency_key_reused");
    assert_eq!(h.head().await, head, "a refused reuse writes nothing");

    // Keys are per tenant.
    let theirs = h.post_raw("/v1/message-requests", GLOBEX, body, &key).await;
    assert_eq!(theirs.status, StatusCode::CREATED);
    assert_ne!(theirs.id(), id);

    // The key lives in the event store: a new process on the same file still knows it.
    h.stop().await;
    let h = start_on(&path, FULL).await;
    let again = h.post_raw("/v1/message-requests", ACME, same, &key).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.json);
    assert_eq!(again.id(), id);
    h.post_raw("/v1/message-requests", ACME, other, &key)
        .await
        .is_error(422, "idempotency_key_reused");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_is_accepted_at_once_and_delivered() {
    let h = start(FULL).await;
    let items: Vec<Value> = (0..25).map(|i| log_request(&format!("b{i}"))).collect();
    let r = h
        .call(
            Method::POST,
            "/v1/message-requests/batch",
            Some(ACME),
            Some(json!({ "items": items })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    let ids: Vec<String> = r.json["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 25);
    for (i, id) in ids.iter().enumerate() {
        let sent = h.wait_status(ACME, id, "SENT").await;
        assert_eq!(sent["recipient"], format!("b{i}"), "ids are in input order");
    }

    // The batch route takes bodies beyond the single-request limit (256 KiB here).
    let big = "x".repeat(100 * 1024);
    let items: Vec<Value> = (0..3)
        .map(|i| json!({"channel": "log", "recipient": format!("big{i}"), "body": big}))
        .collect();
    let r = h
        .call(
            Method::POST,
            "/v1/message-requests/batch",
            Some(ACME),
            Some(json!({ "items": items })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_newest_first_with_a_stable_cursor() {
    let h = start(FULL).await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(h.create_log(ACME, &format!("p{i}")).await);
    }
    h.create_log(GLOBEX, "not-mine").await;
    for id in &created {
        h.wait_status(ACME, id, "SENT").await;
    }
    h.wait_projected().await;

    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/message-requests?limit=3&cursor={c}"),
            None => "/v1/message-requests?limit=3".to_owned(),
        };
        let r = h.get(&path, ACME).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        pages.push((cursor.clone(), ids(&r.json["items"])));
        match r.json["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let sizes: Vec<usize> = pages.iter().map(|(_, p)| p.len()).collect();
    assert_eq!(sizes, [3, 3, 1]);
    let all: Vec<String> = pages.iter().flat_map(|(_, p)| p.clone()).collect();
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(all, newest_first, "every request once, newest first");

    // A cursor keeps meaning the same place after newer requests arrive.
    let newer = h.create_log(ACME, "newer").await;
    h.wait_status(ACME, &newer, "SENT").await;
    h.wait_projected().await;
    let (c2, page2) = &pages[1];
    let again = h
        .get(
            &format!(
                "/v1/message-requests?limit=3&cursor={}",
                c2.as_deref().expect("cursor")
            ),
            ACME,
        )
        .await;
    assert_eq!(&ids(&again.json["items"]), page2);

    // Status filter.
    let sent = h
        .get("/v1/message-requests?status=SENT&limit=1000", ACME)
        .await;
    assert_eq!(ids(&sent.json["items"]).len(), 8);
    assert!(sent.json["next_cursor"].is_null());
    let cancelled = h.get("/v1/message-requests?status=CANCELLED", ACME).await;
    assert_eq!(cancelled.status, StatusCode::OK);
    assert!(ids(&cancelled.json["items"]).is_empty());
    // Default page size is 50, which holds them all.
    let all = h.get("/v1/message-requests", ACME).await;
    assert_eq!(ids(&all.json["items"]).len(), 8);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_then_no_more_changes() {
    // No workers: requests stay PENDING, so there is something to cancel.
    let h = start(Opts {
        workers: false,
        metrics: false,
    })
    .await;
    let id = h.create_log(ACME, "to-cancel").await;
    let path = format!("/v1/message-requests/{id}");

    // Edits while PENDING.
    let r = h
        .call(
            Method::PATCH,
            &path,
            Some(ACME),
            Some(json!({"recipient": "edited"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["recipient"], "edited");
    assert_eq!(r.json["version"], 2);

    // An empty patch changes nothing.
    let head = h.head().await;
    let r = h
        .call(Method::PATCH, &path, Some(ACME), Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["version"], 2);
    assert_eq!(h.head().await, head);

    let r = h
        .call(
            Method::PATCH,
            &path,
            Some(ACME),
            Some(json!({"status": "CANCELLED"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["status"], "CANCELLED");

    let head = h.head().await;
    for change in [
        json!({"status": "CANCELLED"}),
        json!({"status": "PENDING"}),
        json!({"body": "changed"}),
    ] {
        h.call(Method::PATCH, &path, Some(ACME), Some(change))
            .await
            .is_error(409, "conflict");
    }
    assert_eq!(h.head().await, head, "refused changes write nothing");
    let history = h.get(&format!("{path}/events"), ACME).await;
    assert_eq!(
        event_types(&history.json),
        [
            "MessageRequestCreated",
            "MessageRequestUpdated",
            "MessageRequestUpdated"
        ]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_of_a_sent_request_starts_a_fresh_round() {
    let h = start(FULL).await;
    let id = h.create_log(ACME, "resend").await;
    let path = format!("/v1/message-requests/{id}");
    h.wait_status(ACME, &id, "SENT").await;

    // A SENT message is history: its fields cannot change, and it cannot be cancelled.
    h.call(
        Method::PATCH,
        &path,
        Some(ACME),
        Some(json!({"body": "new"})),
    )
    .await
    .is_error(409, "conflict");
    h.call(
        Method::PATCH,
        &path,
        Some(ACME),
        Some(json!({"status": "CANCELLED"})),
    )
    .await
    .is_error(409, "conflict");

    let r = h
        .call(
            Method::PATCH,
            &path,
            Some(ACME),
            Some(json!({"status": "PENDING"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["status"], "PENDING");
    assert_eq!(r.json["attempts"], 0);
    let sent = h.wait_status(ACME, &id, "SENT").await;
    assert_eq!(sent["attempts"], 1);
    let history = h.get(&format!("{path}/events"), ACME).await;
    assert_eq!(
        event_types(&history.json),
        [
            "MessageRequestCreated",
            "MessageRequestSent",
            "MessageRequestUpdated",
            "MessageRequestSent"
        ]
    );
    assert_eq!(history.json["events"][2]["data"]["reason"], "resend");
    h.stop().await;
}

// --- errors -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_json_errors_and_write_nothing() {
    let h = start(FULL).await;
    let existing = h.create_log(ACME, "existing").await;
    h.wait_status(ACME, &existing, "SENT").await;
    h.wait_idle().await;
    let head = h.head().await;
    let queue = h.state.queue_info().await.expect("queue info");

    // Bodies: 422, naming the field.
    let create = "/v1/message-requests";
    let check_body = async |body: &str, code: &str, field: &str| {
        let r = h.post_raw(create, ACME, body, &[]).await;
        r.is_error(422, code);
        assert_eq!(r.field(), field, "{body}: {}", r.json);
    };
    check_body(r#"{"channel": "log","#, "malformed_json", "").await;
    check_body("", "malformed_json", "").await;
    check_body("[1, 2]", "invalid_field", "").await;
    check_body(r#"["log", "r", "x"]"#, "invalid_field", "").await;
    check_body(
        r#"{"channel": "log", "recipient": 5, "body": "x"}"#,
        "invalid_field",
        "recipient",
    )
    .await;
    check_body(
        r#"{"channel": "log", "recipient": "r", "body": "x", "colour": "red"}"#,
        "invalid_field",
        "colour",
    )
    .await;
    check_body(
        r#"{"channel": "log", "body": "x"}"#,
        "invalid_field",
        "recipient",
    )
    .await;
    check_body(
        r#"{"channel": "log", "recipient": "r"}"#,
        "invalid_field",
        "body",
    )
    .await;
    check_body(
        r#"{"channel": "sms", "recipient": "r", "body": "x"}"#,
        "invalid_field",
        "channel",
    )
    .await;
    check_body(
        r#"{"channel": "webhook", "recipient": "not a url", "body": {}}"#,
        "invalid_field",
        "recipient",
    )
    .await;
    check_body(
        r#"{"channel": "webhook", "recipient": "ftp://example.com/x", "body": {}}"#,
        "invalid_field",
        "recipient",
    )
    .await;
    check_body(
        r#"{"channel": "email", "recipient": "nobody", "body": "x"}"#,
        "invalid_field",
        "recipient",
    )
    .await;
    check_body(
        r#"{"channel": "log", "recipient": "  ", "body": "x"}"#,
        "invalid_field",
        "recipient",
    )
    .await;
    check_body(
        r#"{"channel": "log", "recipient": "r", "body": {"not": "a string"}}"#,
        "invalid_field",
        "body",
    )
    .await;
    check_body(
        r#"{"channel": "log", "recipient": "r", "body": "x", "metadata": [1]}"#,
        "invalid_field",
        "metadata",
    )
    .await;
    check_body(r#"{"channel": "email", "recipient": "a@example.com", "body": "x", "subject": "two\nlines"}"#, "invalid_field", "subject").await;

    let long_key = "k".repeat(256);
    let r = h
        .post_raw(
            create,
            ACME,
            &log_request("k").to_string(),
            &[("Idempotency-Key", &long_key)],
        )
        .await;
    r.is_error(422, "invalid_field");
    assert_eq!(r.field(), "Idempotency-Key");

    // Batches: validated as a whole; one bad item refuses all of them.
    let batch = "/v1/message-requests/batch";
    let r = h
        .post_raw(
            batch,
            ACME,
            &json!({"items": [log_request("ok"), {"channel": "log", "body": "x"}]}).to_string(),
            &[],
        )
        .await;
    r.is_error(422, "invalid_field");
    assert_eq!(r.field(), "items[1].recipient");
    let r = h
        .post_raw(
            batch,
            ACME,
            &json!({"items": [log_request("ok"), {"channel": "email", "recipient": "x", "body": "x"}]}).to_string(),
            &[],
        )
        .await;
    r.is_error(422, "invalid_field");
    assert_eq!(r.field(), "items[1].recipient");
    let r = h
        .post_raw(batch, ACME, r#"{"items": [["log", "r", "x"]]}"#, &[])
        .await;
    r.is_error(422, "invalid_field");
    assert_eq!(r.field(), "items[0]");
    let r = h.post_raw(batch, ACME, r#"{"items": []}"#, &[]).await;
    r.is_error(422, "invalid_field");
    assert_eq!(r.field(), "items");
    let r = h
        .post_raw(
            batch,
            ACME,
            &json!({"items": [log_request("ok")]}).to_string(),
            &[("Idempotency-Key", "b1")],
        )
        .await;
    r.is_error(422, "invalid_field");
    assert_eq!(r.field(), "Idempotency-Key");

    // Patches.
    let patch = format!("/v1/message-requests/{existing}");
    let r = h
        .call(
            Method::PATCH,
            &patch,
            Some(ACME),
            Some(json!({"status": "SENT"})),
        )
        .await;
    r.is_error(422, "invalid_field");
    assert_eq!(r.field(), "status");
    let r = h
        .call(
            Method::PATCH,
            &patch,
            Some(ACME),
            Some(json!({"tenant": "globex"})),
        )
        .await;
    r.is_error(422, "invalid_field");
    assert_eq!(r.field(), "tenant");

    // Content type and size.
    let r = h
        .send(
            h.req(Method::POST, create, Some(ACME))
                .header("content-type", "text/plain")
                .body(log_request("t").to_string()),
        )
        .await;
    r.is_error(415, "unsupported_media_type");
    let r = h
        .send(
            h.req(Method::POST, create, Some(ACME))
                .body(log_request("t").to_string()),
        )
        .await;
    r.is_error(415, "unsupported_media_type");
    let r = h
        .send(
            h.req(Method::PATCH, &patch, Some(ACME))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("status=PENDING"),
        )
        .await;
    r.is_error(415, "unsupported_media_type");
    let huge = json!({"channel": "log", "recipient": "big", "body": "x".repeat(300 * 1024)});
    h.create(ACME, huge)
        .await
        .is_error(413, "payload_too_large");

    // Queries: 400, naming the parameter.
    for (query, field) in [
        ("status=BOGUS", "status"),
        ("status=sent", "status"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=abc", "limit"),
        ("limit=-3", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=", "cursor"),
    ] {
        let r = h.get(&format!("/v1/message-requests?{query}"), ACME).await;
        r.is_error(400, "invalid_query");
        assert_eq!(r.field(), field, "{query}");
    }
    h.get("/v1/message-requests?colour=red", ACME)
        .await
        .is_error(400, "invalid_query");
    h.get("/v1/dead-letters?limit=5000", ACME)
        .await
        .is_error(400, "invalid_query");
    h.get("/v1/dead-letters?status=DEAD", ACME)
        .await
        .is_error(400, "invalid_query");

    // Paths: a malformed id is 400, an unknown one 404.
    for (method, path) in [
        (Method::GET, "/v1/message-requests/not-a-uuid"),
        (Method::GET, "/v1/message-requests/123/events"),
        (Method::POST, "/v1/dead-letters/%ZZ/requeue"),
        (
            Method::GET,
            "/v1/message-requests/0190c4f27b1e7c3a9d2e5f6a7b8c9d0e",
        ),
    ] {
        let r = h.call(method.clone(), path, Some(ACME), None).await;
        r.is_error(400, "invalid_path");
        assert_eq!(r.field(), "id", "{path}");
    }
    let r = h
        .call(
            Method::PATCH,
            "/v1/message-requests/nope",
            Some(ACME),
            Some(json!({})),
        )
        .await;
    r.is_error(400, "invalid_path");
    let unknown = uuid::Uuid::now_v7();
    h.get(&format!("/v1/message-requests/{unknown}"), ACME)
        .await
        .is_error(404, "not_found");
    h.get(&format!("/v1/message-requests/{unknown}/events"), ACME)
        .await
        .is_error(404, "not_found");
    h.call(
        Method::PATCH,
        &format!("/v1/message-requests/{unknown}"),
        Some(ACME),
        Some(json!({"status": "CANCELLED"})),
    )
    .await
    .is_error(404, "not_found");
    h.call(
        Method::POST,
        &format!("/v1/dead-letters/{unknown}/requeue"),
        Some(ACME),
        None,
    )
    .await
    .is_error(404, "not_found");

    // Routes and methods.
    h.get("/v1/nothing-here", ACME)
        .await
        .is_error(404, "not_found");
    h.call(Method::GET, "/", None, None)
        .await
        .is_error(404, "not_found");
    let r = h.call(Method::DELETE, create, Some(ACME), None).await;
    r.is_error(405, "method_not_allowed");
    let allow = r.header("allow");
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    h.call(Method::PUT, &patch, Some(ACME), Some(json!({})))
        .await
        .is_error(405, "method_not_allowed");
    h.call(Method::GET, batch, Some(ACME), None)
        .await
        .is_error(405, "method_not_allowed");

    // The admin key cannot act as a tenant.
    h.create(ADMIN, log_request("admin"))
        .await
        .is_error(403, "forbidden");
    h.get("/v1/message-requests", ADMIN)
        .await
        .is_error(403, "forbidden");

    // Nothing above wrote an event or enqueued a job.
    assert_eq!(h.head().await, head);
    assert_eq!(h.state.queue_info().await.expect("queue info"), queue);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_required_and_checked() {
    let h = start(FULL).await;
    let id = uuid::Uuid::now_v7();
    let routes = [
        (Method::POST, "/v1/message-requests".to_owned()),
        (Method::GET, "/v1/message-requests".to_owned()),
        (Method::POST, "/v1/message-requests/batch".to_owned()),
        (Method::GET, format!("/v1/message-requests/{id}")),
        (Method::PATCH, format!("/v1/message-requests/{id}")),
        (Method::GET, format!("/v1/message-requests/{id}/events")),
        (Method::GET, "/v1/queue".to_owned()),
        (Method::GET, "/v1/dead-letters".to_owned()),
        (Method::POST, format!("/v1/dead-letters/{id}/requeue")),
    ];
    let head = h.head().await;
    for (method, path) in &routes {
        for auth in [
            None,
            Some("Bearer wrong-key"),
            Some("Basic YWNtZTprZXk="),
            Some("Bearer "),
        ] {
            let mut req = h.req(method.clone(), path, None).json(&log_request("x"));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = h.send(req).await;
            r.is_error(401, "unauthorized");
            assert!(
                r.header("www-authenticate").starts_with("Bearer"),
                "{method} {path}"
            );
        }
    }
    assert_eq!(h.head().await, head);
    // The right key works (here: any tenant may read the queue).
    assert_eq!(h.get("/v1/queue", GLOBEX).await.status, StatusCode::OK);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_cannot_see_or_touch_each_others_requests() {
    let h = start(FULL).await;
    let id = h.create_log(ACME, "private").await;
    h.wait_status(ACME, &id, "SENT").await;
    h.wait_projected().await;
    let head = h.head().await;

    h.get(&format!("/v1/message-requests/{id}"), GLOBEX)
        .await
        .is_error(404, "not_found");
    h.get(&format!("/v1/message-requests/{id}/events"), GLOBEX)
        .await
        .is_error(404, "not_found");
    h.call(
        Method::PATCH,
        &format!("/v1/message-requests/{id}"),
        Some(GLOBEX),
        Some(json!({"status": "PENDING"})),
    )
    .await
    .is_error(404, "not_found");
    h.call(
        Method::POST,
        &format!("/v1/dead-letters/{id}/requeue"),
        Some(GLOBEX),
        None,
    )
    .await
    .is_error(404, "not_found");
    let theirs = h.get("/v1/message-requests", GLOBEX).await;
    assert!(!ids(&theirs.json["items"]).contains(&id));
    assert_eq!(h.head().await, head);
    let mine = h.get("/v1/message-requests", ACME).await;
    assert!(ids(&mine.json["items"]).contains(&id));
    h.stop().await;
}

// --- dead letters and the queue ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_list_and_requeue() {
    let h = start(FULL).await;
    // No e-mail channel runs here: the send fails permanently and the retry job dead-letters it.
    let r = h
        .create(
            ACME,
            json!({"channel": "email", "recipient": "ops@example.com", "subject": "s", "body": "b"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let id = r.id();
    let dead = h.wait_status(ACME, &id, "DEAD").await;
    assert!(
        dead["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("email")),
        "{dead}"
    );
    let sent = h.create_log(ACME, "alive").await;
    h.wait_status(ACME, &sent, "SENT").await;
    h.wait_projected().await;

    let mine = h.get("/v1/dead-letters", ACME).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.json);
    assert_eq!(ids(&mine.json["items"]), [id.as_str()]);
    assert!(
        mine.json.get("dead_jobs").is_none(),
        "tenants do not see the queue's dead set"
    );
    let theirs = h.get("/v1/dead-letters", GLOBEX).await;
    assert!(ids(&theirs.json["items"]).is_empty());
    let admin = h.get("/v1/dead-letters?limit=10", ADMIN).await;
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.json);
    assert_eq!(ids(&admin.json["items"]), [id.as_str()]);
    assert!(admin.json["dead_jobs"].is_array(), "{}", admin.json);

    // Only DEAD requests can be requeued; other tenants' are not found.
    h.call(
        Method::POST,
        &format!("/v1/dead-letters/{sent}/requeue"),
        Some(ACME),
        None,
    )
    .await
    .is_error(409, "conflict");
    h.call(
        Method::POST,
        &format!("/v1/dead-letters/{id}/requeue"),
        Some(GLOBEX),
        None,
    )
    .await
    .is_error(404, "not_found");

    let r = h
        .call(
            Method::POST,
            &format!("/v1/dead-letters/{id}/requeue"),
            Some(ACME),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["status"], "PENDING");
    assert_eq!(r.json["attempts"], 0);
    assert!(r.json["last_error"].is_null());

    // Still no e-mail channel: it dies again, and the admin may requeue any tenant's.
    h.wait_status(ACME, &id, "DEAD").await;
    let r = h
        .call(
            Method::POST,
            &format!("/v1/dead-letters/{id}/requeue"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["status"], "PENDING");
    let history = h
        .get(&format!("/v1/message-requests/{id}/events"), ACME)
        .await;
    let types = event_types(&history.json);
    assert_eq!(
        types[..4],
        [
            "MessageRequestCreated",
            "MessageRequestFailed",
            "MessageRequestDeadLettered",
            "MessageRequestUpdated"
        ]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_info_counts_jobs() {
    let h = start(FULL).await;
    let id = h.create_log(ACME, "q").await;
    h.wait_status(ACME, &id, "SENT").await;
    let r = eventually("send job completed", || async {
        let r = h.get("/v1/queue", GLOBEX).await;
        (r.json["by_name"]["queueSendMessageRequest"]["completed"] == 1).then_some(r)
    })
    .await;
    assert_eq!(r.status, StatusCode::OK);
    for field in [
        "waiting",
        "active",
        "delayed",
        "completed",
        "failed",
        "dead",
    ] {
        assert!(r.json["total"][field].is_u64(), "{field}: {}", r.json);
    }
    assert_eq!(r.json["total"]["completed"], 1);
    let admin = h.get("/v1/queue", ADMIN).await;
    assert_eq!(admin.status, StatusCode::OK);
    assert_eq!(admin.json["total"], r.json["total"]);
    h.stop().await;
}

// --- health, metrics, OpenAPI -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes() {
    let h = start(FULL).await;
    let live = h.call(Method::GET, "/health/live", None, None).await;
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(live.json, json!({"status": "ok"}));

    let id = h.create_log(ACME, "ready").await;
    h.wait_status(ACME, &id, "SENT").await;
    h.wait_projected().await;
    let ready = h.call(Method::GET, "/health/ready", None, None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.json);
    assert_eq!(ready.json["status"], "ok");
    for check in ["event_store", "state", "projector"] {
        assert_eq!(
            ready.json["checks"][check]["status"], "ok",
            "{}",
            ready.json
        );
    }
    assert_eq!(ready.json["projector_lag"], 0);
    assert!(ready.json["queue"]["total"].is_object());

    h.projector_alive.store(false, Ordering::SeqCst);
    let down = h.call(Method::GET, "/health/ready", None, None).await;
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        down.json
    );
    assert_eq!(down.json["status"], "unavailable");
    assert_eq!(down.json["checks"]["projector"]["status"], "down");
    assert!(down.json["checks"]["projector"]["error"].is_string());
    assert_eq!(down.json["checks"]["event_store"]["status"], "ok");
    assert!(down.json["projector_lag"].is_u64());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_or_404() {
    let h = start(Opts {
        workers: true,
        metrics: true,
    })
    .await;
    h.create_log(ACME, "m").await;
    let r = h.send(h.req(Method::GET, "/metrics", None)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").starts_with("text/plain"));
    let text = h
        .http
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(text.contains("herald_http_requests_total"), "{text}");
    h.stop().await;

    let h = start(FULL).await;
    h.call(Method::GET, "/metrics", None, None)
        .await
        .is_error(404, "not_found");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_every_route() {
    let h = start(FULL).await;
    let r = h.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").starts_with("application/json"));
    let doc = r.json;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(
        doc,
        serde_json::to_value(herald_api::openapi()).expect("doc")
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    let routes = [
        ("post", "/v1/message-requests"),
        ("get", "/v1/message-requests"),
        ("post", "/v1/message-requests/batch"),
        ("get", "/v1/message-requests/{id}"),
        ("patch", "/v1/message-requests/{id}"),
        ("get", "/v1/message-requests/{id}/events"),
        ("get", "/v1/queue"),
        ("get", "/v1/dead-letters"),
        ("post", "/v1/dead-letters/{id}/requeue"),
        ("get", "/health/live"),
        ("get", "/health/ready"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
    ];
    let paths = doc["paths"].as_object().expect("paths");
    let documented: usize = paths
        .values()
        .map(|p| p.as_object().map_or(0, |o| o.len()))
        .sum();
    assert_eq!(
        documented,
        routes.len(),
        "exactly the routes the router serves"
    );
    let uuid = uuid::Uuid::now_v7().to_string();
    for (method, path) in routes {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        let responses = op["responses"].as_object().expect("responses");
        let secured = op.get("security").is_some();
        if secured {
            assert!(
                responses.contains_key("401"),
                "{method} {path} documents 401"
            );
            assert!(
                responses.contains_key("503"),
                "{method} {path} documents 503"
            );
        }
        if path.contains("{id}") {
            let id = &op["parameters"][0];
            assert_eq!(id["name"], "id");
            assert_eq!(id["schema"]["format"], "uuid");
            assert!(responses.contains_key("400") && responses.contains_key("404"));
        }
        for (status, resp) in responses {
            if status.starts_with('4') || status == "503" && path.starts_with("/v1") {
                assert_eq!(
                    resp["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
        // The documented route exists: it answers with something other than 404/405 for
        // an unknown route (an unknown id is a documented 404 with code not_found, so compare
        // the message).
        let real = path.replace("{id}", &uuid);
        let r = h
            .call(
                method.to_uppercase().parse().expect("method"),
                &real,
                Some(ACME),
                Some(json!({})),
            )
            .await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            !r.json["error"]["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("no route"),
            "{method} {path} is not routed"
        );
    }
    h.stop().await;
}
