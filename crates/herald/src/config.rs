//! Configuration: `herald.toml` plus `HERALD_*` environment variables (nested keys with `__`, e.g.
//! `HERALD_WORKERS__CONCURRENCY=32`). Every field is documented where it is defined; `herald
//! config check` validates a file and names the line and key of each problem.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use herald_domain::{Delay, Rules};
use serde::{Deserialize, Serialize};

/// Top-level keys, for picking configuration out of `HERALD_*` environment variables.
const CONFIG_KEYS: &[&str] = &[
    "listen",
    "event_store",
    "state",
    "namespace",
    "tenants",
    "admin_key",
    "admin_key_sha256",
    "rules",
    "channels",
    "workers",
    "projector",
    "max_body_bytes",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP API listens on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Event store URL: `sqlite://PATH` (embedded) or `postgres://…`.
    #[serde(default = "default_store")]
    pub event_store: String,
    /// State backend URL (read models, job queue, checkpoint): `sqlite://PATH` or `redis://…`.
    #[serde(default = "default_store")]
    pub state: String,
    /// Prefix of every Redis key (wrapped in a hash tag); ignored by SQLite.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Tenants and their credentials.
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    /// Key for the cross-tenant endpoints (queue, every tenant's dead letters). Prefer
    /// `admin_key_sha256` in files that are shared.
    #[serde(default)]
    pub admin_key: Option<String>,
    /// Hex SHA-256 of the admin key.
    #[serde(default)]
    pub admin_key_sha256: Option<String>,
    /// Overrides of the seed's dispatch rules (DESIGN §2), one entry per event type.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub channels: ChannelsConfig,
    #[serde(default)]
    pub workers: WorkersConfig,
    #[serde(default)]
    pub projector: ProjectorSection,
    /// Largest accepted request body, in bytes (a batch may be 64 times larger).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Tenant id, as stored on every request and event.
    pub id: String,
    /// The tenant's API key (at least 16 characters). Give this or `api_key_sha256`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Hex SHA-256 of the API key, so the file need not hold the key itself.
    #[serde(default)]
    pub api_key_sha256: Option<String>,
    /// Secret that signs this tenant's webhooks (`whsec_<base64>` or any string).
    #[serde(default)]
    pub webhook_secret: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Event type whose rule to change: `MessageRequestCreated`, `MessageRequestFailed` or
    /// `MessageRequestUpdated`.
    pub event: String,
    /// Job priority; a larger number is more urgent.
    #[serde(default)]
    pub priority: Option<i32>,
    /// Fixed delay before the job may run.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Exponential back-off instead of a fixed delay.
    #[serde(default)]
    pub backoff: Option<BackoffConfig>,
    /// Attempts after which a request is dead-lettered (only for `MessageRequestFailed`).
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffConfig {
    /// Delay of the first retry; doubles with each attempt.
    pub base_ms: u64,
    /// Longest delay.
    pub max_ms: u64,
    /// Fraction (0 to 1) by which a delay may be randomly shortened.
    #[serde(default)]
    pub jitter: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelsConfig {
    /// Timeout of one webhook delivery.
    #[serde(default = "default_webhook_timeout")]
    pub webhook_timeout_ms: u64,
    /// Where the `log` channel writes: `stdout`, `null` or a file path.
    #[serde(default = "default_log_target")]
    pub log: String,
    /// SMTP relay for the `email` channel, `smtp://HOST:PORT`. Without it, e-mail requests are
    /// dead-lettered as "channel email is not configured".
    #[serde(default)]
    pub smtp_url: Option<String>,
    /// Sender of every e-mail.
    #[serde(default = "default_email_from")]
    pub email_from: String,
    /// Timeout of one SMTP delivery.
    #[serde(default = "default_webhook_timeout")]
    pub email_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersConfig {
    /// Jobs run at once by this process.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How long a leased job is held before another worker may run it.
    #[serde(default = "default_lease")]
    pub lease_ms: u64,
    /// On SIGTERM, how long in-flight jobs may finish before they are released.
    #[serde(default = "default_grace")]
    pub shutdown_grace_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectorSection {
    /// Events per atomic projector step.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Lease of the single active projector; a standby takes over after it expires.
    #[serde(default = "default_projector_lease")]
    pub lease_ttl_ms: u64,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_store() -> String {
    "sqlite://herald.db".into()
}
fn default_namespace() -> String {
    "herald".into()
}
fn default_max_body() -> usize {
    256 * 1024
}
fn default_webhook_timeout() -> u64 {
    10_000
}
fn default_email_from() -> String {
    "Herald <herald@localhost>".into()
}
fn default_log_target() -> String {
    "stdout".into()
}
fn default_concurrency() -> usize {
    16
}
fn default_lease() -> u64 {
    30_000
}
fn default_grace() -> u64 {
    10_000
}
fn default_batch() -> usize {
    500
}
fn default_projector_lease() -> u64 {
    10_000
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        ChannelsConfig {
            webhook_timeout_ms: default_webhook_timeout(),
            log: default_log_target(),
            smtp_url: None,
            email_from: default_email_from(),
            email_timeout_ms: default_webhook_timeout(),
        }
    }
}
impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            concurrency: default_concurrency(),
            lease_ms: default_lease(),
            shutdown_grace_ms: default_grace(),
        }
    }
}
impl Default for ProjectorSection {
    fn default() -> Self {
        ProjectorSection {
            batch_size: default_batch(),
            lease_ttl_ms: default_projector_lease(),
        }
    }
}
impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            event_store: default_store(),
            state: default_store(),
            namespace: default_namespace(),
            tenants: vec![],
            admin_key: None,
            admin_key_sha256: None,
            rules: vec![],
            channels: ChannelsConfig::default(),
            workers: WorkersConfig::default(),
            projector: ProjectorSection::default(),
            max_body_bytes: default_max_body(),
        }
    }
}

