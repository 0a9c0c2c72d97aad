//! The PostgreSQL event store against the shared conformance suite, plus what only PostgreSQL can
//! get wrong: gap safety under concurrent writers, group commit, migrations, reconnection.
//!
//! Needs PostgreSQL at `postgres://postgres@127.0.0.1:5432/test` (override with
//! `HERALD_TEST_POSTGRES`). Every test works in its own schema `herald_test_<random>`, dropped
//! afterwards.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use herald_core::store::{AppendStream, EventStore, IdempotencyRecord, StoreError};
use herald_core::testkit::Guard;
use herald_core::testkit::store::{event, stream};
use herald_postgres::{PgEventStore, PgStoreOptions, TestHooks};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn base_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// A fresh schema name; the schema itself is created by the first store that connects to it and
/// dropped (CASCADE) when this guard is dropped.
struct TestSchema {
    name: String,
}

impl TestSchema {
    fn new() -> TestSchema {
        TestSchema {
            name: format!("herald_test_{}", &Uuid::new_v4().simple().to_string()[..16]),
        }
    }

    fn options(&self) -> PgStoreOptions {
        let mut o = PgStoreOptions::new(&base_url()).schema(&self.name);
        o.max_connections = 4; // the server is shared with other test suites
        o
    }

    async fn connect(&self) -> PgEventStore {
        connect(self.options()).await
    }
}

async fn connect(options: PgStoreOptions) -> PgEventStore {
    match PgEventStore::connect_with(options).await {
        Ok(s) => s,
        Err(e) => panic!(
            "cannot use PostgreSQL for the tests ({e}). Start it with: \
             pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start \
             (or point HERALD_TEST_POSTGRES at another server)"
        ),
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which must not be blocked on: use a thread with a
        // runtime of its own.
        let (url, schema) = (base_url(), self.name.clone());
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&url).await?;
                sqlx::query("SET lock_timeout = '10s'")
                    .execute(&mut conn)
                    .await?;
                sqlx::query(AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                )))
                .execute(&mut conn)
                .await?;
                conn.close().await
            })
            .map_err(|e: sqlx::Error| e.to_string())
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test schema {}: {e}", self.name),
            Err(_) => eprintln!(
                "could not drop test schema {}: the thread panicked",
                self.name
            ),
        }
    }
}

async fn factory() -> (Arc<dyn EventStore>, Guard) {
    let schema = TestSchema::new();
    let store = schema.connect().await;
    (Arc::new(store), Box::new(schema))
}

herald_core::store_conformance!(factory);

/// A raw connection for inspecting and disturbing the server from the side.
async fn admin() -> PgConnection {
    match PgConnection::connect(&base_url()).await {
        Ok(c) => c,
        Err(e) => panic!("cannot connect to PostgreSQL: {e}"),
    }
}

/// A small thread-safe pseudo-random source (xorshift), seeded from a random UUID.
struct Rng(AtomicU64);

impl Rng {
    fn new() -> Rng {
        Rng(AtomicU64::new(Uuid::new_v4().as_u64_pair().0 | 1))
    }

    fn below(&self, n: u64) -> u64 {
        let mut x = self.0.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0.store(x, Ordering::Relaxed);
        x % n
    }
}

