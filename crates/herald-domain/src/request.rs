//! The message request read model and the fold that builds it from events.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{EventData, RecordedEvent};

/// Lifecycle status of a message request (DESIGN §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Pending,
    Failed,
    Sent,
    Dead,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Failed,
        Status::Sent,
        Status::Dead,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Failed => "FAILED",
            Status::Sent => "SENT",
            Status::Dead => "DEAD",
            Status::Cancelled => "CANCELLED",
        }
    }

    /// Terminal statuses need no further work from Herald (a client may still resend).
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Sent | Status::Dead | Status::Cancelled)
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Delivery channel of a message request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Webhook,
    Email,
    Log,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::Email => "email",
            Channel::Log => "log",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "webhook" => Some(Channel::Webhook),
            "email" => Some(Channel::Email),
            "log" => Some(Channel::Log),
            _ => None,
        }
    }
}

/// The current state of one message request: the fold of its event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRequest {
    pub id: Uuid,
    pub tenant: String,
    pub channel: Channel,
    pub recipient: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub body: serde_json::Value,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub status: Status,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Stream version of the last applied event.
    pub version: u64,
    /// Event id of the latest `MessageRequestFailed`, so a retry job can tell whether it is stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failed_event: Option<Uuid>,
    /// Whether the latest failure was retryable.
    #[serde(default)]
    pub last_failure_retryable: bool,
}

impl MessageRequest {
    /// Applies one recorded event. `None` state only accepts a `MessageRequestCreated`; events that
    /// cannot apply (an old version, an update before creation) leave the state unchanged, which is
    /// what makes re-applying a batch harmless.
    pub fn apply(
        state: Option<MessageRequest>,
        event: &RecordedEvent,
        data: &EventData,
    ) -> Option<MessageRequest> {
        let id = event.message_request_id()?;
        match (state, data) {
            (None, EventData::MessageRequestCreated(c)) => Some(MessageRequest {
                id,
                tenant: event.tenant.clone(),
                channel: c.channel,
                recipient: c.recipient.clone(),
                subject: c.subject.clone(),
                body: c.body.clone(),
                metadata: c.metadata.clone(),
                idempotency_key: c.idempotency_key.clone(),
                status: Status::Pending,
                attempts: 0,
                last_error: None,
                created_at: event.timestamp,
                updated_at: event.timestamp,
                version: event.version,
                last_failed_event: None,
                last_failure_retryable: false,
            }),
            (None, _) => None,
            (Some(s), _) if event.version <= s.version => Some(s),
            (Some(mut s), data) => {
                match data {
                    EventData::MessageRequestCreated(_) => return Some(s),
                    EventData::MessageRequestUpdated(u) => {
                        if let Some(r) = &u.recipient {
                            s.recipient = r.clone();
                        }
                        if let Some(sub) = &u.subject {
                            s.subject = Some(sub.clone());
                        }
                        if let Some(b) = &u.body {
                            s.body = b.clone();
                        }
                        if let Some(m) = &u.metadata {
                            s.metadata = m.clone();
                        }
                        if let Some(st) = u.status {
                            s.status = st;
                            // A retry continues the round of attempts; a resend or requeue starts a
                            // fresh one (DESIGN §1). The history keeps every earlier attempt.
                            if st == Status::Pending
                                && u.reason.as_deref() != Some(crate::command::REASON_RETRY)
                            {
                                s.attempts = 0;
                                s.last_error = None;
                            }
                        }
                    }
                    EventData::MessageRequestFailed(f) => {
                        s.status = Status::Failed;
                        s.attempts = f.attempt;
                        s.last_error = Some(f.error.clone());
                        s.last_failed_event = Some(event.event_id);
                        s.last_failure_retryable = f.retryable;
                    }
                    EventData::MessageRequestSent(x) => {
                        s.status = Status::Sent;
                        s.attempts = x.attempt;
                    }
                    EventData::MessageRequestDeadLettered(d) => {
                        s.status = Status::Dead;
                        s.attempts = d.attempts;
                        s.last_error = Some(d.last_error.clone());
                    }
                    // A batch lives in a stream of its own, never in a request's.
                    EventData::MessageRequestBatchAccepted(_) => return Some(s),
                }
                s.version = event.version;
                s.updated_at = event.timestamp;
                Some(s)
            }
        }
    }

    /// Folds a whole stream. Events that cannot be decoded are skipped.
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a RecordedEvent>) -> Option<MessageRequest> {
        let mut state = None;
        for e in events {
            if let Ok(data) = e.decode() {
                state = MessageRequest::apply(state, e, &data);
            }
        }
        state
    }
}
