//! `wait_for_jobs` without polling: the enqueue scripts push a token onto the wake list and an
//! idle worker blocks on it with BLPOP, no longer than until the next delayed job is due.

use std::sync::Mutex;
use std::time::Duration;

use herald_core::StateError;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, RedisResult};

use crate::{CONNECT_TIMEOUT, RedisState, error, now_ms};

/// Idle blocking connections kept for reuse (one per concurrently waiting caller is needed).
const MAX_IDLE: usize = 4;
/// How much longer than its own timeout a BLPOP may take before the connection is presumed dead.
const BLOCK_GRACE: Duration = Duration::from_secs(3);

pub(crate) async fn wait_for_jobs(s: &RedisState, max_wait: Duration) -> Result<(), StateError> {
    let k = &s.keys;
    let mut pipe = redis::pipe();
    pipe.cmd("ZCARD")
        .arg(&k.wait)
        .cmd("ZRANGE")
        .arg(&k.delayed)
        .arg(0)
        .arg(0)
        .arg("WITHSCORES")
        .cmd("ZRANGE")
        .arg(&k.active)
        .arg(0)
        .arg(0)
        .arg("WITHSCORES");
    let (waiting, first_delayed, first_lease): (u64, Vec<String>, Vec<String>) =
        s.query_pipe(&pipe).await?;
    if waiting > 0 {
        return Ok(());
    }
    // A delayed job falling due, or a lease running out, makes a job runnable without any
    // enqueue to wake us: wait no longer than that.
    let now = now_ms() as f64;
    let mut wait = max_wait;
    for first in [first_delayed, first_lease] {
        if let Some(due) = first.get(1).and_then(|v| v.parse::<f64>().ok()) {
            wait = wait.min(Duration::from_millis((due - now).max(0.0) as u64));
        }
    }
    if wait < Duration::from_millis(1) {
        return Ok(());
    }
    s.blocking.blpop(&k.wake, wait).await
}

/// Connections reserved for blocking commands. A BLPOP on the shared multiplexed connection
/// would hold up every command queued behind it, so each waiter takes its own connection.
pub(crate) struct BlockingPool {
    client: Client,
    idle: Mutex<Vec<MultiplexedConnection>>,
}

enum BlockError {
    Redis(RedisError),
    NoAnswer,
}

impl BlockingPool {
    pub fn new(client: Client) -> BlockingPool {
        BlockingPool {
            client,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub async fn open(&self) -> RedisResult<MultiplexedConnection> {
        // No response timeout: a BLPOP legitimately stays silent; `blpop` bounds it instead.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(None);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    pub fn put_back(&self, conn: MultiplexedConnection) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(conn);
        }
    }

    fn take(&self) -> Option<MultiplexedConnection> {
        self.idle.lock().ok().and_then(|mut idle| idle.pop())
    }

    /// Pops one wake-up token, waiting at most `timeout`. A connection goes back to the pool only
    /// after its BLPOP answered; if the caller gives up midway (the future is dropped), the
    /// connection is dropped with it, so no later BLPOP queues behind a stale one.
    pub async fn blpop(&self, key: &str, timeout: Duration) -> Result<(), StateError> {
        if let Some(conn) = self.take() {
            match blpop_on(conn, key, timeout).await {
                Ok(conn) => {
                    self.put_back(conn);
                    return Ok(());
                }
                // An idle connection may have died meanwhile (Redis restarted): try a fresh one.
                Err(BlockError::Redis(e)) if e.is_io_error() || e.is_connection_dropped() => {
                    tracing::debug!(error = %e, "idle blocking connection failed; reconnecting");
                }
                Err(e) => return Err(e.into()),
            }
        }
        let conn = self.open().await.map_err(error::map)?;
        let conn = blpop_on(conn, key, timeout).await?;
        self.put_back(conn);
        Ok(())
    }
}

async fn blpop_on(
    mut conn: MultiplexedConnection,
    key: &str,
    timeout: Duration,
) -> Result<MultiplexedConnection, BlockError> {
    // Redis takes fractional seconds; 0 would mean "forever", which the caller rules out.
    let secs = format!("{:.3}", timeout.as_secs_f64().max(0.001));
    let mut cmd = redis::cmd("BLPOP");
    cmd.arg(key).arg(secs);
    match tokio::time::timeout(
        timeout + BLOCK_GRACE,
        cmd.query_async::<redis::Value>(&mut conn),
    )
    .await
    {
        Ok(Ok(_)) => Ok(conn),
        Ok(Err(e)) => Err(BlockError::Redis(e)),
        Err(_) => Err(BlockError::NoAnswer),
    }
}

impl From<BlockError> for StateError {
    fn from(e: BlockError) -> StateError {
        match e {
            BlockError::Redis(e) => error::map(e),
            BlockError::NoAnswer => {
                StateError::Unavailable("Redis did not answer a blocking wait in time".into())
            }
        }
    }
}
