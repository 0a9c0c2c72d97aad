use chrono::Utc;
use uuid::Uuid;

use super::*;
use crate::command::{DeliveryOutcome, Patch, REASON_RETRY, decide_retry, record_attempt};
use crate::event::{Failed, Updated};
use crate::{CreateRequest, DomainError, MessageRequest, RetryDecision};

fn recorded(stream: &str, version: u64, data: &EventData) -> RecordedEvent {
    RecordedEvent {
        position: version,
        stream_id: stream.to_string(),
        version,
        event_id: Uuid::now_v7(),
        event_type: data.event_type().to_string(),
        tenant: "acme".into(),
        timestamp: Utc::now(),
        data: data.to_json(),
        metadata: Default::default(),
    }
}

fn created() -> EventData {
    CreateRequest {
        channel: "webhook".into(),
        recipient: "https://hooks.example.test/in".into(),
        subject: None,
        body: serde_json::json!({"hello": "world"}),
        metadata: None,
        idempotency_key: None,
    }
    .into_event()
    .unwrap()
}

fn failed(attempt: u32, retryable: bool, retry_after_ms: Option<u64>) -> EventData {
    EventData::MessageRequestFailed(Failed {
        attempt,
        error: "HTTP 503".into(),
        retryable,
        retry_after_ms,
    })
}

fn updated(status: Option<Status>) -> EventData {
    EventData::MessageRequestUpdated(Updated {
        status,
        reason: Some("test".into()),
        ..Default::default()
    })
}

/// (event, expected job name, priority, delay, reason)
fn check(data: EventData, expected: Option<(JobName, i32, u64, Option<&str>)>) {
    let id = Uuid::now_v7().to_string();
    let ev = recorded(&id, 2, &data);
    let job = Rules::seed().dispatch(&ev, Some(&data));
    match (job, expected) {
        (None, None) => {}
        (Some(job), Some((name, priority, delay, reason))) => {
            assert_eq!(job.name, name);
            assert_eq!(job.priority, priority);
            assert_eq!(job.delay_ms, delay);
            assert_eq!(
                job.id,
                ev.event_id.to_string(),
                "job id derives from the event id"
            );
            let payload: JobPayload = serde_json::from_value(job.payload).unwrap();
            assert_eq!(payload.reason.as_deref(), reason);
            assert_eq!(payload.event_id, ev.event_id);
            assert_eq!(payload.tenant, "acme");
            assert_eq!(payload.message_request_id.to_string(), id);
        }
        (got, want) => panic!("{} dispatched {got:?}, expected {want:?}", ev.event_type),
    }
}

#[test]
fn created_dispatches_a_normal_send() {
    check(created(), Some((JobName::Send, 0, 0, None)));
}

#[test]
fn failed_dispatches_a_high_priority_retry_after_5s() {
    check(
        failed(1, true, None),
        Some((
            JobName::Retry,
            1,
            5000,
            Some("Event-driven retry after failure"),
        )),
    );
}

#[test]
fn failed_with_retry_after_waits_the_longer_of_the_two_capped_at_an_hour() {
    check(
        failed(1, true, Some(1000)),
        Some((
            JobName::Retry,
            1,
            5000,
            Some("Event-driven retry after failure"),
        )),
    );
    check(
        failed(1, true, Some(20_000)),
        Some((
            JobName::Retry,
            1,
            20_000,
            Some("Event-driven retry after failure"),
        )),
    );
    check(
        failed(1, true, Some(86_400_000)),
        Some((
            JobName::Retry,
            1,
            3_600_000,
            Some("Event-driven retry after failure"),
        )),
    );
}

#[test]
fn updated_to_pending_dispatches_a_send() {
    check(
        updated(Some(Status::Pending)),
        Some((JobName::Send, 0, 0, None)),
    );
}

#[test]
fn updated_to_other_status_or_fields_only_dispatches_nothing() {
    check(updated(Some(Status::Cancelled)), None);
    check(updated(None), None);
}

