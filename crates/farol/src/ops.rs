//! Operations endpoints: liveness, readiness, Prometheus metrics, and the request metrics layer.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::state::AppState;

/// The process-wide Prometheus recorder (installed once; tests start many apps per process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("farol_http_request_duration_seconds".into()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
                    ],
                )
                .expect("valid buckets")
                .install_recorder()
                .expect("no other metrics recorder is installed")
        })
        .clone()
}

/// Records count and latency of every request by method, route template and status.
pub async fn track(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("path", path), ("status", status)];
    metrics::counter!("farol_http_requests_total", &labels).increment(1);
    metrics::histogram!("farol_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn health() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Readiness: the database answers, and Redis and RabbitMQ too when configured.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "ready"), (status = 503, description = "a dependency is down")))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let timeout = Duration::from_secs(3);
    let mut checks = serde_json::Map::new();
    let mut ok = true;

    let db = tokio::time::timeout(timeout, state.db.ping()).await;
    let db_ok = matches!(db, Ok(Ok(())));
    ok &= db_ok;
    checks.insert(
        "database".into(),
        json!({"ok": db_ok, "backend": state.db.backend().name()}),
    );

    if let Some(conn) = &state.redis {
        let mut conn = conn.clone();
        let ping =
            tokio::time::timeout(timeout, redis::cmd("PING").query_async::<String>(&mut conn))
                .await;
        let redis_ok = matches!(ping, Ok(Ok(ref pong)) if pong == "PONG");
        ok &= redis_ok;
        checks.insert("redis".into(), json!({"ok": redis_ok}));
    }

    let amqp_url = state.config.amqp.url.expose_secret().to_string();
    if !amqp_url.is_empty() {
        let connect = tokio::time::timeout(
            timeout,
            lapin::Connection::connect(&amqp_url, lapin::ConnectionProperties::default()),
        )
        .await;
        let amqp_ok = match connect {
            Ok(Ok(conn)) => {
                let _ = conn.close(200, "readiness check".into()).await;
                true
            }
            _ => false,
        };
        ok &= amqp_ok;
        checks.insert("amqp".into(), json!({"ok": amqp_ok}));
    }

    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"status": if ok { "ready" } else { "unavailable" }, "checks": checks})),
    )
        .into_response()
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}
