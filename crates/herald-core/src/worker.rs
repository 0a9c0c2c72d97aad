//! Workers: lease jobs from the queue and run the handlers of DESIGN §3. Every handler is safe to
//! run twice: it re-reads the request from the event store (the source of truth, never a lagging
//! projection), skips when the work is already done, and appends with optimistic concurrency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use herald_domain::RecordedEvent;
use herald_domain::command::{decide_retry, record_attempt};
use herald_domain::{
    EventData, EventMetadata, JobName, JobPayload, MessageRequest, NewEvent, RetryDecision, Rules,
    Status,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::channel::Channels;
use crate::projector::{Backoff, default_holder};
use crate::state::{Job, Lease, StateBackend, StateError};
use crate::store::{AppendStream, EventStore, StoreError};

/// Longest a worker waits for more slots to free up before leasing, to lease in batches.
const BATCH_WAIT: Duration = Duration::from_millis(2);

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs run at once in this process.
    pub concurrency: usize,
    /// How long a reserved job stays leased; a worker that dies loses it after this.
    pub lease: Duration,
    /// Upper bound for one delivery (channels enforce their own, shorter timeouts).
    pub job_timeout: Duration,
    /// On shutdown, how long in-flight jobs may take before they are released to the queue.
    pub shutdown_grace: Duration,
    pub name: String,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 16,
            lease: Duration::from_secs(30),
            job_timeout: Duration::from_secs(25),
            shutdown_grace: Duration::from_secs(10),
            name: default_holder("worker"),
        }
    }
}

/// Why a job run errored; the queue retries it with back-off.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("bad job payload: {0}")]
    Payload(String),
    #[error("job timed out after {0:?}")]
    Timeout(Duration),
    #[error("every one of its {0} runs stopped before finishing (the worker died or stalled)")]
    Stalled(u32),
}

/// How a job run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Done,
    /// The work was already done or no longer wanted; nothing was written.
    Skipped(&'static str),
}

type ReadReply = tokio::sync::oneshot::Sender<Result<Vec<RecordedEvent>, StoreError>>;

/// Coalesces the stream reads of concurrently running jobs: reads that arrive while earlier
/// batches are being read go out together in the next `read_streams` call (one query instead of
/// many). A few batches may be in flight at once, so one slow read does not hold up the rest.
#[derive(Clone)]
struct ReadBatcher {
    tx: tokio::sync::mpsc::UnboundedSender<(String, ReadReply)>,
}

/// Most stream reads folded into one `read_streams` call.
const READ_BATCH_MAX: usize = 256;
/// Most `read_streams` calls in flight at once (the SQLite store has three reader connections).
const READS_IN_FLIGHT: usize = 3;

impl ReadBatcher {
    fn start(store: Arc<dyn EventStore>) -> ReadBatcher {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, ReadReply)>();
        tokio::spawn(async move {
            let in_flight = Arc::new(Semaphore::new(READS_IN_FLIGHT));
            while let Some(first) = rx.recv().await {
                // Waiting for a free read slot first lets more reads pile up into this batch.
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    break;
                };
                let mut batch = vec![first];
                while batch.len() < READ_BATCH_MAX {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                let store = store.clone();
                tokio::spawn(async move {
                    read_batch(store.as_ref(), batch).await;
                    drop(permit);
                });
            }
        });
        ReadBatcher { tx }
    }

    async fn read(&self, id: String) -> Result<Vec<RecordedEvent>, StoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send((id, reply))
            .map_err(|_| StoreError::Unavailable("stream reader stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("stream reader stopped".into()))?
    }
}

