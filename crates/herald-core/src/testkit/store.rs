//! The event store conformance suite (see [`crate::store`] for the contract).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use herald_domain::{EventMetadata, NewEvent};
use uuid::Uuid;

use crate::store::{AppendStream, EventStore, IdempotencyRecord, StoreError};

type E = Arc<dyn EventStore>;

pub fn event(tenant: &str, n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "TestEvent".into(),
        tenant: tenant.to_string(),
        timestamp: herald_domain::event::truncate_ms(Utc::now()),
        data: serde_json::json!({ "n": n }),
        metadata: EventMetadata {
            correlation_id: Some("corr".into()),
            causation_id: None,
        },
    }
}

pub fn stream(id: &str, expected: u64, events: Vec<NewEvent>) -> AppendStream {
    AppendStream {
        stream_id: id.to_string(),
        expected_version: expected,
        events,
        idempotency: None,
    }
}

pub async fn append_and_read_a_stream(e: E) {
    let id = Uuid::now_v7().to_string();
    let first = e
        .append(stream(&id, 0, vec![event("acme", 1), event("acme", 2)]))
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|r| r.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(first[0].position < first[1].position);
    let more = e
        .append(stream(&id, 2, vec![event("acme", 3)]))
        .await
        .unwrap();
    assert_eq!(more[0].version, 3);
    let all = e.read_stream(&id).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].data, serde_json::json!({ "n": 3 }));
    assert_eq!(all[0].metadata.correlation_id.as_deref(), Some("corr"));
    assert_eq!(all[0].event_type, "TestEvent");
    assert_eq!(all[0].tenant, "acme");
    assert_eq!(all, [first, more].concat(), "read back exactly as recorded");
    assert!(e.read_stream("no-such-stream").await.unwrap().is_empty());
}

