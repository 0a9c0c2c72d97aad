//! Helpers shared by the end-to-end tests.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `herald` binary built for these tests.
pub fn herald() -> Command {
    Command::new(env!("CARGO_BIN_EXE_herald"))
}

/// Starts `herald serve` with a config file; its log goes to `log`.
pub fn serve(config: &Path, roles: &str, log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open log");
    herald()
        .args(["serve", "--roles", roles, "--config"])
        .arg(config)
        .env("RUST_LOG", "warn,herald=info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("spawn herald serve")
}

/// Sends SIGTERM and waits up to `within` for the process to exit; returns its exit status.
pub fn terminate(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("herald did not stop within {within:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the child on drop, so a failing test leaves no process behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
