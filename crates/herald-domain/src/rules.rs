//! The dispatch rules of DESIGN §2 as data. [`Rules::seed`] is the original system's table; a
//! config file may override priority, delay and max attempts per rule.

use serde::{Deserialize, Serialize};

use crate::event::{self, EventData, RecordedEvent};
use crate::job::{JobName, JobPayload, JobSpec};
use crate::request::Status;

/// Longest delay a rule or a `Retry-After` can impose.
pub const MAX_DELAY_MS: u64 = 3_600_000;
/// Max attempts of a message request when no rule sets one (DESIGN §3).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// How long a dispatched job waits before it may run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Delay {
    Fixed {
        ms: u64,
    },
    /// `base_ms * 2^(attempt-1)`, capped at `max_ms`, minus up to `jitter` (0..=1) of itself.
    Exponential {
        base_ms: u64,
        max_ms: u64,
        #[serde(default)]
        jitter: f64,
    },
}

impl Delay {
    /// `unit` is a number in [0, 1) that the caller derives from the event id, so replaying an
    /// event computes the same delay.
    pub fn compute(&self, attempt: u32, unit: f64) -> u64 {
        match *self {
            Delay::Fixed { ms } => ms.min(MAX_DELAY_MS),
            Delay::Exponential {
                base_ms,
                max_ms,
                jitter,
            } => {
                let exp = attempt.saturating_sub(1).min(40);
                let raw = base_ms
                    .saturating_mul(1u64 << exp)
                    .min(max_ms)
                    .min(MAX_DELAY_MS);
                let cut = (raw as f64 * jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0)) as u64;
                raw - cut.min(raw)
            }
        }
    }
}

/// One row of the dispatch table.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub event_type: &'static str,
    /// When set, the rule only fires if the event sets the request's status to this value.
    pub when_status: Option<Status>,
    pub job: JobName,
    pub priority: i32,
    pub delay: Delay,
    pub reason: Option<String>,
    /// For the retry rule: the attempts after which a request is dead-lettered.
    pub max_attempts: Option<u32>,
}

/// The dispatch table.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules::seed()
    }
}

impl Rules {
    /// The seed's table, exactly (DESIGN §2), plus one row of Herald's own: a
    /// `MessageRequestBatchAccepted` dispatches the `createMessageRequests` job that writes it.
    pub fn seed() -> Rules {
        Rules {
            rules: vec![
                Rule {
                    event_type: event::CREATED,
                    when_status: None,
                    job: JobName::Send,
                    priority: 0,
                    delay: Delay::Fixed { ms: 0 },
                    reason: None,
                    max_attempts: None,
                },
                Rule {
                    event_type: event::FAILED,
                    when_status: None,
                    job: JobName::Retry,
                    priority: 1,
                    delay: Delay::Fixed { ms: 5000 },
                    reason: Some("Event-driven retry after failure".into()),
                    max_attempts: Some(DEFAULT_MAX_ATTEMPTS),
                },
                // Herald's own addition: a durable batch dispatches the job that writes it.
                Rule {
                    event_type: event::BATCH_ACCEPTED,
                    when_status: None,
                    job: JobName::Create,
                    priority: 0,
                    delay: Delay::Fixed { ms: 0 },
                    reason: None,
                    max_attempts: None,
                },
                Rule {
                    event_type: event::UPDATED,
                    when_status: Some(Status::Pending),
                    job: JobName::Send,
                    priority: 0,
                    delay: Delay::Fixed { ms: 0 },
                    reason: None,
                    max_attempts: None,
                },
            ],
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Overrides the rule for `event_type`; `None` leaves a value as it was. Returns false when no
    /// rule exists for that event type.
    pub fn override_rule(
        &mut self,
        event_type: &str,
        priority: Option<i32>,
        delay: Option<Delay>,
        max_attempts: Option<u32>,
    ) -> bool {
        let Some(rule) = self.rules.iter_mut().find(|r| r.event_type == event_type) else {
            return false;
        };
        if let Some(p) = priority {
            rule.priority = p;
        }
        if let Some(d) = delay {
            rule.delay = d;
        }
        if max_attempts.is_some() {
            rule.max_attempts = max_attempts;
        }
        true
    }

    /// Attempts after which the retry job dead-letters a request.
    pub fn max_attempts(&self) -> u32 {
        self.rules
            .iter()
            .find_map(|r| {
                (r.job == JobName::Retry)
                    .then_some(r.max_attempts)
                    .flatten()
            })
            .unwrap_or(DEFAULT_MAX_ATTEMPTS)
    }

    /// The job (at most one) that `event` dispatches once projected. `data` is the decoded payload
    /// (`None` for events Herald cannot decode, which dispatch nothing). Events whose stream id is
    /// not a message request id dispatch nothing either; the projector logs those.
    pub fn dispatch(&self, event: &RecordedEvent, data: Option<&EventData>) -> Option<JobSpec> {
        let message_request_id = event.message_request_id()?;
        let data = data?;
        let rule = self.rules.iter().find(|r| {
            r.event_type == event.event_type
                && match r.when_status {
                    None => true,
                    Some(want) => matches!(data, EventData::MessageRequestUpdated(u) if u.status == Some(want)),
                }
        })?;
        let attempt = match data {
            EventData::MessageRequestFailed(f) => f.attempt,
            _ => 1,
        };
        let mut delay_ms = rule.delay.compute(attempt, unit_from(event.event_id));
        if let EventData::MessageRequestFailed(f) = data
            && let Some(after) = f.retry_after_ms
        {
            delay_ms = delay_ms.max(after).min(MAX_DELAY_MS);
        }
        let payload = JobPayload {
            tenant: event.tenant.clone(),
            message_request_id,
            event_id: event.event_id,
            reason: rule.reason.clone(),
        };
        Some(JobSpec {
            id: event.event_id.to_string(),
            name: rule.job,
            priority: rule.priority,
            delay_ms,
            payload: serde_json::to_value(payload).unwrap_or_default(),
        })
    }
}

/// A deterministic number in [0, 1) from an id, used as jitter.
fn unit_from(id: uuid::Uuid) -> f64 {
    let b = id.as_u128();
    // The low 53 bits of a UUIDv7/v4 are random.
    ((b & ((1u128 << 53) - 1)) as f64) / ((1u64 << 53) as f64)
}

#[cfg(test)]
mod tests;
