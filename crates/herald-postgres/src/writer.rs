//! The writer task: every append goes through it, in group-commit transactions.
//!
//! # Gap safety
//!
//! A PostgreSQL sequence hands out numbers in call order, but transactions commit in any order: if
//! transaction A draws position 10 and B draws 11, B may commit first. A reader that then sees 11,
//! moves its checkpoint to 11 and later asks for "after 11" never reads 10 — an event lost to every
//! subscriber. [`EventStore::read_all`](herald_core::EventStore::read_all) promises that never
//! happens.
//!
//! So every append transaction takes `pg_advisory_xact_lock(append_lock)` (a constant key per
//! schema, [`crate::sql::Sql::append_lock`]) *before* it draws positions, and holds it to the end.
//! PostgreSQL makes a committing transaction visible before it releases its locks, so when B gets
//! the lock, A is already visible to every new snapshot; B's positions are drawn after A's and
//! become visible after A's. Positions therefore become visible in increasing order: whatever
//! snapshot sees position 11 also sees every earlier position that will ever exist (rolled-back
//! transactions leave holes, which are harmless). `read_all` needs nothing special — a plain
//! `position > $1 ORDER BY position` query is gap-safe. This holds across processes, since they all
//! take the same key, and on streaming replicas, which replay commits in WAL order.
//!
//! Two details keep it true: the transaction runs at READ COMMITTED, so the statements after the
//! lock see everything committed before it (a REPEATABLE READ snapshot taken at the lock statement
//! would not); and the sequence has no per-session cache.
//!
//! # Group commit
//!
//! The lock serialises appends, so one transaction per append would cap throughput at one round
//! trip sequence per append. Instead callers send their `append_many` requests to this task over
//! a channel; the task takes everything pending and performs it in ONE transaction: lock, read the
//! current version of every involved stream in one query (and the idempotency keys in another),
//! decide each stream in arrival order in memory (a second request for a stream sees the first's
//! new version), insert every accepted event in one `INSERT … SELECT FROM UNNEST` statement,
//! claim the keys, `pg_notify`, commit, and answer each caller with its own per-stream results.
//!
//! If that transaction fails because of one append's data (an event id recorded before, a value
//! PostgreSQL cannot store), the task retries the streams one by one so only that append fails.
//! If it fails as a whole (connection lost, server down), every caller gets
//! [`StoreError::Unavailable`] — a commit whose answer was lost may still have happened, which is
//! why callers retry with their expected versions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use herald_core::store::{AppendStream, IdempotencyRecord, StoreError};
use herald_domain::RecordedEvent;
use herald_domain::event::truncate_ms;
use sqlx::types::Json;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, warn};
use uuid::Uuid;

use crate::error::{classify, is_data_error};
use crate::store::Shared;

pub(crate) type StreamResult = Result<Vec<RecordedEvent>, StoreError>;
pub(crate) type JobResult = Result<Vec<StreamResult>, StoreError>;

/// One `append_many` call waiting for the writer.
pub(crate) struct AppendJob {
    pub batch: Vec<AppendStream>,
    pub reply: oneshot::Sender<JobResult>,
}

/// Test-only knobs for the gap-safety tests. Not part of the API.
#[doc(hidden)]
#[derive(Clone, Default)]
pub struct TestHooks {
    /// Called in every append transaction after its inserts, before it commits; the transaction
    /// (and the append lock) is held for the returned duration.
    pub hold_before_commit: Option<Arc<dyn Fn() -> Duration + Send + Sync>>,
    /// Skip the append lock, to show what goes wrong without it.
    pub skip_append_lock: bool,
}

pub(crate) type Hooks = Mutex<TestHooks>;

