//! Smartico pushes against a local fake of the external events API.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use farol_channels::Backoff;
use farol_channels::smartico::{
    ArrayOp, ProfileUpdate, SmarticoClient, SmarticoConfig, SmarticoEvent,
};
use serde_json::{Map, Value, json};

use crate::common::serve;

#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Mutex<HashSet<String>>>,
    /// Statuses to answer, in order, before behaving normally.
    failures: Arc<Mutex<VecDeque<StatusCode>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    batch_sizes: Arc<Mutex<Vec<usize>>>,
    brands: Arc<Mutex<HashSet<String>>>,
    /// How many of the next requests answer only after the client's timeout.
    slow: Arc<AtomicUsize>,
}

fn invalid(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"err_code": 1, "err_message": message})),
    )
        .into_response()
}

fn valid_event(e: &Value) -> bool {
    e["eid"].as_str().is_some_and(|s| !s.is_empty())
        && e["event_date"]
            .as_i64()
            .is_some_and(|d| d > 1_000_000_000_000)
        && e["user_ext_id"].as_str().is_some_and(|s| !s.is_empty())
        && matches!(
            e["event_type"].as_str(),
            Some("update_profile" | "client_action")
        )
        && e["payload"].is_object()
}

async fn fake_smartico(State(fake): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    let now = fake.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    fake.max_in_flight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(10)).await;
    if fake
        .slow
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let response = handle(&fake, &headers, &body);
    fake.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

fn handle(fake: &Fake, headers: &HeaderMap, body: &[u8]) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("label-token-123") {
        return axum::Json(json!({"err_code": 10000, "err_message": "Invalid API key"}))
            .into_response();
    }
    if let Some(status) = fake.failures.lock().unwrap().pop_front() {
        return (status, [("retry-after", "0")], "try later").into_response();
    }
    if body.len() > 10 * 1024 * 1024 {
        return invalid("request too large");
    }
    let Ok(Value::Array(events)) = serde_json::from_slice::<Value>(body) else {
        return invalid("body must be a JSON array");
    };
    if events.len() > 4000 {
        return invalid("more than 4000 events");
    }
    if !events.iter().all(valid_event) {
        return invalid("malformed event");
    }
    fake.batch_sizes.lock().unwrap().push(events.len());
    fake.brands.lock().unwrap().extend(
        events
            .iter()
            .map(|e| e["ext_brand_id"].as_str().unwrap_or("<none>").to_owned()),
    );
    let mut errors = Map::new();
    let mut seen = fake.seen.lock().unwrap();
    for e in &events {
        let eid = e["eid"].as_str().unwrap().to_owned();
        if e["user_ext_id"].as_str().unwrap().starts_with("missing") {
            errors.insert(
                eid,
                json!([{"error_code": 10001, "error_message": "User not found"}]),
            );
        } else if !seen.insert(eid.clone()) {
            errors.insert(
                eid,
                json!([{"error_code": 20056, "error_message": "Duplicate event"}]),
            );
        }
    }
    axum::Json(json!({"err_code": 0, "event_errors": errors})).into_response()
}

async fn client(token: &str, fake: &Fake, parallel: usize) -> SmarticoClient {
    let router = Router::new()
        .route("/api/external/events/v2", post(fake_smartico))
        .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(fake.clone());
    let base = serve(router).await;
    let mut config = SmarticoConfig::new(base, token);
    config.ext_brand_id = Some("farol-brand".into());
    config.max_parallel_requests = parallel;
    config.timeout = Duration::from_secs(1);
    config.backoff = Backoff {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
        max_retry_after: Duration::from_millis(5),
        max_retries: 3,
    };
    SmarticoClient::new(config)
}

fn events(n: usize) -> Vec<SmarticoEvent> {
    (0..n)
        .map(|i| {
            let user = if i < 5 {
                format!("missing-{i}")
            } else {
                format!("user-{i}")
            };
            ProfileUpdate::new()
                .array(
                    "core_external_segment",
                    ArrayOp::Add,
                    [format!("CLUSTER_{}", i % 7)],
                )
                .skip_cjm(true)
                .into_event(format!("e{i}"), user, 1_763_800_000_000)
        })
        .collect()
}

#[tokio::test]
async fn smartico_push_batches_dedupes_retries_and_reconciles() {
    let fake = Fake::default();
    fake.seen
        .lock()
        .unwrap()
        .extend(["e10", "e11", "e12"].map(String::from));
    fake.failures.lock().unwrap().extend([
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::SERVICE_UNAVAILABLE,
    ]);
    let client = client("label-token-123", &fake, 2).await;

    let mut input = events(9000);
    input.push(input[100].clone());
    input.push(input[200].clone());
    let report = client.push(input).await;

    assert_eq!(report.deduplicated, 2);
    assert_eq!(report.accepted, 8995);
    assert_eq!(report.duplicates, 3);
    assert_eq!(report.failed.len(), 5);
    assert!(report.failed.iter().all(|f| f.code == "10001"));
    assert_eq!(report.users_not_found().count(), 5);
    assert_eq!(
        report.requests,
        3 + 2,
        "three batches plus two retried failures"
    );
    let mut sizes = fake.batch_sizes.lock().unwrap().clone();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![1000, 4000, 4000]);
    assert!(fake.max_in_flight.load(Ordering::SeqCst) <= 2);

    // Pushing the same events again: everything comes back as duplicates, nothing fails anew.
    let again = client.push(events(9000)).await;
    assert_eq!(again.accepted, 8995);
    assert_eq!(again.duplicates, 8995);
}

#[tokio::test]
async fn smartico_bad_token_fails_every_event_without_retrying() {
    let fake = Fake::default();
    let client = client("Bearer label-token-123", &fake, 12).await;
    let report = client.push(events(10)).await;
    assert_eq!(report.accepted, 0);
    assert_eq!(report.failed.len(), 10);
    assert!(
        report.failed.iter().all(|f| f.code == "10000"),
        "{:?}",
        report.failed[0]
    );
    assert_eq!(report.requests, 1);
}

#[tokio::test]
async fn smartico_gives_up_after_the_retry_budget() {
    let fake = Fake::default();
    fake.failures
        .lock()
        .unwrap()
        .extend([StatusCode::BAD_GATEWAY; 10]);
    let client = client("label-token-123", &fake, 1).await;
    let report = client.push(events(20)).await;
    assert_eq!(report.failed.len(), 20);
    assert!(report.failed.iter().all(|f| f.code == "transient"));
    assert_eq!(report.requests, 4, "one attempt plus three retries");
}

#[tokio::test]
async fn smartico_events_carry_the_brand_and_the_documented_shape() {
    let fake = Fake::default();
    let client = client("label-token-123", &fake, 1).await;
    let report = client.push(events(6)).await;
    assert_eq!(report.accepted, 1);
    assert_eq!(fake.batch_sizes.lock().unwrap().as_slice(), &[6]);
    assert_eq!(
        *fake.brands.lock().unwrap(),
        HashSet::from(["farol-brand".to_owned()])
    );
    let e = serde_json::to_value(&events(6)[5]).unwrap();
    assert_eq!(
        e["payload"],
        json!({"+core_external_segment": ["CLUSTER_5"], "skip_cjm": true})
    );
}

#[tokio::test]
async fn smartico_retries_a_request_that_timed_out() {
    let fake = Fake::default();
    fake.slow.store(1, Ordering::SeqCst);
    let client = client("label-token-123", &fake, 1).await;
    let report = client.push(events(8)).await;
    assert_eq!(report.accepted, 3);
    assert_eq!(report.failed.len(), 5, "the five unknown users");
    assert_eq!(report.requests, 2);
}