pub async fn version_conflict_writes_nothing(e: E) {
    let id = Uuid::now_v7().to_string();
    e.append(stream(&id, 0, vec![event("acme", 1)]))
        .await
        .unwrap();
    let head = e.head().await.unwrap();
    for expected in [0, 2, 5] {
        match e
            .append(stream(
                &id,
                expected,
                vec![event("acme", 9), event("acme", 10)],
            ))
            .await
        {
            Err(StoreError::VersionConflict { actual, .. }) => assert_eq!(actual, 1),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert_eq!(e.read_stream(&id).await.unwrap().len(), 1);
    assert_eq!(e.head().await.unwrap(), head);
}

pub async fn append_many_is_per_stream(e: E) {
    let (a, b, c) = (
        Uuid::now_v7().to_string(),
        Uuid::now_v7().to_string(),
        Uuid::now_v7().to_string(),
    );
    e.append(stream(&b, 0, vec![event("acme", 1)]))
        .await
        .unwrap();
    let results = e
        .append_many(vec![
            stream(&a, 0, vec![event("acme", 1)]),
            stream(&b, 0, vec![event("acme", 2)]),
            stream(&c, 0, vec![event("acme", 1), event("acme", 2)]),
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok());
    assert!(matches!(
        results[1],
        Err(StoreError::VersionConflict { .. })
    ));
    assert_eq!(results[2].as_ref().map(|v| v.len()).ok(), Some(2));
    assert_eq!(e.read_stream(&b).await.unwrap().len(), 1);
    assert_eq!(e.read_stream(&c).await.unwrap().len(), 2);
}

pub async fn read_all_in_position_order(e: E) {
    let start = e.head().await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = Uuid::now_v7().to_string();
        e.append(stream(&id, 0, vec![event("acme", 1), event("acme", 2)]))
            .await
            .unwrap();
        ids.push(id);
    }
    let head = e.head().await.unwrap();
    let all = e.read_all(start, 1000).await.unwrap();
    assert_eq!(all.len(), 10);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(all.last().map(|r| r.position), Some(head));
    let page = e.read_all(start, 3).await.unwrap();
    assert_eq!(page.len(), 3);
    let rest = e.read_all(page[2].position, 1000).await.unwrap();
    assert_eq!(rest.len(), 7);
    assert_eq!(rest[0].position, all[3].position);
    assert!(e.read_all(head, 10).await.unwrap().is_empty());
}

pub async fn idempotency_keys_are_claimed_once(e: E) {
    let key = format!("key-{}", Uuid::now_v7());
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let claim = |id: Uuid, tenant: &str| IdempotencyRecord {
        tenant: tenant.to_string(),
        key: key.clone(),
        request_id: id,
        body_hash: format!("hash-{id}"),
    };
    assert_eq!(e.idempotency_lookup("acme", &key).await.unwrap(), None);
    let mut s = stream(&a.to_string(), 0, vec![event("acme", 1)]);
    s.idempotency = Some(claim(a, "acme"));
    e.append(s).await.unwrap();
    let mut s = stream(&b.to_string(), 0, vec![event("acme", 1)]);
    s.idempotency = Some(claim(b, "acme"));
    match e.append(s).await {
        Err(StoreError::IdempotencyKeyUsed { existing }) => assert_eq!(existing, claim(a, "acme")),
        other => panic!("expected the key to be taken, got {other:?}"),
    }
    assert!(
        e.read_stream(&b.to_string()).await.unwrap().is_empty(),
        "nothing written"
    );
    assert_eq!(
        e.idempotency_lookup("acme", &key).await.unwrap(),
        Some(claim(a, "acme"))
    );
    // Keys are per tenant.
    let mut s = stream(&b.to_string(), 0, vec![event("globex", 1)]);
    s.idempotency = Some(claim(b, "globex"));
    e.append(s).await.unwrap();
    assert_eq!(
        e.idempotency_lookup("globex", &key).await.unwrap(),
        Some(claim(b, "globex"))
    );
}

pub async fn wait_for_events_wakes_on_append(e: E) {
    let head = e.head().await.unwrap();
    let waiter = {
        let e = e.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            e.wait_for_events(head, Duration::from_secs(20))
                .await
                .unwrap();
            t.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    e.append(stream(
        &Uuid::now_v7().to_string(),
        0,
        vec![event("acme", 1)],
    ))
    .await
    .unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(
        waited >= Duration::from_millis(80),
        "returned after {waited:?}, before the append"
    );
    assert!(
        waited < Duration::from_secs(5),
        "woke after {waited:?}, not on the append"
    );
    assert!(e.head().await.unwrap() > head);
}

pub async fn concurrent_appenders_one_winner_per_version(e: E) {
    let id = Uuid::now_v7().to_string();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let e = e.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let mut wins = 0;
            for round in 0..10u64 {
                let current = e.read_stream(&id).await.unwrap().len() as u64;
                match e
                    .append(stream(&id, current, vec![event("acme", i * 100 + round)]))
                    .await
                {
                    Ok(_) => wins += 1,
                    Err(StoreError::VersionConflict { .. }) => {}
                    Err(other) => panic!("{other}"),
                }
            }
            wins
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += t.await.unwrap();
    }
    let events = e.read_stream(&id).await.unwrap();
    assert_eq!(events.len(), wins);
    assert!(
        events
            .iter()
            .enumerate()
            .all(|(i, r)| r.version == i as u64 + 1),
        "no gaps, no duplicates"
    );
}

pub async fn read_streams_returns_each_existing_stream(e: E) {
    let (a, b) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
    e.append(stream(&a, 0, vec![event("acme", 1), event("acme", 2)]))
        .await
        .unwrap();
    e.append(stream(&b, 0, vec![event("globex", 1)]))
        .await
        .unwrap();
    let missing = Uuid::now_v7().to_string();
    let got = e
        .read_streams(&[a.clone(), b.clone(), missing.clone()])
        .await
        .unwrap();
    assert_eq!(got.len(), 2, "missing streams are left out");
    assert_eq!(got[&a], e.read_stream(&a).await.unwrap());
    assert_eq!(got[&b], e.read_stream(&b).await.unwrap());
    assert!(e.read_streams(&[]).await.unwrap().is_empty());
}
