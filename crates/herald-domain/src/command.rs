//! Validation of client input and the legal transitions of a message request. Each decision
//! returns the event to append (or nothing for a no-op) or a [`DomainError`]; it never writes.

use serde::Deserialize;
use uuid::Uuid;

use crate::event::{Created, DeadLettered, EventData, Failed, Sent, Updated};
use crate::request::{Channel, MessageRequest, Status};

/// Reason on the `MessageRequestUpdated` a retry job writes; it keeps the attempt count.
pub const REASON_RETRY: &str = "retry";
/// Reason on a client resend (`PATCH status: PENDING`); it starts a fresh round of attempts.
pub const REASON_RESEND: &str = "resend";
/// Reason on a dead-letter requeue; it starts a fresh round of attempts.
pub const REASON_REQUEUE: &str = "requeue";
/// Reason on a client cancel.
pub const REASON_CANCEL: &str = "cancelled by client";

/// Longest idempotency key, recipient and subject accepted.
pub const MAX_KEY_LEN: usize = 255;
pub const MAX_RECIPIENT_LEN: usize = 2048;
pub const MAX_SUBJECT_LEN: usize = 998;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Client input is wrong; `field` names the offending field.
    #[error("{field}: {message}")]
    InvalidInput { field: String, message: String },
    /// The request exists but the change is not legal in its current status.
    #[error("{0}")]
    InvalidTransition(String),
}

fn invalid(field: &str, message: impl Into<String>) -> DomainError {
    DomainError::InvalidInput {
        field: field.to_string(),
        message: message.into(),
    }
}

/// A new message request as a client submits it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub channel: String,
    pub recipient: String,
    #[serde(default)]
    pub subject: Option<String>,
    pub body: serde_json::Value,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

pub fn validate_recipient(channel: Channel, recipient: &str) -> Result<(), DomainError> {
    if recipient.trim().is_empty() {
        return Err(invalid("recipient", "must not be empty"));
    }
    if recipient.contains('\0') {
        return Err(invalid("recipient", "must not contain NUL characters"));
    }
    if recipient.len() > MAX_RECIPIENT_LEN {
        return Err(invalid(
            "recipient",
            format!("must be at most {MAX_RECIPIENT_LEN} bytes"),
        ));
    }
    match channel {
        Channel::Webhook => {
            let url = url::Url::parse(recipient).map_err(|e| {
                invalid(
                    "recipient",
                    format!("webhook recipient must be an absolute http(s) URL: {e}"),
                )
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty)
            {
                return Err(invalid(
                    "recipient",
                    "webhook recipient must be an absolute http(s) URL",
                ));
            }
        }
        Channel::Email => {
            if !email_address::EmailAddress::is_valid(recipient) {
                return Err(invalid(
                    "recipient",
                    "email recipient must be a valid e-mail address",
                ));
            }
        }
        Channel::Log => {}
    }
    Ok(())
}

/// NUL characters are refused everywhere: PostgreSQL cannot store them in text or JSONB, and
/// behaviour must not depend on the backend.
fn reject_nul(field: &str, v: &serde_json::Value) -> Result<(), DomainError> {
    let bad = match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(a) => return a.iter().try_for_each(|x| reject_nul(field, x)),
        serde_json::Value::Object(m) => {
            if m.keys().any(|k| k.contains('\0')) {
                true
            } else {
                return m.values().try_for_each(|x| reject_nul(field, x));
            }
        }
        _ => false,
    };
    if bad {
        return Err(invalid(field, "must not contain NUL characters"));
    }
    Ok(())
}

fn validate_body(channel: Channel, body: &serde_json::Value) -> Result<(), DomainError> {
    reject_nul("body", body)?;
    match channel {
        // A webhook body is any JSON value.
        Channel::Webhook => Ok(()),
        Channel::Email | Channel::Log if body.is_string() => Ok(()),
        _ => Err(invalid(
            "body",
            format!("a {} body must be a string", channel.as_str()),
        )),
    }
}

