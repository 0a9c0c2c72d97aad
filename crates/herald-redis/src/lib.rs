//! The Redis state backend: read models, the job queue and the projector checkpoint of one
//! Herald deployment in one Redis, under one namespace (DESIGN §4, §5).
//!
//! Every key starts with `{ns}:`. The braces are a Redis Cluster hash tag: all of a namespace's
//! keys share one slot, so one Lua script can project, enqueue and checkpoint atomically.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{ns}:mr:<id>` | hash | one request: `d`, its JSON document |
//! | `{ns}:idx:<tenant>:<STATUS>` | zset | request ids of one tenant and status, score 0 |
//! | `{ns}:idx:*:<STATUS>` | zset | request ids of one status, every tenant (not for PENDING, SENT) |
//! | `{ns}:idx:counts` | hash | status → requests in it, every tenant |
//! | `{ns}:idx:tenants` | set | key segments of every tenant with a request |
//! | `{ns}:projector:versions` | hash | request id → `version\|status\|tenant`, the step's guard |
//! | `{ns}:projector:lease` | hash, TTL | `holder`, `token` of the single projector |
//! | `{ns}:projector:tokens` | string | fencing token counter |
//! | `{ns}:projector:checkpoint` | string | position of the last projected event |
//! | `{ns}:q:job` | hash | job id → `name\|priority\|max_attempts\|runs\|payload`, until completed (runs as of the last finished run) |
//! | `{ns}:q:lease` | hash | job id → lease token (`<random>-<n>:<runs>:<job name>`), while leased |
//! | `{ns}:q:error` | hash | job id → last error, once a run failed |
//! | `{ns}:q:wait` | zset | ready jobs, score `-priority·2^40 + sequence` |
//! | `{ns}:q:delayed` | zset | delayed and retrying jobs, score = due time (ms) |
//! | `{ns}:q:active` | zset | leased jobs, score = lease expiry (ms) |
//! | `{ns}:q:dead` | zset | dead jobs, score = time of death (ms) |
//! | `{ns}:q:finished` | list | completed job ids, newest first, trimmed to `KEEP_FINISHED_JOBS` |
//! | `{ns}:q:seen` | set | every job id ever enqueued (refuses duplicates after trimming) |
//! | `{ns}:q:counts` | hash | `<jobname>:<state>` counters read by `queue_info` |
//! | `{ns}:q:seq` | string | FIFO sequence of the wait set |
//! | `{ns}:q:wake` | list | wake-up tokens for `wait_for_jobs` (BLPOP) |
//! | `{ns}:layout` | string | the key layout that wrote this namespace (`2`); checked at start-up |
//!
//! A job's state is the set that holds its id (wait, delayed, active, dead, finished). Its fields
//! sit in namespace-wide hashes keyed by job id, not in a hash per job, so that the scripts read
//! and write a whole batch of jobs with one command per hash: Redis runs scripts on one thread,
//! and commands per job were most of its work.
//!
//! Tenants are percent-encoded inside keys (`acme` stays `acme`, `a:b*` becomes `a%3Ab%2A`), so
//! no tenant name can reach into another tenant's index or the all-tenants one.
//!
//! Times (due times, lease expiries) come from the local clock and are passed into the scripts.
//! Needs Redis 6.2 or newer (SMISMEMBER, fractional BLPOP timeouts); `connect` checks.

mod error;
mod keys;
mod projection;
mod queue;
mod scripts;
mod wake;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use herald_core::state::{DeadJob, Job, Lease, ListQuery, NewJob, Page, ProjectionStep, QueueInfo};
use herald_core::{StateBackend, StateError};
use herald_domain::{MessageRequest, Status};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, ScriptInvocation};
use uuid::Uuid;

use crate::keys::Keys;
use crate::scripts::Scripts;
use crate::wake::BlockingPool;

/// The namespace callers use unless configured otherwise.
pub const DEFAULT_NAMESPACE: &str = "herald";

/// The key layout this version writes (`LAYOUT` in common.lua): 2 since job fields moved into
/// namespace-wide hashes. Layout 1 (a hash per job) left no mark.
const LAYOUT: &str = "2";

/// Oldest Redis that has every command the scripts use.
const MIN_REDIS: (u32, u32) = (6, 2);

/// How long to wait for a TCP connection to Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one command may take. The client's default (500 ms) is too tight for a projector
/// step of hundreds of events on a busy machine; a dropped connection is noticed at once anyway.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The Redis implementation of [`StateBackend`]. Cheap to share behind an `Arc`: commands go
/// through one multiplexed connection that reconnects by itself.
pub struct RedisState {
    conn: ConnectionManager,
    /// Connections for blocking commands (BLPOP), which would stall the multiplexed one.
    blocking: BlockingPool,
    keys: Keys,
    scripts: Scripts,
}