/// The store's exact protocol under load: several "processes" (stores) append to one schema from
/// many tasks, a third of the transactions held open a few milliseconds before committing, while
/// a projector-style reader follows `read_all` from its checkpoint in small pages. The reader must
/// see every event exactly once, in increasing positions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_following_reader_sees_every_event_exactly_once() {
    const TASKS: usize = 8;
    const APPENDS: usize = 150;
    let schema = TestSchema::new();
    let rng = Arc::new(Rng::new());
    let mut writers = Vec::new();
    for _ in 0..3 {
        let store = schema.connect().await;
        let rng = rng.clone();
        store.set_test_hooks(TestHooks {
            hold_before_commit: Some(Arc::new(move || {
                if rng.below(3) == 0 {
                    Duration::from_micros(500 + rng.below(4_500))
                } else {
                    Duration::ZERO
                }
            })),
            skip_append_lock: false,
        });
        writers.push(Arc::new(store));
    }
    let reader_store = Arc::new(schema.connect().await);

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, done) = (reader_store.clone(), done.clone());
        tokio::spawn(async move {
            let mut checkpoint = 0u64;
            let mut seen = Vec::new();
            loop {
                // Read the flag first: if every append had returned by then, an empty page after
                // it means the reader has caught up for good.
                let finished = done.load(Ordering::SeqCst);
                let page = store.read_all(checkpoint, 7).await.unwrap();
                for e in &page {
                    assert!(
                        e.position > checkpoint,
                        "position {} returned after {checkpoint}",
                        e.position
                    );
                    checkpoint = e.position;
                    seen.push(e.event_id);
                }
                if page.is_empty() {
                    if finished {
                        return seen;
                    }
                    store
                        .wait_for_events(checkpoint, Duration::from_millis(50))
                        .await
                        .unwrap();
                }
            }
        })
    };

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = writers[t % writers.len()].clone();
        let rng = rng.clone();
        tasks.push(tokio::spawn(async move {
            let mut appended = Vec::new();
            let (mut a, mut b) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
            let (mut va, mut vb) = (0u64, 0u64);
            for i in 0..APPENDS {
                if i % 25 == 0 {
                    (a, b, va, vb) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string(), 0, 0);
                }
                let events = (0..1 + rng.below(3))
                    .map(|n| event("acme", n))
                    .collect::<Vec<_>>();
                let results = if i % 5 == 0 {
                    let more = vec![event("acme", 0), event("acme", 1)];
                    store
                        .append_many(vec![stream(&a, va, events), stream(&b, vb, more)])
                        .await
                        .unwrap()
                } else {
                    vec![store.append(stream(&a, va, events)).await]
                };
                for (n, r) in results.into_iter().enumerate() {
                    let recorded = r.unwrap();
                    *(if n == 0 { &mut va } else { &mut vb }) += recorded.len() as u64;
                    appended.extend(recorded.iter().map(|e| e.event_id));
                }
            }
            appended
        }));
    }
    let mut appended = Vec::new();
    for t in tasks {
        appended.extend(t.await.unwrap());
    }
    done.store(true, Ordering::SeqCst);
    let seen = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the reader caught up")
        .unwrap();

    let unique: HashSet<Uuid> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "an event was read twice");
    assert_eq!(seen.len(), appended.len(), "events read vs appended");
    assert_eq!(unique, appended.into_iter().collect::<HashSet<_>>());
}

/// A hook that signals when a transaction has drawn its positions and holds it open for `hold`.
fn hold_open(signal: Arc<Notify>, hold: Duration, skip_append_lock: bool) -> TestHooks {
    TestHooks {
        hold_before_commit: Some(Arc::new(move || {
            signal.notify_one();
            hold
        })),
        skip_append_lock,
    }
}

/// Why the append lock exists: without it a later position commits first, a reader moves its
/// checkpoint past the earlier one, and never reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_append_lock_a_reader_skips_an_event() {
    let schema = TestSchema::new();
    let (slow, fast, reader) = (
        Arc::new(schema.connect().await),
        schema.connect().await,
        schema.connect().await,
    );
    let held = Arc::new(Notify::new());
    slow.set_test_hooks(hold_open(held.clone(), Duration::from_millis(1500), true));
    fast.set_test_hooks(TestHooks {
        skip_append_lock: true,
        ..TestHooks::default()
    });

    let first = {
        let slow = slow.clone();
        tokio::spawn(async move {
            slow.append(stream("first", 0, vec![event("acme", 1)]))
                .await
        })
    };
    tokio::time::timeout(Duration::from_secs(20), held.notified())
        .await
        .expect("the slow append drew its position");
    let second = fast
        .append(stream("second", 0, vec![event("acme", 2)]))
        .await
        .unwrap();

    let page = reader.read_all(0, 100).await.unwrap();
    assert_eq!(page, second, "only the later position is visible");
    let checkpoint = page[0].position;
    let first = first.await.unwrap().unwrap();
    assert!(first[0].position < checkpoint);
    assert!(
        reader.read_all(checkpoint, 100).await.unwrap().is_empty(),
        "the earlier event is behind the checkpoint: lost to this reader"
    );
}

