use reqwest::{Method, StatusCode};

use crate::helpers::{backend, spawn_app, spawn_with, test_config};

#[tokio::test]
async fn health_ready_and_metrics_answer_without_authentication() {
    let app = spawn_app().await;
    let health = app.request(Method::GET, "/health", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = app.request(Method::GET, "/ready", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["checks"]["database"]["backend"], backend());
    assert!(ready.headers.contains_key("x-request-id"));
    app.request(Method::GET, "/api/v1/clients", None, None)
        .await;
    let metrics = app.request(Method::GET, "/metrics", None, None).await;
    let text = metrics.body.as_str().unwrap();
    assert!(text.contains("farol_http_requests_total"), "{text}");
    assert!(text.contains("path=\"/api/v1/clients\""));
}

#[tokio::test]
async fn ready_reports_unreachable_services_as_503() {
    let (mut config, dir) = test_config().await;
    config.amqp.url = secrecy::SecretString::from("amqp://guest:guest@127.0.0.1:1/%2f".to_string());
    let app = spawn_with(config, dir).await;
    let ready = app.request(Method::GET, "/ready", None, None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["checks"]["amqp"]["ok"], false);
    assert_eq!(ready.body["checks"]["database"]["ok"], true);
}

#[tokio::test]
async fn ready_checks_rabbitmq_when_configured() {
    let url = std::env::var("FAROL_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let (mut config, dir) = test_config().await;
    config.amqp.url = secrecy::SecretString::from(url.clone());
    let app = spawn_with(config, dir).await;
    let ready = app.request(Method::GET, "/ready", None, None).await;
    assert_eq!(
        ready.status,
        StatusCode::OK,
        "RabbitMQ must be running at {url}: {:?}",
        ready.body
    );
    assert_eq!(ready.body["checks"]["amqp"]["ok"], true);
}

#[tokio::test]
async fn the_openapi_document_and_docs_page_are_served() {
    let app = spawn_app().await;
    let doc = app
        .request(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc.body["paths"].as_object().unwrap();
    for p in [
        "/api/v1/clients",
        "/api/v1/clients/{id}",
        "/api/v1/clients/{id}/timeline",
        "/api/v1/auth/login",
        "/api/v1/contacts",
        "/api/v1/users",
        "/api/v1/audit",
        "/api/v1/custom-fields",
        "/api/v1/portfolios",
        "/api/v1/tags",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(doc.body["components"]["securitySchemes"]["bearer"].is_object());
    let page = app
        .http
        .get(format!("{}/api/v1/docs/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger"), "docs page");
    assert!(
        !html.contains("https://"),
        "the docs page loads nothing from the internet"
    );
}

#[tokio::test]
async fn unknown_routes_get_a_json_404() {
    let app = spawn_app().await;
    let res = app.request(Method::GET, "/api/v1/nope", None, None).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.body["code"], "not_found");
}
