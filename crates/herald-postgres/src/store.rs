//! [`PgEventStore`]: connecting, the reads, and the [`EventStore`] implementation. Appends are
//! handed to the writer task (`crate::writer`), which is where gap safety and group commit live.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::store::{AppendStream, EventStore, IdempotencyRecord, StoreError};
use herald_domain::{EventMetadata, RecordedEvent};
use sqlx::postgres::PgPoolOptions;
use sqlx::types::Json;
use sqlx::{ConnectOptions, Connection, PgPool};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::info;
use uuid::Uuid;

use crate::error::classify;
use crate::options::{self, PgStoreOptions};
use crate::sql::Sql;
use crate::writer::{self, AppendJob, Hooks, TestHooks};
use crate::{listener, migrate};

/// Append requests that may wait for the writer before callers are held back.
const WRITER_QUEUE: usize = 1_024;

/// The PostgreSQL event store. Cheap to share behind an `Arc`; dropping it stops its LISTEN task
/// and lets the writer finish what was queued.
pub struct PgEventStore {
    shared: Arc<Shared>,
    writer: mpsc::Sender<AppendJob>,
    listener: JoinHandle<()>,
}

/// What the store, its writer task and its listener task share.
pub(crate) struct Shared {
    /// Reads.
    pub pool: PgPool,
    /// The writer's one connection, apart so that a burst of reads never delays appends.
    pub write_pool: PgPool,
    pub sql: Sql,
    pub options: PgStoreOptions,
    pub hooks: Hooks,
    /// The highest position known to be committed and readable.
    head: watch::Sender<u64>,
}

impl Shared {
    /// Records that `position` is committed, waking waiters if it is news.
    pub fn advance_head(&self, position: u64) {
        self.head.send_if_modified(|h| {
            let newer = position > *h;
            if newer {
                *h = position;
            }
            newer
        });
    }

    pub async fn read_head(&self) -> Result<u64, StoreError> {
        let head: i64 = sqlx::query_scalar(self.sql.head.sql())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| classify("head", e))?;
        u64::try_from(head).map_err(|_| StoreError::Data(format!("negative head {head}")))
    }
}

impl PgEventStore {
    /// Connects to `url`, in the schema named by its `schema` query parameter (default `public`),
    /// creating the schema and applying migrations as needed.
    pub async fn connect(url: &str) -> Result<PgEventStore, StoreError> {
        PgEventStore::connect_with(PgStoreOptions::new(url)).await
    }

    /// Connects to `url` using `schema`, whatever the URL says.
    pub async fn connect_in_schema(url: &str, schema: &str) -> Result<PgEventStore, StoreError> {
        PgEventStore::connect_with(PgStoreOptions::new(url).schema(schema)).await
    }

    pub async fn connect_with(options: PgStoreOptions) -> Result<PgEventStore, StoreError> {
        let target = options::parse(&options)?;
        let unreachable = |e: &dyn std::fmt::Display| {
            StoreError::Unavailable(format!(
                "cannot reach the PostgreSQL event store at {}: {e}",
                target.display
            ))
        };
        // A direct first connection, so an unreachable server is reported as such rather than
        // as a pool timeout; it also runs the migrations.
        let mut conn = tokio::time::timeout(options.connect_timeout, target.connect.connect())
            .await
            .map_err(|_| {
                unreachable(&format!(
                    "no connection after {:?}",
                    options.connect_timeout
                ))
            })?
            .map_err(|e| unreachable(&e))?;
        let sql = Sql::new(&target.schema);
        migrate::run(&mut conn, &sql).await.map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot migrate the event store schema {:?} at {}: {e}",
                target.schema, target.display
            ))
        })?;
        let _ = conn.close().await;

        // A writer waiting behind another process's stuck transaction fails its callers with
        // `Unavailable` after this long instead of hanging them.
        let lock_timeout = format!("{}ms", options.lock_timeout.as_millis().max(1));
        let connect = target
            .connect
            .clone()
            .options([("lock_timeout", lock_timeout.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect.clone());
        let write_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect.clone());
        let listen_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(connect);
        let (head, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            pool,
            write_pool,
            sql,
            options,
            hooks: Mutex::new(TestHooks::default()),
            head,
        });
        shared.advance_head(shared.read_head().await?);
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        tokio::spawn(writer::run(shared.clone(), rx));
        let listener = tokio::spawn(listener::run(shared.clone(), listen_pool));
        info!(url = %target.display, schema = %target.schema, "connected to the PostgreSQL event store");
        Ok(PgEventStore {
            shared,
            writer: tx,
            listener,
        })
    }

    /// The schema this store uses.
    pub fn schema(&self) -> &str {
        &self.shared.sql.schema
    }

    #[doc(hidden)]
    pub fn set_test_hooks(&self, hooks: TestHooks) {
        *self
            .shared
            .hooks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = hooks;
    }
}

