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
    serve_with(config, roles, log, &[])
}

/// `serve` with extra environment variables (e.g. `HERALD_LISTEN` for a second process).
pub fn serve_with(config: &Path, roles: &str, log: &Path, env: &[(&str, String)]) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open log");
    herald()
        .args(["serve", "--roles", roles, "--config"])
        .arg(config)
        .env("RUST_LOG", "warn,herald=info,herald_core=info")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
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

/// The shared PostgreSQL (database `test`); tests use their own schema in it.
pub fn postgres_url() -> String {
    let url = std::env::var("HERALD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let ok = Command::new("psql")
        .arg(&url)
        .args(["-qAtc", "SELECT 1"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "PostgreSQL is unreachable at {url}; start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
    );
    url
}

/// The shared Redis; tests use their own key namespace in it.
pub fn redis_url() -> String {
    let url =
        std::env::var("HERALD_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let reachable = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .is_ok();
    assert!(
        reachable,
        "Redis is unreachable at {url}; start it with: redis-server --daemonize yes --port 6379 --save \"\" --appendonly no"
    );
    url
}

/// Drops a test's PostgreSQL schema and deletes its Redis namespace when dropped (never FLUSHDB:
/// the servers are shared).
pub struct Cleanup {
    pub schema: Option<String>,
    pub namespace: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(schema) = &self.schema {
            let _ = Command::new("psql")
                .arg(postgres_url())
                .args([
                    "-qc",
                    &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"),
                ])
                .output();
        }
        if let Some(ns) = &self.namespace
            && let Ok(mut c) =
                redis::Client::open(redis_url().as_str()).and_then(|c| c.get_connection())
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{{{ns}}}:*"))
                .query(&mut c)
                .unwrap_or_default();
            for chunk in keys.chunks(500) {
                let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query(&mut c);
            }
        }
    }
}

/// A private `redis-server` (no persistence) that a test may kill and restart.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut r = PrivateRedis { port, child: None };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server (again) on the same port, empty, and waits until it answers.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis::Client::open(self.url().as_str())
            .and_then(|c| c.get_connection())
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "private redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: everything in it is lost.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private PostgreSQL cluster in a temporary directory, which a test may stop and restart
/// (the shared server must never be restarted by a test).
pub struct PrivatePostgres {
    pub port: u16,
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl PrivatePostgres {
    pub fn start() -> PrivatePostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .expect("PostgreSQL server binaries (initdb, pg_ctl) are needed: apt-get install postgresql");
        let dir = tempfile::tempdir().expect("temp dir");
        // initdb refuses to run as root; the cluster belongs to the postgres user.
        let owner = Command::new("chown")
            .arg("postgres")
            .arg(dir.path())
            .status();
        assert!(
            owner.is_ok_and(|s| s.success()),
            "chown postgres {}",
            dir.path().display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let pg = PrivatePostgres { port, bin, dir };
        pg.as_postgres(&[
            "initdb",
            "-D",
            &pg.data(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]);
        pg.start_server();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn as_postgres(&self, args: &[&str]) {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(args[0]))
            .args(&args[1..])
            .output()
            .expect("runuser");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn start_server(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.as_postgres(&[
            "pg_ctl",
            "-D",
            &self.data(),
            "-o",
            &opts,
            "-l",
            &log,
            "-w",
            "start",
        ]);
    }

    /// An immediate stop: connections are cut as by a crash.
    pub fn stop(&self) {
        self.as_postgres(&[
            "pg_ctl",
            "-D",
            &self.data(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// Waits until `tenant` has `n` requests SENT in the read models, for at most `within`; panics
/// with `context()` (say, a server log) when it does not get there. Errors reading the counts
/// (a backend restarting) count as no progress.
pub async fn wait_until_sent(
    state: &dyn herald_core::StateBackend,
    tenant: &str,
    n: u64,
    within: Duration,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + within;
    loop {
        let sent = state
            .status_counts(Some(tenant))
            .await
            .ok()
            .and_then(|c| c.get(&herald_domain::Status::Sent).copied())
            .unwrap_or(0);
        if sent == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sent} of {n} sent {}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
