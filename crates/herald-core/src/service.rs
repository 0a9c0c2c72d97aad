//! The operations the HTTP API and the CLI share. Reads of one request fold its stream from the
//! event store, so a client always reads its own writes; lists come from the read models.

use std::sync::Arc;

use chrono::Utc;
use herald_domain::command::decide_requeue;
use herald_domain::event::{BatchAccepted, BatchItem};
use herald_domain::{
    CreateRequest, DomainError, EventData, EventMetadata, MessageRequest, NewEvent, Patch,
    RecordedEvent,
};
use uuid::Uuid;

use crate::state::{ListQuery, Page, StateBackend, StateError};
use crate::store::{AppendStream, EventStore, IdempotencyRecord, StoreError};

/// Most requests accepted in one batch.
pub const MAX_BATCH: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("message request not found")]
    NotFound,
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The change is not legal now (an illegal transition, a concurrent change).
    #[error("{0}")]
    Conflict(String),
    /// The idempotency key was used before with a different body.
    #[error("idempotency key {key:?} was already used with a different request body")]
    IdempotencyMismatch { key: String },
    #[error("{0}")]
    Unavailable(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::VersionConflict { .. } => ServiceError::Conflict(
                "the request changed concurrently; read it again and retry".into(),
            ),
            other => ServiceError::Unavailable(other.to_string()),
        }
    }
}

impl From<StateError> for ServiceError {
    fn from(e: StateError) -> Self {
        ServiceError::Unavailable(e.to_string())
    }
}

impl From<DomainError> for ServiceError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::InvalidInput { field, message } => {
                ServiceError::Invalid { field, message }
            }
            DomainError::InvalidTransition(m) => ServiceError::Conflict(m),
        }
    }
}

/// Result of a create: the request and whether this call created it (false: an idempotent replay).
#[derive(Debug, Clone)]
pub struct Created {
    pub request: MessageRequest,
    pub created: bool,
}

#[derive(Clone)]
pub struct Service {
    store: Arc<dyn EventStore>,
    state: Arc<dyn StateBackend>,
}