impl RedisState {
    /// Connects to `url` and checks that Redis answers. Keys live under `{namespace}:`.
    pub async fn connect(url: &str, namespace: &str) -> Result<RedisState, StateError> {
        let shown = redact(url);
        let keys = Keys::new(namespace)?;
        let client = redis::Client::open(url)
            .map_err(|e| StateError::Unavailable(format!("invalid Redis URL {shown}: {e}")))?;
        let unreachable = |e: redis::RedisError| {
            StateError::Unavailable(format!("cannot reach Redis at {shown}: {e}"))
        };
        // One plain connection first: the manager below retries with back-off before giving up,
        // which would make an unreachable Redis slow to report. It then serves blocking commands.
        let blocking = BlockingPool::new(client.clone());
        let mut probe = blocking.open().await.map_err(unreachable)?;
        redis::cmd("PING")
            .query_async::<String>(&mut probe)
            .await
            .map_err(unreachable)?;
        // INFO may be disabled on managed services; the check is skipped then.
        if let Ok(info) = redis::cmd("INFO")
            .arg("server")
            .query_async::<String>(&mut probe)
            .await
            && let Some(v) = too_old(&info)
        {
            return Err(StateError::Unavailable(format!(
                "Redis at {shown} is version {v}; Herald needs {}.{} or newer",
                MIN_REDIS.0, MIN_REDIS.1
            )));
        }
        blocking.put_back(probe);
        // The manager replaces a dropped connection by itself (Redis restarting, a network blip).
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(6)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unreachable)?;
        let state = RedisState {
            conn,
            blocking,
            keys,
            scripts: Scripts::new(),
        };
        state.warn_if_evicting().await;
        state.check_layout().await?;
        tracing::debug!(url = %shown, namespace, "connected to Redis");
        Ok(state)
    }

    /// Refuses a namespace written with another key layout (an older Herald). Its state cannot be
    /// read by these scripts: queued jobs would be dropped and indexes would drift. State is
    /// rebuilt from the event store, so the way forward is a fresh namespace.
    async fn check_layout(&self) -> Result<(), StateError> {
        let k = &self.keys;
        let mut pipe = redis::pipe();
        pipe.cmd("GET")
            .arg(&k.layout)
            .cmd("EXISTS")
            .arg(&k.checkpoint)
            .arg(&k.seen);
        let (layout, existing): (Option<String>, u64) = self.query_pipe(&pipe).await?;
        let written_by = match layout {
            Some(l) if l == LAYOUT => return Ok(()),
            None if existing == 0 => return Ok(()),
            Some(l) => format!("key layout {l}"),
            None => "an older Herald (key layout 1)".to_string(),
        };
        let ns = k.prefix.trim_start_matches('{').trim_end_matches("}:");
        Err(StateError::Data(format!(
            "Redis namespace {ns:?} holds state written by {written_by}; this Herald uses key layout \
             {LAYOUT}. Read models and the queue are rebuilt from the event store: set a new \
             `namespace` (or HERALD_NAMESPACE) and Herald re-projects every event and dispatches \
             only outstanding work; then delete the old namespace's keys"
        )))
    }

    /// Warns when Redis may evict keys: an evicting Redis silently drops jobs and read models
    /// under memory pressure. Managed Redis services often disable CONFIG; that is tolerated.
    /// Deletes every key of this namespace (SCAN + UNLINK): for throw-away namespaces such as a
    /// benchmark's. Never touches other namespaces. Returns how many keys were deleted.
    pub async fn delete_namespace(&self) -> Result<u64, StateError> {
        let pattern = format!("{}*", self.keys.prefix);
        let mut cursor = 0u64;
        let mut deleted = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .query(
                    redis::cmd("SCAN")
                        .cursor_arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000),
                )
                .await?;
            if !batch.is_empty() {
                deleted += self.query::<u64>(redis::cmd("UNLINK").arg(&batch)).await?;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    pub async fn warn_if_evicting(&self) {
        let mut c = self.conn.clone();
        let reply: redis::RedisResult<HashMap<String, String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut c)
            .await;
        match reply {
            Ok(m) => match m.get("maxmemory-policy") {
                Some(p) if p != "noeviction" => tracing::warn!(
                    policy = %p,
                    "Redis maxmemory-policy is not noeviction: under memory pressure Redis will \
                     silently drop queued jobs and read models; set maxmemory-policy noeviction"
                ),
                Some(_) => {}
                None => tracing::debug!("Redis did not report maxmemory-policy"),
            },
            Err(e) => {
                tracing::debug!(error = %e, "cannot read Redis maxmemory-policy (CONFIG disabled?)")
            }
        }
    }

    async fn run<T: FromRedisValue>(&self, inv: &ScriptInvocation<'_>) -> Result<T, StateError> {
        let mut c = self.conn.clone();
        inv.invoke_async(&mut c).await.map_err(error::map)
    }

    async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StateError> {
        let mut c = self.conn.clone();
        cmd.query_async(&mut c).await.map_err(error::map)
    }

    async fn query_pipe<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, StateError> {
        let mut c = self.conn.clone();
        pipe.query_async(&mut c).await.map_err(error::map)
    }
}