pub(crate) fn hooks(h: &Hooks) -> TestHooks {
    h.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Runs until every sender is gone (the store was dropped), finishing what was queued.
pub(crate) async fn run(shared: Arc<Shared>, mut rx: mpsc::Receiver<AppendJob>) {
    let max_events = shared.options.max_batch_events.max(1);
    while let Some(first) = rx.recv().await {
        let mut events = first.batch.iter().map(|s| s.events.len()).sum::<usize>();
        let mut jobs = vec![first];
        while events < max_events {
            match rx.try_recv() {
                Ok(job) => {
                    events += job.batch.iter().map(|s| s.events.len()).sum::<usize>();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        // In a task of its own so that a bug in one group (a panic) fails only its callers —
        // they see their reply dropped, i.e. `Unavailable` — and not every later append.
        let group = tokio::spawn(commit_and_reply(shared.clone(), jobs, events));
        if let Err(e) = group.await {
            error!(error = %e, "group commit task failed");
        }
    }
    debug!(schema = %shared.sql.schema, "event store writer stopped");
}

async fn commit_and_reply(shared: Arc<Shared>, jobs: Vec<AppendJob>, events: usize) {
    let started = Instant::now();
    let results = commit_group(&shared, &jobs).await;
    debug!(
        requests = jobs.len(),
        events,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "group commit"
    );
    for (job, result) in jobs.into_iter().zip(results) {
        // The caller may have given up waiting; its append happened (or not) all the same.
        let _ = job.reply.send(result);
    }
}

/// Why a transaction failed.
#[derive(Debug, thiserror::Error)]
enum TxnError {
    /// Caused by the data of some append: retry the streams one by one.
    #[error("refused by the data of an append: {0}")]
    PerStream(StoreError),
    /// Caused by the connection or server: fail every caller.
    #[error("{0}")]
    Whole(StoreError),
}

fn txn_error(what: &str, e: sqlx::Error) -> TxnError {
    if is_data_error(&e) {
        TxnError::PerStream(classify(what, e))
    } else {
        TxnError::Whole(classify(what, e))
    }
}

/// Performs `jobs` in one transaction (or, after a data error, stream by stream) and returns each
/// job's result in order.
async fn commit_group(shared: &Shared, jobs: &[AppendJob]) -> Vec<JobResult> {
    let mut results: Vec<Vec<Option<StreamResult>>> = jobs
        .iter()
        .map(|j| j.batch.iter().map(|_| None).collect())
        .collect();
    // Values PostgreSQL cannot hold are refused before they can fail the shared transaction.
    let mut pending: Vec<(usize, usize)> = Vec::new();
    for (j, job) in jobs.iter().enumerate() {
        for (s, stream) in job.batch.iter().enumerate() {
            match unstorable(stream) {
                Some(why) => {
                    results[j][s] = Some(Err(StoreError::Data(format!(
                        "stream {:?}: {why}",
                        stream.stream_id
                    ))))
                }
                None => pending.push((j, s)),
            }
        }
    }
    let streams: Vec<&AppendStream> = pending.iter().map(|&(j, s)| &jobs[j].batch[s]).collect();
    match transaction(shared, &streams).await {
        Ok(outcomes) => {
            for (&(j, s), outcome) in pending.iter().zip(outcomes) {
                results[j][s] = Some(outcome);
            }
        }
        Err(TxnError::PerStream(e)) => {
            warn!(error = %e, "group commit refused by the data of one append; retrying one by one");
            let mut lost: Option<String> = None;
            for (&(j, s), stream) in pending.iter().zip(&streams) {
                // Once the connection is gone, do not wait for it once per stream.
                let outcome = if let Some(m) = &lost {
                    Err(StoreError::Unavailable(m.clone()))
                } else {
                    match transaction(shared, &[stream]).await {
                        Ok(mut one) => one.pop().unwrap_or_else(|| {
                            Err(StoreError::Data("append returned no result".into()))
                        }),
                        Err(TxnError::PerStream(e)) => Err(e),
                        Err(TxnError::Whole(e)) => {
                            let m = unavailable_message(e);
                            lost = Some(m.clone());
                            Err(StoreError::Unavailable(m))
                        }
                    }
                };
                results[j][s] = Some(outcome);
            }
        }
        Err(TxnError::Whole(e)) => {
            warn!(error = %e, requests = jobs.len(), "group commit failed");
            let message = unavailable_message(e);
            return jobs
                .iter()
                .map(|_| Err(StoreError::Unavailable(message.clone())))
                .collect();
        }
    }
    results
        .into_iter()
        .map(|streams| {
            Ok(streams
                .into_iter()
                .map(|r| {
                    r.unwrap_or_else(|| Err(StoreError::Data("append was not attempted".into())))
                })
                .collect())
        })
        .collect()
}

/// The message for an `Unavailable` built from `e`, without repeating "unavailable".
fn unavailable_message(e: StoreError) -> String {
    match e {
        StoreError::Unavailable(m) => m,
        other => other.to_string(),
    }
}

/// Why PostgreSQL could not store this append (NUL characters, which neither TEXT nor JSONB take).
fn unstorable(s: &AppendStream) -> Option<String> {
    let nul = |t: &str| t.contains('\0');
    if nul(&s.stream_id) {
        return Some("the stream id contains a NUL character".into());
    }
    if let Some(k) = &s.idempotency
        && (nul(&k.tenant) || nul(&k.key) || nul(&k.body_hash))
    {
        return Some("the idempotency key contains a NUL character".into());
    }
    for e in &s.events {
        let metadata = [&e.metadata.correlation_id, &e.metadata.causation_id];
        if nul(&e.event_type)
            || nul(&e.tenant)
            || json_has_nul(&e.data)
            || metadata.iter().any(|m| m.as_deref().is_some_and(nul))
        {
            return Some(format!("event {} contains a NUL character", e.event_id));
        }
    }
    None
}

fn json_has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(a) => a.iter().any(json_has_nul),
        serde_json::Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        _ => false,
    }
}

/// The columns of the events one transaction inserts, as arrays for `UNNEST`.
#[derive(Default)]
struct Columns<'a> {
    stream_id: Vec<&'a str>,
    version: Vec<i64>,
    event_id: Vec<Uuid>,
    event_type: Vec<&'a str>,
    tenant: Vec<&'a str>,
    ts: Vec<chrono::DateTime<chrono::Utc>>,
    data: Vec<&'a serde_json::Value>,
    metadata: Vec<Json<&'a herald_domain::EventMetadata>>,
}

/// What was decided for one stream, before the positions are known.
enum Decision {
    Refused(StoreError),
    /// Accepted; its events start at this index of [`Columns`].
    Accepted {
        first: usize,
    },
}

/// One group-commit transaction over `streams`, decided in order.
async fn transaction(
    shared: &Shared,
    streams: &[&AppendStream],
) -> Result<Vec<StreamResult>, TxnError> {
    if streams.is_empty() {
        return Ok(Vec::new());
    }
    let sql = &shared.sql;
    let hooks = hooks(&shared.hooks);
    let mut tx = shared
        .write_pool
        .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await
        .map_err(|e| txn_error("append: begin", e))?;
    if !hooks.skip_append_lock {
        // Before anything else, and in its own statement: see the module docs.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(sql.append_lock)
            .execute(&mut *tx)
            .await
            .map_err(|e| txn_error("append: lock", e))?;
    }

    let mut ids: Vec<&str> = streams.iter().map(|s| s.stream_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows: Vec<(String, i64)> = sqlx::query_as(sql.current_versions.sql())
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| txn_error("append: read versions", e))?;
    let mut versions: HashMap<String, u64> = rows
        .into_iter()
        .map(|(id, v)| (id, u64::try_from(v).unwrap_or(0)))
        .collect();

    let claims: Vec<&IdempotencyRecord> = streams
        .iter()
        .filter_map(|s| s.idempotency.as_ref())
        .collect();
    let mut keys: HashMap<(String, String), IdempotencyRecord> = HashMap::new();
    if !claims.is_empty() {
        let tenants: Vec<&str> = claims.iter().map(|k| k.tenant.as_str()).collect();
        let names: Vec<&str> = claims.iter().map(|k| k.key.as_str()).collect();
        let rows: Vec<(String, String, Uuid, String)> = sqlx::query_as(sql.existing_keys.sql())
            .bind(&tenants)
            .bind(&names)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| txn_error("append: read idempotency keys", e))?;
        for (tenant, key, request_id, body_hash) in rows {
            let record = IdempotencyRecord {
                tenant: tenant.clone(),
                key: key.clone(),
                request_id,
                body_hash,
            };
            keys.insert((tenant, key), record);
        }
    }

    let mut cols = Columns::default();
    let mut new_keys: Vec<&IdempotencyRecord> = Vec::new();
    let mut decisions = Vec::with_capacity(streams.len());
    for s in streams {
        let actual = versions.get(&s.stream_id).copied().unwrap_or(0);
        if actual != s.expected_version {
            decisions.push(Decision::Refused(StoreError::VersionConflict {
                stream_id: s.stream_id.clone(),
                expected: s.expected_version,
                actual,
            }));
            continue;
        }
        if let Some(k) = &s.idempotency {
            if let Some(existing) = keys.get(&(k.tenant.clone(), k.key.clone())) {
                decisions.push(Decision::Refused(StoreError::IdempotencyKeyUsed {
                    existing: existing.clone(),
                }));
                continue;
            }
            keys.insert((k.tenant.clone(), k.key.clone()), k.clone());
            new_keys.push(k);
        }
        decisions.push(Decision::Accepted {
            first: cols.stream_id.len(),
        });
        let mut version = actual;
        for e in &s.events {
            version += 1;
            cols.stream_id.push(&s.stream_id);
            cols.version
                .push(i64::try_from(version).unwrap_or(i64::MAX));
            cols.event_id.push(e.event_id);
            cols.event_type.push(&e.event_type);
            cols.tenant.push(&e.tenant);
            cols.ts.push(truncate_ms(e.timestamp));
            cols.data.push(&e.data);
            cols.metadata.push(Json(&e.metadata));
        }
        versions.insert(s.stream_id.clone(), version);
    }

    let n = cols.stream_id.len();
    let mut first_position = 0u64;
    if n > 0 {
        let positions: Vec<i64> = sqlx::query_scalar(sql.insert_events.sql())
            .bind(&sql.sequence)
            .bind(n as i64)
            .bind(&cols.stream_id)
            .bind(&cols.version)
            .bind(&cols.event_id)
            .bind(&cols.event_type)
            .bind(&cols.tenant)
            .bind(&cols.ts)
            .bind(&cols.data)
            .bind(&cols.metadata)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| txn_error("append: insert events", e))?;
        // The block is contiguous (see `Sql::insert_events`): its smallest position is the first.
        let min = positions.iter().copied().min().unwrap_or(0);
        if positions.len() != n || min <= 0 {
            return Err(TxnError::Whole(StoreError::Data(format!(
                "append: inserted {} events, expected {n}",
                positions.len()
            ))));
        }
        first_position = min as u64;
    }
    if !new_keys.is_empty() {
        let claimed: Vec<(String, String)> = sqlx::query_as(sql.insert_keys.sql())
            .bind(
                new_keys
                    .iter()
                    .map(|k| k.tenant.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(new_keys.iter().map(|k| k.key.as_str()).collect::<Vec<_>>())
            .bind(new_keys.iter().map(|k| k.request_id).collect::<Vec<_>>())
            .bind(
                new_keys
                    .iter()
                    .map(|k| k.body_hash.as_str())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| txn_error("append: claim idempotency keys", e))?;
        if claimed.len() != new_keys.len() {
            // Only possible if something wrote a key without the append lock. Going one by one
            // re-reads the keys, so the append that lost the race is told so.
            return Err(TxnError::PerStream(StoreError::Data(
                "append: an idempotency key was claimed concurrently".into(),
            )));
        }
    }

    if let Some(hold) = &hooks.hold_before_commit {
        tokio::time::sleep(hold()).await;
    }
    let last_position = (first_position + n as u64).saturating_sub(1);
    if n > 0 {
        // Delivered to listeners at commit, never before.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&sql.channel)
            .bind(last_position.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| txn_error("append: notify", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| txn_error("append: commit", e))?;
    if n > 0 {
        shared.advance_head(last_position);
    }

    Ok(streams
        .iter()
        .zip(decisions)
        .map(|(s, d)| match d {
            Decision::Refused(e) => Err(e),
            Decision::Accepted { first } => Ok(s
                .events
                .iter()
                .enumerate()
                .map(|(i, e)| RecordedEvent {
                    position: first_position + (first + i) as u64,
                    stream_id: s.stream_id.clone(),
                    version: s.expected_version + 1 + i as u64,
                    event_id: e.event_id,
                    event_type: e.event_type.clone(),
                    tenant: e.tenant.clone(),
                    timestamp: truncate_ms(e.timestamp),
                    data: e.data.clone(),
                    metadata: e.metadata.clone(),
                })
                .collect()),
        })
        .collect())
}
