//! Conformance suites: one set of tests every backend runs, so behaviour cannot depend on the
//! backend. A backend's test binary calls [`state_conformance!`](crate::state_conformance) or
//! [`store_conformance!`](crate::store_conformance) with an async factory that returns a fresh,
//! isolated backend (its own Redis namespace, SQLite file or PostgreSQL schema) and a guard that
//! cleans it up when dropped.

pub mod state;
pub mod store;

use std::any::Any;

/// Whatever a factory needs kept alive and dropped after the test (temp dirs, cleanup guards).
pub type Guard = Box<dyn Any + Send>;

/// Expands to one `#[tokio::test]` per state-backend conformance test.
#[macro_export]
macro_rules! state_conformance {
    ($factory:path) => {
        $crate::__conformance!($factory, state;
            priority_order_high_first_fifo_within,
            delayed_jobs_wait_their_delay,
            expired_lease_runs_the_job_again,
            a_stalled_last_run_earns_one_more,
            errored_jobs_retry_then_go_dead,
            counts_per_state_and_name,
            duplicate_job_ids_refused_even_after_trimming,
            apply_projects_enqueues_and_checkpoints,
            reapplying_a_step_changes_nothing,
            fencing_refuses_a_stale_projector,
            list_pages_newest_first_by_tenant_and_status,
            reset_projections_keeps_the_queue,
            released_jobs_run_again_without_an_attempt,
            wait_for_jobs_wakes_on_enqueue,
            complete_many_completes_each_held_lease,
        );
    };
}

/// Expands to one `#[tokio::test]` per event-store conformance test.
#[macro_export]
macro_rules! store_conformance {
    ($factory:path) => {
        $crate::__conformance!($factory, store;
            append_and_read_a_stream,
            version_conflict_writes_nothing,
            append_many_is_per_stream,
            read_all_in_position_order,
            idempotency_keys_are_claimed_once,
            wait_for_events_wakes_on_append,
            concurrent_appenders_one_winner_per_version,
            read_streams_returns_each_existing_stream,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance {
    ($factory:path, $suite:ident; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (backend, guard) = $factory().await;
                $crate::testkit::$suite::$name(backend).await;
                drop(guard);
            }
        )*
    };
}
