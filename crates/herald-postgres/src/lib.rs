//! Herald's production event store on PostgreSQL.
//!
//! - [`store`]: [`PgEventStore`], the [`herald_core::EventStore`] implementation, and its reads.
//! - [`options`]: [`PgStoreOptions`] — the URL, the schema, pool sizes and timeouts.
//! - `writer`: the group-commit writer task that performs every append, and the gap-safety lock.
//! - `listener`: the LISTEN/NOTIFY task that wakes [`herald_core::EventStore::wait_for_events`].
//! - `migrate`: the numbered, idempotent schema migrations run at start-up.
//! - `sql`: every statement, built once per schema.
//! - `error`: how PostgreSQL and sqlx errors become [`herald_core::StoreError`]s (by SQLSTATE).
//!
//! Architecture invariants:
//! - Every append goes through the writer task, and every append transaction takes the schema's
//!   append lock before it draws positions: that is what makes `read_all` gap-safe (see
//!   `writer`). Nothing else writes to `events`.
//! - Every statement names its schema explicitly; the connection's `search_path` is never used.

mod error;
mod listener;
mod migrate;
pub mod options;
mod sql;
pub mod store;
mod writer;

pub use options::PgStoreOptions;
pub use store::PgEventStore;
#[doc(hidden)]
pub use writer::TestHooks;
