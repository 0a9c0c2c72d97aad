//! The webhook channel: POSTs the request body as JSON, signed with the tenant's secret.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use herald_core::channel::DeliveryChannel;
use herald_domain::{DeliveryOutcome, MessageRequest};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};

use crate::signature;

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Whole-request timeout for one delivery.
    pub timeout: Duration,
    /// Webhook signing secret per tenant.
    pub secrets: HashMap<String, String>,
    /// `User-Agent` sent with each delivery.
    pub user_agent: String,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            timeout: Duration::from_secs(10),
            secrets: HashMap::new(),
            user_agent: format!("Herald/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct BuildError(#[from] reqwest::Error);

pub struct WebhookChannel {
    client: reqwest::Client,
    secrets: HashMap<String, String>,
}

impl WebhookChannel {
    pub fn new(cfg: WebhookConfig) -> Result<WebhookChannel, BuildError> {
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
            // A webhook endpoint answers; it does not send us elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(cfg.user_agent)
            .build()?;
        Ok(WebhookChannel {
            client,
            secrets: cfg.secrets,
        })
    }
}

/// Milliseconds a `Retry-After` header asks for (delta-seconds or an HTTP date).
fn retry_after_ms(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs.saturating_mul(1000));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
            .as_millis() as u64,
    )
}

/// DESIGN §3: 408, 429 and 5xx are worth retrying; other 4xx (and 3xx) are not.
pub fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

#[async_trait]
impl DeliveryChannel for WebhookChannel {
    async fn deliver(&self, request: &MessageRequest, _attempt: u32) -> DeliveryOutcome {
        let Some(secret) = self.secrets.get(&request.tenant) else {
            return DeliveryOutcome::Rejected {
                error: format!("tenant {} has no webhook_secret configured", request.tenant),
                retryable: false,
                retry_after_ms: None,
            };
        };
        let body = request.body.to_string().into_bytes();
        // The request id is the delivery's idempotency key (DESIGN §4.2): every attempt of one
        // request carries the same webhook-id, so receivers can drop duplicates.
        let id = request.id.to_string();
        let ts = chrono::Utc::now().timestamp();
        let sig = signature::sign(secret, &id, ts, &body);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in [
            ("webhook-id", id),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", sig),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
        match self
            .client
            .post(&request.recipient)
            .headers(headers)
            .body(body)
            .send()
            .await
        {
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    return DeliveryOutcome::Accepted {
                        receipt: format!("HTTP {}", status.as_u16()),
                    };
                }
                let retry_after = match status {
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                        retry_after_ms(resp.headers())
                    }
                    _ => None,
                };
                DeliveryOutcome::Rejected {
                    error: format!("HTTP {}", status.as_u16()),
                    retryable: is_retryable_status(status),
                    retry_after_ms: retry_after,
                }
            }
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else if e.is_builder() {
                    // An URL reqwest cannot use will not become usable by retrying.
                    return DeliveryOutcome::Rejected {
                        error: format!("invalid recipient URL: {e}"),
                        retryable: false,
                        retry_after_ms: None,
                    };
                } else {
                    "request failed"
                };
                DeliveryOutcome::Rejected {
                    error: format!("{what}: {}", error_chain(&e)),
                    retryable: true,
                    retry_after_ms: None,
                }
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
