//! The state backend port: read models, the job queue and the projector checkpoint, kept in one
//! backend so that [`StateBackend::apply`] can project events, enqueue their jobs and move the
//! checkpoint in one atomic step (DESIGN §4.1).
//!
//! Contract, checked by [`crate::testkit::state`]:
//! - `apply` is all-or-nothing, refuses a stale fencing token, writes a document only when its
//!   version is newer than the stored one, and enqueues a job only if no job with that id was
//!   ever enqueued (even one already trimmed).
//! - The queue hands out the highest priority first (a larger number is more urgent), FIFO within a
//!   priority, never before a job's delay has passed; a reserved job is leased and runs again once
//!   its lease expires; a job that errors is retried with back-off until its max attempts, then
//!   moves to the dead set.
//! - Counts are kept as counters: [`StateBackend::queue_info`] never scans jobs.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use herald_domain::{JobName, JobSpec, MessageRequest, Status};
use serde::Serialize;
use uuid::Uuid;

/// Queue-level attempts of a job before it moves to the dead set (infrastructure failures).
pub const DEFAULT_JOB_MAX_ATTEMPTS: u32 = 10;
/// Finished jobs kept for inspection; older ones are trimmed (their counters remain).
pub const KEEP_FINISHED_JOBS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The projector's fencing token is no longer current: another projector took over.
    #[error("projector lease lost (fencing token {0} is stale)")]
    Fenced(u64),
    #[error("state backend unavailable: {0}")]
    Unavailable(String),
    #[error("state backend data error: {0}")]
    Data(String),
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub id: String,
    pub name: JobName,
    pub priority: i32,
    pub delay_ms: u64,
    pub payload: serde_json::Value,
    pub max_attempts: u32,
}

impl From<JobSpec> for NewJob {
    fn from(j: JobSpec) -> Self {
        NewJob {
            id: j.id,
            name: j.name,
            priority: j.priority,
            delay_ms: j.delay_ms,
            payload: j.payload,
            max_attempts: DEFAULT_JOB_MAX_ATTEMPTS,
        }
    }
}

/// Proof that a worker holds a job; completing or failing with a stale lease does nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job_id: String,
    pub token: String,
}

/// A reserved job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub name: JobName,
    pub priority: i32,
    pub payload: serde_json::Value,
    /// Runs started so far, this one included.
    pub attempts: u32,
    pub max_attempts: u32,
    pub lease: Lease,
}

/// A job in the queue's dead set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadJob {
    pub id: String,
    pub name: JobName,
    pub attempts: u32,
    pub last_error: String,
    pub payload: serde_json::Value,
}

/// Job counts in each state. `waiting`, `active`, `delayed` and `dead` are current; `completed`
/// and `failed` count every completed run and every errored run since the queue was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    pub waiting: u64,
    pub active: u64,
    pub delayed: u64,
    pub completed: u64,
    pub failed: u64,
    pub dead: u64,
}

impl QueueCounts {
    pub fn add(&mut self, o: &QueueCounts) {
        self.waiting += o.waiting;
        self.active += o.active;
        self.delayed += o.delayed;
        self.completed += o.completed;
        self.failed += o.failed;
        self.dead += o.dead;
    }

    /// Sets the count of the state named `state` (`waiting`, `active`, …); other names are
    /// ignored. Backends store counters by state name and read them back through this.
    pub fn set(&mut self, state: &str, n: u64) {
        match state {
            "waiting" => self.waiting = n,
            "active" => self.active = n,
            "delayed" => self.delayed = n,
            "completed" => self.completed = n,
            "failed" => self.failed = n,
            "dead" => self.dead = n,
            _ => {}
        }
    }

    /// Jobs still to run.
    pub fn outstanding(&self) -> u64 {
        self.waiting + self.active + self.delayed
    }
}

/// The seed's `getQueueInfo`: counts per job name and in total.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueInfo {
    pub total: QueueCounts,
    pub by_name: BTreeMap<String, QueueCounts>,
}

impl QueueInfo {
    /// Builds the totals from per-name counts.
    pub fn from_names(by_name: BTreeMap<String, QueueCounts>) -> QueueInfo {
        let mut total = QueueCounts::default();
        for c in by_name.values() {
            total.add(c);
        }
        QueueInfo { total, by_name }
    }
}

