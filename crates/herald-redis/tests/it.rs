//! The Redis state backend against a real Redis: the shared conformance suite, recovery after a
//! Redis restart that lost everything, and tenant names that look like key syntax.
//!
//! Needs Redis on 127.0.0.1:6379 (or `HERALD_TEST_REDIS`); each test works in its own namespace
//! and deletes only that namespace's keys, since the server may be shared. The recovery test
//! starts its own `redis-server` on a free port.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::state::{ListQuery, ProjectionStep};
use herald_core::testkit::state::{doc, job};
use herald_core::{StateBackend, StateError};
use herald_domain::{JobName, Status};
use herald_redis::RedisState;
use uuid::Uuid;

const START_REDIS: &str = r#"redis-server --daemonize yes --port 6379 --save "" --appendonly no"#;

fn redis_url() -> String {
    std::env::var("HERALD_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Deletes one namespace's keys when dropped (never FLUSHDB: the server is shared).
struct NamespaceGuard {
    url: String,
    namespace: String,
}

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        // The synchronous client needs no runtime, so this works from any drop site.
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
            return;
        };
        let pattern = format!("{{{}}}:*", self.namespace);
        let mut cursor = 0u64;
        loop {
            let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                .cursor_arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut con)
            else {
                return;
            };
            if !keys.is_empty() {
                let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&keys).query(&mut con);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

async fn connect_fresh(url: &str) -> (RedisState, NamespaceGuard) {
    let namespace = format!("test-{}", Uuid::new_v4());
    let state = match RedisState::connect(url, &namespace).await {
        Ok(s) => s,
        Err(e) => panic!("{e}\nThe tests need a Redis server; start one with:\n  {START_REDIS}"),
    };
    let guard = NamespaceGuard {
        url: url.to_string(),
        namespace,
    };
    (state, guard)
}

async fn factory() -> (Arc<dyn StateBackend>, herald_core::testkit::Guard) {
    let (state, guard) = connect_fresh(&redis_url()).await;
    (Arc::new(state), Box::new(guard))
}

herald_core::state_conformance!(factory);

// --- tenants --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_that_look_like_key_syntax_stay_isolated() {
    let (s, _guard) = connect_fresh(&redis_url()).await;
    let token = s
        .acquire_projector_lease("p", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("lease free");
    let tenants = ["acme", "acme:*", "*", "acme:PENDING", "%2A", ""];
    let mut upserts = Vec::new();
    for (i, t) in tenants.iter().enumerate() {
        // Tenant i gets i + 1 requests, so every count is distinct.
        for _ in 0..=i {
            upserts.push(doc(Uuid::now_v7(), t, Status::Pending, 1));
        }
    }
    s.apply(ProjectionStep {
        token,
        upserts,
        jobs: vec![],
        checkpoint: 1,
    })
    .await
    .unwrap();
    for (i, t) in tenants.iter().enumerate() {
        let page = s
            .list(ListQuery {
                tenant: Some(t.to_string()),
                status: None,
                limit: 100,
                before: None,
            })
            .await
            .unwrap();
        assert_eq!(page.items.len(), i + 1, "tenant {t:?} sees only its own");
        assert!(page.items.iter().all(|d| d.tenant == *t), "tenant {t:?}");
        let counts = s.status_counts(Some(t)).await.unwrap();
        assert_eq!(
            counts[&Status::Pending],
            i as u64 + 1,
            "tenant {t:?} counts"
        );
    }
    let all = s.status_counts(None).await.unwrap();
    let total: usize = (1..=tenants.len()).sum();
    assert_eq!(all[&Status::Pending], total as u64);
}

// --- large steps ---------------------------------------------------------------------------

/// The apply script batches index and queue writes in chunks; a step larger than a chunk, with a
/// job id repeated inside it, must come out exactly as many small steps would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_larger_than_a_chunk_is_exact() {
    let (s, _guard) = connect_fresh(&redis_url()).await;
    let token = s
        .acquire_projector_lease("p", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("lease free");
    let n = 1234;
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    let mut jobs: Vec<_> = (0..n)
        .map(|i| job(&format!("j{i:05}"), JobName::Send, 0, 0))
        .collect();
    jobs.push(job("j00007", JobName::Send, 0, 0));
    jobs.push(job("late", JobName::Retry, 1, 60_000));
    let step = ProjectionStep {
        token,
        upserts: ids
            .iter()
            .map(|id| doc(*id, "acme", Status::Pending, 1))
            .collect(),
        jobs,
        checkpoint: 9,
    };
    assert_eq!(
        s.apply(step).await.unwrap(),
        n + 1,
        "the repeated id counts once"
    );
    let counts = s.status_counts(Some("acme")).await.unwrap();
    assert_eq!(counts[&Status::Pending], n as u64);
    let info = s.queue_info().await.unwrap();
    assert_eq!((info.total.waiting, info.total.delayed), (n as u64, 1));
    // Half of them move to SENT in one step.
    let step = ProjectionStep {
        token,
        upserts: ids
            .iter()
            .step_by(2)
            .map(|id| doc(*id, "acme", Status::Sent, 2))
            .collect(),
        jobs: vec![],
        checkpoint: 10,
    };
    s.apply(step).await.unwrap();
    let counts = s.status_counts(None).await.unwrap();
    assert_eq!(
        (counts[&Status::Pending], counts[&Status::Sent]),
        ((n / 2) as u64, (n / 2) as u64)
    );
    let got: Vec<String> = s
        .reserve("w", n, Duration::from_secs(30))
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    let expected: Vec<String> = (0..n).map(|i| format!("j{i:05}")).collect();
    assert_eq!(got, expected, "FIFO across chunks");
}

// --- recovery -------------------------------------------------------------------------------

/// A private redis-server, killed when dropped (also when the test panics).
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start(port: u16) -> PrivateRedis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--bind", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (apt-get install redis-server)");
        let r = PrivateRedis {
            port,
            child: Some(child),
        };
        r.wait_until_up();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn wait_until_up(&self) {
        let client = redis::Client::open(self.url()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(500))
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "private redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_by_itself_after_redis_restarts_empty() {
    let mut redis = PrivateRedis::start(free_port());
    let s = RedisState::connect(&redis.url(), "recovery")
        .await
        .expect("connect to the private redis-server");
    let old = s
        .acquire_projector_lease("p1", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("lease free");
    let step = |token: u64, checkpoint: u64| ProjectionStep {
        token,
        upserts: vec![doc(Uuid::now_v7(), "acme", Status::Pending, 1)],
        jobs: vec![job(&format!("j{checkpoint}"), JobName::Send, 0, 0)],
        checkpoint,
    };
    assert_eq!(s.apply(step(old, 3)).await.unwrap(), 1);
    assert_eq!(s.checkpoint().await.unwrap(), 3);

    // Restart without persistence: Redis comes back empty, on the same port.
    let port = redis.port;
    redis.kill();
    redis = PrivateRedis::start(port);

    // The same RedisState reconnects by itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match s.ping().await {
            Ok(()) => break,
            Err(StateError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("no reconnection: {e}"),
        }
    }
    // The blocking wait's idle connection died with the server; it gets a fresh one.
    s.wait_for_jobs(Duration::from_millis(200)).await.unwrap();
    assert_eq!(s.checkpoint().await.unwrap(), 0, "the state was lost");
    assert!(
        matches!(s.apply(step(old, 4)).await, Err(StateError::Fenced(t)) if t == old),
        "a lease lost with the data fences the old projector"
    );
    let fresh = s
        .acquire_projector_lease("p2", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("lease free after the loss");
    assert!(fresh > old, "tokens keep growing across a data loss");
    assert_eq!(s.apply(step(fresh, 1)).await.unwrap(), 1);
    assert_eq!(s.checkpoint().await.unwrap(), 1);
    assert!(
        matches!(s.apply(step(old, 5)).await, Err(StateError::Fenced(_))),
        "the old token stays fenced once a new lease exists"
    );
    let jobs = s.reserve("w", 10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(jobs.len(), 1);
    drop(redis);
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let err = match RedisState::connect(&url, "x").await {
        Ok(_) => panic!("connected to a closed port"),
        Err(e) => e,
    };
    assert!(matches!(err, StateError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains(&url), "names the URL: {err}");
}

// --- throughput -------------------------------------------------------------------------------

/// Projector steps as the projector sends them (one upsert and one job per event). Ignored by
/// default; run with `cargo test -p herald-redis --release -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn apply_throughput() {
    let (s, _guard) = connect_fresh(&redis_url()).await;
    let token = s
        .acquire_projector_lease("p", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("lease free");
    let (steps, per_step) = (100, 500);
    let batches: Vec<ProjectionStep> = (0..steps)
        .map(|n| {
            let ids: Vec<Uuid> = (0..per_step).map(|_| Uuid::now_v7()).collect();
            ProjectionStep {
                token,
                upserts: ids
                    .iter()
                    .map(|id| doc(*id, "acme", Status::Pending, 1))
                    .collect(),
                jobs: ids
                    .iter()
                    .map(|id| job(&format!("e-{id}"), JobName::Send, 0, 0))
                    .collect(),
                checkpoint: ((n + 1) * per_step) as u64,
            }
        })
        .collect();
    let started = Instant::now();
    for step in batches {
        assert_eq!(s.apply(step).await.unwrap(), per_step);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} events in {secs:.2}s: {:.0} events/s",
        steps * per_step,
        (steps * per_step) as f64 / secs
    );
}

// --- key layout -------------------------------------------------------------------------------

/// A namespace written by an older Herald (a hash per job, no layout mark) cannot be read by
/// today's scripts; connecting to it is refused with the way forward, and a namespace written
/// by this version (including one re-created after Redis lost everything) is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_of_an_older_layout_is_refused() {
    let url = redis_url();
    let (s, guard) = connect_fresh(&url).await;
    s.enqueue(vec![job("j", JobName::Send, 0, 0)])
        .await
        .unwrap();
    RedisState::connect(&url, &guard.namespace)
        .await
        .expect("a namespace of this layout is accepted");

    // What layout 1 left behind: a checkpoint, a seen set and per-job hashes, no mark.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let ns = &guard.namespace;
    let _: () = redis::pipe()
        .cmd("DEL")
        .arg(format!("{{{ns}}}:layout"))
        .cmd("SET")
        .arg(format!("{{{ns}}}:projector:checkpoint"))
        .arg(7)
        .cmd("HSET")
        .arg(format!("{{{ns}}}:job:old"))
        .arg("name")
        .arg("queueSendMessageRequest")
        .query_async(&mut con)
        .await
        .unwrap();
    let err = match RedisState::connect(&url, ns).await {
        Ok(_) => panic!("an older layout was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("older Herald") && err.contains("new `namespace`"),
        "{err}"
    );
}
