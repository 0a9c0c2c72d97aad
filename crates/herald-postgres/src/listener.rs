//! The LISTEN task: one per store, on its own connection, fanning notifications out through the
//! store's head watch so any number of `wait_for_events` callers wake from one connection.
//!
//! Append transactions `pg_notify` their last position on the schema's channel; PostgreSQL delivers
//! it at commit, to every process listening (appends made by this process also bump the watch
//! directly, without the round trip). Notifications are not durable: any sent while this task was
//! reconnecting are lost, so after every (re)connection it re-reads the head, and waiters re-read
//! it every `recheck_interval` as well.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tracing::{debug, info, warn};

use crate::store::Shared;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs until aborted (when the store is dropped). `pool` holds the one LISTEN connection.
pub(crate) async fn run(shared: Arc<Shared>, pool: PgPool) {
    let channel = shared.sql.channel.clone();
    let mut backoff = MIN_BACKOFF;
    loop {
        match listen(&shared, &pool, &channel).await {
            Ok(()) => backoff = MIN_BACKOFF,
            Err(e) => {
                warn!(error = %e, channel, retry_in_ms = backoff.as_millis() as u64, "event store LISTEN connection failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Listens until the connection fails in a way `PgListener` does not recover from by itself.
async fn listen(shared: &Shared, pool: &PgPool, channel: &str) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    debug!(channel, "listening for appends");
    // Whatever was appended before LISTEN took effect was never notified to us.
    catch_up(shared).await;
    loop {
        match listener.try_recv().await? {
            Some(n) => match n.payload().parse::<u64>() {
                Ok(position) => shared.advance_head(position),
                Err(_) => catch_up(shared).await,
            },
            // The connection dropped and PgListener has reconnected and re-subscribed; whatever
            // was notified in between is lost.
            None => {
                info!(channel, "event store LISTEN connection re-established");
                catch_up(shared).await;
            }
        }
    }
}

async fn catch_up(shared: &Shared) {
    match shared.read_head().await {
        Ok(head) => shared.advance_head(head),
        Err(e) => debug!(error = %e, "could not re-read the head after (re)connecting"),
    }
}
