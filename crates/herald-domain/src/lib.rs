//! Herald's domain: what a message request is, which events change it, which changes are legal,
//! and which job each event dispatches. Nothing here performs I/O: no Redis, SQL, HTTP or clock.
//! Callers pass the current time and identifiers in, so every function is deterministic and the
//! same code runs in the API, the projector and the workers.
//!
//! - [`request`]: [`MessageRequest`], [`Status`], [`Channel`] and the fold of events into state.
//! - [`event`]: the five events of DESIGN §1 and the envelope they travel in.
//! - [`command`]: validation of new requests and patches; the transitions that produce events.
//! - [`rules`]: DESIGN §2's dispatch table as data, with overridable priorities, delays and limits.
//! - [`job`]: job names and payloads shared by the projector and the workers.

pub mod command;
pub mod event;
pub mod job;
pub mod request;
pub mod rules;

pub use command::{CreateRequest, DeliveryOutcome, DomainError, Patch, RetryDecision};
pub use event::{EventData, EventMetadata, NewEvent, RecordedEvent};
pub use job::{JobName, JobPayload, JobSpec};
pub use request::{Channel, MessageRequest, Status};
pub use rules::{Delay, Rule, Rules};
