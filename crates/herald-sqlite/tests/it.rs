//! The embedded backend against the shared conformance suites.

use std::sync::Arc;

use herald_core::testkit::Guard;
use herald_core::{EventStore, StateBackend};

async fn state() -> (Arc<dyn StateBackend>, Guard) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = herald_sqlite::SqliteState::open(&dir.path().join("herald.db"))
        .await
        .expect("open state");
    (Arc::new(s), Box::new(dir))
}

async fn store() -> (Arc<dyn EventStore>, Guard) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = herald_sqlite::SqliteEventStore::open(&dir.path().join("herald.db"))
        .await
        .expect("open store");
    (Arc::new(s), Box::new(dir))
}

herald_core::state_conformance!(state);
herald_core::store_conformance!(store);