/// One problem in a configuration: the key path, the line when known, and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigIssue {
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("invalid configuration:\n{}", .0.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigIssue>),
}

impl Config {
    /// Loads `path` (when given) and `HERALD_*` variables, then validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::new();
        let mut text = None;
        if let Some(p) = path {
            let t = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.display().to_string(),
                source,
            })?;
            // Parse with toml first: its errors carry the line and column.
            toml::from_str::<Config>(&t)
                .map_err(|e| ConfigError::Parse(format!("{}: {e}", p.display())))?;
            fig = fig.merge(Toml::string(&t));
            text = Some(t);
        }
        // Only variables that name a configuration key: HERALD_CONFIG (the file's path) and other
        // HERALD_* variables of the environment are not configuration.
        let fig = fig.merge(Env::prefixed("HERALD_").split("__").filter(|k| {
            let top = k
                .as_str()
                .split('.')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            CONFIG_KEYS.contains(&top.as_str())
        }));
        let cfg: Config = fig
            .extract()
            .map_err(|e| ConfigError::Parse(format!("{e}")))?;
        let issues = cfg.validate(text.as_deref());
        if issues.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid(issues))
        }
    }

    /// Everything wrong with this configuration. `text` is the TOML source, to find line numbers.
    pub fn validate(&self, text: Option<&str>) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut issue = |key: String, message: String| {
            let line = text.and_then(|t| find_line(t, &key));
            issues.push(ConfigIssue { key, line, message });
        };
        if self.listen.parse::<SocketAddr>().is_err() {
            issue(
                "listen".into(),
                format!("{:?} is not an address like 127.0.0.1:8080", self.listen),
            );
        }
        if !["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|p| self.event_store.starts_with(p))
        {
            issue(
                "event_store".into(),
                "must be sqlite://PATH or postgres://…".into(),
            );
        }
        if !["sqlite:", "redis://", "rediss://"]
            .iter()
            .any(|p| self.state.starts_with(p))
        {
            issue("state".into(), "must be sqlite://PATH or redis://…".into());
        }
        if self.namespace.is_empty() || self.namespace.contains(['{', '}']) {
            issue(
                "namespace".into(),
                "must be non-empty and contain no braces".into(),
            );
        }
        let mut ids = HashSet::new();
        let mut keys = HashSet::new();
        for (i, t) in self.tenants.iter().enumerate() {
            if t.id.trim().is_empty() || t.id.len() > 128 || t.id.chars().any(char::is_control) {
                issue(
                    format!("tenants[{i}].id"),
                    "must be 1 to 128 printable characters".into(),
                );
            }
            if !ids.insert(t.id.clone()) {
                issue(
                    format!("tenants[{i}].id"),
                    format!("tenant {:?} is defined twice", t.id),
                );
            }
            match (&t.api_key, &t.api_key_sha256) {
                (Some(_), Some(_)) => issue(
                    format!("tenants[{i}].api_key"),
                    "give api_key or api_key_sha256, not both".into(),
                ),
                (None, None) => issue(
                    format!("tenants[{i}]"),
                    "needs api_key or api_key_sha256".into(),
                ),
                (Some(k), None) if k.len() < 16 => issue(
                    format!("tenants[{i}].api_key"),
                    "must be at least 16 characters".into(),
                ),
                (None, Some(h)) if parse_sha256(h).is_none() => issue(
                    format!("tenants[{i}].api_key_sha256"),
                    "must be 64 hex digits".into(),
                ),
                _ => {}
            }
            if let Some(h) = self.tenant_key_hash(i)
                && !keys.insert(h)
            {
                issue(
                    format!("tenants[{i}].api_key"),
                    "the same API key is used by two tenants".into(),
                );
            }
            if let Some(s) = &t.webhook_secret
                && s.len() < 8
            {
                issue(
                    format!("tenants[{i}].webhook_secret"),
                    "must be at least 8 characters".into(),
                );
            }
        }
        if let Some(h) = &self.admin_key_sha256
            && parse_sha256(h).is_none()
        {
            issue("admin_key_sha256".into(), "must be 64 hex digits".into());
        }
        if self.admin_key.as_ref().is_some_and(|k| k.len() < 16) {
            issue("admin_key".into(), "must be at least 16 characters".into());
        }
        let mut seen_rules = HashSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            if !Rules::seed()
                .rules()
                .iter()
                .any(|x| x.event_type == r.event)
            {
                issue(
                    format!("rules[{i}].event"),
                    format!(
                        "{:?} has no rule; use MessageRequestCreated, MessageRequestFailed or MessageRequestUpdated",
                        r.event
                    ),
                );
            }
            if !seen_rules.insert(r.event.clone()) {
                issue(
                    format!("rules[{i}].event"),
                    format!("{} is overridden twice", r.event),
                );
            }
            if r.delay_ms.is_some() && r.backoff.is_some() {
                issue(
                    format!("rules[{i}].backoff"),
                    "give delay_ms or backoff, not both".into(),
                );
            }
            if r.delay_ms
                .is_some_and(|d| d > herald_domain::rules::MAX_DELAY_MS)
            {
                issue(
                    format!("rules[{i}].delay_ms"),
                    "must be at most 3600000 (one hour)".into(),
                );
            }
            if let Some(b) = &r.backoff
                && (!(0.0..=1.0).contains(&b.jitter) || b.base_ms == 0 || b.max_ms < b.base_ms)
            {
                issue(
                    format!("rules[{i}].backoff"),
                    "needs base_ms > 0, max_ms >= base_ms and jitter between 0 and 1".into(),
                );
            }
            if r.max_attempts == Some(0) {
                issue(
                    format!("rules[{i}].max_attempts"),
                    "must be at least 1".into(),
                );
            }
            if r.max_attempts.is_some() && r.event != herald_domain::event::FAILED {
                issue(
                    format!("rules[{i}].max_attempts"),
                    "only applies to the MessageRequestFailed rule".into(),
                );
            }
        }
        if self.workers.concurrency == 0 || self.workers.concurrency > 10_000 {
            issue(
                "workers.concurrency".into(),
                "must be between 1 and 10000".into(),
            );
        }
        if self.workers.lease_ms < 1000 {
            issue("workers.lease_ms".into(), "must be at least 1000".into());
        }
        // The e-mail timeout only matters when the e-mail channel is configured.
        let email_timeout = match self.channels.smtp_url {
            Some(_) => self.channels.email_timeout_ms,
            None => 0,
        };
        let slowest = self.channels.webhook_timeout_ms.max(email_timeout);
        if self.workers.lease_ms < slowest + 2000 {
            issue(
                "workers.lease_ms".into(),
                format!(
                    "must be at least the longest channel timeout + 2000 ({}), or a slow delivery would outlive its lease and run twice",
                    slowest + 2000
                ),
            );
        }
        if let Some(url) = &self.channels.smtp_url
            && let Err(e) = herald_channels::EmailConfig::from_url(
                url,
                &self.channels.email_from,
                self.email_timeout(),
            )
        {
            let key = match e {
                herald_channels::email::EmailConfigError::Url(_) => "channels.smtp_url",
                herald_channels::email::EmailConfigError::From(_) => "channels.email_from",
            };
            issue(key.into(), e.to_string());
        }

        if self.projector.batch_size == 0 || self.projector.batch_size > 10_000 {
            issue(
                "projector.batch_size".into(),
                "must be between 1 and 10000".into(),
            );
        }
        if self.projector.lease_ttl_ms < 1000 {
            issue(
                "projector.lease_ttl_ms".into(),
                "must be at least 1000".into(),
            );
        }
        if self.channels.webhook_timeout_ms == 0 {
            issue(
                "channels.webhook_timeout_ms".into(),
                "must be positive".into(),
            );
        }
        if self.max_body_bytes < 1024 {
            issue("max_body_bytes".into(), "must be at least 1024".into());
        }
        issues
    }

    pub fn tenant_key_hash(&self, i: usize) -> Option<[u8; 32]> {
        let t = self.tenants.get(i)?;
        match (&t.api_key, &t.api_key_sha256) {
            (Some(k), _) => Some(hash_key(k)),
            (None, Some(h)) => parse_sha256(h),
            _ => None,
        }
    }

    /// The dispatch rules: the seed's, with this file's overrides.
    pub fn rules(&self) -> Rules {
        let mut rules = Rules::seed();
        for r in &self.rules {
            let delay = match (&r.delay_ms, &r.backoff) {
                (Some(ms), _) => Some(Delay::Fixed { ms: *ms }),
                (None, Some(b)) => Some(Delay::Exponential {
                    base_ms: b.base_ms,
                    max_ms: b.max_ms,
                    jitter: b.jitter,
                }),
                _ => None,
            };
            rules.override_rule(&r.event, r.priority, delay, r.max_attempts);
        }
        rules
    }

    pub fn email_timeout(&self) -> Duration {
        Duration::from_millis(self.channels.email_timeout_ms)
    }

    pub fn webhook_timeout(&self) -> Duration {
        Duration::from_millis(self.channels.webhook_timeout_ms)
    }
}