fn validate_subject(subject: &str) -> Result<(), DomainError> {
    if subject.len() > MAX_SUBJECT_LEN || subject.contains(['\r', '\n', '\0']) {
        return Err(invalid(
            "subject",
            format!("must be one line of at most {MAX_SUBJECT_LEN} bytes"),
        ));
    }
    Ok(())
}

fn validate_metadata(
    v: serde_json::Value,
) -> Result<serde_json::Map<String, serde_json::Value>, DomainError> {
    reject_nul("metadata", &v)?;
    match v {
        serde_json::Value::Object(m) => Ok(m),
        serde_json::Value::Null => Ok(Default::default()),
        _ => Err(invalid("metadata", "must be a JSON object")),
    }
}

pub fn validate_idempotency_key(key: &str) -> Result<(), DomainError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
        return Err(invalid(
            "idempotency_key",
            format!("must be 1 to {MAX_KEY_LEN} printable characters"),
        ));
    }
    Ok(())
}

impl CreateRequest {
    /// Validates the request and returns the `MessageRequestCreated` payload.
    pub fn into_event(self) -> Result<EventData, DomainError> {
        let channel = Channel::parse(&self.channel).ok_or_else(|| {
            invalid(
                "channel",
                format!(
                    "unknown channel {:?}; use webhook, email or log",
                    self.channel
                ),
            )
        })?;
        validate_recipient(channel, &self.recipient)?;
        validate_body(channel, &self.body)?;
        if let Some(s) = &self.subject {
            validate_subject(s)?;
        }
        if let Some(k) = &self.idempotency_key {
            validate_idempotency_key(k)?;
        }
        let metadata = validate_metadata(self.metadata.unwrap_or(serde_json::Value::Null))?;
        Ok(EventData::MessageRequestCreated(Created {
            channel,
            recipient: self.recipient,
            subject: self.subject,
            body: self.body,
            metadata,
            idempotency_key: self.idempotency_key,
            status: Status::Pending,
        }))
    }
}

/// A client's change to a request (`PATCH /v1/message-requests/{id}`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    #[serde(default)]
    pub recipient: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

impl Patch {
    /// Decides what the patch does to `state`: `Ok(None)` is a no-op (nothing to write).
    pub fn decide(self, state: &MessageRequest) -> Result<Option<EventData>, DomainError> {
        let status = match self.status.as_deref() {
            None => None,
            Some("PENDING") => Some(Status::Pending),
            Some("CANCELLED") => Some(Status::Cancelled),
            Some(other) => {
                return Err(invalid(
                    "status",
                    format!("can only be set to PENDING (resend) or CANCELLED, not {other:?}"),
                ));
            }
        };
        if let Some(r) = &self.reason
            && (r.len() > MAX_SUBJECT_LEN || r.chars().any(char::is_control))
        {
            return Err(invalid(
                "reason",
                format!("must be one line of at most {MAX_SUBJECT_LEN} bytes"),
            ));
        }
        if state.status == Status::Cancelled {
            return Err(DomainError::InvalidTransition(
                "the request is CANCELLED; a cancelled request cannot change".into(),
            ));
        }
        let mut upd = Updated::default();
        if let Some(r) = self.recipient
            && r != state.recipient
        {
            validate_recipient(state.channel, &r)?;
            upd.recipient = Some(r);
        }
        if let Some(s) = self.subject
            && Some(&s) != state.subject.as_ref()
        {
            validate_subject(&s)?;
            upd.subject = Some(s);
        }
        if let Some(b) = self.body
            && b != state.body
        {
            validate_body(state.channel, &b)?;
            upd.body = Some(b);
        }
        if let Some(m) = self.metadata {
            let m = validate_metadata(m)?;
            if m != state.metadata {
                upd.metadata = Some(m);
            }
        }
        let edits = upd.recipient.is_some()
            || upd.subject.is_some()
            || upd.body.is_some()
            || upd.metadata.is_some();
        match status {
            None => {}
            Some(Status::Pending) => match state.status {
                // Already waiting to be sent: a no-op, no event and no job (DESIGN §2).
                Status::Pending => {}
                Status::Failed | Status::Sent | Status::Dead => {
                    upd.status = Some(Status::Pending);
                    upd.reason = Some(self.reason.clone().unwrap_or_else(|| REASON_RESEND.into()));
                }
                Status::Cancelled => {} // refused above
            },
            Some(_cancel) => match state.status {
                Status::Pending | Status::Failed => {
                    upd.status = Some(Status::Cancelled);
                    upd.reason = Some(self.reason.clone().unwrap_or_else(|| REASON_CANCEL.into()));
                }
                Status::Sent | Status::Dead => {
                    return Err(DomainError::InvalidTransition(format!(
                        "the request is {}; only PENDING or FAILED requests can be cancelled",
                        state.status
                    )));
                }
                Status::Cancelled => {} // refused above
            },
        }
        // Fields may change while the request still waits to be sent, or together with a resend
        // of a FAILED or DEAD request (fix the address, send again). A SENT message is history.
        let resending = upd.status == Some(Status::Pending) && state.status != Status::Sent;
        if edits && !matches!(state.status, Status::Pending | Status::Failed) && !resending {
            return Err(DomainError::InvalidTransition(format!(
                "the request is {}; fields can only be edited while it is PENDING or FAILED",
                state.status
            )));
        }
        if !edits && upd.status.is_none() {
            return Ok(None);
        }
        if upd.status.is_none() {
            upd.reason = self.reason;
        }
        Ok(Some(EventData::MessageRequestUpdated(upd)))
    }
}

