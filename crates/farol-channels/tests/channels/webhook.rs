//! The outbound webhook channel against a local receiver that verifies the signature.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use farol_channels::webhook::{WebhookChannel, WebhookConfig, verify_signature};
use farol_channels::{Backoff, Channel, Content, OutboundMessage, Recipient, Secret, SendError};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Receiver {
    answers: Arc<Mutex<VecDeque<StatusCode>>>,
    bodies: Arc<Mutex<Vec<Value>>>,
    attempts: Arc<Mutex<usize>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    *r.attempts.lock().unwrap() += 1;
    let signature = headers
        .get("x-farol-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if verify_signature(
        "whsec_test",
        signature,
        &body,
        jiff::Timestamp::now().as_second(),
        Duration::from_secs(300),
    )
    .is_err()
    {
        return StatusCode::UNAUTHORIZED;
    }
    if let Some(status) = r.answers.lock().unwrap().pop_front() {
        return status;
    }
    r.bodies
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    StatusCode::NO_CONTENT
}

async fn slow(State(r): State<Receiver>) -> StatusCode {
    *r.attempts.lock().unwrap() += 1;
    tokio::time::sleep(Duration::from_secs(5)).await;
    StatusCode::OK
}

async fn setup(
    secret: &str,
    answers: &[StatusCode],
) -> (WebhookChannel, Receiver, OutboundMessage) {
    let receiver = Receiver::default();
    receiver
        .answers
        .lock()
        .unwrap()
        .extend(answers.iter().copied());
    let base = crate::common::serve(
        Router::new()
            .route("/hook", post(receive))
            .route("/slow", post(slow))
            .with_state(receiver.clone()),
    )
    .await;
    let channel = WebhookChannel::new(WebhookConfig {
        secret: Secret::new(secret),
        timeout: Duration::from_millis(500),
        backoff: Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
            max_retry_after: Duration::from_millis(2),
            max_retries: 3,
        },
    });
    let mut msg = OutboundMessage::new(
        Recipient::Url {
            url: format!("{base}/hook"),
        },
        Content::Json {
            event: "client.segment_changed".into(),
            data: json!({"client_id": 7, "segment": "VIP"}),
        },
        "evt-1",
    );
    msg.metadata.insert("campaign_id".into(), "42".into());
    (channel, receiver, msg)
}

#[tokio::test]
async fn webhook_delivers_a_signed_body_after_retrying_transient_failures() {
    let (channel, receiver, msg) = setup(
        "whsec_test",
        &[
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::TOO_MANY_REQUESTS,
        ],
    )
    .await;
    let receipt = channel.send(&msg).await.unwrap();
    assert_eq!(receipt.provider_message_id, "evt-1");
    assert_eq!(*receiver.attempts.lock().unwrap(), 3);
    let body = receiver.bodies.lock().unwrap()[0].clone();
    assert_eq!(body["id"], "evt-1");
    assert_eq!(body["type"], "client.segment_changed");
    assert_eq!(body["data"], json!({"client_id": 7, "segment": "VIP"}));
    assert_eq!(body["metadata"]["campaign_id"], "42");
}

#[tokio::test]
async fn webhook_does_not_retry_permanent_failures() {
    let (channel, receiver, msg) = setup("wrong-secret", &[]).await;
    let err = channel.send(&msg).await.unwrap_err();
    assert!(
        matches!(&err, SendError::Permanent { code, .. } if code == "http_401"),
        "{err:?}"
    );
    assert_eq!(*receiver.attempts.lock().unwrap(), 1);

    let (channel, _, msg) = setup("whsec_test", &[StatusCode::GONE]).await;
    assert!(matches!(
        channel.send(&msg).await,
        Err(SendError::Permanent {
            contact_invalid: true,
            ..
        })
    ));

    let (channel, receiver, msg) = setup("whsec_test", &[StatusCode::BAD_GATEWAY; 10]).await;
    assert!(channel.send(&msg).await.unwrap_err().is_transient());
    assert_eq!(
        *receiver.attempts.lock().unwrap(),
        4,
        "one attempt plus three retries"
    );
}

#[tokio::test]
async fn webhook_timeouts_are_transient_and_retried() {
    let (channel, receiver, mut msg) = setup("whsec_test", &[]).await;
    let Recipient::Url { url } = &mut msg.to else {
        unreachable!()
    };
    *url = url.replace("/hook", "/slow");
    let err = channel.send(&msg).await.unwrap_err();
    assert!(
        matches!(&err, SendError::Transient { reason, .. } if reason.contains("timeout")),
        "{err:?}"
    );
    assert_eq!(*receiver.attempts.lock().unwrap(), 4);
}