pub use herald_api::hash_key;

pub fn parse_sha256(h: &str) -> Option<[u8; 32]> {
    let v = hex::decode(h.trim()).ok()?;
    v.try_into().ok()
}

/// Finds the line of `key` (like `tenants[1].api_key`, `tenants[0]` or `workers.concurrency`)
/// in TOML text, for messages. Tables and arrays of tables are located by their headers.
fn find_line(text: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let is_header = |l: &str| l.trim_start().starts_with('[');
    let next_header = |from: usize| {
        (from..lines.len())
            .find(|&i| is_header(lines[i]))
            .unwrap_or(lines.len())
    };
    let (section, leaf) = match key.rsplit_once('.') {
        Some((s, l)) => (Some(s), Some(l)),
        None if key.contains('[') => (Some(key), None),
        None => (None, Some(key)),
    };
    let (start, end) = match section {
        None => (0, next_header(0)),
        Some(sec) => {
            let (name, index) = split_index(sec);
            let (aot, table) = (format!("[[{name}]]"), format!("[{name}]"));
            let header = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| l.trim() == aot || l.trim() == table)
                .nth(index.unwrap_or(0))
                .map(|(i, _)| i)?;
            (header, next_header(header + 1))
        }
    };
    let Some(leaf) = leaf else {
        return Some(start + 1);
    };
    (start..end)
        .find(|&i| {
            lines[i]
                .trim_start()
                .strip_prefix(leaf)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
        .or(section.map(|_| start + 1))
}

fn split_index(s: &str) -> (&str, Option<usize>) {
    match s.split_once('[') {
        Some((name, rest)) => (name, rest.trim_end_matches(']').parse().ok()),
        None => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_line_and_key_of_each_problem() {
        let text = r#"
listen = "127.0.0.1:8080"

[[tenants]]
id = "acme"
api_key = "short"

[[tenants]]
id = "globex"
api_key = "a-long-enough-api-key-for-globex"

[[rules]]
event = "MessageRequestSent"
priority = 3

[workers]
concurrency = 0
"#;
        let cfg: Config = toml::from_str(text).unwrap();
        let issues = cfg.validate(Some(text));
        let got: Vec<(String, Option<usize>)> =
            issues.iter().map(|i| (i.key.clone(), i.line)).collect();
        assert!(
            got.contains(&("tenants[0].api_key".into(), Some(6))),
            "{got:?}"
        );
        assert!(
            got.contains(&("rules[0].event".into(), Some(13))),
            "{got:?}"
        );
        assert!(
            got.contains(&("workers.concurrency".into(), Some(17))),
            "{got:?}"
        );
        assert_eq!(issues.len(), 3, "{issues:?}");
    }

    #[test]
    fn rule_overrides_apply() {
        let cfg: Config = toml::from_str(
            r#"
[[rules]]
event = "MessageRequestFailed"
priority = 9
max_attempts = 2
backoff = { base_ms = 100, max_ms = 1000, jitter = 0.0 }
"#,
        )
        .unwrap();
        assert!(cfg.validate(None).is_empty());
        let rules = cfg.rules();
        assert_eq!(rules.max_attempts(), 2);
        let r = rules
            .rules()
            .iter()
            .find(|r| r.event_type == "MessageRequestFailed")
            .unwrap();
        assert_eq!(r.priority, 9);
    }
}
