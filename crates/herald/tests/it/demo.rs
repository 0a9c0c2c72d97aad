//! `herald demo` end to end: the bundled examples against the local receiver, with short retry
//! delays and timeouts so it runs in seconds.

use crate::support::herald;

#[test]
fn demo_reaches_every_request_terminal_with_no_duplicates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let summary_path = dir.path().join("summary.json");
    let out = herald()
        .args([
            "demo",
            "--retry-delay-ms",
            "200",
            "--webhook-timeout-ms",
            "500",
            "--timeout-s",
            "120",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--summary-json")
        .arg(&summary_path)
        .output()
        .expect("run herald demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Herald demo summary"), "{stdout}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).expect("summary written"))
            .expect("summary JSON");
    let n = |k: &str| {
        s[k].as_u64()
            .unwrap_or_else(|| panic!("summary lacks {k}: {s}"))
    };
    assert_eq!(n("total"), 240);
    // The always-500, the 410 and the too-slow endpoint are dead-lettered; everything else is sent.
    assert_eq!(n("dead"), 3, "{s}");
    assert_eq!(n("sent"), 237, "{s}");
    assert_eq!((n("pending"), n("failed"), n("cancelled")), (0, 0, 0));
    assert!(
        // 12 flaky1 endpoints retry once, 8 flaky2 twice, the throttled one once.
        n("retries") >= 29,
        "flaky, throttled and failing endpoints were retried: {s}"
    );
    assert_eq!(n("duplicate_deliveries"), 0, "{s}");
    assert_eq!(n("bad_signatures"), 0, "{s}");
    // 174 webhook requests, 3 of which are never accepted.
    assert_eq!(n("deliveries"), 171, "{s}");
    assert!(n("elapsed_ms") > 0);
    assert_eq!(s["all_terminal"], true);
    let log =
        std::fs::read_to_string(dir.path().join("data/messages.log")).expect("log channel file");
    assert_eq!(log.lines().count(), 66, "one line per log-channel request");
}

#[test]
fn demo_refuses_a_data_dir_holding_an_earlier_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("herald.db"), b"").expect("write");
    let out = herald()
        .args(["demo", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a demo run"));
}

/// The same demo with the production backends: PostgreSQL event store, Redis state.
#[test]
fn demo_on_postgres_and_redis() {
    let pg = crate::support::postgres_url();
    let redis_url = crate::support::redis_url();
    let schema = format!("herald_demo_{}", uuid::Uuid::new_v4().simple());
    let namespace = format!("test-demo-{}", uuid::Uuid::new_v4().simple());
    let _cleanup = crate::support::Cleanup {
        schema: Some(schema.clone()),
        namespace: Some(namespace.clone()),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let summary_path = dir.path().join("summary.json");
    let out = herald()
        .args([
            "demo",
            "--retry-delay-ms",
            "200",
            "--webhook-timeout-ms",
            "500",
            "--timeout-s",
            "120",
        ])
        .args(["--event-store", &format!("{pg}?schema={schema}")])
        .args(["--state", &redis_url, "--namespace", &namespace])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--summary-json")
        .arg(&summary_path)
        .output()
        .expect("run herald demo");
    assert!(
        out.status.success(),
        "demo failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).expect("summary"))
            .expect("JSON");
    assert_eq!(
        (s["total"].as_u64(), s["sent"].as_u64(), s["dead"].as_u64()),
        (Some(240), Some(237), Some(3)),
        "{s}"
    );
    assert_eq!(s["duplicate_deliveries"].as_u64(), Some(0), "{s}");
    assert_eq!(s["deliveries"].as_u64(), Some(171), "{s}");
}
