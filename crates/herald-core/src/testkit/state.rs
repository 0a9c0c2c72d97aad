//! The state backend conformance suite (see [`crate::state`] for the contract).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use herald_domain::{Channel, JobName, MessageRequest, Status};
use uuid::Uuid;

use crate::state::{
    KEEP_FINISHED_JOBS, Lease, ListQuery, NewJob, ProjectionStep, StateBackend, StateError,
};

type S = Arc<dyn StateBackend>;

const LEASE: Duration = Duration::from_secs(30);

pub fn job(id: &str, name: JobName, priority: i32, delay_ms: u64) -> NewJob {
    NewJob {
        id: id.to_string(),
        name,
        priority,
        delay_ms,
        payload: serde_json::json!({ "job": id }),
        max_attempts: 3,
    }
}

pub fn doc(id: Uuid, tenant: &str, status: Status, version: u64) -> MessageRequest {
    let t = Utc
        .timestamp_millis_opt(1_700_000_000_000)
        .single()
        .unwrap_or_default();
    MessageRequest {
        id,
        tenant: tenant.to_string(),
        channel: Channel::Log,
        recipient: "ops".into(),
        subject: None,
        body: serde_json::json!("hello"),
        metadata: Default::default(),
        idempotency_key: None,
        status,
        attempts: 0,
        last_error: None,
        created_at: t,
        updated_at: t,
        version,
        last_failed_event: None,
        last_failure_retryable: false,
    }
}

async fn reserve_ids(s: &S, max: usize) -> Vec<String> {
    s.reserve("w", max, LEASE)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect()
}

