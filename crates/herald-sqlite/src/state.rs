//! The SQLite state backend: read models, job queue, checkpoint and projector lease.
//!
//! Jobs live in one table with a `state` column; the counts `queue_info` reports are kept in
//! `job_counts` and moved in the same transaction as every job, so reading them never scans.
//! `job_seen` remembers every job id ever enqueued, so a duplicate is refused even after the
//! finished job row has been trimmed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use herald_core::state::{
    DeadJob, Job, KEEP_FINISHED_JOBS, Lease, ListQuery, NewJob, Page, ProjectionStep, QueueCounts,
    QueueInfo, StateBackend, StateError,
};
use herald_domain::{JobName, MessageRequest, Status};
use rusqlite::{OptionalExtension, Transaction, params};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::db::{Db, DbError, now_ms};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS read_models (
    id      TEXT PRIMARY KEY,
    tenant  TEXT NOT NULL,
    status  TEXT NOT NULL,
    version INTEGER NOT NULL,
    doc     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS read_models_tenant_status ON read_models (tenant, status, id);
CREATE INDEX IF NOT EXISTS read_models_status ON read_models (status, id);
CREATE TABLE IF NOT EXISTS jobs (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    priority     INTEGER NOT NULL,
    payload      TEXT NOT NULL,
    state        TEXT NOT NULL,   -- waiting | delayed | active | completed | dead
    seq          INTEGER NOT NULL,
    run_at       INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    lease_token  TEXT,
    lease_until  INTEGER,
    last_error   TEXT
);
CREATE INDEX IF NOT EXISTS jobs_waiting ON jobs (state, priority DESC, seq);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, run_at);
CREATE INDEX IF NOT EXISTS jobs_lease ON jobs (state, lease_until);
CREATE TABLE IF NOT EXISTS job_seen (id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS job_counts (
    name  TEXT NOT NULL,
    state TEXT NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (name, state)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS herald_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS projector_lease (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    holder     TEXT NOT NULL,
    token      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
"#;

/// Finished jobs are trimmed after this many completions, not on every one.
const TRIM_EVERY: u64 = 64;
/// How often a waiter re-checks for jobs enqueued by another process sharing the file.
const CROSS_PROCESS_RECHECK: Duration = Duration::from_millis(500);

pub struct SqliteState {
    db: Db,
    /// Wakes in-process workers when a job becomes ready.
    ready: Arc<Notify>,
    completions: AtomicU64,
}

impl From<DbError> for StateError {
    fn from(e: DbError) -> Self {
        if e.is_transient() {
            StateError::Unavailable(e.to_string())
        } else {
            StateError::Data(e.to_string())
        }
    }
}

fn data_err(e: impl std::fmt::Display) -> DbError {
    DbError::Data(e.to_string())
}

/// Moves `n` jobs of `name` from one counted state to another.
fn count(
    tx: &Transaction<'_>,
    name: &str,
    from: Option<&str>,
    to: Option<&str>,
    n: i64,
) -> Result<(), DbError> {
    let mut up = tx.prepare_cached(
        "INSERT INTO job_counts (name, state, n) VALUES (?1, ?2, ?3)
         ON CONFLICT (name, state) DO UPDATE SET n = n + excluded.n",
    )?;
    if let Some(f) = from {
        up.execute(params![name, f, -n])?;
    }
    if let Some(t) = to {
        up.execute(params![name, t, n])?;
    }
    Ok(())
}

fn check_token(tx: &Transaction<'_>, token: u64) -> Result<bool, DbError> {
    let current: Option<i64> = tx
        .query_row("SELECT token FROM projector_lease WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(current == Some(token as i64))
}

fn next_seq(tx: &Transaction<'_>) -> Result<i64, DbError> {
    Ok(tx.query_row(
        "INSERT INTO herald_meta (key, value) VALUES ('job_seq', 1)
         ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value",
        [],
        |r| r.get(0),
    )?)
}

/// Inserts jobs not seen before; returns how many were new and whether any is ready now.
fn insert_jobs(tx: &Transaction<'_>, jobs: &[NewJob], now: i64) -> Result<(usize, bool), DbError> {
    let mut seen = tx.prepare_cached("INSERT OR IGNORE INTO job_seen (id) VALUES (?1)")?;
    let mut ins = tx.prepare_cached(
        "INSERT INTO jobs (id, name, priority, payload, state, seq, run_at, max_attempts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut n = 0;
    let mut ready = false;
    for j in jobs {
        if seen.execute(params![j.id])? == 0 {
            continue;
        }
        let state = if j.delay_ms > 0 { "delayed" } else { "waiting" };
        ready |= j.delay_ms == 0;
        let seq = next_seq(tx)?;
        ins.execute(params![
            j.id,
            j.name.as_str(),
            j.priority,
            j.payload.to_string(),
            state,
            seq,
            now + j.delay_ms as i64,
            j.max_attempts
        ])?;
        count(tx, j.name.as_str(), None, Some(state), 1)?;
        n += 1;
    }
    Ok((n, ready))
}

fn parse_doc(doc: &str) -> Result<MessageRequest, DbError> {
    serde_json::from_str(doc).map_err(|e| DbError::Data(format!("read model: {e}")))
}

impl SqliteState {
    pub async fn open(path: &Path) -> Result<SqliteState, StateError> {
        let db = Db::open(path, SCHEMA).await.map_err(|e| {
            StateError::Unavailable(format!("cannot open state {}: {e}", path.display()))
        })?;
        Ok(SqliteState {
            db,
            ready: Arc::new(Notify::new()),
            completions: AtomicU64::new(0),
        })
    }

    fn wake(&self, ready: bool) {
        if ready {
            self.ready.notify_waiters();
        }
    }
}

#[async_trait]
impl StateBackend for SqliteState {
    async fn acquire_projector_lease(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StateError> {
        let holder = holder.to_string();
        let ttl = ttl.as_millis() as i64;
        Ok(self
            .db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let now = now_ms();
                let cur: Option<(String, i64, i64)> = tx
                    .query_row("SELECT holder, token, expires_at FROM projector_lease WHERE id = 1", [], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()?;
                let token = match cur {
                    Some((h, token, _)) if h == holder => {
                        tx.execute("UPDATE projector_lease SET expires_at = ?1 WHERE id = 1", params![now + ttl])?;
                        Some(token)
                    }
                    Some((_, _, expires)) if expires > now => None,
                    other => {
                        let token = other.map(|(_, t, _)| t).unwrap_or(0) + 1;
                        tx.execute(
                            "INSERT INTO projector_lease (id, holder, token, expires_at) VALUES (1, ?1, ?2, ?3)
                             ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, token = excluded.token,
                             expires_at = excluded.expires_at",
                            params![holder, token, now + ttl],
                        )?;
                        Some(token)
                    }
                };
                tx.commit()?;
                Ok(token.map(|t| t as u64))
            })
            .await?)
    }

    async fn release_projector_lease(&self, holder: &str, token: u64) -> Result<(), StateError> {
        let holder = holder.to_string();
        self.db
            .call(move |conn| {
                // Expire rather than delete, so the token counter keeps growing.
                conn.execute(
                    "UPDATE projector_lease SET expires_at = 0 WHERE id = 1 AND holder = ?1 AND token = ?2",
                    params![holder, token as i64],
                )?;
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn checkpoint(&self) -> Result<u64, StateError> {
        Ok(self
            .db
            .call(|conn| {
                let v: Option<i64> = conn
                    .query_row(
                        "SELECT value FROM herald_meta WHERE key = 'checkpoint'",
                        [],
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok(v.unwrap_or(0) as u64)
            })
            .await?)
    }

    async fn apply(&self, step: ProjectionStep) -> Result<usize, StateError> {
        let (n, ready) = self
            .db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                if !check_token(&tx, step.token)? {
                    return Ok(None);
                }
                {
                    let mut up = tx.prepare_cached(
                        "INSERT INTO read_models (id, tenant, status, version, doc) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, status = excluded.status,
                         version = excluded.version, doc = excluded.doc
                         WHERE excluded.version > read_models.version",
                    )?;
                    for d in &step.upserts {
                        let doc = serde_json::to_string(d).map_err(data_err)?;
                        up.execute(params![d.id.to_string(), d.tenant, d.status.as_str(), d.version as i64, doc])?;
                    }
                }
                let (n, ready) = insert_jobs(&tx, &step.jobs, now_ms())?;
                tx.execute(
                    "INSERT INTO herald_meta (key, value) VALUES ('checkpoint', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![step.checkpoint as i64],
                )?;
                tx.commit()?;
                Ok(Some((n, ready)))
            })
            .await?
            .ok_or(StateError::Fenced(step.token))?;
        self.wake(ready);
        Ok(n)
    }

    async fn reset_projections(&self, token: u64) -> Result<(), StateError> {
        self.db
            .call(move |conn| {
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                if !check_token(&tx, token)? {
                    return Ok(false);
                }
                tx.execute("DELETE FROM read_models", [])?;
                tx.execute("DELETE FROM herald_meta WHERE key = 'checkpoint'", [])?;
                tx.commit()?;
                Ok(true)
            })
            .await?
            .then_some(())
            .ok_or(StateError::Fenced(token))
    }

    async fn get(&self, id: Uuid) -> Result<Option<MessageRequest>, StateError> {
        Ok(self
            .db
            .call(move |conn| {
                let doc: Option<String> = conn
                    .query_row(
                        "SELECT doc FROM read_models WHERE id = ?1",
                        params![id.to_string()],
                        |r| r.get(0),
                    )
                    .optional()?;
                doc.map(|d| parse_doc(&d)).transpose()
            })
            .await?)
    }

    async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<MessageRequest>, StateError> {
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        Ok(self
            .db
            .call(move |conn| {
                let mut q = conn.prepare_cached("SELECT doc FROM read_models WHERE id = ?1")?;
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    if let Some(d) = q
                        .query_row(params![id], |r| r.get::<_, String>(0))
                        .optional()?
                    {
                        out.push(parse_doc(&d)?);
                    }
                }
                Ok(out)
            })
            .await?)
    }

    async fn list(&self, query: ListQuery) -> Result<Page, StateError> {
        Ok(self
            .db
            .call(move |conn| {
                // Ids are UUIDv7 strings: ordering by id is ordering by creation time.
                let mut sql = String::from("SELECT doc FROM read_models WHERE 1 = 1");
                let mut args: Vec<String> = Vec::new();
                if let Some(t) = &query.tenant {
                    args.push(t.clone());
                    sql.push_str(&format!(" AND tenant = ?{}", args.len()));
                }
                if let Some(s) = query.status {
                    args.push(s.as_str().to_string());
                    sql.push_str(&format!(" AND status = ?{}", args.len()));
                }
                if let Some(b) = query.before {
                    args.push(b.to_string());
                    sql.push_str(&format!(" AND id < ?{}", args.len()));
                }
                sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", query.limit + 1));
                let mut q = conn.prepare_cached(&sql)?;
                let rows = q.query_map(rusqlite::params_from_iter(args.iter()), |r| {
                    r.get::<_, String>(0)
                })?;
                let mut items = Vec::new();
                for r in rows {
                    items.push(parse_doc(&r?)?);
                }
                let next = if items.len() > query.limit {
                    items.truncate(query.limit);
                    items.last().map(|d| d.id)
                } else {
                    None
                };
                Ok(Page { items, next })
            })
            .await?)
    }

    async fn status_counts(
        &self,
        tenant: Option<&str>,
    ) -> Result<BTreeMap<Status, u64>, StateError> {
        let tenant = tenant.map(str::to_string);
        Ok(self
            .db
            .call(move |conn| {
                let mut out = BTreeMap::new();
                for s in Status::ALL {
                    let n: i64 = match &tenant {
                        Some(t) => conn.query_row(
                            "SELECT COUNT(*) FROM read_models WHERE tenant = ?1 AND status = ?2",
                            params![t, s.as_str()],
                            |r| r.get(0),
                        )?,
                        None => conn.query_row(
                            "SELECT COUNT(*) FROM read_models WHERE status = ?1",
                            params![s.as_str()],
                            |r| r.get(0),
                        )?,
                    };
                    out.insert(s, n as u64);
                }
                Ok(out)
            })
            .await?)
    }

    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<usize, StateError> {
        let (n, ready) = self
            .db
            .call(move |conn| {
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let r = insert_jobs(&tx, &jobs, now_ms())?;
                tx.commit()?;
                Ok(r)
            })
            .await?;
        self.wake(ready);
        Ok(n)
    }

    async fn reserve(
        &self,
        _worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Job>, StateError> {
        let lease_ms = lease.as_millis() as i64;
        Ok(self
            .db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let now = now_ms();
                // Delayed jobs whose time has come become waiting.
                let due: Vec<(String, String)> = {
                    let mut q = tx.prepare_cached("SELECT id, name FROM jobs WHERE state = 'delayed' AND run_at <= ?1")?;
                    q.query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
                };
                for (id, name) in &due {
                    tx.execute("UPDATE jobs SET state = 'waiting' WHERE id = ?1", params![id])?;
                    count(&tx, name, Some("delayed"), Some("waiting"), 1)?;
                }
                // Leases that expired: the worker died or hung. The run counted as an attempt.
                let stalled: Vec<(String, String, i64, i64)> = {
                    let mut q = tx.prepare_cached(
                        "SELECT id, name, attempts, max_attempts FROM jobs WHERE state = 'active' AND lease_until <= ?1",
                    )?;
                    q.query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                        .collect::<Result<_, _>>()?
                };
                for (id, name, attempts, max) in &stalled {
                    // As on every backend: the last allowed run stalling earns one run more, in
                    // which a worker records that the job gave up; only that one stalling too
                    // makes the job dead.
                    let to = if attempts > max { "dead" } else { "waiting" };
                    tx.execute(
                        "UPDATE jobs SET state = ?2, lease_token = NULL, lease_until = NULL,
                         last_error = COALESCE(last_error, 'lease expired (worker stalled or died)') WHERE id = ?1",
                        params![id, to],
                    )?;
                    count(&tx, name, Some("active"), Some(to), 1)?;
                    // The stalled run counts as a failed run, as on every backend.
                    count(&tx, name, None, Some("failed"), 1)?;
                    tracing::warn!(job_id = %id, job = %name, attempts, to, "job lease expired; recovered");
                }
                let picked: Vec<(String, String, i32, String, i64, i64)> = {
                    let mut q = tx.prepare_cached(
                        "SELECT id, name, priority, payload, attempts, max_attempts FROM jobs
                         WHERE state = 'waiting' ORDER BY priority DESC, seq LIMIT ?1",
                    )?;
                    q.query_map(params![max as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?
                        .collect::<Result<_, _>>()?
                };
                let mut jobs = Vec::with_capacity(picked.len());
                for (id, name, priority, payload, attempts, max_attempts) in picked {
                    let token = Uuid::new_v4().simple().to_string();
                    tx.execute(
                        "UPDATE jobs SET state = 'active', attempts = attempts + 1, lease_token = ?2, lease_until = ?3
                         WHERE id = ?1",
                        params![id, token, now + lease_ms],
                    )?;
                    count(&tx, &name, Some("waiting"), Some("active"), 1)?;
                    let job_name = JobName::parse(&name).ok_or_else(|| DbError::Data(format!("unknown job name {name}")))?;
                    jobs.push(Job {
                        lease: Lease {
                            job_id: id.clone(),
                            token,
                        },
                        id,
                        name: job_name,
                        priority,
                        payload: serde_json::from_str(&payload).map_err(data_err)?,
                        attempts: attempts as u32 + 1,
                        max_attempts: max_attempts as u32,
                    });
                }
                tx.commit()?;
                Ok(jobs)
            })
            .await?)
    }

    async fn complete(&self, lease: &Lease) -> Result<bool, StateError> {
        Ok(self
            .complete_many(std::slice::from_ref(lease))
            .await?
            .first()
            .copied()
            .unwrap_or(false))
    }

    async fn complete_many(&self, leases: &[Lease]) -> Result<Vec<bool>, StateError> {
        let leases = leases.to_vec();
        let n = leases.len() as u64;
        let before = self.completions.fetch_add(n, Ordering::Relaxed);
        // Trim once every TRIM_EVERY completions, not on every one.
        let trim = before / TRIM_EVERY != (before + n) / TRIM_EVERY;
        Ok(self
            .db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let mut done = Vec::with_capacity(leases.len());
                for lease in &leases {
                    let Some(name) = active_name(&tx, lease)? else {
                        done.push(false);
                        continue;
                    };
                    let seq = next_seq(&tx)?;
                    // `seq` doubles as the finishing order, for trimming the oldest finished jobs.
                    tx.execute(
                        "UPDATE jobs SET state = 'completed', lease_token = NULL, lease_until = NULL, seq = ?2 WHERE id = ?1",
                        params![lease.job_id, seq],
                    )?;
                    count(&tx, &name, Some("active"), Some("completed"), 1)?;
                    done.push(true);
                }
                if trim {
                    tx.execute(
                        "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE state = 'completed'
                         ORDER BY seq DESC LIMIT -1 OFFSET ?1)",
                        params![KEEP_FINISHED_JOBS as i64],
                    )?;
                }
                tx.commit()?;
                Ok(done)
            })
            .await?)
    }

    async fn fail(
        &self,
        lease: &Lease,
        error: &str,
        retry_in: Duration,
    ) -> Result<bool, StateError> {
        let lease = lease.clone();
        let error = error.to_string();
        let retry_ms = retry_in.as_millis() as i64;
        let (ok, ready) = self
            .db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let Some(name) = active_name(&tx, &lease)? else {
                    return Ok((false, false));
                };
                let (attempts, max): (i64, i64) = tx.query_row(
                    "SELECT attempts, max_attempts FROM jobs WHERE id = ?1",
                    params![lease.job_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let to = if attempts >= max {
                    "dead"
                } else if retry_ms > 0 {
                    "delayed"
                } else {
                    "waiting"
                };
                tx.execute(
                    "UPDATE jobs SET state = ?2, run_at = ?3, last_error = ?4, lease_token = NULL, lease_until = NULL
                     WHERE id = ?1",
                    params![lease.job_id, to, now_ms() + retry_ms, error],
                )?;
                count(&tx, &name, Some("active"), Some(to), 1)?;
                count(&tx, &name, None, Some("failed"), 1)?;
                tx.commit()?;
                Ok((true, to == "waiting"))
            })
            .await?;
        self.wake(ready);
        Ok(ok)
    }

    async fn extend_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool, StateError> {
        let lease = lease.clone();
        let until = now_ms() + ttl.as_millis() as i64;
        Ok(self
            .db
            .call(move |conn| {
                Ok(conn.execute(
                    "UPDATE jobs SET lease_until = ?3 WHERE id = ?1 AND state = 'active' AND lease_token = ?2",
                    params![lease.job_id, lease.token, until],
                )? == 1)
            })
            .await?)
    }

    async fn release(&self, lease: &Lease) -> Result<bool, StateError> {
        let lease = lease.clone();
        let ok = self
            .db
            .call(move |conn| {
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let Some(name) = active_name(&tx, &lease)? else {
                    return Ok(false);
                };
                tx.execute(
                    "UPDATE jobs SET state = 'waiting', attempts = attempts - 1, lease_token = NULL, lease_until = NULL
                     WHERE id = ?1",
                    params![lease.job_id],
                )?;
                count(&tx, &name, Some("active"), Some("waiting"), 1)?;
                tx.commit()?;
                Ok(true)
            })
            .await?;
        self.wake(ok);
        Ok(ok)
    }

    async fn wait_for_jobs(&self, max_wait: Duration) -> Result<(), StateError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            // Register before checking, so an enqueue between the check and the wait is not missed.
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = self
                .db
                .call(|conn| {
                    let now = now_ms();
                    let waiting: bool = conn
                        .query_row("SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'waiting')", [], |r| r.get(0))?;
                    if waiting {
                        return Ok(Some(0));
                    }
                    let due: Option<i64> = conn.query_row(
                        "SELECT MIN(t) FROM (SELECT MIN(run_at) AS t FROM jobs WHERE state = 'delayed'
                         UNION ALL SELECT MIN(lease_until) FROM jobs WHERE state = 'active')",
                        [],
                        |r| r.get(0),
                    )?;
                    Ok(due.map(|t| (t - now).max(0)))
                })
                .await?;
            if next == Some(0) {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(());
            }
            let mut slice = (deadline - now).min(CROSS_PROCESS_RECHECK);
            if let Some(ms) = next {
                slice = slice.min(Duration::from_millis(ms as u64));
            }
            if tokio::time::timeout(slice, notified).await.is_ok() {
                return Ok(());
            }
            if next.is_some_and(|ms| Duration::from_millis(ms as u64) <= slice) {
                return Ok(());
            }
        }
    }

    async fn queue_info(&self) -> Result<QueueInfo, StateError> {
        Ok(self
            .db
            .call(|conn| {
                let mut by_name: BTreeMap<String, QueueCounts> = BTreeMap::new();
                let mut q = conn.prepare_cached("SELECT name, state, n FROM job_counts")?;
                let rows = q.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })?;
                for r in rows {
                    let (name, state, n) = r?;
                    let c = by_name.entry(name).or_default();
                    let n = n.max(0) as u64;
                    c.set(&state, n);
                }
                Ok(QueueInfo::from_names(by_name))
            })
            .await?)
    }

    async fn dead_jobs(&self, limit: usize) -> Result<Vec<DeadJob>, StateError> {
        Ok(self
            .db
            .call(move |conn| {
                let mut q = conn.prepare_cached(
                    "SELECT id, name, attempts, COALESCE(last_error, ''), payload FROM jobs WHERE state = 'dead'
                     ORDER BY seq DESC LIMIT ?1",
                )?;
                let rows = q.query_map(params![limit as i64], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })?;
                let mut out = Vec::new();
                for r in rows {
                    let (id, name, attempts, last_error, payload) = r?;
                    out.push(DeadJob {
                        id,
                        name: JobName::parse(&name).ok_or_else(|| DbError::Data(format!("unknown job name {name}")))?,
                        attempts: attempts as u32,
                        last_error,
                        payload: serde_json::from_str(&payload).map_err(data_err)?,
                    });
                }
                Ok(out)
            })
            .await?)
    }

    async fn ping(&self) -> Result<(), StateError> {
        self.db
            .call(|conn| Ok(conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .await?;
        Ok(())
    }
}

/// The job's name if `lease` still holds it.
fn active_name(tx: &Transaction<'_>, lease: &Lease) -> Result<Option<String>, DbError> {
    Ok(tx
        .query_row(
            "SELECT name FROM jobs WHERE id = ?1 AND state = 'active' AND lease_token = ?2",
            params![lease.job_id, lease.token],
            |r| r.get(0),
        )
        .optional()?)
}