impl Drop for PgEventStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// `now + d`, or a century from now when that does not fit.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

type EventRow = (
    i64,
    String,
    i64,
    Uuid,
    String,
    String,
    DateTime<Utc>,
    serde_json::Value,
    Json<EventMetadata>,
);

fn decode(row: EventRow) -> Result<RecordedEvent, StoreError> {
    let (position, stream_id, version, event_id, event_type, tenant, timestamp, data, metadata) =
        row;
    let unsigned = |what: &str, v: i64| {
        u64::try_from(v)
            .map_err(|_| StoreError::Data(format!("event {event_id}: negative {what} {v}")))
    };
    Ok(RecordedEvent {
        position: unsigned("position", position)?,
        version: unsigned("version", version)?,
        stream_id,
        event_id,
        event_type,
        tenant,
        timestamp,
        data,
        metadata: metadata.0,
    })
}

#[async_trait]
impl EventStore for PgEventStore {
    async fn append_many(
        &self,
        batch: Vec<AppendStream>,
    ) -> Result<Vec<Result<Vec<RecordedEvent>, StoreError>>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(AppendJob { batch, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the event store writer has stopped".into()))?;
        answer.await.map_err(|_| {
            StoreError::Unavailable("the event store writer failed during this append".into())
        })?
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        // Past any position PostgreSQL can hold: nothing. A limit it cannot take: everything.
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows: Vec<EventRow> = sqlx::query_as(self.shared.sql.read_all.sql())
            .bind(after)
            .bind(limit)
            .fetch_all(&self.shared.pool)
            .await
            .map_err(|e| classify("read_all", e))?;
        rows.into_iter().map(decode).collect()
    }

    async fn read_stream(&self, stream_id: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        if stream_id.contains('\0') {
            return Ok(Vec::new()); // cannot have been stored
        }
        let rows: Vec<EventRow> = sqlx::query_as(self.shared.sql.read_stream.sql())
            .bind(stream_id)
            .fetch_all(&self.shared.pool)
            .await
            .map_err(|e| classify("read_stream", e))?;
        rows.into_iter().map(decode).collect()
    }

    async fn read_streams(
        &self,
        stream_ids: &[String],
    ) -> Result<std::collections::HashMap<String, Vec<RecordedEvent>>, StoreError> {
        // NUL cannot have been stored; binding it would be an error.
        let ids: Vec<&str> = stream_ids
            .iter()
            .map(String::as_str)
            .filter(|s| !s.contains('\0'))
            .collect();
        let rows: Vec<EventRow> = sqlx::query_as(self.shared.sql.read_streams.sql())
            .bind(&ids)
            .fetch_all(&self.shared.pool)
            .await
            .map_err(|e| classify("read_streams", e))?;
        let mut out: std::collections::HashMap<String, Vec<RecordedEvent>> =
            std::collections::HashMap::new();
        for row in rows {
            let e = decode(row)?;
            out.entry(e.stream_id.clone()).or_default().push(e);
        }
        Ok(out)
    }

    async fn head(&self) -> Result<u64, StoreError> {
        let head = self.shared.read_head().await?;
        self.shared.advance_head(head);
        Ok(head)
    }

    async fn wait_for_events(&self, after: u64, timeout: Duration) -> Result<(), StoreError> {
        let deadline = later(Instant::now(), timeout);
        // Subscribe before reading the head, so an append in between is not missed.
        let mut known = self.shared.head.subscribe();
        if *known.borrow_and_update() > after || self.head().await? > after {
            return Ok(());
        }
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            let recheck = deadline.min(later(now, self.shared.options.recheck_interval));
            tokio::select! {
                changed = known.changed() => {
                    // An error means the store is gone; a spurious wake-up is allowed.
                    if changed.is_err() || *known.borrow_and_update() > after {
                        return Ok(());
                    }
                }
                () = tokio::time::sleep_until(recheck) => {
                    if recheck < deadline && self.head().await? > after {
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn idempotency_lookup(
        &self,
        tenant: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        if tenant.contains('\0') || key.contains('\0') {
            return Ok(None); // cannot have been stored
        }
        let row: Option<(Uuid, String)> = sqlx::query_as(self.shared.sql.lookup_key.sql())
            .bind(tenant)
            .bind(key)
            .fetch_optional(&self.shared.pool)
            .await
            .map_err(|e| classify("idempotency_lookup", e))?;
        Ok(row.map(|(request_id, body_hash)| IdempotencyRecord {
            tenant: tenant.to_string(),
            key: key.to_string(),
            request_id,
            body_hash,
        }))
    }
}