/// One atomic projector step.
#[derive(Debug, Clone, Default)]
pub struct ProjectionStep {
    /// The projector's fencing token; the step is refused when it is not the current one.
    pub token: u64,
    /// Documents to write; each is written only if its version is newer than the stored one.
    pub upserts: Vec<MessageRequest>,
    /// Jobs to enqueue; a job whose id was ever enqueued before is skipped.
    pub jobs: Vec<NewJob>,
    /// The position of the last event the step covers.
    pub checkpoint: u64,
}

/// A page of read models, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    pub items: Vec<MessageRequest>,
    /// Pass as `before` to get the next page; `None` on the last page.
    pub next: Option<Uuid>,
}

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// `None` lists every tenant (admin views).
    pub tenant: Option<String>,
    pub status: Option<Status>,
    pub limit: usize,
    /// Only requests with an id below this one (UUIDv7 ids sort by creation time).
    pub before: Option<Uuid>,
}

#[async_trait]
pub trait StateBackend: Send + Sync + 'static {
    // --- the projector -------------------------------------------------------------------------

    /// Takes or renews the single-projector lease for `holder`. Returns the fencing token when
    /// `holder` holds the lease (a new, larger token each time the lease changes hands), `None`
    /// when another holder's lease has not expired.
    async fn acquire_projector_lease(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StateError>;

    /// Gives the lease up if `holder` still holds it with `token`.
    async fn release_projector_lease(&self, holder: &str, token: u64) -> Result<(), StateError>;

    /// The position of the last event projected (0 when none, or after the state was lost).
    async fn checkpoint(&self) -> Result<u64, StateError>;

    /// Projects, enqueues and moves the checkpoint in one atomic step. Returns how many jobs
    /// were newly enqueued.
    async fn apply(&self, step: ProjectionStep) -> Result<usize, StateError>;

    /// Deletes every read model and resets the checkpoint to 0, keeping the queue. Fenced like
    /// `apply`. Used by `herald projections rebuild`.
    async fn reset_projections(&self, token: u64) -> Result<(), StateError>;

    // --- read models ---------------------------------------------------------------------------

    async fn get(&self, id: Uuid) -> Result<Option<MessageRequest>, StateError>;

    /// Several documents at once (missing ids are left out).
    async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<MessageRequest>, StateError>;

    async fn list(&self, query: ListQuery) -> Result<Page, StateError>;

    /// Requests per status, for one tenant or all.
    async fn status_counts(
        &self,
        tenant: Option<&str>,
    ) -> Result<BTreeMap<Status, u64>, StateError>;

    // --- the job queue -------------------------------------------------------------------------

    /// Enqueues jobs outside a projector step (bulk creation). Returns how many were new.
    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<usize, StateError>;

    /// Leases up to `max` jobs that are due, most urgent first. Jobs whose lease expired are
    /// returned to the queue first (a stalled run counts as an attempt).
    async fn reserve(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Job>, StateError>;

    /// Marks a leased job done. Returns false when the lease was lost (the job ran elsewhere).
    async fn complete(&self, lease: &Lease) -> Result<bool, StateError>;

    /// Marks several leased jobs done at once (one round trip where the backend allows). Returns,
    /// per lease, whether it was still held.
    async fn complete_many(&self, leases: &[Lease]) -> Result<Vec<bool>, StateError> {
        let mut out = Vec::with_capacity(leases.len());
        for l in leases {
            out.push(self.complete(l).await?);
        }
        Ok(out)
    }

    /// Records an errored run: the job runs again after `retry_in`, or moves to the dead set when
    /// it has used its max attempts. Returns false when the lease was lost.
    async fn fail(
        &self,
        lease: &Lease,
        error: &str,
        retry_in: Duration,
    ) -> Result<bool, StateError>;

    /// Extends a lease. Returns false when it was lost.
    async fn extend_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool, StateError>;

    /// Gives a leased job back without counting an attempt (graceful shutdown).
    async fn release(&self, lease: &Lease) -> Result<bool, StateError>;

    /// Waits until a job may be due (an enqueue, a delay running out) or `max_wait` passes.
    async fn wait_for_jobs(&self, max_wait: Duration) -> Result<(), StateError>;

    async fn queue_info(&self) -> Result<QueueInfo, StateError>;

    async fn dead_jobs(&self, limit: usize) -> Result<Vec<DeadJob>, StateError>;

    /// Checks that the backend answers.
    async fn ping(&self) -> Result<(), StateError>;
}
