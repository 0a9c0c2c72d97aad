//! The operator CLI: clear errors, non-zero exits, and the environment variables it documents.

use crate::support::herald;

fn write(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("herald.toml");
    std::fs::write(&p, text).expect("write config");
    p
}

#[test]
fn herald_config_variable_names_the_file_and_other_herald_variables_are_ignored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}", dir.path().join("herald.db").display());
    let cfg = write(
        dir.path(),
        &format!("event_store = \"{db}\"\nstate = \"{db}\"\n"),
    );
    let out = herald()
        .args(["queue", "info", "--json"])
        .env("HERALD_CONFIG", &cfg)
        .env("HERALD_SOMETHING_ELSE", "x")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(info["total"]["waiting"], 0);
    // A HERALD_ variable that is a configuration key still overrides the file.
    let out = herald()
        .args(["queue", "info"])
        .env("HERALD_CONFIG", &cfg)
        .env("HERALD_STATE", "nonsense://x")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("state"));
}

#[test]
fn a_lease_shorter_than_a_delivery_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = write(
        dir.path(),
        "[channels]\nwebhook_timeout_ms = 2000\n[workers]\nlease_ms = 2500\n",
    );
    let out = herald()
        .args(["config", "check"])
        .arg(&cfg)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 4") && err.contains("workers.lease_ms"),
        "{err}"
    );
}

#[test]
fn bad_ids_are_clear_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}", dir.path().join("herald.db").display());
    let cfg = write(
        dir.path(),
        &format!("event_store = \"{db}\"\nstate = \"{db}\"\n"),
    );
    let out = herald()
        .args(["dlq", "requeue", "not-a-uuid", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a message request id"));
    let out = herald()
        .args([
            "dlq",
            "requeue",
            "01a23c1d-9f77-7456-86f7-74f2a2ae5c6c",
            "--config",
        ])
        .arg(&cfg)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}
