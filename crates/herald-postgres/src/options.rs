//! How to reach the store: the URL, the schema, and the limits of the connection pool.

use std::str::FromStr;
use std::time::Duration;

use herald_core::StoreError;
use sqlx::postgres::PgConnectOptions;
use url::Url;

/// The schema used when neither [`PgStoreOptions::schema`] nor the URL names one.
pub const DEFAULT_SCHEMA: &str = "public";

/// Everything [`crate::PgEventStore::connect_with`] needs. Build it with
/// [`PgStoreOptions::new`] and adjust the public fields.
#[derive(Clone)]
pub struct PgStoreOptions {
    /// A libpq-style URL: `postgres://user:password@host:port/database`. Besides sqlx's own
    /// parameters (`sslmode`, `application_name`, …) it may carry `schema=NAME` to pick the schema.
    pub url: String,
    /// The schema that holds Herald's tables; created if missing. Wins over the URL's `schema`
    /// parameter. When both are absent: [`DEFAULT_SCHEMA`]. The connection's `search_path` is never
    /// consulted: every statement names this schema.
    pub schema: Option<String>,
    /// Connections in the pool for reads. The writer task and the LISTEN task each have one
    /// connection of their own besides.
    pub max_connections: u32,
    /// How long an operation waits for a pooled connection (including connecting) before it fails
    /// with [`StoreError::Unavailable`].
    pub acquire_timeout: Duration,
    /// How long an append waits for the append lock (held by another process's append) before
    /// its callers get [`StoreError::Unavailable`]; PostgreSQL's `lock_timeout` for the store.
    pub lock_timeout: Duration,
    /// How long [`crate::PgEventStore::connect_with`] waits for its first connection.
    pub connect_timeout: Duration,
    /// The most events one group-commit transaction takes; a single larger append still runs whole.
    pub max_batch_events: usize,
    /// How often `wait_for_events` re-reads the head in case a notification was missed (the
    /// LISTEN connection was reconnecting, or another writer did not notify).
    pub recheck_interval: Duration,
}

impl PgStoreOptions {
    pub fn new(url: &str) -> PgStoreOptions {
        PgStoreOptions {
            url: url.to_string(),
            schema: None,
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_batch_events: 2_000,
            recheck_interval: Duration::from_secs(1),
        }
    }

    /// Sets the schema (see [`PgStoreOptions::schema`]).
    pub fn schema(mut self, schema: &str) -> PgStoreOptions {
        self.schema = Some(schema.to_string());
        self
    }
}

/// Shows the URL without its password.
impl std::fmt::Debug for PgStoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = Url::parse(&self.url)
            .map(|u| redact(&u))
            .unwrap_or_else(|_| "(unparsable)".into());
        f.debug_struct("PgStoreOptions")
            .field("url", &url)
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("lock_timeout", &self.lock_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_batch_events", &self.max_batch_events)
            .field("recheck_interval", &self.recheck_interval)
            .finish()
    }
}

/// The parsed form of [`PgStoreOptions`]' URL.
pub(crate) struct Target {
    pub connect: PgConnectOptions,
    pub schema: String,
    /// The URL without its password, for messages and logs.
    pub display: String,
}

pub(crate) fn parse(options: &PgStoreOptions) -> Result<Target, StoreError> {
    let invalid = |display: &str, why: &dyn std::fmt::Display| {
        StoreError::Unavailable(format!("invalid event store URL {display}: {why}"))
    };
    let mut url = Url::parse(&options.url).map_err(|e| invalid("(unparsable)", &e))?;
    let display = redact(&url);
    // `schema` is ours, not libpq's: take it out before sqlx sees the URL.
    let mut url_schema = None;
    let others: Vec<(String, String)> = url
        .query_pairs()
        .filter_map(|(k, v)| {
            if k == "schema" {
                url_schema = Some(v.into_owned());
                None
            } else {
                Some((k.into_owned(), v.into_owned()))
            }
        })
        .collect();
    if others.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(others);
    }
    let connect = PgConnectOptions::from_str(url.as_str()).map_err(|e| invalid(&display, &e))?;
    let schema = options
        .schema
        .clone()
        .or(url_schema)
        .unwrap_or_else(|| DEFAULT_SCHEMA.to_string());
    validate_schema(&schema).map_err(|why| invalid(&display, &why))?;
    Ok(Target {
        connect,
        schema,
        display,
    })
}

/// PostgreSQL silently truncates identifiers to 63 bytes and cannot store NUL: refuse both rather
/// than end up in a schema other than the one named.
fn validate_schema(schema: &str) -> Result<(), String> {
    if schema.is_empty() {
        return Err("the schema name is empty".into());
    }
    if schema.len() > 63 {
        return Err(format!("schema name {schema:?} is longer than 63 bytes"));
    }
    if schema.contains('\0') {
        return Err("the schema name contains a NUL character".into());
    }
    Ok(())
}

/// The URL with its password replaced by `***`.
fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        // Only fails for URLs that cannot have a password, which this one has.
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, schema: Option<&str>, expected_schema: &str, expected_display: &str) {
        let mut o = PgStoreOptions::new(url);
        o.schema = schema.map(str::to_string);
        let t = match parse(&o) {
            Ok(t) => t,
            Err(e) => panic!("{url}: {e}"),
        };
        assert_eq!(t.schema, expected_schema, "{url}");
        assert_eq!(t.display, expected_display, "{url}");
    }

    #[test]
    fn schema_comes_from_options_then_url_then_default() {
        check(
            "postgres://u@h:5432/db",
            None,
            "public",
            "postgres://u@h:5432/db",
        );
        check(
            "postgres://u@h/db?schema=herald&application_name=x",
            None,
            "herald",
            "postgres://u@h/db?schema=herald&application_name=x",
        );
        check(
            "postgres://u@h/db?schema=herald",
            Some("other"),
            "other",
            "postgres://u@h/db?schema=herald",
        );
    }

    #[test]
    fn passwords_are_not_shown() {
        check(
            "postgres://u:secret@h/db",
            None,
            "public",
            "postgres://u:***@h/db",
        );
    }

    #[test]
    fn bad_schemas_and_urls_are_refused() {
        for (url, schema) in [
            ("postgres://u@h/db", Some("")),
            ("postgres://u@h/db", Some("a\0b")),
            ("postgres://u@h/db", Some(&*"x".repeat(64))),
            ("not a url", None),
        ] {
            let mut o = PgStoreOptions::new(url);
            o.schema = schema.map(str::to_string);
            assert!(parse(&o).is_err(), "{url} {schema:?}");
        }
        let mut o = PgStoreOptions::new("postgres://u:pw@h/db");
        o.schema = Some(String::new());
        let msg = parse(&o).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("postgres://u:***@h/db"), "{msg}");
        assert!(!format!("{o:?}").contains("pw"), "{o:?}");
    }
}