#[test]
fn sent_and_dead_lettered_dispatch_nothing() {
    check(
        EventData::MessageRequestSent(crate::event::Sent {
            attempt: 1,
            receipt: "HTTP 200".into(),
        }),
        None,
    );
    check(
        EventData::MessageRequestDeadLettered(crate::event::DeadLettered {
            attempts: 5,
            last_error: "HTTP 500".into(),
        }),
        None,
    );
}

#[test]
fn an_event_without_a_message_request_id_dispatches_nothing() {
    let data = created();
    let ev = recorded("not-a-request-id", 1, &data);
    assert_eq!(Rules::seed().dispatch(&ev, Some(&data)), None);
}

#[test]
fn overrides_change_priority_delay_and_max_attempts() {
    let mut rules = Rules::seed();
    assert!(rules.override_rule(
        crate::event::FAILED,
        Some(7),
        Some(Delay::Exponential {
            base_ms: 1000,
            max_ms: 8000,
            jitter: 0.0
        }),
        Some(3)
    ));
    assert!(!rules.override_rule("NoSuchEvent", Some(1), None, None));
    assert_eq!(rules.max_attempts(), 3);
    let data = failed(3, true, None);
    let ev = recorded(&Uuid::now_v7().to_string(), 2, &data);
    let job = rules.dispatch(&ev, Some(&data)).unwrap();
    assert_eq!((job.priority, job.delay_ms), (7, 4000));
    let data = failed(9, true, None);
    let ev = recorded(&Uuid::now_v7().to_string(), 2, &data);
    assert_eq!(
        rules.dispatch(&ev, Some(&data)).unwrap().delay_ms,
        8000,
        "capped"
    );
}

#[test]
fn jitter_shortens_by_at_most_its_fraction_and_is_deterministic() {
    let d = Delay::Exponential {
        base_ms: 1000,
        max_ms: 60_000,
        jitter: 0.5,
    };
    for unit in [0.0, 0.3, 0.999] {
        let v = d.compute(2, unit);
        assert!((1000..=2000).contains(&v), "{v}");
        assert_eq!(v, d.compute(2, unit));
    }
}

fn state_after(events: &[EventData]) -> MessageRequest {
    let id = Uuid::now_v7().to_string();
    let recorded: Vec<_> = events
        .iter()
        .enumerate()
        .map(|(i, d)| recorded(&id, i as u64 + 1, d))
        .collect();
    MessageRequest::fold(&recorded).unwrap()
}

fn patch(json: serde_json::Value) -> Patch {
    serde_json::from_value(json).unwrap()
}

#[test]
fn pending_on_pending_is_a_no_op() {
    let s = state_after(&[created()]);
    assert_eq!(
        patch(serde_json::json!({"status": "PENDING"})).decide(&s),
        Ok(None)
    );
}

#[test]
fn illegal_transitions_are_refused() {
    let sent = state_after(&[
        created(),
        EventData::MessageRequestSent(crate::event::Sent {
            attempt: 1,
            receipt: "ok".into(),
        }),
    ]);
    assert_eq!(sent.status, Status::Sent);
    assert!(matches!(
        patch(serde_json::json!({"body": {"x": 1}})).decide(&sent),
        Err(DomainError::InvalidTransition(_))
    ));
    assert!(matches!(
        patch(serde_json::json!({"status": "CANCELLED"})).decide(&sent),
        Err(DomainError::InvalidTransition(_))
    ));
    let dead = state_after(&[
        created(),
        failed(1, false, None),
        EventData::MessageRequestDeadLettered(crate::event::DeadLettered {
            attempts: 1,
            last_error: "HTTP 410".into(),
        }),
    ]);
    assert!(matches!(
        patch(serde_json::json!({"status": "CANCELLED"})).decide(&dead),
        Err(DomainError::InvalidTransition(_))
    ));
    let cancelled = state_after(&[created(), updated(Some(Status::Cancelled))]);
    for p in [
        serde_json::json!({"status": "PENDING"}),
        serde_json::json!({"status": "CANCELLED"}),
        serde_json::json!({"metadata": {"a": 1}}),
    ] {
        assert!(matches!(
            patch(p).decide(&cancelled),
            Err(DomainError::InvalidTransition(_))
        ));
    }
    assert!(matches!(
        patch(serde_json::json!({"status": "SENT"})).decide(&state_after(&[created()])),
        Err(DomainError::InvalidInput { .. })
    ));
}

