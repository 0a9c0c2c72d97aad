//! Numbered schema migrations, applied at start-up.
//!
//! All pending migrations run in one transaction that first takes an advisory lock keyed on the
//! schema, so two processes starting together apply each migration exactly once: the second waits
//! for the first to commit and then finds nothing to do. Applied versions are recorded in
//! `<schema>.herald_migrations`. Migrations are append-only: never edit a released one, add the
//! next number instead.

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tracing::{info, warn};

use crate::sql::Sql;

/// `(version, description, SQL)`; `{schema}` stands for the quoted schema.
const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "events and idempotency keys",
    r#"
-- Positions are assigned by the writer under the append lock, never by a column default. CACHE 1
-- (the default, spelled out): with a per-session cache, two sessions would hold interleaved
-- ranges and positions would stop following lock order.
CREATE SEQUENCE {schema}.events_position_seq AS BIGINT MINVALUE 1 START WITH 1 CACHE 1 NO CYCLE;

CREATE TABLE {schema}.events (
    position   BIGINT      PRIMARY KEY CHECK (position > 0),
    stream_id  TEXT        NOT NULL,
    version    BIGINT      NOT NULL CHECK (version > 0),
    event_id   UUID        NOT NULL UNIQUE,
    event_type TEXT        NOT NULL,
    tenant     TEXT        NOT NULL,
    ts         TIMESTAMPTZ NOT NULL,
    data       JSONB       NOT NULL,
    metadata   JSONB       NOT NULL,
    UNIQUE (stream_id, version)
);

ALTER SEQUENCE {schema}.events_position_seq OWNED BY {schema}.events.position;

CREATE TABLE {schema}.idempotency_keys (
    tenant     TEXT        NOT NULL,
    key        TEXT        NOT NULL,
    request_id UUID        NOT NULL,
    body_hash  TEXT        NOT NULL,
    claimed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, key)
);
"#,
)];

/// Creates the schema if needed and applies every pending migration.
pub(crate) async fn run(conn: &mut PgConnection, sql: &Sql) -> Result<(), sqlx::Error> {
    let schema = sql.quoted_schema();
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(sql.migrate_lock)
        .execute(&mut *tx)
        .await?;
    // Only create a missing schema: CREATE SCHEMA IF NOT EXISTS still needs the CREATE privilege
    // on the database, which a role that merely owns an existing schema may lack.
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(&sql.schema)
            .fetch_one(&mut *tx)
            .await?;
    if !exists {
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {schema}.herald_migrations ( \
             version     INTEGER     PRIMARY KEY, \
             description TEXT        NOT NULL, \
             applied_at  TIMESTAMPTZ NOT NULL DEFAULT now() \
         )"
    )))
    .execute(&mut *tx)
    .await?;
    let applied: Vec<i32> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT version FROM {schema}.herald_migrations ORDER BY version"
    )))
    .fetch_all(&mut *tx)
    .await?;
    for (version, description, body) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        info!(schema = %sql.schema, version, description, "applying event store migration");
        sqlx::raw_sql(AssertSqlSafe(body.replace("{schema}", &schema)))
            .execute(&mut *tx)
            .await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {schema}.herald_migrations (version, description) VALUES ($1, $2)"
        )))
        .bind(version)
        .bind(description)
        .execute(&mut *tx)
        .await?;
    }
    let known = MIGRATIONS.iter().map(|m| m.0).max().unwrap_or(0);
    if let Some(newer) = applied.iter().copied().filter(|v| *v > known).max() {
        warn!(
            schema = %sql.schema, applied = newer, known,
            "the event store schema was migrated by a newer Herald; running against it anyway"
        );
    }
    tx.commit().await
}
