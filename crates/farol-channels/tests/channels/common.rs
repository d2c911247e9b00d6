//! Test helpers: a recording axum server on port 0, and message builders.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, Method, Uri};
use farol_channels::{Content, EmailContent, OutboundMessage, Recipient};

/// One request the fake provider received.
#[derive(Debug, Clone)]
#[allow(dead_code)]
pub struct Recorded {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Recorded {
    #[allow(dead_code)]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
    #[allow(dead_code)]
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// Requests seen by a fake server.
pub type Log = Arc<Mutex<Vec<Recorded>>>;

/// Serves `router` on 127.0.0.1:0 and returns its base URL (`http://127.0.0.1:port`).
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// Records the request into `log`.
#[allow(dead_code)]
pub fn record(log: &Log, method: Method, uri: Uri, headers: HeaderMap, body: &[u8]) {
    log.lock().unwrap().push(Recorded {
        method,
        uri,
        headers,
        body: body.to_vec(),
    });
}

/// An e-mail message to `to` with HTML, text and an unsubscribe URL.
#[allow(dead_code)]
pub fn email(to: &str, key: &str) -> OutboundMessage {
    let mut msg = OutboundMessage::new(
        Recipient::Email {
            address: to.into(),
            name: Some("Maria Silva".into()),
        },
        Content::Email(EmailContent {
            subject: "Oferta para Padaria Pão & Cia".into(),
            text: "Olá Maria, seu plano Ouro.".into(),
            html: Some("<p>Olá <b>Maria</b>, seu plano Ouro.</p>".into()),
            unsubscribe_url: Some("https://farol.test/u/tok123".into()),
            reply_to: None,
            headers: vec![],
        }),
        key,
    );
    msg.metadata.insert("campaign_id".into(), "42".into());
    msg
}
