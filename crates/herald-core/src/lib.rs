//! Herald's core: the ports every backend implements and the loops that run on top of them.
//!
//! - [`store`]: the [`EventStore`] port — append-only streams with optimistic concurrency, a global
//!   order a subscriber can follow, and durable client idempotency keys.
//! - [`state`]: the [`StateBackend`] port — read models, the job queue and the projector checkpoint,
//!   with one atomic [`StateBackend::apply`] that projects a batch, enqueues its jobs and moves the
//!   checkpoint together.
//! - [`channel`]: the [`Channel`](channel::DeliveryChannel) port that delivers one message.
//! - [`projector`]: follows the event store and applies DESIGN §2's rules.
//! - [`worker`]: leases jobs and runs the send, retry and create handlers of DESIGN §3.
//! - [`service`]: the operations the API and the CLI share (create, patch, requeue, history).
//! - [`testkit`] (feature `testkit`): the conformance suites every backend runs.

pub mod channel;
pub mod projector;
pub mod service;
pub mod state;
pub mod store;
pub mod worker;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use state::{StateBackend, StateError};
pub use store::{EventStore, StoreError};
