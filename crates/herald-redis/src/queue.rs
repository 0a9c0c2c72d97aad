//! The job queue: enqueue, lease, finish, and the counters behind `queue_info`.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_core::StateError;
use herald_core::state::{DeadJob, Job, KEEP_FINISHED_JOBS, Lease, NewJob, QueueCounts, QueueInfo};
use herald_domain::JobName;
use redis::ScriptInvocation;
use uuid::Uuid;

use crate::error::data;
use crate::{RedisState, millis, now_ms};

/// Due delayed jobs and expired leases handled per `reserve` call, so that a backlog after
/// downtime cannot make one script call block Redis for long; the rest follow on later calls.
const HOUSEKEEPING_BATCH: usize = 1000;

/// Appends jobs as six arguments each (see `enqueue_jobs` in common.lua).
pub(crate) fn push_job_args(
    inv: &mut ScriptInvocation<'_>,
    jobs: &[NewJob],
) -> Result<(), StateError> {
    for j in jobs {
        let payload =
            serde_json::to_string(&j.payload).map_err(|e| data("encoding a job payload", e))?;
        inv.arg(&j.id)
            .arg(j.name.as_str())
            .arg(j.priority)
            .arg(j.delay_ms.min(crate::MAX_MS))
            .arg(j.max_attempts)
            .arg(payload);
    }
    Ok(())
}

pub(crate) async fn enqueue(s: &RedisState, jobs: &[NewJob]) -> Result<usize, StateError> {
    if jobs.is_empty() {
        return Ok(0);
    }
    let k = &s.keys;
    let mut inv = s.scripts.enqueue.prepare_invoke();
    inv.key(&k.seen)
        .key(&k.wait)
        .key(&k.delayed)
        .key(&k.seq)
        .key(&k.wake)
        .key(&k.counts)
        .key(&k.job)
        .key(&k.layout)
        .arg(now_ms())
        .arg(jobs.len());
    push_job_args(&mut inv, jobs)?;
    s.run(&inv).await
}

pub(crate) async fn reserve(
    s: &RedisState,
    max: usize,
    lease: Duration,
) -> Result<Vec<Job>, StateError> {
    let k = &s.keys;
    // Lease tokens are random (not a counter) so that a token from before a Redis data loss can
    // never match a job leased after it; the script appends a number per job.
    let token_prefix = format!("{}-", Uuid::new_v4().simple());
    let mut inv = s.scripts.reserve.prepare_invoke();
    inv.key(&k.wait)
        .key(&k.delayed)
        .key(&k.active)
        .key(&k.dead)
        .key(&k.seq)
        .key(&k.counts)
        .key(&k.job)
        .key(&k.leases)
        .key(&k.errors)
        .arg(now_ms())
        .arg(max.min(i64::MAX as usize))
        .arg(millis(lease).max(1))
        .arg(token_prefix)
        .arg(HOUSEKEEPING_BATCH);
    let flat: Vec<String> = s.run(&inv).await?;
    flat.chunks_exact(7).map(decode_job).collect()
}

/// id, name, priority, payload, attempts, max_attempts, lease token (see reserve.lua).
fn decode_job(f: &[String]) -> Result<Job, StateError> {
    let bad = |what: &str| StateError::Data(format!("job {:?}: bad {what}", f[0]));
    Ok(Job {
        id: f[0].clone(),
        name: JobName::parse(&f[1]).ok_or_else(|| bad("name"))?,
        priority: f[2].parse().map_err(|_| bad("priority"))?,
        payload: serde_json::from_str(&f[3]).map_err(|_| bad("payload"))?,
        attempts: f[4].parse().map_err(|_| bad("attempts"))?,
        max_attempts: f[5].parse().map_err(|_| bad("max_attempts"))?,
        lease: Lease {
            job_id: f[0].clone(),
            token: f[6].clone(),
        },
    })
}

pub(crate) async fn complete_many(
    s: &RedisState,
    leases: &[Lease],
) -> Result<Vec<bool>, StateError> {
    if leases.is_empty() {
        return Ok(vec![]);
    }
    let k = &s.keys;
    let mut inv = s.scripts.complete.prepare_invoke();
    inv.key(&k.active)
        .key(&k.finished)
        .key(&k.counts)
        .key(&k.job)
        .key(&k.leases)
        .key(&k.errors)
        .arg(KEEP_FINISHED_JOBS);
    for lease in leases {
        inv.arg(&lease.job_id).arg(&lease.token);
    }
    let done: Vec<i64> = s.run(&inv).await?;
    Ok(done.into_iter().map(|d| d == 1).collect())
}

