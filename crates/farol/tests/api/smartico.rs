//! Smartico sync of segmentation runs against a local server speaking Smartico's external
//! events API contract: `POST /api/external/events/v2`, `Authorization: <label token>` (no
//! `Bearer`), a JSON array of events, answers `{err_code, event_errors: {eid: [{error_code,
//! error_message}]}}` with 20056 for an eid already received, 10001 for an unknown user,
//! 10000 for a bad token, and 429 with `Retry-After` when throttling.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};

use crate::helpers::{TestApp, farol_bin, spawn_with, test_config};

const TOKEN: &str = "label-token-s3cr3t";

#[derive(Clone, Default)]
struct Fake {
    /// Every event accepted or rejected, in arrival order.
    events: Arc<Mutex<Vec<Value>>>,
    seen: Arc<Mutex<HashSet<String>>>,
    batch_sizes: Arc<Mutex<Vec<usize>>>,
    /// How many of the next requests get a 429.
    throttle: Arc<AtomicUsize>,
    unknown: Arc<Mutex<HashSet<String>>>,
    requests: Arc<AtomicUsize>,
}

async fn events_api(State(fake): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    fake.requests.fetch_add(1, Ordering::SeqCst);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
        return axum::Json(json!({"err_code": 10000, "err_message": "Invalid API key"}))
            .into_response();
    }
    if fake
        .throttle
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "0")],
            "slow down",
        )
            .into_response();
    }
    let Ok(Value::Array(events)) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"err_code": 1, "err_message": "expected a JSON array"})),
        )
            .into_response();
    };
    fake.batch_sizes.lock().unwrap().push(events.len());
    let mut errors = Map::new();
    for e in &events {
        let ok = e["eid"].as_str().is_some_and(|s| !s.is_empty())
            && e["event_date"]
                .as_i64()
                .is_some_and(|d| d > 1_000_000_000_000)
            && e["user_ext_id"].as_str().is_some_and(|s| !s.is_empty())
            && e["event_type"] == "update_profile"
            && e["payload"].is_object();
        if !ok {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"err_code": 1, "err_message": format!("bad event {e}")})),
            )
                .into_response();
        }
        let eid = e["eid"].as_str().unwrap().to_owned();
        let user = e["user_ext_id"].as_str().unwrap();
        fake.events.lock().unwrap().push(e.clone());
        if fake.unknown.lock().unwrap().contains(user) {
            errors.insert(
                eid,
                json!([{"error_code": 10001, "error_message": "User not found"}]),
            );
        } else if !fake.seen.lock().unwrap().insert(eid.clone()) {
            errors.insert(
                eid,
                json!([{"error_code": 20056, "error_message": "Duplicate event"}]),
            );
        }
    }
    axum::Json(json!({"err_code": 0, "event_errors": errors})).into_response()
}

async fn fake_smartico(fake: &Fake) -> String {
    let router = Router::new()
        .route("/api/external/events/v2", post(events_api))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

fn enable(config: &mut farol::config::Config, base: &str, token: &str) {
    config.smartico.enabled = true;
    config.smartico.base_url = base.to_owned();
    config.smartico.label_token = token.to_owned().into();
    config.smartico.brand = "brand-br".into();
    config.smartico.batch_size = 2;
    config.smartico.retry_base_ms = 10;
    config.smartico.max_retries = 3;
}

async fn account_of(app: &TestApp, token: &str) -> i64 {
    let me = app.get("/api/v1/auth/me", token).await.body;
    sqlx::query_scalar("select account_id from users where id = $1")
        .bind(me["id"].as_i64().unwrap())
        .fetch_one(app.db.pool())
        .await
        .unwrap()
}

/// A completed run with `clusters` (label, pt-BR name) and `members` (player, label).
async fn make_run(
    app: &TestApp,
    account: i64,
    clusters: &[(i64, &str)],
    members: &[(&str, i64)],
) -> i64 {
    let run: i64 = sqlx::query_scalar(
        "insert into segment_runs (account_id, status, params, created_at) values ($1, 'completed', '{}', $2) returning id",
    )
    .bind(account)
    .bind(farol::db::now_ms())
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    for (label, name) in clusters {
        sqlx::query(
            "insert into segment_clusters (run_id, account_id, label, name_pt, name_en, size, share, profile) \
             values ($1, $2, $3, $4, $4, 1, 0.5, '{}')",
        )
        .bind(run)
        .bind(account)
        .bind(*label)
        .bind(name.to_string())
        .execute(app.db.pool())
        .await
        .unwrap();
    }
    for (user, label) in members {
        sqlx::query(
            "insert into segment_members (run_id, account_id, user_ext_id, label, features) values ($1, $2, $3, $4, '{}')",
        )
        .bind(run)
        .bind(account)
        .bind(user.to_string())
        .bind(*label)
        .execute(app.db.pool())
        .await
        .unwrap();
    }
    run
}

/// The events the fake received for one player, in order.
fn payloads_of(fake: &Fake, user: &str) -> Vec<Value> {
    fake.events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e["user_ext_id"] == user)
        .map(|e| e["payload"].clone())
        .collect()
}

