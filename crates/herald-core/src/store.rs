//! The event store port.
//!
//! Contract, checked by [`crate::testkit::event_store`]:
//! - A stream's versions start at 1 and have no gaps; an append states the version it expects
//!   the stream to be at (0 for a new stream) and fails with [`StoreError::VersionConflict`]
//!   otherwise, writing nothing.
//! - Every event gets a global `position`. [`EventStore::read_all`] returns events in position
//!   order and **never returns an event at a position below one it already returned**: a position
//!   is only readable once no earlier position can still appear (gap safety).
//! - An append may claim a client idempotency key for a tenant, atomically with its events.

use std::time::Duration;

use async_trait::async_trait;
use herald_domain::{NewEvent, RecordedEvent};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("stream {stream_id} is at version {actual}, expected {expected}")]
    VersionConflict {
        stream_id: String,
        expected: u64,
        actual: u64,
    },
    /// The idempotency key was already used; `existing` is what it was used for.
    #[error("idempotency key already used for request {}", existing.request_id)]
    IdempotencyKeyUsed { existing: IdempotencyRecord },
    /// The backend cannot be reached or failed; retrying later may succeed.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back (corruption, an incompatible schema).
    #[error("event store data error: {0}")]
    Data(String),
}

/// A client idempotency key, stored with the `MessageRequestCreated` it produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub tenant: String,
    pub key: String,
    pub request_id: Uuid,
    /// A hash of the request body, so a reuse with another body can be told apart.
    pub body_hash: String,
}

/// Events for one stream, appended together or not at all.
#[derive(Debug, Clone)]
pub struct AppendStream {
    pub stream_id: String,
    /// The version the stream must be at: 0 for a stream that must not exist yet.
    pub expected_version: u64,
    pub events: Vec<NewEvent>,
    pub idempotency: Option<IdempotencyRecord>,
}

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends to several streams in one round trip. Each stream succeeds or fails on its own;
    /// the outer error means nothing could be attempted (the backend is down).
    async fn append_many(
        &self,
        batch: Vec<AppendStream>,
    ) -> Result<Vec<Result<Vec<RecordedEvent>, StoreError>>, StoreError>;

    /// Events after `after` (exclusive) in position order, at most `limit`.
    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// A stream's whole history, in version order (empty when the stream does not exist).
    async fn read_stream(&self, stream_id: &str) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Several streams' histories in one round trip, keyed by stream id (streams that do not
    /// exist are left out). Workers use it to load many jobs' requests at once.
    async fn read_streams(
        &self,
        stream_ids: &[String],
    ) -> Result<std::collections::HashMap<String, Vec<RecordedEvent>>, StoreError> {
        let mut out = std::collections::HashMap::new();
        for id in stream_ids {
            let events = self.read_stream(id).await?;
            if !events.is_empty() {
                out.insert(id.clone(), events);
            }
        }
        Ok(out)
    }

    /// The highest position [`EventStore::read_all`] can return now (0 when empty).
    async fn head(&self) -> Result<u64, StoreError>;

    /// Returns when an event after `after` may be readable, or after `timeout`. Implementations
    /// wake promptly on appends (in-process notify, LISTEN/NOTIFY); spurious wake-ups are allowed.
    async fn wait_for_events(&self, after: u64, timeout: Duration) -> Result<(), StoreError>;

    /// The record of a client idempotency key, if it was used.
    async fn idempotency_lookup(
        &self,
        tenant: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Appends to one stream.
    async fn append(&self, stream: AppendStream) -> Result<Vec<RecordedEvent>, StoreError> {
        self.append_many(vec![stream])
            .await?
            .pop()
            .unwrap_or_else(|| Err(StoreError::Data("append returned no result".into())))
    }
}
