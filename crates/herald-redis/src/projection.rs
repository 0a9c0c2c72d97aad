//! The projector's side: the lease, the atomic step, the checkpoint, and the read models.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_core::StateError;
use herald_core::state::{ListQuery, Page, ProjectionStep};
use herald_domain::{MessageRequest, Status};
use uuid::Uuid;

use crate::error::data;
use crate::keys::{hot, tenant_segment};
use crate::{RedisState, millis, now_ms, queue};

/// Keys asked for per SCAN call and deleted per script call by `reset`.
const RESET_BATCH: usize = 1000;

pub(crate) async fn acquire_lease(
    s: &RedisState,
    holder: &str,
    ttl: Duration,
) -> Result<Option<u64>, StateError> {
    let mut inv = s.scripts.lease_acquire.prepare_invoke();
    inv.key(&s.keys.lease)
        .key(&s.keys.lease_counter)
        .arg(holder)
        .arg(millis(ttl).max(1))
        .arg(now_ms());
    s.run(&inv).await
}

pub(crate) async fn release_lease(
    s: &RedisState,
    holder: &str,
    token: u64,
) -> Result<(), StateError> {
    let mut inv = s.scripts.lease_release.prepare_invoke();
    inv.key(&s.keys.lease).arg(holder).arg(token);
    s.run::<i64>(&inv).await.map(|_| ())
}

pub(crate) async fn checkpoint(s: &RedisState) -> Result<u64, StateError> {
    let cp: Option<u64> = s.query(redis::cmd("GET").arg(&s.keys.checkpoint)).await?;
    // A missing key means nothing was projected, or Redis lost its data: start from scratch.
    Ok(cp.unwrap_or(0))
}

/// The hot path: one script call per step, with every field passed as its own argument so that
/// the script never decodes JSON.
pub(crate) async fn apply(s: &RedisState, step: ProjectionStep) -> Result<usize, StateError> {
    let k = &s.keys;
    let mut inv = s.scripts.apply.prepare_invoke();
    inv.key(&k.lease)
        .key(&k.checkpoint)
        .key(&k.seen)
        .key(&k.wait)
        .key(&k.delayed)
        .key(&k.seq)
        .key(&k.wake)
        .key(&k.counts)
        .key(&k.job)
        .key(&k.versions)
        .key(&k.layout)
        .arg(&k.prefix)
        .arg(step.token)
        .arg(step.checkpoint)
        .arg(now_ms())
        .arg(step.upserts.len())
        .arg(step.jobs.len());
    for doc in &step.upserts {
        let json = serde_json::to_string(doc).map_err(|e| data("encoding a message request", e))?;
        inv.arg(doc.id.to_string())
            .arg(doc.version)
            .arg(doc.status.as_str())
            .arg(tenant_segment(&doc.tenant))
            .arg(json);
    }
    queue::push_job_args(&mut inv, &step.jobs)?;
    let added: i64 = s.run(&inv).await?;
    // Negative means the token is not the current lease's (see apply.lua).
    usize::try_from(added).map_err(|_| StateError::Fenced(step.token))
}

/// Deletes the read models in batches, each batch fenced: a projector that loses its lease midway
/// stops deleting at once. Not atomic as a whole, which is fine for an admin rebuild that the
/// lease holder runs alone.
pub(crate) async fn reset(s: &RedisState, token: u64) -> Result<(), StateError> {
    // The versions hash goes first: while it exists, the step's guard would skip re-writing a
    // request whose own hash a half-finished reset already deleted. Also checks the token up
    // front, so a stale projector hears about it even when nothing is stored.
    fenced_del(s, token, std::slice::from_ref(&s.keys.versions)).await?;
    let mut deleted = 0;
    for pattern in s.keys.projection_patterns() {
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = s
                .query(
                    redis::cmd("SCAN")
                        .cursor_arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(RESET_BATCH),
                )
                .await?;
            deleted += fenced_del(s, token, &batch).await?;
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    fenced_del(s, token, std::slice::from_ref(&s.keys.checkpoint)).await?;
    tracing::info!(keys = deleted, "read models deleted; checkpoint reset to 0");
    Ok(())
}

async fn fenced_del(s: &RedisState, token: u64, keys: &[String]) -> Result<u64, StateError> {
    let mut inv = s.scripts.fenced_del.prepare_invoke();
    inv.key(&s.keys.lease).arg(token);
    for k in keys {
        inv.arg(k);
    }
    let n: i64 = s.run(&inv).await?;
    u64::try_from(n).map_err(|_| StateError::Fenced(token))
}

pub(crate) async fn get_many(
    s: &RedisState,
    ids: &[Uuid],
) -> Result<Vec<MessageRequest>, StateError> {
    let keys: Vec<String> = ids
        .iter()
        .map(|id| s.keys.request(&id.to_string()))
        .collect();
    fetch_docs(s, &keys).await
}

/// The documents stored under `keys`, in order, leaving out missing ones.
async fn fetch_docs(s: &RedisState, keys: &[String]) -> Result<Vec<MessageRequest>, StateError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for k in keys {
        pipe.cmd("HGET").arg(k).arg("d");
    }
    let docs: Vec<Option<String>> = s.query_pipe(&pipe).await?;
    docs.into_iter()
        .flatten()
        .map(|d| serde_json::from_str(&d).map_err(|e| data("stored message request", e)))
        .collect()
}

