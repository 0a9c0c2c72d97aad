//! The e-mail channel: SMTP through lettre. Plain SMTP to a relay the operator runs (a local MTA
//! or a provider's relay on a private network); the relay does TLS to the outside world.

use std::time::Duration;

use async_trait::async_trait;
use herald_core::channel::DeliveryChannel;
use herald_domain::{DeliveryOutcome, MessageRequest};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// SMTP relay host.
    pub host: String,
    pub port: u16,
    /// Sender of every message, e.g. `Herald <herald@example.com>`.
    pub from: String,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum EmailConfigError {
    #[error("smtp_url must look like smtp://HOST:PORT, got {0:?}")]
    Url(String),
    #[error("email_from is not an address: {0}")]
    From(String),
}

impl EmailConfig {
    /// From `smtp://HOST[:PORT]` (port 25 by default).
    pub fn from_url(
        url: &str,
        from: &str,
        timeout: Duration,
    ) -> Result<EmailConfig, EmailConfigError> {
        let u = url::Url::parse(url).map_err(|_| EmailConfigError::Url(url.to_string()))?;
        let host = u
            .host_str()
            .filter(|_| u.scheme() == "smtp")
            .ok_or_else(|| EmailConfigError::Url(url.to_string()))?;
        from.parse::<Mailbox>()
            .map_err(|e| EmailConfigError::From(e.to_string()))?;
        Ok(EmailConfig {
            host: host.to_string(),
            port: u.port().unwrap_or(25),
            from: from.to_string(),
            timeout,
        })
    }
}

pub struct EmailChannel {
    mailer: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl EmailChannel {
    pub fn new(cfg: EmailConfig) -> Result<EmailChannel, EmailConfigError> {
        let from = cfg
            .from
            .parse::<Mailbox>()
            .map_err(|e| EmailConfigError::From(e.to_string()))?;
        let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host)
            .port(cfg.port)
            .timeout(Some(cfg.timeout))
            .build();
        Ok(EmailChannel { mailer, from })
    }
}

fn rejected(error: String, retryable: bool) -> DeliveryOutcome {
    DeliveryOutcome::Rejected {
        error,
        retryable,
        retry_after_ms: None,
    }
}

#[async_trait]
impl DeliveryChannel for EmailChannel {
    async fn deliver(&self, request: &MessageRequest, _attempt: u32) -> DeliveryOutcome {
        let to = match request.recipient.parse::<Mailbox>() {
            Ok(to) => to,
            Err(e) => return rejected(format!("invalid recipient address: {e}"), false),
        };
        let body = match &request.body {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        // The request id is the Message-ID: every attempt of one request carries the same one,
        // so a receiving system can drop duplicates (DESIGN §4.2).
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(request.subject.clone().unwrap_or_default())
            .message_id(Some(format!("<{}@herald>", request.id)))
            .header(ContentType::TEXT_PLAIN)
            .body(body);
        let message = match message {
            Ok(m) => m,
            Err(e) => return rejected(format!("cannot build the message: {e}"), false),
        };
        match self.mailer.send(message).await {
            Ok(resp) => DeliveryOutcome::Accepted {
                receipt: format!(
                    "SMTP {} {}",
                    resp.code(),
                    resp.message().collect::<Vec<_>>().join(" ")
                ),
            },
            // 5xx replies are permanent (unknown mailbox, policy); 4xx replies, timeouts and
            // connection errors may pass on a later attempt.
            Err(e) => rejected(format!("SMTP: {e}"), !e.is_permanent()),
        }
    }
}
