//! Pacing per sender account: a channel account's `settings.rate` `{per_second, per_minute,
//! per_day}` holds for every campaign sending through it. Measured at a local Smartico
//! contract server (tests/api/smartico_campaigns.rs), which timestamps each event it receives.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::campaigns::{campaign, launch, results, wait_status};
use crate::smartico_campaigns::{
    Smartico, action_template, clients_with_ids, quick_app, quick_app_sending, smartico_account,
};

#[tokio::test]
async fn two_campaigns_on_one_account_share_the_accounts_rate() {
    let fake = Smartico::default();
    let base = fake.start().await;
    // Two workers: with RabbitMQ, two messages (one per campaign) in flight at once. Four
    // sends in flight per worker, fewer than either campaign's recipients: otherwise the
    // first campaign launched could queue for all of the account's next slots before the
    // second one starts, and the two would take turns instead of sharing.
    let (app, _) = quick_app_sending(2, 4).await;
    let token = app.admin().await;
    let rate = 10.0;
    smartico_account(&app, &token, &base, json!({"rate": {"per_second": rate}})).await;
    let template = action_template(&app, &token).await;
    // 31 events at 10/s: about 3 s. One campaign is unthrottled, the other throttled above
    // the account's rate: the account's limit binds both, together.
    let plan = [(16, None), (15, Some(50.0))];
    let mut campaigns = Vec::new();
    for (k, (n, throttle)) in plan.iter().enumerate() {
        let ids: Vec<Option<String>> = (0..*n).map(|i| Some(format!("c{k}-{i}"))).collect();
        let (audience, _) = clients_with_ids(&app, &token, &ids).await;
        campaigns.push(
            campaign(
                &app,
                &token,
                json!({"name": format!("c{k}"), "channel": "smartico", "template_id": template,
                       "audience_id": audience, "throttle_per_sec": throttle}),
            )
            .await,
        );
    }
    for id in &campaigns {
        launch(&app, &token, *id).await;
    }
    for id in &campaigns {
        wait_status(&app, &token, *id, "completed").await;
    }
    let mut times: Vec<f64> = fake
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| *t)
        .collect();
    times.sort_by(f64::total_cmp);
    let n = times.len();
    assert_eq!(n, 31);
    let span = times[n - 1] - times[0];
    let achieved = (n - 1) as f64 / span;
    eprintln!("account: {achieved:.3}/s over {span:.3} s, configured {rate}/s");
    assert!(
        (achieved - rate).abs() <= rate * 0.05,
        "achieved {achieved:.2}/s over {span:.2} s, configured {rate}/s"
    );
    // Both campaigns sent while the other did: they shared the account's slots.
    let first_of = |k: usize| {
        fake.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| {
                e["user_ext_id"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("c{k}-"))
            })
            .map(|(t, _)| *t)
            .fold(f64::MAX, f64::min)
    };
    let last_of = |k: usize| {
        fake.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| {
                e["user_ext_id"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("c{k}-"))
            })
            .map(|(t, _)| *t)
            .fold(0.0, f64::max)
    };
    assert!(first_of(1) < last_of(0) && first_of(0) < last_of(1));
}

