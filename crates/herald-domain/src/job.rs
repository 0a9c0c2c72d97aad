//! Jobs the projector dispatches and the workers run.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The seed's job names (DESIGN §2, §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobName {
    #[serde(rename = "queueSendMessageRequest")]
    Send,
    #[serde(rename = "queueRetryFailedMessageRequest")]
    Retry,
    #[serde(rename = "createMessageRequests")]
    Create,
}

impl JobName {
    pub const ALL: [JobName; 3] = [JobName::Send, JobName::Retry, JobName::Create];

    pub fn as_str(self) -> &'static str {
        match self {
            JobName::Send => "queueSendMessageRequest",
            JobName::Retry => "queueRetryFailedMessageRequest",
            JobName::Create => "createMessageRequests",
        }
    }

    pub fn parse(s: &str) -> Option<JobName> {
        JobName::ALL.into_iter().find(|n| n.as_str() == s)
    }
}

impl std::fmt::Display for JobName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Payload of a send or retry job (DESIGN §2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobPayload {
    pub tenant: String,
    pub message_request_id: Uuid,
    /// The event that caused this job.
    pub event_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A job as the projector dispatches it: the queue stores it as given.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// Derived from the causing event id, so replaying the event never enqueues a second job.
    pub id: String,
    pub name: JobName,
    /// A larger number is more urgent.
    pub priority: i32,
    pub delay_ms: u64,
    pub payload: serde_json::Value,
}
