//! The e-mail channel against an SMTP server speaking the real protocol on loopback.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::{Config, Roles, StartOptions};
use herald_domain::{CreateRequest, Status};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

/// A small SMTP server: accepts every recipient except those containing "reject" (550), and
/// keeps each message it accepted (envelope recipient, raw data).
async fn smtp_server(shutdown: CancellationToken) -> (u16, Arc<Mutex<Vec<(String, String)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let inbox: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let kept = inbox.clone();
    tokio::spawn(async move {
        loop {
            let (sock, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = listener.accept() => match a { Ok(a) => a, Err(_) => return },
            };
            let inbox = kept.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                let _ = w.write_all(b"220 test.local ESMTP\r\n").await;
                let mut rcpt = String::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250 test.local\r\n"
                    } else if upper.starts_with("MAIL FROM")
                        || upper.starts_with("RSET")
                        || upper.starts_with("NOOP")
                    {
                        b"250 2.1.0 OK\r\n"
                    } else if upper.starts_with("RCPT TO") {
                        rcpt = line.clone();
                        if line.contains("reject") {
                            b"550 5.1.1 no such user\r\n"
                        } else {
                            b"250 2.1.5 OK\r\n"
                        }
                    } else if upper.starts_with("DATA") {
                        let _ = w.write_all(b"354 end with .\r\n").await;
                        let mut data = String::new();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            data.push_str(&l);
                            data.push('\n');
                        }
                        if let Ok(mut i) = inbox.lock() {
                            i.push((rcpt.clone(), data));
                        }
                        b"250 2.0.0 queued as 42\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"502 5.5.2 not implemented\r\n"
                    };
                    if w.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, inbox)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_is_delivered_over_smtp_and_a_permanent_rejection_is_dead_lettered() {
    let shutdown = CancellationToken::new();
    let (port, inbox) = smtp_server(shutdown.clone()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}", dir.path().join("herald.db").display());
    let mut cfg = Config {
        event_store: db.clone(),
        state: db,
        ..Config::default()
    };
    cfg.channels.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
    cfg.channels.email_from = "Herald <herald@example.test>".into();
    assert!(cfg.validate(None).is_empty(), "{:?}", cfg.validate(None));
    let running = herald::start(
        &cfg,
        Roles::ALL_BUT_API,
        StartOptions::default(),
        shutdown.clone(),
    )
    .await
    .expect("start");
    let service = running.service.clone();
    let mail = |to: &str| CreateRequest {
        channel: "email".into(),
        recipient: to.into(),
        subject: Some("Your invoice".into()),
        body: serde_json::json!("Invoice 1042 is ready."),
        metadata: None,
        idempotency_key: None,
    };
    let ok = service
        .create("acme", mail("ada@example.test"), None, String::new(), None)
        .await
        .expect("create")
        .request
        .id;
    let bad = service
        .create(
            "acme",
            mail("reject@example.test"),
            None,
            String::new(),
            None,
        )
        .await
        .expect("create")
        .request
        .id;
    let deadline = Instant::now() + Duration::from_secs(20);
    let (sent, dead) = loop {
        let (a, b) = (
            service.load("acme", ok).await.expect("load"),
            service.load("acme", bad).await.expect("load"),
        );
        if a.status == Status::Sent && b.status == Status::Dead {
            break (a, b);
        }
        assert!(Instant::now() < deadline, "not delivered: {a:?} {b:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(sent.attempts, 1);
    assert_eq!(
        dead.attempts, 1,
        "a permanent SMTP rejection is not retried"
    );
    assert!(
        dead.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("550"),
        "{dead:?}"
    );
    let history = service.history("acme", ok).await.expect("history");
    assert!(history.iter().any(|e| {
        e.event_type == "MessageRequestSent"
            && e.data["receipt"]
                .as_str()
                .unwrap_or("")
                .starts_with("SMTP 250")
    }));
    let inbox = inbox.lock().expect("inbox").clone();
    assert_eq!(inbox.len(), 1);
    let (rcpt, data) = &inbox[0];
    assert!(rcpt.contains("ada@example.test"));
    assert!(data.contains("Subject: Your invoice"), "{data}");
    assert!(data.contains("Invoice 1042 is ready."), "{data}");
    assert!(
        data.contains(&format!("Message-ID: <{ok}@herald>")),
        "{data}"
    );
    shutdown.cancel();
    running.wait().await;
}