pub(crate) async fn fail(
    s: &RedisState,
    lease: &Lease,
    error: &str,
    retry_in: Duration,
) -> Result<bool, StateError> {
    let k = &s.keys;
    let mut inv = s.scripts.fail.prepare_invoke();
    inv.key(&k.active)
        .key(&k.delayed)
        .key(&k.dead)
        .key(&k.counts)
        .key(&k.job)
        .key(&k.leases)
        .key(&k.errors)
        .arg(&lease.job_id)
        .arg(&lease.token)
        .arg(error)
        .arg(millis(retry_in))
        .arg(now_ms());
    Ok(s.run::<i64>(&inv).await? == 1)
}

pub(crate) async fn extend_lease(
    s: &RedisState,
    lease: &Lease,
    ttl: Duration,
) -> Result<bool, StateError> {
    let k = &s.keys;
    let mut inv = s.scripts.extend.prepare_invoke();
    inv.key(&k.active)
        .key(&k.leases)
        .arg(&lease.job_id)
        .arg(&lease.token)
        .arg(now_ms() + millis(ttl));
    Ok(s.run::<i64>(&inv).await? == 1)
}

pub(crate) async fn release(s: &RedisState, lease: &Lease) -> Result<bool, StateError> {
    let k = &s.keys;
    let mut inv = s.scripts.release.prepare_invoke();
    inv.key(&k.active)
        .key(&k.wait)
        .key(&k.seq)
        .key(&k.wake)
        .key(&k.counts)
        .key(&k.job)
        .key(&k.leases)
        .arg(&lease.job_id)
        .arg(&lease.token);
    Ok(s.run::<i64>(&inv).await? == 1)
}

/// Reads only the counters hash: never scans jobs.
pub(crate) async fn info(s: &RedisState) -> Result<QueueInfo, StateError> {
    let fields: BTreeMap<String, i64> = s.query(redis::cmd("HGETALL").arg(&s.keys.counts)).await?;
    let mut by_name: BTreeMap<String, QueueCounts> = BTreeMap::new();
    for (field, n) in fields {
        let Some((name, state)) = field.rsplit_once(':') else {
            continue;
        };
        // Gauges never go below zero; a negative one would only come from a hand-edited hash.
        let n = u64::try_from(n).unwrap_or(0);
        let c = by_name.entry(name.to_string()).or_default();
        c.set(state, n);
    }
    Ok(QueueInfo::from_names(by_name))
}

/// Most recently dead first.
pub(crate) async fn dead_jobs(s: &RedisState, limit: usize) -> Result<Vec<DeadJob>, StateError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let last = i64::try_from(limit - 1).unwrap_or(i64::MAX);
    let ids: Vec<String> = s
        .query(redis::cmd("ZREVRANGE").arg(&s.keys.dead).arg(0).arg(last))
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for key in [&s.keys.job, &s.keys.errors] {
        pipe.cmd("HMGET").arg(key).arg(&ids);
    }
    let (jobs, errors): (Vec<Option<String>>, Vec<Option<String>>) = s.query_pipe(&pipe).await?;
    let mut out = Vec::with_capacity(ids.len());
    for ((id, job), last_error) in ids.into_iter().zip(jobs).zip(errors) {
        let Some(job) = job else { continue };
        let bad = |what: &str| StateError::Data(format!("dead job {id:?}: bad {what}"));
        // name|priority|max_attempts|runs|payload (see pack_job in common.lua).
        let mut f = job.splitn(5, '|');
        let name = f
            .next()
            .and_then(JobName::parse)
            .ok_or_else(|| bad("name"))?;
        let attempts = f
            .nth(2)
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| bad("runs"))?;
        let payload = f.next().ok_or_else(|| bad("record"))?;
        out.push(DeadJob {
            name,
            attempts,
            last_error: last_error.unwrap_or_default(),
            payload: serde_json::from_str(payload).map_err(|_| bad("payload"))?,
            id,
        });
    }
    Ok(out)
}
