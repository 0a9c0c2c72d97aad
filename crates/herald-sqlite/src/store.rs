//! The SQLite event store. Positions come from an INTEGER PRIMARY KEY assigned inside the write
//! transaction; SQLite has one writer at a time, so positions commit in order and `read_all` can
//! never skip one (gap safety is free here).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::store::{AppendStream, EventStore, IdempotencyRecord, StoreError};
use herald_domain::{EventMetadata, RecordedEvent};
use rusqlite::{OptionalExtension, params};
use tokio::sync::watch;
use uuid::Uuid;

use crate::db::{Db, DbError};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    position   INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id  TEXT NOT NULL,
    version    INTEGER NOT NULL,
    event_id   TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    ts_ms      INTEGER NOT NULL,
    data       TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    UNIQUE (stream_id, version)
);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    tenant     TEXT NOT NULL,
    key        TEXT NOT NULL,
    request_id TEXT NOT NULL,
    body_hash  TEXT NOT NULL,
    PRIMARY KEY (tenant, key)
);
"#;

/// How often a waiter re-checks the file for appends made by another process.
const CROSS_PROCESS_RECHECK: Duration = Duration::from_millis(250);

/// Read connections: WAL lets them read while the writer commits.
const READERS: usize = 3;
/// Most append requests folded into one transaction.
const GROUP_COMMIT_MAX: usize = 512;

type AppendResult = Result<Vec<Result<Vec<RecordedEvent>, StoreError>>, StoreError>;

struct WriteRequest {
    batch: Vec<AppendStream>,
    reply: tokio::sync::oneshot::Sender<AppendResult>,
}

pub struct SqliteEventStore {
    readers: Vec<Db>,
    next_reader: std::sync::atomic::AtomicUsize,
    /// The group-commit writer thread's inbox.
    writer: std::sync::mpsc::Sender<WriteRequest>,
    /// Highest position appended by this process; wakes in-process waiters at once.
    head_tx: watch::Sender<u64>,
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        if e.is_transient() {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Data(e.to_string())
        }
    }
}

impl SqliteEventStore {
    pub async fn open(path: &Path) -> Result<SqliteEventStore, StoreError> {
        let open = || async {
            Db::open(path, SCHEMA).await.map_err(|e| {
                StoreError::Unavailable(format!("cannot open event store {}: {e}", path.display()))
            })
        };
        let write_conn = open()
            .await?
            .into_connection()
            .ok_or_else(|| StoreError::Data("the new writer connection is shared".into()))?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(open().await?);
        }
        let (writer, inbox) = std::sync::mpsc::channel::<WriteRequest>();
        std::thread::Builder::new()
            .name("herald-sqlite-writer".into())
            .spawn(move || writer_loop(write_conn, inbox))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer thread: {e}")))?;
        let (head_tx, _) = watch::channel(0);
        let store = SqliteEventStore {
            readers,
            next_reader: Default::default(),
            writer,
            head_tx,
        };
        let head = store.head().await?;
        store.head_tx.send_replace(head);
        Ok(store)
    }
}

impl SqliteEventStore {
    fn reader(&self) -> &Db {
        let i = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.readers[i % self.readers.len()]
    }
}