/// With the lock, the same race cannot happen: the second append waits for the first to commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_append_lock_later_positions_wait_for_earlier_commits() {
    let schema = TestSchema::new();
    let (slow, fast, reader) = (
        Arc::new(schema.connect().await),
        Arc::new(schema.connect().await),
        schema.connect().await,
    );
    let held = Arc::new(Notify::new());
    slow.set_test_hooks(hold_open(held.clone(), Duration::from_secs(3), false));

    let first = {
        let slow = slow.clone();
        tokio::spawn(async move {
            slow.append(stream("first", 0, vec![event("acme", 1)]))
                .await
        })
    };
    tokio::time::timeout(Duration::from_secs(20), held.notified())
        .await
        .expect("the slow append drew its position");
    let second = {
        let fast = fast.clone();
        tokio::spawn(async move {
            fast.append(stream("second", 0, vec![event("acme", 2)]))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !second.is_finished(),
        "the second append waits for the lock"
    );
    assert!(reader.read_all(0, 100).await.unwrap().is_empty());

    let (first, second) = (
        first.await.unwrap().unwrap(),
        second.await.unwrap().unwrap(),
    );
    assert!(first[0].position < second[0].position);
    let all = reader.read_all(0, 100).await.unwrap();
    assert_eq!(all, [first, second].concat());
}

/// Holds the writer of `store` busy for `hold` so the appends sent meanwhile form one group.
async fn occupy_writer(store: &Arc<PgEventStore>, hold: Duration) -> tokio::task::JoinHandle<()> {
    let held = Arc::new(Notify::new());
    let once = AtomicBool::new(false);
    let signal = held.clone();
    store.set_test_hooks(TestHooks {
        hold_before_commit: Some(Arc::new(move || {
            if once.swap(true, Ordering::SeqCst) {
                Duration::ZERO
            } else {
                signal.notify_one();
                hold
            }
        })),
        skip_append_lock: false,
    });
    let s = store.clone();
    let task = tokio::spawn(async move {
        s.append(stream(
            &Uuid::now_v7().to_string(),
            0,
            vec![event("acme", 0)],
        ))
        .await
        .unwrap();
    });
    tokio::time::timeout(Duration::from_secs(20), held.notified())
        .await
        .expect("the writer is busy");
    task
}

/// Many callers in one group commit: each gets its own answer, decided in arrival order, and one
/// append's bad data fails only that append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_group_commit_answers_every_caller_on_its_own() {
    let schema = TestSchema::new();
    let store = Arc::new(schema.connect().await);
    let recorded = store
        .append(stream("existing", 0, vec![event("acme", 0)]))
        .await
        .unwrap();
    let busy = occupy_writer(&store, Duration::from_millis(800)).await;

    let shared = Uuid::now_v7().to_string();
    let key = |id: u64| IdempotencyRecord {
        tenant: "acme".into(),
        key: "same-key".into(),
        request_id: Uuid::from_u64_pair(0, id),
        body_hash: format!("hash-{id}"),
    };
    let mut calls = Vec::new();
    for i in 0..12u64 {
        let mut s: AppendStream = match i {
            // Reuses an event id that is already recorded: only this append may fail.
            3 => {
                let mut e = event("acme", i);
                e.event_id = recorded[0].event_id;
                stream(&Uuid::now_v7().to_string(), 0, vec![e])
            }
            // A NUL character PostgreSQL cannot store.
            5 => {
                let mut e = event("acme", i);
                e.data = serde_json::json!({ "text": "a\u{0}b" });
                stream(&Uuid::now_v7().to_string(), 0, vec![e])
            }
            _ => stream(&shared, 0, vec![event("acme", i)]),
        };
        if i >= 7 {
            s.stream_id = Uuid::now_v7().to_string();
            s.idempotency = Some(key(i));
        }
        let store = store.clone();
        calls.push(tokio::spawn(async move { store.append(s).await }));
    }
    busy.await.unwrap();
    let results: Vec<_> = futures_join(calls).await;

    let ok = |i: usize| results[i].is_ok();
    assert!(
        matches!(results[3], Err(StoreError::Data(_))),
        "{:?}",
        results[3]
    );
    assert!(
        matches!(results[5], Err(StoreError::Data(_))),
        "{:?}",
        results[5]
    );
    // Requests 0,1,2,4,6 all expect version 0 of one stream: exactly one wins.
    let winners = [0, 1, 2, 4, 6].into_iter().filter(|&i| ok(i)).count();
    assert_eq!(winners, 1, "{results:?}");
    assert_eq!(store.read_stream(&shared).await.unwrap().len(), 1);
    // Requests 7.. claim one key: the first claim wins, the others are told whose it is.
    let claims: Vec<usize> = (7..12).filter(|&i| ok(i)).collect();
    assert_eq!(claims.len(), 1, "{results:?}");
    let winner = store
        .idempotency_lookup("acme", "same-key")
        .await
        .unwrap()
        .unwrap();
    for i in (7..12).filter(|&i| !ok(i)) {
        match &results[i] {
            Err(StoreError::IdempotencyKeyUsed { existing }) => assert_eq!(existing, &winner),
            other => panic!("{other:?}"),
        }
    }
}

async fn futures_join<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Timestamps keep whole milliseconds, and what `append` returns is what is read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_events_read_back_exactly() {
    let schema = TestSchema::new();
    let store = schema.connect().await;
    let mut e = event("acme", 1);
    e.timestamp = chrono::Utc::now(); // nanoseconds
    e.data = serde_json::json!({ "big": u64::MAX, "f": 0.1, "neg": -3, "nested": [{ "ü": null }] });
    let id = Uuid::now_v7().to_string();
    let recorded = store.append(stream(&id, 0, vec![e.clone()])).await.unwrap();
    assert_eq!(
        recorded[0].timestamp,
        herald_domain::event::truncate_ms(e.timestamp)
    );
    assert_eq!(store.read_stream(&id).await.unwrap(), recorded);
    assert_eq!(store.read_all(0, 10).await.unwrap(), recorded);
}