#[tokio::test]
async fn runs_push_only_the_players_who_entered_or_left_a_segment() {
    let fake = Fake::default();
    let base = fake_smartico(&fake).await;
    let (mut config, dir) = test_config().await;
    enable(&mut config, &base, TOKEN);
    let app = spawn_with(config, dir).await;
    let token = app.admin().await;
    let account = account_of(&app, &token).await;
    fake.unknown.lock().unwrap().insert("p5".into());
    fake.throttle.store(1, Ordering::SeqCst);

    let clusters = [
        (0, "Alto valor"),
        (1, "Caça-níqueis à noite"),
        (-1, "Ruído"),
    ];
    let run1 = make_run(
        &app,
        account,
        &clusters,
        &[("p1", 0), ("p2", 0), ("p3", 1), ("p4", -1), ("p5", 1)],
    )
    .await;
    let res = app
        .post(
            &format!("/api/v1/segmentations/{run1}/smartico"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    let s = &res.body;
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["base_run_id"], Value::Null);
    assert_eq!(
        (
            s["events"].as_i64(),
            s["users_entered"].as_i64(),
            s["users_left"].as_i64()
        ),
        (Some(4), Some(4), Some(0)),
        "noise is no segment: {s}"
    );
    assert_eq!(
        (s["accepted"].as_i64(), s["failed"].as_i64()),
        (Some(3), Some(1))
    );
    assert_eq!(s["users_not_found"], 1);
    assert_eq!(s["failures"][0]["user_ext_id"], "p5");
    assert_eq!(s["failures"][0]["code"], "10001");
    // Two batches of at most two events, one of them retried after the 429.
    assert_eq!(s["requests"], 3, "{s}");
    assert!(fake.batch_sizes.lock().unwrap().iter().all(|n| *n <= 2));
    assert_eq!(
        payloads_of(&fake, "p1"),
        [json!({"+core_external_segment": ["FAROL_ALTO_VALOR"]})]
    );
    assert_eq!(
        payloads_of(&fake, "p3"),
        [json!({"+core_external_segment": ["FAROL_CACA_NIQUEIS_A_NOITE"]})]
    );
    assert!(payloads_of(&fake, "p4").is_empty());
    assert!(
        fake.events
            .lock()
            .unwrap()
            .iter()
            .all(|e| e["ext_brand_id"] == "brand-br")
    );

    // The next run: p2 moves, p3 and p5 leave, p6 arrives, p1 stays (no event).
    let run2 = make_run(
        &app,
        account,
        &clusters,
        &[("p1", 0), ("p2", 1), ("p4", -1), ("p6", 0)],
    )
    .await;
    fake.events.lock().unwrap().clear();
    let s = app
        .post(
            &format!("/api/v1/segmentations/{run2}/smartico"),
            &token,
            json!({}),
        )
        .await
        .body;
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["base_run_id"].as_i64(), Some(run1));
    assert_eq!(
        (
            s["events"].as_i64(),
            s["users_entered"].as_i64(),
            s["users_left"].as_i64()
        ),
        (Some(4), Some(2), Some(3)),
        "{s}"
    );
    assert!(payloads_of(&fake, "p1").is_empty());
    assert_eq!(
        payloads_of(&fake, "p2"),
        [json!({
            "+core_external_segment": ["FAROL_CACA_NIQUEIS_A_NOITE"],
            "-core_external_segment": ["FAROL_ALTO_VALOR"],
        })]
    );
    assert_eq!(
        payloads_of(&fake, "p3"),
        [json!({"-core_external_segment": ["FAROL_CACA_NIQUEIS_A_NOITE"]})]
    );
    assert_eq!(
        payloads_of(&fake, "p6"),
        [json!({"+core_external_segment": ["FAROL_ALTO_VALOR"]})]
    );

    // Pushing the same run again sends the same events (same eids): Smartico dedupes them.
    let again = app
        .post(
            &format!("/api/v1/segmentations/{run2}/smartico"),
            &token,
            json!({}),
        )
        .await
        .body;
    assert_eq!(again["status"], "completed");
    assert_eq!(again["base_run_id"].as_i64(), Some(run1));
    assert_eq!(again["duplicates"], 3, "{again}");
    assert_eq!(again["users_not_found"], 1);
    let list = app
        .get(&format!("/api/v1/segmentations/{run2}/smartico"), &token)
        .await;
    assert_eq!(list.status, StatusCode::OK);
    let ids: Vec<i64> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        [again["id"].as_i64().unwrap(), s["id"].as_i64().unwrap()]
    );
    let audit = app
        .get("/api/v1/audit?action=segmentation.smartico_sync", &token)
        .await
        .body;
    assert_eq!(audit["items"].as_array().unwrap().len(), 3);
    // Other accounts see none of it.
    let other = app.user("outra", farol::auth::Role::Admin).await;
    assert_eq!(
        app.get(&format!("/api/v1/segmentations/{run2}/smartico"), &other)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_bad_token_or_no_configuration_fails_the_sync_without_leaking_the_token() {
    let fake = Fake::default();
    let base = fake_smartico(&fake).await;
    let (mut config, dir) = test_config().await;
    enable(&mut config, &base, "wrong-token-value");
    let app = spawn_with(config, dir).await;
    let token = app.admin().await;
    let account = account_of(&app, &token).await;
    let run = make_run(
        &app,
        account,
        &[(0, "VIP")],
        &[("p1", 0), ("p2", 0), ("p3", 0)],
    )
    .await;
    let s = app
        .post(
            &format!("/api/v1/segmentations/{run}/smartico"),
            &token,
            json!({}),
        )
        .await
        .body;
    assert_eq!(s["status"], "failed", "{s}");
    assert_eq!(s["failed"], 3);
    assert!(s["error"].as_str().unwrap().contains("10000"), "{s}");
    assert!(!s.to_string().contains("wrong-token-value"));
    // Not retried: a bad token is permanent (two batches, one request each).
    assert_eq!(fake.requests.load(Ordering::SeqCst), 2);
    // A failed sync is no base for the next diff.
    let run2 = make_run(&app, account, &[(0, "VIP")], &[("p1", 0)]).await;
    let s = app
        .post(
            &format!("/api/v1/segmentations/{run2}/smartico"),
            &token,
            json!({}),
        )
        .await
        .body;
    assert_eq!(s["base_run_id"], Value::Null);

    let (config, dir) = test_config().await;
    let plain = spawn_with(config, dir).await;
    let token = plain.admin().await;
    let account = account_of(&plain, &token).await;
    let run = make_run(&plain, account, &[(0, "VIP")], &[("p1", 0)]).await;
    let res = plain
        .post(
            &format!("/api/v1/segmentations/{run}/smartico"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert_eq!(
        plain
            .post("/api/v1/segmentations/999999/smartico", &token, json!({}))
            .await
            .status,
        StatusCode::CONFLICT,
        "the configuration is checked first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_segmentation_is_pushed_and_exported_as_an_imported_segment() {
    let fake = Fake::default();
    let base = fake_smartico(&fake).await;
    let (mut config, dir) = test_config().await;
    let out = farol_bin(dir.path(), "")
        .args([
            "bench",
            "gen-transactions",
            "--users",
            "300",
            "--tx-per-user",
            "20",
            "--partitioned",
            "-o",
        ])
        .arg(dir.path().join("lake"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    config.segment.transactions = dir.path().join("lake/transactions").display().to_string();
    config.segment.users = dir.path().join("lake/users.csv").display().to_string();
    enable(&mut config, &base, TOKEN);
    config.smartico.batch_size = 4000;
    config.smartico.skip_cjm = true;
    let url = config.database_url();
    let data_dir = config.data_dir.clone();
    let app = spawn_with(config, dir).await;
    let token = app.admin().await;
    let r = app
        .post(
            "/api/v1/segmentations",
            &token,
            json!({"algorithm": "kmeans"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    // The push runs right after the run completes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let syncs = loop {
        let list = app
            .get(&format!("/api/v1/segmentations/{id}/smartico"), &token)
            .await
            .body;
        if list
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["status"] != "running"))
        {
            break list;
        }
        assert!(std::time::Instant::now() < deadline, "no sync: {list}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let s = &syncs[0];
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["events"], 300, "{s}");
    assert_eq!(s["accepted"], 300);
    let users: HashSet<String> = fake
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e["user_ext_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(users.len(), 300);
    // skip_cjm: profiles change without triggering journeys.
    assert!(fake.events.lock().unwrap().iter().all(|e| {
        e["payload"]["skip_cjm"] == true
            && e["payload"]["+core_external_segment"][0]
                .as_str()
                .is_some_and(|s| s.starts_with("FAROL_"))
    }));

    // The imported-segment CSV: a header and one row per player with its segment.
    let file = data_dir.join("smartico.csv");
    let env_token = TOKEN.to_owned();
    let out = farol_bin(&data_dir, &url)
        .args(["segment", "export", "--format", "smartico-csv", "-o"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("user_ext_id,core_external_segment"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 300);
    assert!(
        rows.iter()
            .all(|r| r.split(',').nth(1).is_some_and(|s| s.starts_with("FAROL_")))
    );

    // The CLI push of the same run: same eids, all already known to Smartico.
    let mut cmd = farol_bin(&data_dir, &url);
    cmd.env("FAROL_SMARTICO__ENABLED", "true")
        .env("FAROL_SMARTICO__BASE_URL", &base)
        .env("FAROL_SMARTICO__LABEL_TOKEN", &env_token)
        .env("FAROL_SMARTICO__BRAND", "brand-br")
        .args(["segment", "push-smartico", &id.to_string(), "--json"]);
    // The fake Smartico runs on this test's runtime: wait for the CLI off it.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(TOKEN), "the token is never logged");
    let sync: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sync["duplicates"], 300, "{sync}");
    assert_eq!(sync["status"], "completed");
}