/// Group commit: appends that arrive while a transaction commits are folded into the next one,
/// so many concurrent workers cost one commit instead of one each. Each request still gets its
/// own per-stream results.
fn writer_loop(mut conn: rusqlite::Connection, inbox: std::sync::mpsc::Receiver<WriteRequest>) {
    while let Ok(first) = inbox.recv() {
        let mut group = vec![first];
        while group.len() < GROUP_COMMIT_MAX {
            match inbox.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        let sizes: Vec<usize> = group.iter().map(|r| r.batch.len()).collect();
        let (batches, replies): (Vec<_>, Vec<_>) =
            group.into_iter().map(|r| (r.batch, r.reply)).unzip();
        let all: Vec<AppendStream> = batches.into_iter().flatten().collect();
        match append_tx(&mut conn, all) {
            Ok(results) => {
                let mut it = results.into_iter();
                for (reply, n) in replies.into_iter().zip(sizes) {
                    let _ = reply.send(Ok(it.by_ref().take(n).collect()));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                let transient = e.is_transient();
                for reply in replies {
                    let err = if transient {
                        StoreError::Unavailable(msg.clone())
                    } else {
                        StoreError::Data(msg.clone())
                    };
                    let _ = reply.send(Err(err));
                }
            }
        }
    }
}

fn append_tx(
    conn: &mut rusqlite::Connection,
    batch: Vec<AppendStream>,
) -> Result<Vec<Result<Vec<RecordedEvent>, StoreError>>, DbError> {
    // IMMEDIATE: take the write lock up front so version checks and inserts see one
    // consistent state even with another process writing the same file.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut out = Vec::with_capacity(batch.len());
    {
        let mut version_q =
            tx.prepare_cached("SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ?1")?;
        let mut key_q = tx.prepare_cached(
            "SELECT request_id, body_hash FROM idempotency_keys WHERE tenant = ?1 AND key = ?2",
        )?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (stream_id, version, event_id, event_type, tenant, ts_ms, data, metadata)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut insert_key = tx.prepare_cached(
            "INSERT INTO idempotency_keys (tenant, key, request_id, body_hash) VALUES (?1, ?2, ?3, ?4)",
        )?;
        // Versions decided earlier in this batch, so two appends to one stream chain.
        let mut versions: HashMap<String, u64> = HashMap::new();
        for s in batch {
            let actual = match versions.get(&s.stream_id) {
                Some(v) => *v,
                None => version_q.query_row(params![s.stream_id], |r| r.get::<_, i64>(0))? as u64,
            };
            if actual != s.expected_version {
                out.push(Err(StoreError::VersionConflict {
                    stream_id: s.stream_id,
                    expected: s.expected_version,
                    actual,
                }));
                continue;
            }
            if let Some(k) = &s.idempotency {
                let existing = key_q
                    .query_row(params![k.tenant, k.key], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })
                    .optional()?;
                if let Some((request_id, body_hash)) = existing {
                    out.push(Err(StoreError::IdempotencyKeyUsed {
                        existing: IdempotencyRecord {
                            tenant: k.tenant.clone(),
                            key: k.key.clone(),
                            request_id: Uuid::parse_str(&request_id).map_err(|e| {
                                DbError::Data(format!("idempotency request id: {e}"))
                            })?,
                            body_hash,
                        },
                    }));
                    continue;
                }
                insert_key.execute(params![
                    k.tenant,
                    k.key,
                    k.request_id.to_string(),
                    k.body_hash
                ])?;
            }
            let mut recorded = Vec::with_capacity(s.events.len());
            let mut version = actual;
            for e in s.events {
                version += 1;
                let data = e.data.to_string();
                let metadata =
                    serde_json::to_string(&e.metadata).map_err(|e| DbError::Data(e.to_string()))?;
                insert.execute(params![
                    s.stream_id,
                    version as i64,
                    e.event_id.to_string(),
                    e.event_type,
                    e.tenant,
                    e.timestamp.timestamp_millis(),
                    data,
                    metadata
                ])?;
                recorded.push(RecordedEvent {
                    position: tx.last_insert_rowid() as u64,
                    stream_id: s.stream_id.clone(),
                    version,
                    event_id: e.event_id,
                    event_type: e.event_type,
                    tenant: e.tenant,
                    timestamp: e.timestamp,
                    data: e.data,
                    metadata: e.metadata,
                });
            }
            versions.insert(s.stream_id, version);
            out.push(Ok(recorded));
        }
    }
    tx.commit()?;
    Ok(out)
}

fn row_to_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
    ))
}

type Row = (
    i64,
    String,
    i64,
    String,
    String,
    String,
    i64,
    String,
    String,
);

fn decode(r: Row) -> Result<RecordedEvent, DbError> {
    let (position, stream_id, version, event_id, event_type, tenant, ts_ms, data, metadata) = r;
    Ok(RecordedEvent {
        position: position as u64,
        stream_id,
        version: version as u64,
        event_id: Uuid::parse_str(&event_id)
            .map_err(|e| DbError::Data(format!("event_id {event_id}: {e}")))?,
        event_type,
        tenant,
        timestamp: DateTime::<Utc>::from_timestamp_millis(ts_ms)
            .ok_or_else(|| DbError::Data(format!("timestamp {ts_ms} out of range")))?,
        data: serde_json::from_str(&data).map_err(|e| DbError::Data(format!("event data: {e}")))?,
        metadata: serde_json::from_str::<EventMetadata>(&metadata)
            .map_err(|e| DbError::Data(format!("event metadata: {e}")))?,
    })
}

