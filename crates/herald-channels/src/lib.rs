//! Delivery channels. Each implements [`herald_core::channel::DeliveryChannel`]: it delivers one
//! message and classifies the outcome, nothing more.
//!
//! - [`webhook`]: HTTP POST signed the Standard Webhooks way.
//! - [`email`]: SMTP through a relay, the request id as Message-ID.
//! - [`log`]: one JSON line per message, to a file, stdout or nowhere (benchmarks).
//! - [`signature`]: the Standard Webhooks signature, shared with receivers that verify it.

pub mod email;
pub mod log;
pub mod signature;
pub mod webhook;

pub use email::{EmailChannel, EmailConfig};
pub use log::LogChannel;
pub use webhook::{WebhookChannel, WebhookConfig};
