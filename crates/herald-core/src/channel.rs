//! The delivery channel port. A channel delivers one message and classifies the result; it never
//! touches the event store or the queue (the send job records the outcome).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use herald_domain::{Channel, DeliveryOutcome, MessageRequest};

#[async_trait]
pub trait DeliveryChannel: Send + Sync + 'static {
    /// Delivers `request` (attempt number `attempt`). Implementations enforce their own timeout
    /// and classify errors as DESIGN §3 says (timeouts, connection errors, 5xx, 408 and 429 are
    /// retryable; other 4xx and invalid recipients are not).
    async fn deliver(&self, request: &MessageRequest, attempt: u32) -> DeliveryOutcome;
}

/// The configured channels, by kind.
#[derive(Clone, Default)]
pub struct Channels {
    by_kind: HashMap<Channel, Arc<dyn DeliveryChannel>>,
}

impl Channels {
    pub fn new() -> Channels {
        Channels::default()
    }

    pub fn with(mut self, kind: Channel, channel: Arc<dyn DeliveryChannel>) -> Channels {
        self.by_kind.insert(kind, channel);
        self
    }

    pub async fn deliver(&self, request: &MessageRequest, attempt: u32) -> DeliveryOutcome {
        match self.by_kind.get(&request.channel) {
            Some(c) => c.deliver(request, attempt).await,
            // A request for a channel this deployment does not run cannot succeed by retrying.
            None => DeliveryOutcome::Rejected {
                error: format!("channel {} is not configured", request.channel.as_str()),
                retryable: false,
                retry_after_ms: None,
            },
        }
    }
}