const SELECT: &str = "SELECT position, stream_id, version, event_id, event_type, tenant, ts_ms, data, metadata FROM events";

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn append_many(
        &self,
        batch: Vec<AppendStream>,
    ) -> Result<Vec<Result<Vec<RecordedEvent>, StoreError>>, StoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.writer
            .send(WriteRequest { batch, reply })
            .map_err(|_| StoreError::Unavailable("the event store writer has stopped".into()))?;
        let results = rx
            .await
            .map_err(|_| StoreError::Unavailable("the event store writer has stopped".into()))??;
        let top = results
            .iter()
            .filter_map(|r| r.as_ref().ok().and_then(|v| v.last()).map(|e| e.position))
            .max();
        if let Some(top) = top {
            self.head_tx.send_if_modified(|h| {
                if top > *h {
                    *h = top;
                    true
                } else {
                    false
                }
            });
        }
        Ok(results)
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(self
            .reader()
            .call(move |conn| {
                let mut q = conn.prepare_cached(&format!(
                    "{SELECT} WHERE position > ?1 ORDER BY position LIMIT ?2"
                ))?;
                let rows = q.query_map(params![after as i64, limit as i64], row_to_event)?;
                rows.map(|r| decode(r?)).collect()
            })
            .await?)
    }

    async fn read_stream(&self, stream_id: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream_id = stream_id.to_string();
        Ok(self
            .reader()
            .call(move |conn| {
                let mut q = conn
                    .prepare_cached(&format!("{SELECT} WHERE stream_id = ?1 ORDER BY version"))?;
                let rows = q.query_map(params![stream_id], row_to_event)?;
                rows.map(|r| decode(r?)).collect()
            })
            .await?)
    }

    async fn read_streams(
        &self,
        stream_ids: &[String],
    ) -> Result<HashMap<String, Vec<RecordedEvent>>, StoreError> {
        let ids = stream_ids.to_vec();
        Ok(self
            .reader()
            .call(move |conn| {
                let mut q = conn
                    .prepare_cached(&format!("{SELECT} WHERE stream_id = ?1 ORDER BY version"))?;
                let mut out = HashMap::new();
                for id in ids {
                    let events = q
                        .query_map(params![id], row_to_event)?
                        .map(|r| decode(r?))
                        .collect::<Result<Vec<_>, _>>()?;
                    if !events.is_empty() {
                        out.insert(id, events);
                    }
                }
                Ok(out)
            })
            .await?)
    }

    async fn head(&self) -> Result<u64, StoreError> {
        Ok(self
            .reader()
            .call(|conn| {
                Ok(
                    conn.query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| {
                        r.get::<_, i64>(0)
                    })? as u64,
                )
            })
            .await?)
    }

    async fn wait_for_events(&self, after: u64, timeout: Duration) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.head_tx.subscribe();
        loop {
            if *rx.borrow_and_update() > after || self.head().await? > after {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(());
            }
            let slice = (deadline - now).min(CROSS_PROCESS_RECHECK);
            let _ = tokio::time::timeout(slice, rx.changed()).await;
        }
    }

    async fn idempotency_lookup(
        &self,
        tenant: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let (tenant, key) = (tenant.to_string(), key.to_string());
        Ok(self
            .reader()
            .call(move |conn| {
                let row = conn
                    .query_row(
                        "SELECT request_id, body_hash FROM idempotency_keys WHERE tenant = ?1 AND key = ?2",
                        params![tenant, key],
                        |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
                    )
                    .optional()?;
                row.map(|(id, body_hash)| {
                    Ok(IdempotencyRecord {
                        tenant: tenant.clone(),
                        key: key.clone(),
                        request_id: Uuid::parse_str(&id).map_err(|e| DbError::Data(e.to_string()))?,
                        body_hash,
                    })
                })
                .transpose()
            })
            .await?)
    }
}
