//! The projector: follows the event store, folds events into read models and dispatches the job
//! each event calls for (DESIGN §2), committing projection, jobs and checkpoint in one atomic
//! [`StateBackend::apply`]. Exactly one projector is active: it holds a lease whose fencing token
//! every `apply` carries, so a projector that lost its lease cannot write.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_domain::{MessageRequest, RecordedEvent, Rules};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::state::{NewJob, ProjectionStep, StateBackend, StateError};
use crate::store::{EventStore, StoreError};

#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// Events read and applied per atomic step.
    pub batch_size: usize,
    /// How long the projector lease lasts without renewal; a standby takes over after it.
    pub lease_ttl: Duration,
    /// Name of this projector in the lease (host and process id by default).
    pub holder: String,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        ProjectorConfig {
            batch_size: 500,
            lease_ttl: Duration::from_secs(10),
            holder: default_holder("projector"),
        }
    }
}

/// A process-unique name for leases: role, process id and a random suffix.
pub fn default_holder(role: &str) -> String {
    format!(
        "{role}-{}-{}",
        std::process::id(),
        &Uuid::new_v4().simple().to_string()[..8]
    )
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("could not take the projector lease within {0:?}; is another projector running?")]
    LeaseBusy(Duration),
}

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepReport {
    pub events: usize,
    pub jobs: usize,
    pub checkpoint: u64,
}

pub struct Projector {
    store: Arc<dyn EventStore>,
    state: Arc<dyn StateBackend>,
    rules: Arc<Rules>,
    cfg: ProjectorConfig,
}

impl Projector {
    pub fn new(
        store: Arc<dyn EventStore>,
        state: Arc<dyn StateBackend>,
        rules: Arc<Rules>,
        cfg: ProjectorConfig,
    ) -> Projector {
        Projector {
            store,
            state,
            rules,
            cfg,
        }
    }