async fn lease_token(s: &S) -> u64 {
    s.acquire_projector_lease("p1", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("lease free")
}

pub async fn priority_order_high_first_fifo_within(s: S) {
    let normal: Vec<NewJob> = (0..50)
        .map(|i| job(&format!("n{i:02}"), JobName::Send, 0, 0))
        .collect();
    assert_eq!(s.enqueue(normal).await.unwrap(), 50);
    s.enqueue(vec![job("high", JobName::Retry, 1, 0)])
        .await
        .unwrap();
    assert_eq!(
        reserve_ids(&s, 1).await,
        vec!["high"],
        "a larger priority is taken first"
    );
    let rest = reserve_ids(&s, 100).await;
    let expected: Vec<String> = (0..50).map(|i| format!("n{i:02}")).collect();
    assert_eq!(rest, expected, "FIFO within a priority");
    assert!(reserve_ids(&s, 10).await.is_empty());
}

pub async fn delayed_jobs_wait_their_delay(s: S) {
    s.enqueue(vec![
        job("later", JobName::Retry, 1, 400),
        job("now", JobName::Send, 0, 0),
    ])
    .await
    .unwrap();
    let info = s.queue_info().await.unwrap();
    assert_eq!((info.total.delayed, info.total.waiting), (1, 1));
    assert_eq!(reserve_ids(&s, 10).await, vec!["now"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reserve_ids(&s, 10).await, vec!["later"]);
    let info = s.queue_info().await.unwrap();
    assert_eq!((info.total.delayed, info.total.active), (0, 2));
}

pub async fn expired_lease_runs_the_job_again(s: S) {
    s.enqueue(vec![job("j", JobName::Send, 0, 0)])
        .await
        .unwrap();
    let first = s
        .reserve("w1", 1, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempts, 1);
    assert!(
        s.reserve("w2", 1, LEASE).await.unwrap().is_empty(),
        "leased job is not handed out twice"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    let again = s.reserve("w2", 1, LEASE).await.unwrap();
    assert_eq!(again.len(), 1, "expired lease returns the job");
    assert_eq!(again[0].id, "j");
    assert_eq!(again[0].attempts, 2, "a stalled run counts as an attempt");
    assert!(
        !s.complete(&first[0].lease).await.unwrap(),
        "the stale lease can no longer complete"
    );
    assert!(s.complete(&again[0].lease).await.unwrap());
    let info = s.queue_info().await.unwrap();
    assert_eq!((info.total.active, info.total.completed), (0, 1));
}

/// When the last allowed run's lease expires (its worker died), the job is handed out once more,
/// past `max_attempts`, so a worker can record that it gave up; only when that run stalls too is
/// the job dead.
pub async fn a_stalled_last_run_earns_one_more(s: S) {
    let mut j = job("stalls", JobName::Send, 0, 0);
    j.max_attempts = 1;
    s.enqueue(vec![j]).await.unwrap();
    let short = Duration::from_millis(100);
    let first = s.reserve("w1", 1, short).await.unwrap();
    assert_eq!((first.len(), first[0].attempts), (1, 1));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let last = s.reserve("w2", 1, short).await.unwrap();
    assert_eq!(last.len(), 1, "the stalled last run earns one more");
    assert_eq!((last[0].attempts, last[0].max_attempts), (2, 1));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(s.reserve("w3", 1, LEASE).await.unwrap().is_empty());
    let info = s.queue_info().await.unwrap();
    assert_eq!(
        (info.total.active, info.total.dead, info.total.failed),
        (0, 1, 2)
    );
    let dead = s.dead_jobs(10).await.unwrap();
    assert_eq!((dead.len(), dead[0].attempts), (1, 2));
}

pub async fn errored_jobs_retry_then_go_dead(s: S) {
    let mut j = job("flaky", JobName::Send, 0, 0);
    j.max_attempts = 2;
    s.enqueue(vec![j]).await.unwrap();
    let r = s.reserve("w", 1, LEASE).await.unwrap();
    assert!(
        s.fail(&r[0].lease, "boom 1", Duration::from_millis(100))
            .await
            .unwrap()
    );
    let info = s.queue_info().await.unwrap();
    assert_eq!(
        (info.total.delayed, info.total.failed, info.total.dead),
        (1, 1, 0)
    );
    assert!(reserve_ids(&s, 1).await.is_empty(), "back-off is respected");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = s.reserve("w", 1, LEASE).await.unwrap();
    assert_eq!(r[0].attempts, 2);
    assert!(
        s.fail(&r[0].lease, "boom 2", Duration::from_millis(100))
            .await
            .unwrap()
    );
    let info = s.queue_info().await.unwrap();
    assert_eq!(
        (info.total.delayed, info.total.failed, info.total.dead),
        (0, 2, 1)
    );
    let dead = s.dead_jobs(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].id.as_str(),
            dead[0].attempts,
            dead[0].last_error.as_str()
        ),
        ("flaky", 2, "boom 2")
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(reserve_ids(&s, 1).await.is_empty(), "dead jobs never run");
}

pub async fn counts_per_state_and_name(s: S) {
    s.enqueue(vec![
        job("s1", JobName::Send, 0, 0),
        job("s2", JobName::Send, 0, 0),
        job("r1", JobName::Retry, 1, 60_000),
        job("c1", JobName::Create, 0, 0),
    ])
    .await
    .unwrap();
    let r = s.reserve("w", 1, LEASE).await.unwrap();
    assert_eq!(r[0].name, JobName::Send);
    let info = s.queue_info().await.unwrap();
    let send = info
        .by_name
        .get("queueSendMessageRequest")
        .copied()
        .unwrap_or_default();
    let retry = info
        .by_name
        .get("queueRetryFailedMessageRequest")
        .copied()
        .unwrap_or_default();
    let create = info
        .by_name
        .get("createMessageRequests")
        .copied()
        .unwrap_or_default();
    assert_eq!((send.waiting, send.active), (1, 1));
    assert_eq!(retry.delayed, 1);
    assert_eq!(create.waiting, 1);
    assert_eq!(
        (info.total.waiting, info.total.active, info.total.delayed),
        (2, 1, 1)
    );
    s.complete(&r[0].lease).await.unwrap();
    let info = s.queue_info().await.unwrap();
    assert_eq!(info.by_name["queueSendMessageRequest"].completed, 1);
    assert_eq!((info.total.active, info.total.completed), (0, 1));
}

pub async fn duplicate_job_ids_refused_even_after_trimming(s: S) {
    assert_eq!(
        s.enqueue(vec![job("once", JobName::Send, 0, 0)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.enqueue(vec![job("once", JobName::Send, 0, 0)])
            .await
            .unwrap(),
        0
    );
    let r = s.reserve("w", 1, LEASE).await.unwrap();
    s.complete(&r[0].lease).await.unwrap();
    // Push enough finished jobs through to trim the first one.
    let n = KEEP_FINISHED_JOBS + 10;
    let more: Vec<NewJob> = (0..n)
        .map(|i| job(&format!("f{i}"), JobName::Send, 0, 0))
        .collect();
    assert_eq!(s.enqueue(more).await.unwrap(), n);
    loop {
        let got = s.reserve("w", 200, LEASE).await.unwrap();
        if got.is_empty() {
            break;
        }
        for j in got {
            assert!(s.complete(&j.lease).await.unwrap());
        }
    }
    assert_eq!(s.queue_info().await.unwrap().total.completed, n as u64 + 1);
    assert_eq!(
        s.enqueue(vec![job("once", JobName::Send, 0, 0)])
            .await
            .unwrap(),
        0
    );
    let step = ProjectionStep {
        token: lease_token(&s).await,
        upserts: vec![],
        jobs: vec![job("once", JobName::Send, 0, 0)],
        checkpoint: 1,
    };
    assert_eq!(
        s.apply(step).await.unwrap(),
        0,
        "the projector's enqueue is deduplicated too"
    );
    assert!(reserve_ids(&s, 10).await.is_empty());
}

pub async fn apply_projects_enqueues_and_checkpoints(s: S) {
    let token = lease_token(&s).await;
    assert_eq!(s.checkpoint().await.unwrap(), 0);
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let step = ProjectionStep {
        token,
        upserts: vec![
            doc(a, "acme", Status::Pending, 1),
            doc(b, "globex", Status::Pending, 1),
        ],
        jobs: vec![
            job(&format!("e-{a}"), JobName::Send, 0, 0),
            job(&format!("e-{b}"), JobName::Send, 0, 0),
        ],
        checkpoint: 2,
    };
    assert_eq!(s.apply(step).await.unwrap(), 2);
    assert_eq!(s.checkpoint().await.unwrap(), 2);
    assert_eq!(
        s.get(a).await.unwrap(),
        Some(doc(a, "acme", Status::Pending, 1))
    );
    assert_eq!(s.get(Uuid::now_v7()).await.unwrap(), None);
    let mut many = s.get_many(&[a, b, Uuid::now_v7()]).await.unwrap();
    many.sort_by_key(|d| d.id);
    assert_eq!(many.iter().map(|d| d.id).collect::<Vec<_>>(), vec![a, b]);
    // A status change moves the request between indexes and counts.
    let step = ProjectionStep {
        token,
        upserts: vec![doc(a, "acme", Status::Sent, 2)],
        jobs: vec![],
        checkpoint: 3,
    };
    s.apply(step).await.unwrap();
    let counts = s.status_counts(Some("acme")).await.unwrap();
    assert_eq!(counts.get(&Status::Sent), Some(&1));
    assert_eq!(counts.get(&Status::Pending).copied().unwrap_or(0), 0);
    let all = s.status_counts(None).await.unwrap();
    assert_eq!(
        (all.get(&Status::Sent), all.get(&Status::Pending)),
        (Some(&1), Some(&1))
    );
    let pending = s
        .list(ListQuery {
            tenant: Some("acme".into()),
            status: Some(Status::Pending),
            limit: 10,
            before: None,
        })
        .await
        .unwrap();
    assert!(pending.items.is_empty(), "moved out of the PENDING index");
    assert_eq!(s.queue_info().await.unwrap().total.waiting, 2);
}

pub async fn reapplying_a_step_changes_nothing(s: S) {
    let token = lease_token(&s).await;
    let a = Uuid::now_v7();
    let newer = ProjectionStep {
        token,
        upserts: vec![doc(a, "acme", Status::Sent, 3)],
        jobs: vec![job("e1", JobName::Send, 0, 0)],
        checkpoint: 10,
    };
    assert_eq!(s.apply(newer.clone()).await.unwrap(), 1);
    assert_eq!(s.apply(newer).await.unwrap(), 0, "no second job");
    let older = ProjectionStep {
        token,
        upserts: vec![doc(a, "acme", Status::Pending, 1)],
        jobs: vec![job("e1", JobName::Send, 0, 0)],
        checkpoint: 10,
    };
    assert_eq!(s.apply(older).await.unwrap(), 0);
    assert_eq!(
        s.get(a).await.unwrap().map(|d| (d.status, d.version)),
        Some((Status::Sent, 3))
    );
    assert_eq!(
        s.status_counts(Some("acme"))
            .await
            .unwrap()
            .get(&Status::Sent),
        Some(&1)
    );
    assert_eq!(s.queue_info().await.unwrap().total.waiting, 1);
}

pub async fn fencing_refuses_a_stale_projector(s: S) {
    let ttl = Duration::from_millis(300);
    let t1 = s
        .acquire_projector_lease("p1", ttl)
        .await
        .unwrap()
        .expect("free");
    assert_eq!(
        s.acquire_projector_lease("p2", ttl).await.unwrap(),
        None,
        "held by p1"
    );
    assert_eq!(
        s.acquire_projector_lease("p1", ttl).await.unwrap(),
        Some(t1),
        "renewal keeps the token"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    let t2 = s
        .acquire_projector_lease("p2", ttl)
        .await
        .unwrap()
        .expect("expired lease is free");
    assert_ne!(t1, t2);
    let a = Uuid::now_v7();
    let stale = ProjectionStep {
        token: t1,
        upserts: vec![doc(a, "acme", Status::Pending, 1)],
        jobs: vec![job("fenced", JobName::Send, 0, 0)],
        checkpoint: 5,
    };
    assert!(matches!(s.apply(stale).await, Err(StateError::Fenced(_))));
    assert_eq!(s.get(a).await.unwrap(), None, "nothing written");
    assert_eq!(s.checkpoint().await.unwrap(), 0);
    assert_eq!(s.queue_info().await.unwrap().total.waiting, 0);
    assert!(matches!(
        s.reset_projections(t1).await,
        Err(StateError::Fenced(_))
    ));
    s.release_projector_lease("p2", t2).await.unwrap();
    assert!(
        s.acquire_projector_lease("p3", ttl)
            .await
            .unwrap()
            .is_some(),
        "released lease is free"
    );
}

pub async fn list_pages_newest_first_by_tenant_and_status(s: S) {
    let token = lease_token(&s).await;
    let mut ids = Vec::new();
    let mut upserts = Vec::new();
    for i in 0..25 {
        let id = Uuid::now_v7();
        ids.push(id);
        let status = if i % 5 == 0 {
            Status::Dead
        } else {
            Status::Pending
        };
        upserts.push(doc(id, "acme", status, 1));
        upserts.push(doc(Uuid::now_v7(), "globex", Status::Pending, 1));
    }
    s.apply(ProjectionStep {
        token,
        upserts,
        jobs: vec![],
        checkpoint: 50,
    })
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut before = None;
    let mut pages = 0;
    loop {
        let page = s
            .list(ListQuery {
                tenant: Some("acme".into()),
                status: None,
                limit: 10,
                before,
            })
            .await
            .unwrap();
        pages += 1;
        assert!(page.items.iter().all(|d| d.tenant == "acme"));
        seen.extend(page.items.iter().map(|d| d.id));
        match page.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected, "every acme request once, newest first");
    assert_eq!(pages, 3);
    let dead = s
        .list(ListQuery {
            tenant: Some("acme".into()),
            status: Some(Status::Dead),
            limit: 100,
            before: None,
        })
        .await
        .unwrap();
    assert_eq!(dead.items.len(), 5);
    assert!(dead.next.is_none());
    let all_dead = s
        .list(ListQuery {
            tenant: None,
            status: Some(Status::Dead),
            limit: 100,
            before: None,
        })
        .await
        .unwrap();
    assert_eq!(all_dead.items.len(), 5);
    let all = s
        .list(ListQuery {
            tenant: None,
            status: Some(Status::Pending),
            limit: 100,
            before: None,
        })
        .await
        .unwrap();
    assert_eq!(all.items.len(), 45);
}

pub async fn reset_projections_keeps_the_queue(s: S) {
    let token = lease_token(&s).await;
    let a = Uuid::now_v7();
    s.apply(ProjectionStep {
        token,
        upserts: vec![doc(a, "acme", Status::Pending, 1)],
        jobs: vec![job("kept", JobName::Send, 0, 0)],
        checkpoint: 7,
    })
    .await
    .unwrap();
    s.reset_projections(token).await.unwrap();
    assert_eq!(s.get(a).await.unwrap(), None);
    assert_eq!(s.checkpoint().await.unwrap(), 0);
    assert!(
        s.status_counts(Some("acme"))
            .await
            .unwrap()
            .values()
            .all(|n| *n == 0)
    );
    assert_eq!(reserve_ids(&s, 10).await, vec!["kept"]);
    // The projection can be written again from scratch.
    s.apply(ProjectionStep {
        token,
        upserts: vec![doc(a, "acme", Status::Pending, 1)],
        jobs: vec![],
        checkpoint: 1,
    })
    .await
    .unwrap();
    assert_eq!(s.get(a).await.unwrap().map(|d| d.version), Some(1));
}

pub async fn released_jobs_run_again_without_an_attempt(s: S) {
    s.enqueue(vec![job("r", JobName::Send, 0, 0)])
        .await
        .unwrap();
    let j = s.reserve("w", 1, LEASE).await.unwrap();
    assert!(s.release(&j[0].lease).await.unwrap());
    let again = s.reserve("w", 1, LEASE).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    assert!(s.extend_lease(&again[0].lease, LEASE).await.unwrap());
    assert!(
        !s.extend_lease(&j[0].lease, LEASE).await.unwrap(),
        "the released lease is gone"
    );
}

pub async fn wait_for_jobs_wakes_on_enqueue(s: S) {
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            s.wait_for_jobs(Duration::from_secs(20)).await.unwrap();
            t.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.enqueue(vec![job("wake", JobName::Send, 0, 0)])
        .await
        .unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(
        waited >= Duration::from_millis(80),
        "returned after {waited:?}, before anything was enqueued"
    );
    assert!(
        waited < Duration::from_secs(5),
        "woke after {waited:?}, not on the enqueue"
    );
}

pub async fn complete_many_completes_each_held_lease(s: S) {
    let jobs: Vec<NewJob> = (0..5)
        .map(|i| job(&format!("m{i}"), JobName::Send, 0, 0))
        .collect();
    s.enqueue(jobs).await.unwrap();
    let leased = s.reserve("w", 5, LEASE).await.unwrap();
    assert_eq!(leased.len(), 5);
    let stale = Lease {
        job_id: leased[0].id.clone(),
        token: "not-the-token".into(),
    };
    let mut leases: Vec<Lease> = leased.iter().take(4).map(|j| j.lease.clone()).collect();
    leases.push(stale);
    assert_eq!(
        s.complete_many(&leases).await.unwrap(),
        vec![true, true, true, true, false]
    );
    assert_eq!(
        s.complete_many(&leases[..1]).await.unwrap(),
        vec![false],
        "already completed"
    );
    assert_eq!(s.complete_many(&[]).await.unwrap(), Vec::<bool>::new());
    let info = s.queue_info().await.unwrap();
    assert_eq!((info.total.active, info.total.completed), (1, 4));
}