async fn read_batch(store: &dyn EventStore, batch: Vec<(String, ReadReply)>) {
    let mut ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
    ids.sort_unstable();
    ids.dedup();
    // Each stream is asked for by one job, almost always: then hand it over, don't copy.
    let shared = ids.len() < batch.len();
    match store.read_streams(&ids).await {
        Ok(mut found) => {
            for (id, reply) in batch {
                let events = if shared {
                    found.get(&id).cloned()
                } else {
                    found.remove(&id)
                };
                let events = events.unwrap_or_default();
                let _ = reply.send(Ok(events));
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for (_, reply) in batch {
                let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
            }
        }
    }
}

/// Runs jobs. Cloning is cheap; the handlers are usable on their own (tests call them directly).
#[derive(Clone)]
pub struct Workers {
    reads: Option<ReadBatcher>,
    store: Arc<dyn EventStore>,
    state: Arc<dyn StateBackend>,
    channels: Arc<Channels>,
    rules: Arc<Rules>,
    cfg: WorkerConfig,
}

impl Workers {
    pub fn new(
        store: Arc<dyn EventStore>,
        state: Arc<dyn StateBackend>,
        channels: Arc<Channels>,
        rules: Arc<Rules>,
        cfg: WorkerConfig,
    ) -> Workers {
        Workers {
            reads: None,
            store,
            state,
            channels,
            rules,
            cfg,
        }
    }

    /// Leases and runs jobs until `shutdown`. Then stops leasing, lets in-flight jobs finish within
    /// the grace period and releases the rest back to the queue.
    ///
    /// One loop leases jobs for this process; each job runs in its own task. Finished jobs are
    /// reported back to the loop, which marks them complete in batches just before it leases the
    /// next jobs: under load that is one `complete_many` and one `reserve` per batch instead of a
    /// round trip of each per job. A completion that is lost (crash before the batch) only means
    /// the lease expires and the idempotent job runs again.
    pub async fn run(&self, shutdown: CancellationToken) {
        let this = Workers {
            reads: Some(ReadBatcher::start(self.store.clone())),
            ..self.clone()
        };
        this.run_loop(shutdown).await
    }

    async fn run_loop(&self, shutdown: CancellationToken) {
        let concurrency = self.cfg.concurrency.max(1);
        let slots = Arc::new(Semaphore::new(concurrency));
        let in_flight: Arc<Mutex<HashMap<String, Lease>>> = Arc::default();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Lease>();
        let mut done: Vec<Lease> = Vec::new();
        // Wait for this many free slots (briefly) before leasing, so leases come in batches.
        let batch_target = (concurrency / 4).max(1);
        let mut tasks = JoinSet::new();
        let mut backoff = Backoff::default();
        while !shutdown.is_cancelled() {
            // Reap finished tasks so the set does not grow.
            while tasks.try_join_next().is_some() {}
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            while let Ok(l) = done_rx.try_recv() {
                done.push(l);
            }
            if slots.available_permits() + 1 < batch_target
                && slots.available_permits() + 1 < concurrency
            {
                let deadline = tokio::time::Instant::now() + BATCH_WAIT;
                while slots.available_permits() + 1 < batch_target {
                    tokio::select! {
                        l = done_rx.recv() => match l { Some(l) => done.push(l), None => break },
                        _ = tokio::time::sleep_until(deadline) => break,
                    }
                }
            }
            let free = slots.available_permits() + 1;
            // Completions and the next lease go out together: on the multiplexed connection they
            // share one round trip instead of waiting for each other.
            let (_, reserved) = tokio::join!(
                self.flush_completions(&mut done),
                self.state.reserve(&self.cfg.name, free, self.cfg.lease)
            );
            let jobs = match reserved {
                Ok(jobs) => {
                    backoff.reset();
                    jobs
                }
                Err(e) => {
                    drop(first);
                    tracing::warn!(error = %e, "could not reserve jobs; retrying");
                    let wait = backoff.next_delay();
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
            };
            if jobs.is_empty() {
                drop(first);
                // Idle: wait for work, but keep recording completions as they arrive.
                let wait = self.state.wait_for_jobs(Duration::from_secs(1));
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        l = done_rx.recv() => {
                            if let Some(l) = l {
                                done.push(l);
                                while let Ok(l) = done_rx.try_recv() {
                                    done.push(l);
                                }
                                self.flush_completions(&mut done).await;
                            }
                        }
                        r = &mut wait => {
                            if let Err(e) = r {
                                tracing::warn!(error = %e, "waiting for jobs failed");
                                tokio::time::sleep(backoff.next_delay()).await;
                            }
                            break;
                        }
                    }
                }
                continue;
            }
            let mut first = Some(first);
            for job in jobs {
                let permit = match first.take() {
                    Some(p) => p,
                    None => match slots.clone().try_acquire_owned() {
                        Ok(p) => p,
                        // Reserve asked for at most the free slots, so this does not happen; if
                        // it did, the job's lease would expire and it would run again.
                        Err(_) => break,
                    },
                };
                if let Ok(mut m) = in_flight.lock() {
                    m.insert(job.id.clone(), job.lease.clone());
                }
                let this = self.clone();
                let in_flight = in_flight.clone();
                let done_tx = done_tx.clone();
                tasks.spawn(async move {
                    let id = job.id.clone();
                    if let Some(lease) = this.execute(job).await {
                        // The loop owns the receiver until it returns, after every task ended.
                        let _ = done_tx.send(lease);
                    }
                    if let Ok(mut m) = in_flight.lock() {
                        m.remove(&id);
                    }
                    drop(permit);
                });
            }
        }
        // Graceful shutdown: finish or release (DESIGN §4.4).
        let drained = tokio::time::timeout(self.cfg.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        while let Ok(l) = done_rx.try_recv() {
            done.push(l);
        }
        self.flush_completions(&mut done).await;
        let leases: Vec<Lease> = in_flight
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        for lease in leases {
            match self.state.release(&lease).await {
                Ok(_) => {
                    tracing::info!(job_id = %lease.job_id, "released in-flight job at shutdown")
                }
                Err(e) => {
                    tracing::warn!(job_id = %lease.job_id, error = %e, "could not release job; its lease will expire")
                }
            }
        }
    }

    async fn flush_completions(&self, done: &mut Vec<Lease>) {
        if done.is_empty() {
            return;
        }
        if let Err(e) = self.state.complete_many(done).await {
            // The leases will expire and the jobs run again; every handler is idempotent.
            tracing::warn!(jobs = done.len(), error = %e, "could not mark jobs complete");
        }
        done.clear();
    }

    /// Runs one leased job and records the result in the queue.
    pub async fn run_one(&self, job: Job) {
        let id = job.id.clone();
        if let Some(lease) = self.execute(job).await
            && let Err(e) = self.state.complete(&lease).await
        {
            // The lease will expire and the job run again; every handler is idempotent.
            tracing::warn!(job_id = %id, error = %e, "could not mark job complete");
        }
    }

    /// Runs one leased job. A failed run is recorded at once (with back-off); a successful one
    /// returns its lease for the caller to mark complete.
    async fn execute(&self, job: Job) -> Option<Lease> {
        if job.attempts > job.max_attempts {
            return self.give_up(job).await;
        }
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(self.cfg.job_timeout, self.handle(&job)).await {
            Ok(r) => r,
            Err(_) => Err(JobError::Timeout(self.cfg.job_timeout)),
        };
        let name = job.name.as_str();
        metrics::histogram!("herald_job_seconds", "job" => name)
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(outcome) => {
                let label = match outcome {
                    JobOutcome::Done => "done",
                    JobOutcome::Skipped(why) => {
                        tracing::debug!(job_id = %job.id, job = name, why, "job skipped");
                        "skipped"
                    }
                };
                metrics::counter!("herald_jobs_total", "job" => name, "outcome" => label)
                    .increment(1);
                Some(job.lease)
            }
            Err(e) => {
                metrics::counter!("herald_jobs_total", "job" => name, "outcome" => "error")
                    .increment(1);
                let retry_in = job_retry_delay(job.attempts);
                tracing::warn!(job_id = %job.id, job = name, attempt = job.attempts, error = %e, ?retry_in, "job failed");
                if job.name == JobName::Send && job.attempts >= job.max_attempts {
                    // Best effort: when the event store itself is the problem this fails too.
                    self.give_up_send(&job, &e).await;
                }
                if let Err(e) = self.state.fail(&job.lease, &e.to_string(), retry_in).await {
                    tracing::warn!(job_id = %job.id, error = %e, "could not record job failure");
                }
                None
            }
        }
    }

    /// The run the queue grants past `max_attempts` when the last allowed run stalled (its lease
    /// expired: the worker died or hung). A send job is not delivered again: it records that it
    /// gave up, so its request is dead-lettered and can be requeued. Retry and create jobs touch
    /// nothing outside Herald, so they simply run once more.
    async fn give_up(&self, job: Job) -> Option<Lease> {
        if job.name != JobName::Send {
            let retry = Job {
                max_attempts: job.attempts,
                ..job
            };
            return Box::pin(self.execute(retry)).await;
        }
        let error = JobError::Stalled(job.max_attempts);
        tracing::warn!(job_id = %job.id, error = %error, "send job gave up");
        metrics::counter!("herald_jobs_total", "job" => job.name.as_str(), "outcome" => "gave_up")
            .increment(1);
        if self.give_up_send(&job, &error).await {
            return Some(job.lease);
        }
        // The event store failed too: the job goes to the dead set, where an operator sees it.
        if let Err(e) = self
            .state
            .fail(&job.lease, &error.to_string(), Duration::ZERO)
            .await
        {
            tracing::warn!(job_id = %job.id, error = %e, "could not record job failure");
        }
        None
    }

    /// A send job that used all its queue attempts goes to the queue's dead set; without more,
    /// its request would stay PENDING with nothing left to send it. Record a permanent failure
    /// instead (best effort: when the event store itself is the problem this fails too), so the
    /// request is dead-lettered by the retry rule and a client or operator can requeue it.
    /// Returns whether the request is settled: the failure was recorded, or nothing was needed.
    async fn give_up_send(&self, job: &Job, error: &JobError) -> bool {
        let Ok(p) = payload(job) else { return true };
        let state = match self.load(p.message_request_id).await {
            Ok(Some(state)) => state,
            Ok(None) => return true,
            Err(e) => {
                tracing::warn!(job_id = %job.id, error = %e, "could not record that the send job gave up");
                return false;
            }
        };
        if state.status != Status::Pending {
            return true;
        }
        let event = record_attempt(
            &state,
            herald_domain::DeliveryOutcome::Rejected {
                error: format!("gave up after {} job runs: {error}", job.attempts),
                retryable: false,
                retry_after_ms: None,
            },
        );
        match self.append_for(&state, &event, &p).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(request_id = %state.id, error = %e, "could not record that the send job gave up");
                false
            }
        }
    }

    pub async fn handle(&self, job: &Job) -> Result<JobOutcome, JobError> {
        match job.name {
            JobName::Send => self.send(&payload(job)?).await,
            JobName::Retry => self.retry(&payload(job)?).await,
            JobName::Create => self.create(&payload(job)?, &job.id).await,
        }
    }

    async fn load(&self, id: Uuid) -> Result<Option<MessageRequest>, JobError> {
        let events = match &self.reads {
            Some(r) => r.read(id.to_string()).await?,
            None => self.store.read_stream(&id.to_string()).await?,
        };
        Ok(MessageRequest::fold(&events))
    }

    /// `queueSendMessageRequest`.
    pub async fn send(&self, p: &JobPayload) -> Result<JobOutcome, JobError> {
        let Some(state) = self.load(p.message_request_id).await? else {
            return Ok(JobOutcome::Skipped("request not found"));
        };
        if state.status != Status::Pending {
            return Ok(JobOutcome::Skipped("request is not PENDING"));
        }
        let outcome = self.channels.deliver(&state, state.attempts + 1).await;
        let accepted = matches!(outcome, herald_domain::DeliveryOutcome::Accepted { .. });
        metrics::counter!("herald_deliveries_total", "channel" => state.channel.as_str(), "result" => if accepted { "accepted" } else { "rejected" }).increment(1);
        let event = record_attempt(&state, outcome);
        self.append_for(&state, &event, p).await
    }

    /// `queueRetryFailedMessageRequest`.
    pub async fn retry(&self, p: &JobPayload) -> Result<JobOutcome, JobError> {
        let Some(state) = self.load(p.message_request_id).await? else {
            return Ok(JobOutcome::Skipped("request not found"));
        };
        match decide_retry(&state, p.event_id, self.rules.max_attempts()) {
            RetryDecision::Skip(why) => Ok(JobOutcome::Skipped(why)),
            RetryDecision::Retry(event) | RetryDecision::DeadLetter(event) => {
                self.append_for(&state, &event, p).await
            }
        }
    }

    /// Appends the outcome of a send or retry job. If the stream moved meanwhile (a client edit
    /// or cancel), a delivery outcome is still recorded on top of an edit, but nothing is written
    /// over a status change: the job then re-runs and decides again.
    async fn append_for(
        &self,
        state: &MessageRequest,
        event: &EventData,
        p: &JobPayload,
    ) -> Result<JobOutcome, JobError> {
        let meta = EventMetadata {
            correlation_id: Some(state.id.to_string()),
            causation_id: Some(p.event_id.to_string()),
        };
        let mut expected = state.version;
        for _ in 0..2 {
            let new = NewEvent::new(&state.tenant, event, meta.clone(), Utc::now());
            match self
                .store
                .append(AppendStream {
                    stream_id: state.id.to_string(),
                    expected_version: expected,
                    events: vec![new],
                    idempotency: None,
                })
                .await
            {
                Ok(_) => return Ok(JobOutcome::Done),
                Err(StoreError::VersionConflict { .. }) => {
                    let Some(now) = self.load(state.id).await? else {
                        return Ok(JobOutcome::Skipped("request vanished"));
                    };
                    // A delivery that happened is recorded even if the request was cancelled or
                    // edited meanwhile: the cancel came too late, and the audit trail must say
                    // the message went out. Other outcomes are dropped on a status change; the
                    // job's next run decides again.
                    let delivered = matches!(event, EventData::MessageRequestSent(_));
                    if now.status == Status::Sent {
                        return Ok(JobOutcome::Skipped("already recorded as sent"));
                    }
                    if now.status != state.status && !delivered {
                        tracing::warn!(request_id = %state.id, was = %state.status, now = %now.status, "request changed while the job ran; outcome not recorded");
                        return Ok(JobOutcome::Skipped("request changed while the job ran"));
                    }
                    expected = now.version;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::VersionConflict {
            stream_id: state.id.to_string(),
            expected,
            actual: expected,
        }
        .into())
    }

    /// `createMessageRequests`: writes the requests of a `MessageRequestBatchAccepted` (the
    /// payload's request id is the batch's stream) as `MessageRequestCreated` events. Streams that
    /// already exist were written by an earlier run of this job.
    pub async fn create(&self, p: &JobPayload, job_id: &str) -> Result<JobOutcome, JobError> {
        let events = self
            .store
            .read_stream(&p.message_request_id.to_string())
            .await?;
        let Some(batch) = events.iter().find(|e| e.event_id == p.event_id) else {
            return Ok(JobOutcome::Skipped("batch event not found"));
        };
        let Ok(EventData::MessageRequestBatchAccepted(accepted)) = batch.decode() else {
            return Err(JobError::Payload(format!(
                "event {} is not a batch",
                p.event_id
            )));
        };
        let now = Utc::now();
        for chunk in accepted.items.chunks(CREATE_CHUNK) {
            let mut appends = Vec::with_capacity(chunk.len());
            for item in chunk {
                let data = EventData::decode(herald_domain::event::CREATED, &item.data)
                    .map_err(|e| JobError::Payload(e.to_string()))?;
                appends.push(AppendStream {
                    stream_id: item.id.to_string(),
                    expected_version: 0,
                    events: vec![NewEvent::new(
                        &p.tenant,
                        &data,
                        EventMetadata {
                            correlation_id: Some(p.message_request_id.to_string()),
                            causation_id: Some(job_id.to_string()),
                        },
                        now,
                    )],
                    idempotency: None,
                });
            }
            for r in self.store.append_many(appends).await? {
                match r {
                    Ok(_) | Err(StoreError::VersionConflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(JobOutcome::Done)
    }
}

/// Requests appended per round trip by a `createMessageRequests` job.
const CREATE_CHUNK: usize = 500;

fn payload(job: &Job) -> Result<JobPayload, JobError> {
    serde_json::from_value(job.payload.clone()).map_err(|e| JobError::Payload(e.to_string()))
}

/// Queue-level back-off for a job that errored: 1 s doubling per attempt, at most 60 s.
pub fn job_retry_delay(attempts: u32) -> Duration {
    Duration::from_millis((1000u64 << attempts.saturating_sub(1).min(6)).min(60_000))
}