#[tokio::test]
async fn a_daily_cap_holds_the_rest_queued_with_a_reason_until_the_next_day() {
    let fake = Smartico::default();
    let base = fake.start().await;
    let (app, _) = quick_app().await;
    let token = app.admin().await;
    // Bad rates are named by key.
    let res = app
        .post(
            "/api/v1/channel-accounts",
            &token,
            json!({"name": "bad", "provider": "smartico",
                   "settings": {"base_url": base, "rate": {"per_second": 0, "per_day": 2.5, "per_hour": 1}},
                   "secrets": {"label_token": "x"}}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut fields = res.fields();
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "settings.rate.per_day",
            "settings.rate.per_hour",
            "settings.rate.per_second"
        ]
    );

    let account = smartico_account(&app, &token, &base, json!({"rate": {"per_day": 3}})).await;
    let template = action_template(&app, &token).await;
    let ids: Vec<Option<String>> = (0..5).map(|i| Some(format!("d-{i}"))).collect();
    let (audience, _) = clients_with_ids(&app, &token, &ids).await;
    let first = campaign(
        &app,
        &token,
        json!({"name": "d1", "channel": "smartico", "template_id": template, "audience_id": audience}),
    )
    .await;
    launch(&app, &token, first).await;
    let held = |r: &Value| r["held"]["account_daily_limit"].as_i64().unwrap_or(0);
    // Held ones are written at once; sends when their outcome is committed.
    let r = wait_results(&app, &token, first, |r| held(r) == 2 && r["sending"] == 0).await;
    assert_eq!(
        (
            r["sent"].as_i64(),
            r["queued"].as_i64(),
            r["failed"].as_i64()
        ),
        (Some(3), Some(2), Some(0)),
        "{r:?}"
    );
    assert_eq!(
        r["status"], "running",
        "held recipients keep the campaign open"
    );
    // Held until the next day starts (in the tenant's time zone), not retried before.
    let next: Vec<i64> = sqlx::query_scalar(
        "select next_attempt_at from campaign_recipients where campaign_id = $1 and status = 'queued'",
    )
    .bind(first)
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    let now = farol::db::now_ms();
    assert!(
        next.iter().all(|t| *t > now && *t <= now + 86_400_000),
        "{next:?}"
    );

    // Another campaign on the same account gets nothing more today.
    let ids: Vec<Option<String>> = (0..2).map(|i| Some(format!("e-{i}"))).collect();
    let (audience2, _) = clients_with_ids(&app, &token, &ids).await;
    let second = campaign(
        &app,
        &token,
        json!({"name": "d2", "channel": "smartico", "template_id": template, "audience_id": audience2}),
    )
    .await;
    launch(&app, &token, second).await;
    let r = wait_results(&app, &token, second, |r| held(r) == 2 && r["sending"] == 0).await;
    assert_eq!(r["sent"], 0, "{r:?}");
    assert_eq!(fake.events.lock().unwrap().len(), 3);
    // The count is in the database: it holds across restarts and processes.
    let counted: i64 = sqlx::query_scalar(
        "select sends from channel_account_day_sends where channel_account_id = $1",
    )
    .bind(account)
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    assert_eq!(counted, 3);

    // A higher cap and the next day's time (moved here): the held recipients are sent.
    let res = app
        .patch(
            &format!("/api/v1/channel-accounts/{account}"),
            &token,
            json!({"settings": {"rate": {"per_day": 10}}}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    sqlx::query("update campaign_recipients set next_attempt_at = 0 where status = 'queued'")
        .execute(app.db.pool())
        .await
        .unwrap();
    for id in [first, second] {
        wait_status(&app, &token, id, "completed").await;
        let r = results(&app, &token, id).await;
        assert_eq!(r["held"], json!({}), "{r:?}");
        assert_eq!(r["failed"], 0);
    }
    assert_eq!(fake.events.lock().unwrap().len(), 7);
}

/// Polls a campaign's results until `done` (a deadline, not a timing assertion).
async fn wait_results(
    app: &crate::helpers::TestApp,
    token: &str,
    id: i64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = results(app, token, id).await;
        if done(&r) {
            return r;
        }
        assert!(std::time::Instant::now() < deadline, "never reached: {r:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn two_servers_share_an_accounts_rate_through_redis() {
    let redis_url =
        std::env::var("FAROL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let fake = Smartico::default();
    let base = fake.start().await;
    let (mut config, dir) = crate::helpers::test_config().await;
    crate::campaigns::with_queue(&mut config);
    config.campaign.poll_ms = 50;
    // Small claims, so both servers keep sending each campaign.
    config.campaign.batch = 4;
    config.redis.url = secrecy::SecretString::from(redis_url);
    // Each test its own schedule keys (parallel tests share the Redis).
    config.redis.key_prefix = format!("farol-test-{}", uuid::Uuid::new_v4().simple());
    // A second server on the same database and data directory (its secrets key), with its
    // own process-local state: only Redis makes them share the account's schedule.
    let app = crate::helpers::spawn_with(config.clone(), dir).await;
    let _second = crate::helpers::spawn_with(config, tempfile::tempdir().unwrap()).await;
    let token = app.admin().await;
    let rate = 10.0;
    smartico_account(&app, &token, &base, json!({"rate": {"per_second": rate}})).await;
    let template = action_template(&app, &token).await;
    let mut campaigns = Vec::new();
    for k in 0..2 {
        let ids: Vec<Option<String>> = (0..16).map(|i| Some(format!("r{k}-{i}"))).collect();
        let (audience, _) = clients_with_ids(&app, &token, &ids).await;
        campaigns.push(
            campaign(
                &app,
                &token,
                json!({"name": format!("r{k}"), "channel": "smartico", "template_id": template,
                       "audience_id": audience}),
            )
            .await,
        );
    }
    for id in &campaigns {
        launch(&app, &token, *id).await;
    }
    for id in &campaigns {
        wait_status(&app, &token, *id, "completed").await;
    }
    let mut times: Vec<f64> = fake
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| *t)
        .collect();
    times.sort_by(f64::total_cmp);
    let n = times.len();
    assert_eq!(n, 32, "each recipient once");
    let span = times[n - 1] - times[0];
    let achieved = (n - 1) as f64 / span;
    eprintln!("two servers: {achieved:.3}/s over {span:.3} s, configured {rate}/s");
    // Each server pacing alone would make about twice the rate.
    assert!(
        (achieved - rate).abs() <= rate * 0.05,
        "achieved {achieved:.2}/s over {span:.2} s, configured {rate}/s"
    );
}