/// Requeue of a dead-lettered request (`POST /v1/dead-letters/{id}/requeue`, `herald dlq requeue`).
pub fn decide_requeue(state: &MessageRequest) -> Result<EventData, DomainError> {
    if state.status != Status::Dead {
        return Err(DomainError::InvalidTransition(format!(
            "the request is {}; only DEAD requests can be requeued",
            state.status
        )));
    }
    Ok(EventData::MessageRequestUpdated(Updated {
        status: Some(Status::Pending),
        reason: Some(REASON_REQUEUE.into()),
        ..Default::default()
    }))
}

/// The outcome of one delivery attempt, as a channel reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    Accepted {
        receipt: String,
    },
    Rejected {
        error: String,
        retryable: bool,
        retry_after_ms: Option<u64>,
    },
}

/// The event a send job appends after an attempt.
pub fn record_attempt(state: &MessageRequest, outcome: DeliveryOutcome) -> EventData {
    let attempt = state.attempts + 1;
    match outcome {
        DeliveryOutcome::Accepted { receipt } => {
            EventData::MessageRequestSent(Sent { attempt, receipt })
        }
        DeliveryOutcome::Rejected {
            error,
            retryable,
            retry_after_ms,
        } => EventData::MessageRequestFailed(Failed {
            attempt,
            error,
            retryable,
            retry_after_ms,
        }),
    }
}

/// What a retry job does (DESIGN §3).
#[derive(Debug, Clone, PartialEq)]
pub enum RetryDecision {
    /// The job is stale; complete it without writing. The string says why.
    Skip(&'static str),
    Retry(EventData),
    DeadLetter(EventData),
}

pub fn decide_retry(
    state: &MessageRequest,
    failed_event: Uuid,
    max_attempts: u32,
) -> RetryDecision {
    if state.status != Status::Failed {
        return RetryDecision::Skip("request is no longer FAILED");
    }
    if state.last_failed_event != Some(failed_event) {
        return RetryDecision::Skip("a newer failure superseded this retry");
    }
    if state.last_failure_retryable && state.attempts < max_attempts {
        RetryDecision::Retry(EventData::MessageRequestUpdated(Updated {
            status: Some(Status::Pending),
            reason: Some(REASON_RETRY.into()),
            ..Default::default()
        }))
    } else {
        RetryDecision::DeadLetter(EventData::MessageRequestDeadLettered(DeadLettered {
            attempts: state.attempts,
            last_error: state.last_error.clone().unwrap_or_default(),
        }))
    }
}
