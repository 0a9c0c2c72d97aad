//! Events (DESIGN §1) and the envelopes they are stored in.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::request::{Channel, Status};

pub const CREATED: &str = "MessageRequestCreated";
pub const UPDATED: &str = "MessageRequestUpdated";
pub const FAILED: &str = "MessageRequestFailed";
pub const SENT: &str = "MessageRequestSent";
pub const DEAD_LETTERED: &str = "MessageRequestDeadLettered";
/// A batch accepted by the API, recorded in a stream of its own (the batch id) so that it
/// survives the loss of the state backend; its `createMessageRequests` job writes the requests.
pub const BATCH_ACCEPTED: &str = "MessageRequestBatchAccepted";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Created {
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
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Updated {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failed {
    pub attempt: u32,
    pub error: String,
    pub retryable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sent {
    pub attempt: u32,
    /// A short channel receipt: "HTTP 200", an SMTP reply, "logged".
    pub receipt: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLettered {
    pub attempts: u32,
    pub last_error: String,
}

/// One request of an accepted batch: its assigned id and its `MessageRequestCreated` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchItem {
    pub id: Uuid,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchAccepted {
    pub items: Vec<BatchItem>,
}

/// The payload of each of Herald's events.
#[derive(Debug, Clone, PartialEq)]
pub enum EventData {
    MessageRequestCreated(Created),
    MessageRequestUpdated(Updated),
    MessageRequestFailed(Failed),
    MessageRequestSent(Sent),
    MessageRequestDeadLettered(DeadLettered),
    MessageRequestBatchAccepted(BatchAccepted),
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("malformed {event_type} payload: {source}")]
    Malformed {
        event_type: String,
        source: serde_json::Error,
    },
}

impl EventData {
    pub fn event_type(&self) -> &'static str {
        match self {
            EventData::MessageRequestCreated(_) => CREATED,
            EventData::MessageRequestUpdated(_) => UPDATED,
            EventData::MessageRequestFailed(_) => FAILED,
            EventData::MessageRequestSent(_) => SENT,
            EventData::MessageRequestDeadLettered(_) => DEAD_LETTERED,
            EventData::MessageRequestBatchAccepted(_) => BATCH_ACCEPTED,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let v = match self {
            EventData::MessageRequestCreated(x) => serde_json::to_value(x),
            EventData::MessageRequestUpdated(x) => serde_json::to_value(x),
            EventData::MessageRequestFailed(x) => serde_json::to_value(x),
            EventData::MessageRequestSent(x) => serde_json::to_value(x),
            EventData::MessageRequestDeadLettered(x) => serde_json::to_value(x),
            EventData::MessageRequestBatchAccepted(x) => serde_json::to_value(x),
        };
        // These are plain structs of strings, numbers and JSON values: serialising cannot fail.
        v.unwrap_or(serde_json::Value::Null)
    }

    pub fn decode(event_type: &str, data: &serde_json::Value) -> Result<EventData, DecodeError> {
        fn de<T: serde::de::DeserializeOwned>(
            t: &str,
            v: &serde_json::Value,
        ) -> Result<T, DecodeError> {
            T::deserialize(v).map_err(|source| DecodeError::Malformed {
                event_type: t.to_string(),
                source,
            })
        }
        Ok(match event_type {
            CREATED => EventData::MessageRequestCreated(de(event_type, data)?),
            UPDATED => EventData::MessageRequestUpdated(de(event_type, data)?),
            FAILED => EventData::MessageRequestFailed(de(event_type, data)?),
            SENT => EventData::MessageRequestSent(de(event_type, data)?),
            DEAD_LETTERED => EventData::MessageRequestDeadLettered(de(event_type, data)?),
            BATCH_ACCEPTED => EventData::MessageRequestBatchAccepted(de(event_type, data)?),
            other => return Err(DecodeError::UnknownType(other.to_string())),
        })
    }
}

/// Correlation and causation of an event (DESIGN §1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The event or job that caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
}

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub tenant: String,
    pub timestamp: DateTime<Utc>,
    pub data: serde_json::Value,
    pub metadata: EventMetadata,
}

impl NewEvent {
    pub fn new(
        tenant: &str,
        data: &EventData,
        metadata: EventMetadata,
        now: DateTime<Utc>,
    ) -> NewEvent {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: data.event_type().to_string(),
            tenant: tenant.to_string(),
            timestamp: truncate_ms(now),
            data: data.to_json(),
            metadata,
        }
    }
}

/// A timestamp with whole milliseconds, the precision every event store keeps.
pub fn truncate_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// An event as stored: with its stream version and global position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Global position in the store; strictly increasing in the order a subscriber reads.
    pub position: u64,
    /// The stream id: the message request id for Herald's own events.
    pub stream_id: String,
    /// Version within the stream, starting at 1.
    pub version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub tenant: String,
    pub timestamp: DateTime<Utc>,
    pub data: serde_json::Value,
    #[serde(default)]
    pub metadata: EventMetadata,
}

impl RecordedEvent {
    /// The message request this event belongs to, when its stream id is one.
    pub fn message_request_id(&self) -> Option<Uuid> {
        Uuid::parse_str(&self.stream_id).ok()
    }

    pub fn decode(&self) -> Result<EventData, DecodeError> {
        EventData::decode(&self.event_type, &self.data)
    }
}