#[test]
fn resend_and_requeue_start_a_fresh_round_but_retry_keeps_attempts() {
    let mut events = vec![
        created(),
        failed(1, true, None),
        updated(Some(Status::Pending)),
    ];
    if let EventData::MessageRequestUpdated(u) = &mut events[2] {
        u.reason = Some(REASON_RETRY.into());
    }
    events.push(failed(2, true, None));
    let s = state_after(&events);
    assert_eq!((s.status, s.attempts), (Status::Failed, 2));
    let resend = patch(serde_json::json!({"status": "PENDING"}))
        .decide(&s)
        .unwrap()
        .unwrap();
    events.push(resend);
    let s = state_after(&events);
    assert_eq!((s.status, s.attempts), (Status::Pending, 0));
}

#[test]
fn retry_decision_follows_retryability_attempts_and_staleness() {
    let id = Uuid::now_v7().to_string();
    let evs: Vec<_> = [created(), failed(1, true, None)]
        .iter()
        .enumerate()
        .map(|(i, d)| recorded(&id, i as u64 + 1, d))
        .collect();
    let s = MessageRequest::fold(&evs).unwrap();
    assert!(matches!(
        decide_retry(&s, evs[1].event_id, 5),
        RetryDecision::Retry(_)
    ));
    assert!(matches!(
        decide_retry(&s, Uuid::now_v7(), 5),
        RetryDecision::Skip(_)
    ));
    assert!(matches!(
        decide_retry(&s, evs[1].event_id, 1),
        RetryDecision::DeadLetter(_)
    ));
    let perm = state_after(&[created(), failed(1, false, None)]);
    assert!(matches!(
        decide_retry(&perm, perm.last_failed_event.unwrap(), 5),
        RetryDecision::DeadLetter(_)
    ));
    let ok = record_attempt(
        &perm,
        DeliveryOutcome::Accepted {
            receipt: "HTTP 200".into(),
        },
    );
    assert!(matches!(ok, EventData::MessageRequestSent(ref x) if x.attempt == 2));
}

#[test]
fn create_validation_names_the_field() {
    let bad = |channel: &str, recipient: &str, body: serde_json::Value| match (CreateRequest {
        channel: channel.into(),
        recipient: recipient.into(),
        subject: None,
        body,
        metadata: None,
        idempotency_key: None,
    })
    .into_event()
    {
        Err(DomainError::InvalidInput { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(bad("sms", "x", "hi".into()), "channel");
    assert_eq!(bad("webhook", "not a url", "hi".into()), "recipient");
    assert_eq!(bad("webhook", "ftp://x.test/", "hi".into()), "recipient");
    assert_eq!(bad("email", "nobody", "hi".into()), "recipient");
    assert_eq!(
        bad("email", "a@b.test", serde_json::json!({"x": 1})),
        "body"
    );
    assert_eq!(bad("log", "", "hi".into()), "recipient");
    assert_eq!(
        bad(
            "webhook",
            "https://x.test/",
            serde_json::json!({"a": ["b\u{0}"]})
        ),
        "body"
    );
    assert_eq!(bad("log", "a\u{0}b", "hi".into()), "recipient");
    let with_metadata = CreateRequest {
        channel: "log".into(),
        recipient: "ops".into(),
        subject: None,
        body: "hi".into(),
        metadata: Some(serde_json::json!({"k": "a\u{0}b"})),
        idempotency_key: None,
    };
    assert!(matches!(
        with_metadata.into_event(),
        Err(DomainError::InvalidInput { field, .. }) if field == "metadata"
    ));
}

#[test]
fn a_batch_dispatches_the_create_job() {
    let data = EventData::MessageRequestBatchAccepted(crate::event::BatchAccepted {
        items: vec![crate::event::BatchItem {
            id: Uuid::now_v7(),
            data: created().to_json(),
        }],
    });
    check(data, Some((JobName::Create, 0, 0, None)));
}