impl Service {
    pub fn new(store: Arc<dyn EventStore>, state: Arc<dyn StateBackend>) -> Service {
        Service { store, state }
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    pub fn state(&self) -> &Arc<dyn StateBackend> {
        &self.state
    }

    /// Creates one request. With an idempotency key, a repeat with the same `body_hash` returns
    /// the original request; another body is refused.
    pub async fn create(
        &self,
        tenant: &str,
        mut req: CreateRequest,
        idempotency_key: Option<String>,
        body_hash: String,
        correlation_id: Option<String>,
    ) -> Result<Created, ServiceError> {
        if idempotency_key.is_some() {
            req.idempotency_key = idempotency_key.clone();
        }
        let key = req.idempotency_key.clone();
        let data = req.into_event()?;
        if let Some(key) = &key
            && let Some(existing) = self.store.idempotency_lookup(tenant, key).await?
        {
            return self.replay(existing, key, &body_hash).await;
        }
        let id = Uuid::now_v7();
        let meta = EventMetadata {
            correlation_id: Some(correlation_id.unwrap_or_else(|| id.to_string())),
            causation_id: None,
        };
        let event = NewEvent::new(tenant, &data, meta, Utc::now());
        let res = self
            .store
            .append(AppendStream {
                stream_id: id.to_string(),
                expected_version: 0,
                events: vec![event],
                idempotency: key.clone().map(|key| IdempotencyRecord {
                    tenant: tenant.to_string(),
                    key,
                    request_id: id,
                    body_hash: body_hash.clone(),
                }),
            })
            .await;
        match res {
            Ok(recorded) => {
                let request = MessageRequest::fold(&recorded).ok_or_else(|| {
                    ServiceError::Unavailable("created event could not be read back".into())
                })?;
                Ok(Created {
                    request,
                    created: true,
                })
            }
            // Two concurrent creates with one key: the loser answers like a replay.
            Err(StoreError::IdempotencyKeyUsed { existing }) => {
                let key = existing.key.clone();
                self.replay(existing, &key, &body_hash).await
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn replay(
        &self,
        existing: IdempotencyRecord,
        key: &str,
        body_hash: &str,
    ) -> Result<Created, ServiceError> {
        if existing.body_hash != body_hash {
            return Err(ServiceError::IdempotencyMismatch {
                key: key.to_string(),
            });
        }
        let request = self.load(&existing.tenant, existing.request_id).await?;
        Ok(Created {
            request,
            created: false,
        })
    }

    /// Validates a batch and records it as one `MessageRequestBatchAccepted` event in a stream of
    /// its own; the projector then dispatches the `createMessageRequests` job that writes the
    /// requests. Recording the batch as an event (not only as a job) means a state backend that
    /// loses everything still gets the job back on replay. Returns the ids assigned, in input
    /// order. Nothing is written unless every item is valid.
    pub async fn create_batch(
        &self,
        tenant: &str,
        items: Vec<CreateRequest>,
    ) -> Result<Vec<Uuid>, ServiceError> {
        if items.is_empty() || items.len() > MAX_BATCH {
            return Err(ServiceError::Invalid {
                field: "items".into(),
                message: format!("must hold 1 to {MAX_BATCH} requests, got {}", items.len()),
            });
        }
        let mut prepared = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            if item.idempotency_key.is_some() {
                return Err(ServiceError::Invalid {
                    field: format!("items[{i}].idempotency_key"),
                    message:
                        "is not supported in a batch; create the request on its own to use one"
                            .into(),
                });
            }
            let data = item.into_event().map_err(|e| match e {
                DomainError::InvalidInput { field, message } => ServiceError::Invalid {
                    field: format!("items[{i}].{field}"),
                    message,
                },
                other => other.into(),
            })?;
            prepared.push(BatchItem {
                id: Uuid::now_v7(),
                data: data.to_json(),
            });
        }
        let ids: Vec<Uuid> = prepared.iter().map(|p| p.id).collect();
        let batch_id = Uuid::now_v7();
        let event = NewEvent::new(
            tenant,
            &EventData::MessageRequestBatchAccepted(BatchAccepted { items: prepared }),
            EventMetadata {
                correlation_id: Some(batch_id.to_string()),
                causation_id: None,
            },
            Utc::now(),
        );
        self.store
            .append(AppendStream {
                stream_id: batch_id.to_string(),
                expected_version: 0,
                events: vec![event],
                idempotency: None,
            })
            .await?;
        Ok(ids)
    }

    /// The request as its events say now. Another tenant's id is `NotFound` (DESIGN §4.5).
    pub async fn load(&self, tenant: &str, id: Uuid) -> Result<MessageRequest, ServiceError> {
        let events = self.store.read_stream(&id.to_string()).await?;
        match MessageRequest::fold(&events) {
            Some(r) if r.tenant == tenant => Ok(r),
            _ => Err(ServiceError::NotFound),
        }
    }

    /// The request's event history (the audit trail).
    pub async fn history(
        &self,
        tenant: &str,
        id: Uuid,
    ) -> Result<Vec<RecordedEvent>, ServiceError> {
        let events = self.store.read_stream(&id.to_string()).await?;
        match events.first() {
            Some(e) if e.tenant == tenant => Ok(events),
            _ => Err(ServiceError::NotFound),
        }
    }

    /// Any tenant's history (operators' `herald events <id>`).
    pub async fn history_any(&self, id: &str) -> Result<Vec<RecordedEvent>, ServiceError> {
        let events = self.store.read_stream(id).await?;
        if events.is_empty() {
            return Err(ServiceError::NotFound);
        }
        Ok(events)
    }

    pub async fn patch(
        &self,
        tenant: &str,
        id: Uuid,
        patch: Patch,
    ) -> Result<MessageRequest, ServiceError> {
        let state = self.load(tenant, id).await?;
        match patch.decide(&state)? {
            None => Ok(state),
            Some(event) => self.write(&state, event).await,
        }
    }

    /// Requeues a dead-lettered request. `tenant` `None` is an operator acting for any tenant.
    pub async fn requeue(
        &self,
        tenant: Option<&str>,
        id: Uuid,
    ) -> Result<MessageRequest, ServiceError> {
        let events = self.store.read_stream(&id.to_string()).await?;
        let state = match MessageRequest::fold(&events) {
            Some(r) if tenant.is_none_or(|t| t == r.tenant) => r,
            _ => return Err(ServiceError::NotFound),
        };
        let event = decide_requeue(&state)?;
        self.write(&state, event).await
    }

    async fn write(
        &self,
        state: &MessageRequest,
        event: EventData,
    ) -> Result<MessageRequest, ServiceError> {
        let new = NewEvent::new(
            &state.tenant,
            &event,
            EventMetadata {
                correlation_id: Some(state.id.to_string()),
                causation_id: None,
            },
            Utc::now(),
        );
        let recorded = self
            .store
            .append(AppendStream {
                stream_id: state.id.to_string(),
                expected_version: state.version,
                events: vec![new],
                idempotency: None,
            })
            .await?;
        let mut s = Some(state.clone());
        for e in &recorded {
            if let Ok(d) = e.decode() {
                s = MessageRequest::apply(s, e, &d);
            }
        }
        s.ok_or_else(|| ServiceError::Unavailable("state lost while applying".into()))
    }

    pub async fn list(&self, query: ListQuery) -> Result<Page, ServiceError> {
        Ok(self.state.list(query).await?)
    }
}