/// The server version from `INFO server` when it is older than [`MIN_REDIS`].
fn too_old(info: &str) -> Option<String> {
    let v = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))?
        .trim();
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    let (major, minor) = (parts.next()??, parts.next()??);
    ((major, minor) < MIN_REDIS).then(|| v.to_string())
}

/// The URL without its password, for messages and logs.
fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if let Some((_, host)) = authority.rsplit_once('@') {
            return format!("{scheme}://***@{host}{path}");
        }
    }
    url.to_string()
}

/// Milliseconds since the Unix epoch on the local clock.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Longest duration handed to Redis, about 35 years: keeps `now + duration` an exact integer in a
/// Lua double.
const MAX_MS: u64 = 1 << 40;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(MAX_MS).min(MAX_MS)
}

#[async_trait]
impl StateBackend for RedisState {
    async fn acquire_projector_lease(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StateError> {
        projection::acquire_lease(self, holder, ttl).await
    }

    async fn release_projector_lease(&self, holder: &str, token: u64) -> Result<(), StateError> {
        projection::release_lease(self, holder, token).await
    }

    async fn checkpoint(&self) -> Result<u64, StateError> {
        projection::checkpoint(self).await
    }

    async fn apply(&self, step: ProjectionStep) -> Result<usize, StateError> {
        projection::apply(self, step).await
    }

    async fn reset_projections(&self, token: u64) -> Result<(), StateError> {
        projection::reset(self, token).await
    }

    async fn get(&self, id: Uuid) -> Result<Option<MessageRequest>, StateError> {
        Ok(projection::get_many(self, &[id]).await?.pop())
    }

    async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<MessageRequest>, StateError> {
        projection::get_many(self, ids).await
    }

    async fn list(&self, query: ListQuery) -> Result<Page, StateError> {
        projection::list(self, query).await
    }

    async fn status_counts(
        &self,
        tenant: Option<&str>,
    ) -> Result<BTreeMap<Status, u64>, StateError> {
        projection::status_counts(self, tenant).await
    }

    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<usize, StateError> {
        queue::enqueue(self, &jobs).await
    }

    async fn reserve(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Job>, StateError> {
        // Leases are not tied to a worker name: a token is all a worker needs to finish a job.
        let _ = worker;
        queue::reserve(self, max, lease).await
    }

    async fn complete(&self, lease: &Lease) -> Result<bool, StateError> {
        Ok(queue::complete_many(self, std::slice::from_ref(lease))
            .await?
            .first()
            .copied()
            .unwrap_or(false))
    }

    async fn complete_many(&self, leases: &[Lease]) -> Result<Vec<bool>, StateError> {
        queue::complete_many(self, leases).await
    }

    async fn fail(
        &self,
        lease: &Lease,
        error: &str,
        retry_in: Duration,
    ) -> Result<bool, StateError> {
        queue::fail(self, lease, error, retry_in).await
    }

    async fn extend_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool, StateError> {
        queue::extend_lease(self, lease, ttl).await
    }

    async fn release(&self, lease: &Lease) -> Result<bool, StateError> {
        queue::release(self, lease).await
    }

    async fn wait_for_jobs(&self, max_wait: Duration) -> Result<(), StateError> {
        wake::wait_for_jobs(self, max_wait).await
    }

    async fn queue_info(&self) -> Result<QueueInfo, StateError> {
        queue::info(self).await
    }

    async fn dead_jobs(&self, limit: usize) -> Result<Vec<DeadJob>, StateError> {
        queue::dead_jobs(self, limit).await
    }

    async fn ping(&self) -> Result<(), StateError> {
        self.query::<String>(&redis::cmd("PING")).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_servers_are_refused() {
        assert_eq!(
            too_old("# Server\r\nredis_version:6.0.9\r\n"),
            Some("6.0.9".into())
        );
        assert_eq!(too_old("redis_version:6.2.0\r\n"), None);
        assert_eq!(too_old("redis_version:7.0.15\r\n"), None);
        assert_eq!(too_old("no version here"), None);
    }

    #[test]
    fn urls_are_shown_without_passwords() {
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            redact("redis://user:secret@host:6379/2"),
            "redis://***@host:6379/2"
        );
    }
}