    /// Runs until `shutdown`: waits as a standby while another projector holds the lease, then
    /// projects. Backend outages are logged and retried; they never end the loop.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut backoff = Backoff::default();
        while !shutdown.is_cancelled() {
            match self.lead(&shutdown).await {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    tracing::warn!(error = %e, "projector interrupted; retrying");
                    metrics::counter!("herald_projector_errors_total").increment(1);
                    let wait = backoff.next_delay();
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// Takes the lease (or waits for it) and projects until shutdown or until the lease is lost.
    async fn lead(&self, shutdown: &CancellationToken) -> Result<(), ProjectorError> {
        let renew_every = self.cfg.lease_ttl / 3;
        let token = loop {
            if let Some(t) = self
                .state
                .acquire_projector_lease(&self.cfg.holder, self.cfg.lease_ttl)
                .await?
            {
                break t;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(renew_every) => {}
            }
        };
        tracing::info!(holder = %self.cfg.holder, token, "projector lease taken");
        let mut renewed = Instant::now();
        let mut checkpoint = self.state.checkpoint().await?;
        // Both live only as long as this lease: a new lease starts from what the state holds.
        let mut cache = DocCache::new(DOC_CACHE_SIZE);
        let mut ahead = None;
        let result = async {
            while !shutdown.is_cancelled() {
                if renewed.elapsed() >= renew_every {
                    match self
                        .state
                        .acquire_projector_lease(&self.cfg.holder, self.cfg.lease_ttl)
                        .await?
                    {
                        Some(t) if t == token => renewed = Instant::now(),
                        _ => return Err(StateError::Fenced(token).into()),
                    }
                }
                let events = match ahead.take() {
                    Some(events) => events,
                    None => self.store.read_all(checkpoint, self.cfg.batch_size).await?,
                };
                let Some(last) = events.last().map(|e| e.position) else {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        r = self.store.wait_for_events(checkpoint, renew_every) => r?,
                    }
                    continue;
                };
                // The next batch is read while this one is applied: the store and the state
                // backend work side by side instead of taking turns. Steps are still applied
                // strictly in order, each after the previous one succeeded.
                let (applied, next) = tokio::join!(
                    self.project(token, events, 0, Some(&mut cache)),
                    self.store.read_all(last, self.cfg.batch_size)
                );
                checkpoint = applied?.checkpoint;
                ahead = Some(next?);
            }
            Ok(())
        }
        .await;
        match &result {
            Err(ProjectorError::State(StateError::Fenced(_))) => {
                tracing::warn!(holder = %self.cfg.holder, token, "projector lease lost; standing by");
                return Ok(());
            }
            _ => {
                let _ = self
                    .state
                    .release_projector_lease(&self.cfg.holder, token)
                    .await;
            }
        }
        result
    }

    /// Projects one batch of events after `checkpoint`. Events at or below `dispatch_after` are
    /// projected without dispatching (a rebuild replaying what was already dispatched).
    pub async fn step(
        &self,
        token: u64,
        checkpoint: u64,
        dispatch_after: u64,
    ) -> Result<StepReport, ProjectorError> {
        let events = self.store.read_all(checkpoint, self.cfg.batch_size).await?;
        if events.is_empty() {
            return Ok(StepReport {
                checkpoint,
                ..Default::default()
            });
        }
        self.project(token, events, dispatch_after, None).await
    }

    /// Projects and dispatches `events` (read in order after the checkpoint) in one atomic
    /// state step. Documents the projector wrote itself under this lease come from `cache`
    /// when given; the others are read from the state backend.
    async fn project(
        &self,
        token: u64,
        events: Vec<RecordedEvent>,
        dispatch_after: u64,
        mut cache: Option<&mut DocCache>,
    ) -> Result<StepReport, ProjectorError> {
        let Some(checkpoint) = events.last().map(|e| e.position) else {
            return Ok(StepReport::default());
        };
        // Only streams whose first event here is not their first event need their stored
        // document: a stream that starts in this batch is folded from scratch (the backend's
        // version guard keeps a newer stored document, so a replay stays harmless).
        let ids: Vec<Uuid> = {
            let mut first_seen: HashMap<Uuid, u64> = HashMap::new();
            for e in &events {
                if let Some(id) = e.message_request_id() {
                    first_seen.entry(id).or_insert(e.version);
                }
            }
            let mut ids: Vec<Uuid> = first_seen
                .into_iter()
                .filter(|(_, v)| *v > 1)
                .map(|(id, _)| id)
                .collect();
            ids.sort_unstable();
            ids
        };
        let mut docs: HashMap<Uuid, MessageRequest> = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            match cache.as_deref_mut().and_then(|c| c.take(&id)) {
                Some(d) => {
                    docs.insert(id, d);
                }
                None => missing.push(id),
            }
        }
        if !missing.is_empty() {
            docs.extend(
                self.state
                    .get_many(&missing)
                    .await?
                    .into_iter()
                    .map(|d| (d.id, d)),
            );
        }
        let mut changed: Vec<Uuid> = Vec::new();
        let mut jobs: Vec<NewJob> = Vec::new();
        for event in &events {
            let data = match event.decode() {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(position = event.position, event_type = %event.event_type, error = %e, "event not understood; skipped");
                    None
                }
            };
            let Some(id) = event.message_request_id() else {
                tracing::warn!(
                    position = event.position,
                    event_type = %event.event_type,
                    stream_id = %event.stream_id,
                    "event has no message request id; nothing to project or dispatch"
                );
                metrics::counter!("herald_events_without_request_id_total").increment(1);
                continue;
            };
            if let Some(data) = &data {
                let before = docs.remove(&id);
                let before_version = before.as_ref().map(|d| d.version);
                if let Some(after) = MessageRequest::apply(before, event, data) {
                    if Some(after.version) != before_version {
                        changed.push(id);
                    }
                    docs.insert(id, after);
                }
            }
            if event.position <= dispatch_after {
                continue;
            }
            if let Some(job) = self.rules.dispatch(event, data.as_ref()) {
                tracing::info!(
                    event_type = %event.event_type,
                    job = job.name.as_str(),
                    priority = job.priority,
                    delay_ms = job.delay_ms,
                    job_id = %job.id,
                    "dispatch"
                );
                metrics::counter!("herald_dispatched_jobs_total", "event_type" => event.event_type.clone(), "job" => job.name.as_str())
                    .increment(1);
                jobs.push(job.into());
            }
        }
        changed.sort_unstable();
        changed.dedup();
        let upserts: Vec<MessageRequest> =
            changed.iter().filter_map(|id| docs.remove(id)).collect();
        let n_events = events.len();
        let written = cache.as_ref().map(|_| upserts.clone());
        let enqueued = self
            .state
            .apply(ProjectionStep {
                token,
                upserts,
                jobs,
                checkpoint,
            })
            .await?;
        if let (Some(cache), Some(written)) = (cache, written) {
            for d in written {
                cache.put(d);
            }
        }
        metrics::counter!("herald_events_projected_total").increment(n_events as u64);
        Ok(StepReport {
            events: n_events,
            jobs: enqueued,
            checkpoint,
        })
    }

    /// `herald projections rebuild`: deletes every read model and replays the whole store. Events
    /// the old checkpoint had already covered are projected without dispatching (their jobs were
    /// dispatched then); later ones dispatch as usual, so nothing outstanding is dropped.
    /// `progress` is called with (position reached, head) after each step.
    pub async fn rebuild(
        &self,
        wait_for_lease: Duration,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<StepReport, ProjectorError> {
        let deadline = Instant::now() + wait_for_lease;
        let token = loop {
            if let Some(t) = self
                .state
                .acquire_projector_lease(&self.cfg.holder, self.cfg.lease_ttl)
                .await?
            {
                break t;
            }
            if Instant::now() >= deadline {
                return Err(ProjectorError::LeaseBusy(wait_for_lease));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let result = async {
            let old_checkpoint = self.state.checkpoint().await?;
            self.state.reset_projections(token).await?;
            let head = self.store.head().await?;
            let mut total = StepReport::default();
            let mut renewed = Instant::now();
            loop {
                if renewed.elapsed() >= self.cfg.lease_ttl / 3 {
                    match self
                        .state
                        .acquire_projector_lease(&self.cfg.holder, self.cfg.lease_ttl)
                        .await?
                    {
                        Some(t) if t == token => renewed = Instant::now(),
                        _ => return Err(StateError::Fenced(token).into()),
                    }
                }
                let r = self.step(token, total.checkpoint, old_checkpoint).await?;
                if r.events == 0 {
                    break;
                }
                total.events += r.events;
                total.jobs += r.jobs;
                total.checkpoint = r.checkpoint;
                progress(total.checkpoint, head.max(total.checkpoint));
            }
            Ok(total)
        }
        .await;
        let _ = self
            .state
            .release_projector_lease(&self.cfg.holder, token)
            .await;
        result
    }
}

/// Documents kept by the active projector between steps. A request's next event (its delivery,
/// a retry) usually follows within seconds; folding it onto the document the projector wrote
/// itself saves reading it back from the state backend and decoding it. About 20 MiB when full.
const DOC_CACHE_SIZE: usize = 32_768;

/// The documents this projector wrote under its current lease, the oldest evicted first. Only
/// the lease holder writes documents (the state backend fences everyone else), so while the
/// lease lasts a cached document is exactly what the backend holds. Documents in a final status
/// are not kept: they rarely see another event, and the room is better spent on pending ones.
struct DocCache {
    docs: HashMap<Uuid, (MessageRequest, u64)>,
    /// Insertion order, with the generation each entry was put at: an entry whose document was
    /// taken or put again since is skipped when evicting.
    order: VecDeque<(Uuid, u64)>,
    generation: u64,
    capacity: usize,
}

impl DocCache {
    fn new(capacity: usize) -> DocCache {
        DocCache {
            docs: HashMap::new(),
            order: VecDeque::new(),
            generation: 0,
            capacity,
        }
    }

    fn take(&mut self, id: &Uuid) -> Option<MessageRequest> {
        self.docs.remove(id).map(|(d, _)| d)
    }

    fn put(&mut self, doc: MessageRequest) {
        if doc.status.is_terminal() {
            self.docs.remove(&doc.id);
            return;
        }
        self.generation += 1;
        self.order.push_back((doc.id, self.generation));
        self.docs.insert(doc.id, (doc, self.generation));
        while self.docs.len() > self.capacity || self.order.len() > 2 * self.capacity {
            let Some((id, generation)) = self.order.pop_front() else {
                break;
            };
            if self.docs.get(&id).is_some_and(|(_, g)| *g == generation) {
                self.docs.remove(&id);
            }
        }
    }
}

/// Exponential back-off for reconnect loops: 100 ms doubling to 5 s.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        Duration::from_millis((100u64 << self.failures.min(6)).min(5000))
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}
