//! `herald serve` as a user runs it: a real process, its HTTP API, and each state backend.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{KillOnDrop, serve, terminate};

const KEY: &str = "serve-test-key-acme-0123456789";
const OTHER_KEY: &str = "serve-test-key-globex-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn write_config(
    dir: &Path,
    port: u16,
    store: Option<&str>,
    state: &str,
    namespace: &str,
) -> std::path::PathBuf {
    let sqlite = format!("sqlite://{}", dir.join("herald.db").display());
    let state = if state == "sqlite" {
        sqlite.clone()
    } else {
        state.to_string()
    };
    let db = store.map(str::to_string).unwrap_or(sqlite);
    let path = dir.join("herald.toml");
    std::fs::write(
        &path,
        format!(
            r#"
listen = "127.0.0.1:{port}"
event_store = "{db}"
state = "{state}"
namespace = "{namespace}"
[[tenants]]
id = "acme"
api_key = "{KEY}"
webhook_secret = "whsec_c2VydmUtdGVzdC1zZWNyZXQ="
[[tenants]]
id = "globex"
api_key = "{OTHER_KEY}"
[channels]
log = "null"
"#
        ),
    )
    .expect("write config");
    path
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/health/ready")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "herald serve did not become ready at {base}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get_json(client: &reqwest::Client, url: &str, key: &str) -> (u16, Value) {
    let r = client.get(url).bearer_auth(key).send().await.expect("GET");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn exercise(store: Option<&str>, state: &str, namespace: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let config = write_config(dir.path(), port, store, state, namespace);
    let log = dir.path().join("serve.log");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut child = KillOnDrop(serve(&config, "api,projector,worker", &log));
    wait_ready(&client, &base).await;

    let body = json!({"channel": "log", "recipient": "audit", "body": "hello from the serve test"});
    let r = client
        .post(format!("{base}/v1/message-requests"))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "order-42")
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.expect("JSON");
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["status"], "PENDING");

    // It moves to SENT, and its history shows both events.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, v) = get_json(&client, &format!("{base}/v1/message-requests/{id}"), KEY).await;
        assert_eq!(s, 200);
        if v["status"] == "SENT" {
            break;
        }
        assert!(Instant::now() < deadline, "request never reached SENT: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, v) = get_json(
        &client,
        &format!("{base}/v1/message-requests/{id}/events"),
        KEY,
    )
    .await;
    assert_eq!(s, 200);
    let types: Vec<&str> = v["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    assert_eq!(types, vec!["MessageRequestCreated", "MessageRequestSent"]);
    // The seed's job shows in the queue statistics.
    let (s, q) = get_json(&client, &format!("{base}/v1/queue"), KEY).await;
    assert_eq!(s, 200);
    assert!(q.to_string().contains("queueSendMessageRequest"), "{q}");
    // Tenant isolation and authentication.
    assert_eq!(
        get_json(
            &client,
            &format!("{base}/v1/message-requests/{id}"),
            OTHER_KEY
        )
        .await
        .0,
        404
    );
    assert_eq!(
        get_json(
            &client,
            &format!("{base}/v1/message-requests/{id}"),
            "wrong-key-wrong-key"
        )
        .await
        .0,
        401
    );

    // Restart: the idempotency key is durable.
    let status = terminate(&mut child.0, Duration::from_secs(15));
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    let _child = KillOnDrop(serve(&config, "api,projector,worker", &log));
    wait_ready(&client, &base).await;
    let again = |b: Value| {
        client
            .post(format!("{base}/v1/message-requests"))
            .bearer_auth(KEY)
            .header("Idempotency-Key", "order-42")
            .json(&b)
            .send()
    };
    let r = again(body.clone()).await.expect("POST");
    assert_eq!(r.status(), 200, "same key, same body: the original");
    let v: Value = r.json().await.expect("JSON");
    assert_eq!(v["id"], id.as_str());
    let r = again(json!({"channel": "log", "recipient": "audit", "body": "another body"}))
        .await
        .expect("POST");
    assert_eq!(r.status(), 422, "same key, another body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_sqlite() {
    exercise(None, "sqlite", "herald").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_redis() {
    let url = crate::support::redis_url();
    let ns = format!("test-serve-{}", uuid::Uuid::new_v4().simple());
    let _cleanup = crate::support::Cleanup {
        schema: None,
        namespace: Some(ns.clone()),
    };
    exercise(None, &url, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgres_and_redis() {
    let schema = format!("herald_serve_{}", uuid::Uuid::new_v4().simple());
    let ns = format!("test-serve-{}", uuid::Uuid::new_v4().simple());
    let _cleanup = crate::support::Cleanup {
        schema: Some(schema.clone()),
        namespace: Some(ns.clone()),
    };
    let store = format!("{}?schema={schema}", crate::support::postgres_url());
    exercise(Some(&store), &crate::support::redis_url(), &ns).await;
}