/// Newest first: every index holds ids with score 0, so ZREVRANGEBYLEX walks them by id, and
/// UUIDv7 ids sort by creation time. Without a status filter the five status indexes are read
/// (each up to `limit + 1`) and merged; across tenants, PENDING and SENT are read from every
/// tenant's index (there is no all-tenants index of them) and merged the same way.
pub(crate) async fn list(s: &RedisState, q: ListQuery) -> Result<Page, StateError> {
    if q.limit == 0 {
        return Ok(Page::default());
    }
    let statuses: Vec<Status> = match q.status {
        Some(st) => vec![st],
        None => Status::ALL.to_vec(),
    };
    let upper = q
        .before
        .map_or_else(|| "+".to_string(), |b| format!("({b}"));
    // One more than asked tells whether another page exists.
    let fetch = q.limit.saturating_add(1).min(i64::MAX as usize);
    // Across tenants, a hot status is read from every tenant's index and merged below.
    let segments: Vec<String> = if q.tenant.is_none() && statuses.iter().any(|st| hot(*st)) {
        s.query(redis::cmd("SMEMBERS").arg(s.keys.tenants()))
            .await?
    } else {
        Vec::new()
    };
    let mut pipe = redis::pipe();
    let mut reads = 0;
    for st in statuses {
        let keys: Vec<String> = match &q.tenant {
            None if hot(st) => segments
                .iter()
                .map(|seg| s.keys.segment_index(seg, st))
                .collect(),
            tenant => vec![s.keys.index(tenant.as_deref(), st)],
        };
        for key in keys {
            pipe.cmd("ZREVRANGEBYLEX")
                .arg(key)
                .arg(&upper)
                .arg("-")
                .arg("LIMIT")
                .arg(0)
                .arg(fetch);
            reads += 1;
        }
    }
    let found: Vec<Vec<String>> = if reads > 0 {
        s.query_pipe(&pipe).await?
    } else {
        Vec::new()
    };
    let mut ids: Vec<String> = found.into_iter().flatten().collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.dedup();
    let more = ids.len() > q.limit;
    ids.truncate(q.limit);
    let next = match ids.last() {
        Some(last) if more => Some(
            Uuid::parse_str(last)
                .map_err(|e| data(&format!("request id {last:?} in an index"), e))?,
        ),
        _ => None,
    };
    let keys: Vec<String> = ids.iter().map(|id| s.keys.request(id)).collect();
    let items = fetch_docs(s, &keys).await?;
    Ok(Page { items, next })
}

/// Index sizes for one tenant; across tenants, the counts hash. No scan either way.
pub(crate) async fn status_counts(
    s: &RedisState,
    tenant: Option<&str>,
) -> Result<BTreeMap<Status, u64>, StateError> {
    let counts: Vec<u64> = match tenant {
        Some(t) => {
            let mut pipe = redis::pipe();
            for st in Status::ALL {
                pipe.cmd("ZCARD").arg(s.keys.index(Some(t), st));
            }
            s.query_pipe(&pipe).await?
        }
        None => {
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(s.keys.status_counts());
            for st in Status::ALL {
                cmd.arg(st.as_str());
            }
            let raw: Vec<Option<i64>> = s.query(&cmd).await?;
            // A count never goes below zero; a negative one would only come from a hand edit.
            raw.into_iter()
                .map(|n| u64::try_from(n.unwrap_or(0)).unwrap_or(0))
                .collect()
        }
    };
    Ok(Status::ALL.into_iter().zip(counts).collect())
}
