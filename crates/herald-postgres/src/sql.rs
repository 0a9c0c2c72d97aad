//! Every statement the store runs, built once for its schema. The schema is always written as a
//! quoted identifier, so any name works and the connection's `search_path` plays no part.

use std::sync::Arc;

use sqlx::AssertSqlSafe;

/// The columns of `events` in the order every read selects them (see `store::decode`).
const EVENT_COLUMNS: &str =
    "position, stream_id, version, event_id, event_type, tenant, ts, data, metadata";

pub(crate) struct Sql {
    /// The schema's name, unquoted.
    pub schema: String,
    /// The position sequence as a quoted, schema-qualified name (bound as `regclass`).
    pub sequence: String,
    /// The LISTEN/NOTIFY channel of this schema's events.
    pub channel: String,
    /// The advisory-lock key every append transaction in this schema takes (see `writer`).
    pub append_lock: i64,
    /// The advisory-lock key that serialises migrations of this schema.
    pub migrate_lock: i64,
    pub current_versions: Stmt,
    pub existing_keys: Stmt,
    pub insert_events: Stmt,
    pub insert_keys: Stmt,
    pub read_all: Stmt,
    pub read_stream: Stmt,
    pub read_streams: Stmt,
    pub head: Stmt,
    pub lookup_key: Stmt,
}

/// A statement built at start-up from trusted parts (the quoted schema); cheap to clone.
#[derive(Clone)]
pub(crate) struct Stmt(Arc<str>);

impl Stmt {
    fn new(sql: String) -> Stmt {
        Stmt(sql.into())
    }

    /// The statement for `sqlx::query*`: safe because only the quoted schema was interpolated.
    pub fn sql(&self) -> AssertSqlSafe<Arc<str>> {
        AssertSqlSafe(self.0.clone())
    }
}

impl Sql {
    pub fn new(schema: &str) -> Sql {
        let s = quote_ident(schema);
        Sql {
            schema: schema.to_string(),
            sequence: format!("{s}.events_position_seq"),
            channel: channel_name(schema),
            append_lock: lock_key("append", schema),
            migrate_lock: lock_key("migrate", schema),
            current_versions: Stmt::new(format!(
                "SELECT stream_id, MAX(version) FROM {s}.events \
                 WHERE stream_id = ANY($1::text[]) GROUP BY stream_id"
            )),
            existing_keys: Stmt::new(format!(
                "SELECT k.tenant, k.key, k.request_id, k.body_hash FROM {s}.idempotency_keys k \
                 JOIN UNNEST($1::text[], $2::text[]) AS q(tenant, key) \
                 ON k.tenant = q.tenant AND k.key = q.key"
            )),
            // One statement for the whole group commit. The CTE reserves a contiguous block of
            // positions (we hold the append lock, so no other writer draws from the sequence
            // meanwhile); `ord` follows the arrays' order, so positions follow the batch's order
            // and, within a stream, its versions. MATERIALIZED: evaluate the reservation once.
            insert_events: Stmt::new(format!(
                "WITH block AS MATERIALIZED ( \
                     SELECT setval($1::regclass, nextval($1::regclass) + $2::int8 - 1) - $2::int8 AS before \
                 ) \
                 INSERT INTO {s}.events ({EVENT_COLUMNS}) \
                 SELECT block.before + e.ord, e.stream_id, e.version, e.event_id, e.event_type, \
                        e.tenant, e.ts, e.data, e.metadata \
                 FROM block, UNNEST($3::text[], $4::int8[], $5::uuid[], $6::text[], $7::text[], \
                                    $8::timestamptz[], $9::jsonb[], $10::jsonb[]) \
                      WITH ORDINALITY AS e(stream_id, version, event_id, event_type, tenant, ts, \
                                           data, metadata, ord) \
                 RETURNING position"
            )),
            insert_keys: Stmt::new(format!(
                "INSERT INTO {s}.idempotency_keys (tenant, key, request_id, body_hash) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::uuid[], $4::text[]) \
                 ON CONFLICT (tenant, key) DO NOTHING \
                 RETURNING tenant, key"
            )),
            read_all: Stmt::new(format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events \
                 WHERE position > $1 ORDER BY position LIMIT $2"
            )),
            read_stream: Stmt::new(format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events WHERE stream_id = $1 ORDER BY version"
            )),
            read_streams: Stmt::new(format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events WHERE stream_id = ANY($1) \
                 ORDER BY stream_id, version"
            )),
            head: Stmt::new(format!(
                "SELECT COALESCE(MAX(position), 0)::int8 FROM {s}.events"
            )),
            lookup_key: Stmt::new(format!(
                "SELECT request_id, body_hash FROM {s}.idempotency_keys \
                 WHERE tenant = $1 AND key = $2"
            )),
        }
    }

    /// The quoted schema, for migrations.
    pub fn quoted_schema(&self) -> String {
        quote_ident(&self.schema)
    }
}

/// `name` as a PostgreSQL quoted identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `herald_events.<schema>`, or a hash of the schema when that would pass PostgreSQL's 63-byte
/// identifier limit (LISTEN would silently truncate it; `pg_notify` would refuse it).
fn channel_name(schema: &str) -> String {
    let plain = format!("herald_events.{schema}");
    if plain.len() <= 63 {
        plain
    } else {
        format!("herald_events.{:016x}", fnv1a(schema.as_bytes()))
    }
}

/// A stable advisory-lock key for `purpose` in `schema`. Advisory locks are per database, so the
/// schema is what tells two Herald installations in one database apart.
///
/// Every process writing to a schema must compute the same key, across Herald versions too (a
/// rolling upgrade runs old and new side by side): never change this function. FNV-1a is used
/// because it is fixed by its definition, unlike `std`'s hashers.
fn lock_key(purpose: &str, schema: &str) -> i64 {
    let mut bytes = format!("herald-postgres/{purpose}/").into_bytes();
    bytes.extend_from_slice(schema.as_bytes());
    i64::from_ne_bytes(fnv1a(&bytes).to_ne_bytes())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("herald"), "\"herald\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn channels_fit_an_identifier() {
        assert_eq!(channel_name("herald"), "herald_events.herald");
        let long = channel_name(&"x".repeat(63));
        assert!(
            long.len() <= 63 && long.starts_with("herald_events."),
            "{long}"
        );
        assert_ne!(long, channel_name(&"y".repeat(63)));
    }

    #[test]
    fn lock_keys_are_stable_and_per_schema() {
        // Pinned: processes of different Herald versions must agree on the key.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(lock_key("append", "a"), lock_key("append", "b"));
        assert_ne!(lock_key("append", "a"), lock_key("migrate", "a"));
    }
}