/// Processes starting together apply each migration once; a restart finds nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_even_when_processes_start_together() {
    let schema = TestSchema::new();
    let mut starting = Vec::new();
    for _ in 0..4 {
        let options = schema.options();
        starting.push(tokio::spawn(async move { connect(options).await }));
    }
    let stores = futures_join(starting).await;
    stores[0]
        .append(stream("s", 0, vec![event("acme", 1)]))
        .await
        .unwrap();
    drop(stores);
    let again = schema.connect().await;
    assert_eq!(again.head().await.unwrap(), 1, "data survives a restart");
    let applied: Vec<i32> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT version FROM \"{}\".herald_migrations ORDER BY version",
        schema.name
    )))
    .fetch_all(&mut admin().await)
    .await
    .unwrap();
    assert_eq!(applied, vec![1]);
}

/// The schema can come from the URL, and stores in different schemas do not see each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_can_name_the_schema() {
    let (one, two) = (TestSchema::new(), TestSchema::new());
    let separator = if base_url().contains('?') { '&' } else { '?' };
    let a = connect(PgStoreOptions::new(&format!(
        "{}{separator}schema={}",
        base_url(),
        one.name
    )))
    .await;
    assert_eq!(a.schema(), one.name);
    let b = two.connect().await;
    a.append(stream("s", 0, vec![event("acme", 1)]))
        .await
        .unwrap();
    assert_eq!(b.head().await.unwrap(), 0);
    assert!(b.read_stream("s").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_named_in_the_error() {
    let url = "postgres://herald:secret@127.0.0.1:1/nowhere";
    match PgEventStore::connect(url).await {
        Err(StoreError::Unavailable(m)) => {
            assert!(m.contains("127.0.0.1:1"), "{m}");
            assert!(!m.contains("secret"), "{m}");
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("connected to port 1"),
    }
}

/// Another process's append wakes a waiter through LISTEN/NOTIFY, not the periodic re-check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_from_another_process_wake_waiters() {
    let schema = TestSchema::new();
    let mut options = schema.options();
    options.recheck_interval = Duration::from_secs(60);
    let waiter = Arc::new(connect(options).await);
    let other = schema.connect().await;
    for round in 0..3u64 {
        let head = waiter.head().await.unwrap();
        let waiting = {
            let waiter = waiter.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                waiter
                    .wait_for_events(head, Duration::from_secs(30))
                    .await
                    .unwrap();
                t.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        other
            .append(stream(
                &Uuid::now_v7().to_string(),
                0,
                vec![event("acme", round)],
            ))
            .await
            .unwrap();
        let waited = waiting.await.unwrap();
        assert!(
            waited < Duration::from_secs(10),
            "round {round}: woke after {waited:?}"
        );
        assert!(waiter.head().await.unwrap() > head);
    }
}

/// Killing every connection of a store (as a PostgreSQL restart would) interrupts neither appends
/// nor wake-ups for long. Only this test's own backends are terminated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_survived() {
    let schema = TestSchema::new();
    let app = format!("herald_it_{}", &Uuid::new_v4().simple().to_string()[..12]);
    let separator = if base_url().contains('?') { '&' } else { '?' };
    let mut options = schema.options();
    options.url = format!("{}{separator}application_name={app}", base_url());
    options.recheck_interval = Duration::from_secs(60);
    let store = Arc::new(connect(options).await);
    let other = schema.connect().await;
    store
        .append(stream("before", 0, vec![event("acme", 1)]))
        .await
        .unwrap();
    // Let the LISTEN connection come up, so it is among the terminated.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&app)
    .fetch_all(&mut admin().await)
    .await
    .unwrap();
    assert!(
        killed.len() >= 2,
        "the pool's and the listener's connections: {killed:?}"
    );

    // The pool notices dead connections and opens new ones; a caller may see one Unavailable.
    let mut appended = None;
    for _ in 0..20 {
        match store
            .append(stream("after", 0, vec![event("acme", 2)]))
            .await
        {
            Ok(r) => {
                appended = Some(r);
                break;
            }
            Err(StoreError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(250)).await,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(appended.is_some(), "appends recover");

    // The listener reconnects too: another process's append still wakes a waiter promptly.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let head = store.head().await.unwrap();
    let waiting = {
        let store = store.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            store
                .wait_for_events(head, Duration::from_secs(30))
                .await
                .unwrap();
            t.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    other
        .append(stream("woken", 0, vec![event("acme", 3)]))
        .await
        .unwrap();
    let waited = waiting.await.unwrap();
    assert!(waited < Duration::from_secs(10), "woke after {waited:?}");
}
