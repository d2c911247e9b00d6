//! Twilio Messages API against a local fake.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use farol_channels::sms::twilio::{TwilioChannel, TwilioConfig, TwilioSender};
use farol_channels::{Channel, Content, OutboundMessage, Recipient, Secret, SendError};
use serde_json::json;

use crate::common::Log;

fn twilio_error(status: StatusCode, code: i64, message: &str) -> Response {
    (status, [("retry-after", "3")], axum::Json(json!({"code": code, "message": message, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status.as_u16()})))
        .into_response()
}

async fn fake_twilio(
    State(log): State<Log>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    crate::common::record(
        &log,
        axum::http::Method::POST,
        axum::http::Uri::from_static("/"),
        headers.clone(),
        &body,
    );
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ACtest:auth-token")
    );
    if sid != "ACtest"
        || headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str())
    {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/x-www-form-urlencoded")
    {
        return twilio_error(StatusCode::BAD_REQUEST, 21609, "Invalid content type");
    }
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (Some(to), Some(_body)) = (get("To"), get("Body")) else {
        return twilio_error(StatusCode::BAD_REQUEST, 21602, "Message body is required.");
    };
    if get("From").is_none() && get("MessagingServiceSid").is_none() {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21603,
            "A 'From' or 'MessagingServiceSid' parameter is required",
        );
    }
    match to {
        "+5511900021211" => twilio_error(
            StatusCode::BAD_REQUEST,
            21211,
            "The 'To' number is not a valid phone number.",
        ),
        "+5511900020429" => twilio_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests"),
        "+5511900000500" => (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
        "+5511900000999" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::CREATED.into_response()
        }
        _ => (
            StatusCode::CREATED,
            axum::Json(json!({"sid": "SM0123456789abcdef", "status": "queued", "to": to})),
        )
            .into_response(),
    }
}

async fn twilio(password: &str) -> (TwilioChannel, Log) {
    let log: Log = Arc::default();
    let base = crate::common::serve(
        Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                post(fake_twilio),
            )
            .with_state(log.clone()),
    )
    .await;
    let channel = TwilioChannel::new(TwilioConfig {
        base_url: base,
        account_sid: "ACtest".into(),
        username: "ACtest".into(),
        password: Secret::new(password),
        sender: TwilioSender::MessagingService("MGfarol".into()),
        status_callback: Some("https://farol.test/hooks/twilio/status".into()),
        timeout: Duration::from_millis(500),
    });
    (channel, log)
}

fn sms(to: &str) -> OutboundMessage {
    OutboundMessage::new(
        Recipient::phone(to),
        Content::Sms {
            body: "Oi Maria, sua fatura vence amanhã.".into(),
        },
        "k1",
    )
}

#[tokio::test]
async fn twilio_sends_a_form_with_basic_auth() {
    let (channel, log) = twilio("auth-token").await;
    let receipt = channel.send(&sms("+5511987654321")).await.unwrap();
    assert_eq!(receipt.provider_message_id, "SM0123456789abcdef");
    assert_eq!(receipt.status.as_deref(), Some("queued"));
    let body = log.lock().unwrap()[0].body.clone();
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap();
    assert!(form.contains(&("Body".into(), "Oi Maria, sua fatura vence amanhã.".into())));
    assert!(form.contains(&("MessagingServiceSid".into(), "MGfarol".into())));
    assert!(form.contains(&(
        "StatusCallback".into(),
        "https://farol.test/hooks/twilio/status".into()
    )));
}

#[tokio::test]
async fn twilio_error_codes_are_classified() {
    let (channel, _) = twilio("auth-token").await;
    let invalid = channel.send(&sms("+5511900021211")).await.unwrap_err();
    assert!(
        matches!(&invalid, SendError::Permanent { code, contact_invalid: true, .. } if code == "21211"),
        "{invalid:?}"
    );
    assert_eq!(
        channel
            .send(&sms("+5511900020429"))
            .await
            .unwrap_err()
            .retry_after(),
        Some(Duration::from_secs(3))
    );
    assert!(
        channel
            .send(&sms("+5511900000500"))
            .await
            .unwrap_err()
            .is_transient()
    );
    let slow = channel.send(&sms("+5511900000999")).await.unwrap_err();
    assert!(
        matches!(&slow, SendError::Transient { reason, .. } if reason.contains("timeout")),
        "{slow:?}"
    );

    let (bad, _) = twilio("wrong").await;
    let err = bad.send(&sms("+5511987654321")).await.unwrap_err();
    assert!(
        matches!(&err, SendError::Permanent { code, contact_invalid: false, .. } if code == "20003"),
        "{err:?}"
    );
}
