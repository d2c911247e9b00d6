//! Send-time policies: suppression lists (API, CSV import, CLI, enforcement by the workers,
//! hard bounces), the frequency cap (also under concurrent reservations), per-account
//! business hours and settings, recurring campaigns, and the score class / cluster / last
//! contacted audience filters. Sends go to a real SMTP server (scripts/smtp_sink.py).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::campaigns::{
    Sink, app_with_sink, campaign, client_with_email, email_template, launch, results, wait_status,
};
use crate::helpers::{TestApp, farol_bin, spawn_app, spawn_with, test_config};

const CPF: &str = "529.982.247-25";

async fn post_csv(app: &TestApp, token: &str, query: &str, csv: &str) -> (StatusCode, Value) {
    let res = app
        .http
        .post(format!("{}/api/v1/suppressions/import{query}", app.base))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap())
}

async fn audit_actions(app: &TestApp, token: &str, entity_type: &str) -> Vec<String> {
    let log = app
        .get(&format!("/api/v1/audit?entity_type={entity_type}"), token)
        .await
        .body;
    log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["action"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn suppressions_are_normalized_deduplicated_validated_deleted_and_audited() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let res = app
        .post(
            "/api/v1/suppressions",
            &token,
            json!({"email": "  mailto:Ana@Example.COM ", "kind": "complaint", "reason": "spam report"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    assert_eq!(res.body["key_kind"], "email");
    assert_eq!(res.body["value"], "ana@example.com");
    assert_eq!(res.body["kind"], "complaint");
    assert_eq!(res.body["channel"], Value::Null);
    assert_eq!(res.body["source"], "api");
    let id = res.body["id"].as_i64().unwrap();
    // The same entry again: 200 with the existing one.
    let again = app
        .post(
            "/api/v1/suppressions",
            &token,
            json!({"email": "ana@example.com", "kind": "complaint"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["id"].as_i64(), Some(id));
    let phone = app
        .post(
            "/api/v1/suppressions",
            &token,
            json!({"phone": "(11) 98765-4321", "kind": "do_not_contact", "channel": "whatsapp"}),
        )
        .await;
    assert_eq!(phone.status, StatusCode::CREATED, "{:?}", phone.body);
    assert_eq!(phone.body["value"], "+5511987654321");
    assert_eq!(phone.body["channel"], "whatsapp");
    let doc = app
        .post(
            "/api/v1/suppressions",
            &token,
            json!({"cpf_cnpj": CPF, "kind": "self_exclusion"}),
        )
        .await;
    assert_eq!(doc.body["value"], "52998224725");

    // Bad inputs name their field.
    for (body, field, code) in [
        (
            json!({"phone": "(11) 1234", "kind": "complaint"}),
            "phone",
            "too_short",
        ),
        (
            json!({"cpf_cnpj": "123.456.789-00", "kind": "complaint"}),
            "cpf_cnpj",
            "wrong_check_digit",
        ),
        (
            json!({"email": "a@b.com", "phone": "11987654321", "kind": "complaint"}),
            "phone",
            "conflict",
        ),
        (json!({"email": "a@b.com"}), "kind", "required"),
        (
            json!({"email": "a@b.com", "kind": "complaint", "channel": "fax"}),
            "channel",
            "invalid_channel",
        ),
        (
            json!({"client_id": 999999, "kind": "complaint"}),
            "client_id",
            "not_found",
        ),
    ] {
        let res = app.post("/api/v1/suppressions", &token, body.clone()).await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let f = &res.body["fields"][0];
        assert_eq!(
            (f["field"].as_str(), f["code"].as_str()),
            (Some(field), Some(code)),
            "{body}: {:?}",
            res.body
        );
    }
    let res = app
        .post(
            "/api/v1/suppressions",
            &token,
            json!({"email": "a@b.com", "kind": "spam"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);

    let list = app.get("/api/v1/suppressions", &token).await;
    assert_eq!(list.body.as_array().unwrap().len(), 3);
    let only = app
        .get("/api/v1/suppressions?kind=self_exclusion", &token)
        .await;
    assert_eq!(only.body.as_array().unwrap().len(), 1);
    assert_eq!(only.body[0]["value"], "52998224725");

    // Another account sees nothing of it.
    let other = app.user("outra", farol::auth::Role::Admin).await;
    assert_eq!(
        app.get("/api/v1/suppressions", &other).await.body,
        json!([])
    );
    assert_eq!(
        app.delete(&format!("/api/v1/suppressions/{id}"), &other)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&format!("/api/v1/suppressions/{id}"), &token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(&format!("/api/v1/suppressions/{id}"), &token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let actions = audit_actions(&app, &token, "suppression").await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "suppression.create")
            .count(),
        3
    );
    assert!(actions.contains(&"suppression.delete".to_owned()));
    // Viewers cannot manage suppressions.
    let viewer = app.user("default", farol::auth::Role::Viewer).await;
    assert_eq!(
        app.get("/api/v1/suppressions", &viewer).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_csv_import_adds_valid_rows_and_names_every_invalid_value_by_row_and_column() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let c = app.client(&token, json!({"name": "Bia"})).await;
    let client = c["id"].as_i64().unwrap();
    // Semicolons (Excel pt-BR), Portuguese headers, a kind column overriding ?kind=.
    let csv = format!(
        "E-mail;CPF;client_id;tipo;motivo\n\
         Ana@Example.com;;;;pedido\n\
         ;{CPF};;self_exclusion;autoexclusão\n\
         nope@;123.456.789-00;;;\n\
         ;;{client};complaint;\n\
         ;;424242;;\n\
         ana@example.com;;;;dup\n\
         x@example.com;;;banana;\n\
         ;;;;\n\
         ;;;do_not_contact;\n"
    );
    let (status, report) = post_csv(&app, &token, "?kind=do_not_contact", &csv).await;
    assert_eq!(status, StatusCode::OK, "{report:?}");
    assert_eq!(report["rows"], 8, "{report:?}");
    assert_eq!(report["inserted"], 3, "{report:?}");
    assert_eq!(report["duplicates"], 1, "{report:?}");
    let invalid: Vec<(i64, &str, &str)> = report["invalid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["row"].as_i64().unwrap(),
                r["column"].as_str().unwrap(),
                r["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        invalid,
        [
            (4, "E-mail", "empty_domain"),
            (4, "CPF", "wrong_check_digit"),
            (6, "client_id", "not_found"),
            (8, "tipo", "invalid_kind"),
            (10, "", "missing_key"),
        ],
        "{report:?}"
    );
    let list = app.get("/api/v1/suppressions", &token).await.body;
    let mut got: Vec<(String, String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["key_kind"].as_str().unwrap().to_owned(),
                s["value"].as_str().unwrap().to_owned(),
                s["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("client_id".into(), client.to_string(), "complaint".into()),
            (
                "cpf_cnpj".into(),
                "52998224725".into(),
                "self_exclusion".into()
            ),
            (
                "email".into(),
                "ana@example.com".into(),
                "do_not_contact".into()
            ),
        ]
    );
    assert!(
        audit_actions(&app, &token, "suppression")
            .await
            .contains(&"suppression.import".to_owned())
    );
    // Without a kind anywhere, or without a key column, nothing is read.
    let (status, body) = post_csv(&app, &token, "", "email\na@b.com\n").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["fields"][0]["field"], "kind");
    let (status, body) = post_csv(&app, &token, "?kind=complaint", "nome\nAna\n").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["fields"][0]["code"], "missing_key_column");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_imports_a_suppression_file() {
    let (config, dir) = test_config().await;
    let url = config.database_url();
    let data_dir = config.data_dir.clone();
    let app = spawn_with(config, dir).await;
    let token = app.admin().await;
    let file = data_dir.join("dnc.csv");
    std::fs::write(
        &file,
        "email,phone\nzed@example.com,\n,11 98765-4321\nbad,\n",
    )
    .unwrap();
    let out = farol_bin(&data_dir, &url)
        .args(["suppressions", "import"])
        .arg(&file)
        .args(["--kind", "do_not_contact", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["inserted"], 2, "{report}");
    assert_eq!(report["invalid"][0]["row"], 4);
    assert_eq!(report["invalid"][0]["column"], "email");
    let list = app
        .get("/api/v1/suppressions?value=%2B5511987654321", &token)
        .await
        .body;
    assert_eq!(list[0]["kind"], "do_not_contact");
    assert_eq!(list[0]["source"], "cli");
    let out = farol_bin(&data_dir, &url)
        .args(["suppressions", "import"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("kind"));
}

#[tokio::test]
async fn one_coalesced_send_time_check_answers_each_recipient_with_its_own_verdict() {
    use farol::campaign::checker::{Check, check_many};
    use farol::campaign::templates::Channel;
    let app = spawn_app().await;
    let token = app.admin().await;
    let id = |v: Value| v["id"].as_i64().unwrap();
    let fine = id(client_with_email(&app, &token, "Fine", "fine@example.com").await);
    let opted = id(client_with_email(&app, &token, "Opted", "opted@example.com").await);
    let complained = id(client_with_email(&app, &token, "Compl", "compl@example.com").await);
    let excluded = id(app
        .client(
            &token,
            json!({"name": "Excl", "cpf_cnpj": CPF, "contacts": [{"kind": "email", "value": "excl@example.com"}]}),
        )
        .await);
    let phone = id(app
        .client(
            &token,
            json!({"name": "Zap", "contacts": [{"kind": "phone", "value": "+55 11 98765-4321"}]}),
        )
        .await);
    let pushed = id(client_with_email(&app, &token, "Hook", "hook@example.com").await);
    for body in [
        json!({"email": "compl@example.com", "kind": "complaint"}),
        json!({"cpf_cnpj": CPF, "kind": "self_exclusion"}),
        json!({"client_id": pushed, "kind": "do_not_contact", "channel": "email"}),
    ] {
        let res = app.post("/api/v1/suppressions", &token, body).await;
        assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    }
    sqlx::query("update contacts set opted_out = 1 where client_id = $1")
        .bind(opted)
        .execute(app.db.pool())
        .await
        .unwrap();
    let inbound = farol::db::now_ms() - 60_000;
    sqlx::query("update contacts set last_inbound_at = $1 where client_id = $2")
        .bind(inbound)
        .bind(phone)
        .execute(app.db.pool())
        .await
        .unwrap();
    let account: i64 = sqlx::query_scalar("select account_id from clients where id = $1")
        .bind(fine)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    let check = |client_id: i64, channel: Channel, address: &str| Check {
        account_id: account,
        channel,
        client_id,
        address: address.into(),
    };
    let checks = [
        check(fine, Channel::Email, "fine@example.com"),
        check(opted, Channel::Email, "opted@example.com"),
        check(complained, Channel::Email, "compl@example.com"),
        check(excluded, Channel::Email, "excl@example.com"),
        // The address is no longer one of the client's contacts.
        check(fine, Channel::Email, "old@example.com"),
        check(phone, Channel::Whatsapp, "+5511987654321"),
        // Webhook recipients are the client: an e-mail-only entry does not stop them.
        check(pushed, Channel::Webhook, ""),
        check(pushed, Channel::Email, "hook@example.com"),
        // The same recipient twice in one query gets the same answer twice.
        check(complained, Channel::Email, "compl@example.com"),
    ];
    let refs: Vec<&Check> = checks.iter().collect();
    let mut conn = app.db.pool().acquire().await.unwrap();
    let verdicts = check_many(&mut conn, app.db.backend(), &refs)
        .await
        .unwrap();
    let no = |reason: &str| Err(reason.to_owned());
    assert_eq!(
        verdicts,
        [
            Ok(None),
            no("opted_out"),
            no("suppressed:complaint"),
            no("suppressed:self_exclusion"),
            no("no_address"),
            Ok(Some(inbound)),
            Ok(None),
            no("suppressed:do_not_contact"),
            no("suppressed:complaint"),
        ]
    );
}

#[tokio::test]
async fn suppressed_clients_get_nothing_whatever_the_audience_says() {
    let sink = Sink::start(&[]);
    let app = app_with_sink(&sink).await;
    let token = app.admin().await;
    client_with_email(&app, &token, "Complained", "complained@example.com").await;
    app.client(
        &token,
        json!({"name": "Excluded", "cpf_cnpj": CPF, "contacts": [{"kind": "email", "value": "excluded@example.com"}]}),
    )
    .await;
    let sms_only = client_with_email(&app, &token, "SmsOnly", "smsonly@example.com").await["id"]
        .as_i64()
        .unwrap();
    let dnc = client_with_email(&app, &token, "Dnc", "dnc@example.com").await["id"]
        .as_i64()
        .unwrap();
    client_with_email(&app, &token, "Fine", "fine@example.com").await;
    for body in [
        json!({"email": "complained@example.com", "kind": "complaint"}),
        json!({"cpf_cnpj": CPF, "kind": "self_exclusion"}),
        json!({"client_id": sms_only, "kind": "do_not_contact", "channel": "sms"}),
        json!({"client_id": dnc, "kind": "do_not_contact"}),
    ] {
        let res = app.post("/api/v1/suppressions", &token, body).await;
        assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    }
    let template = email_template(&app, &token, "t").await;
    let id = campaign(
        &app,
        &token,
        json!({"name": "c", "channel": "email", "template_id": template}),
    )
    .await;
    launch(&app, &token, id).await;
    wait_status(&app, &token, id, "completed").await;
    let r = results(&app, &token, id).await;
    assert_eq!(r["sent"], 2, "{r:?}");
    assert_eq!(
        r["skipped_reasons"],
        json!({"suppressed:complaint": 1, "suppressed:self_exclusion": 1, "suppressed:do_not_contact": 1}),
        "{r:?}"
    );
    let mut to: Vec<String> = sink
        .messages()
        .iter()
        .map(|m| m["rcpt_tos"][0].as_str().unwrap().to_owned())
        .collect();
    to.sort();
    assert_eq!(to, ["fine@example.com", "smsonly@example.com"]);
}

#[tokio::test]
async fn a_hard_bounce_adds_a_suppression_entry() {
    let sink = Sink::start(&["gone@example.com=550"]);
    let app = app_with_sink(&sink).await;
    let token = app.admin().await;
    client_with_email(&app, &token, "Gone", "gone@example.com").await;
    let template = email_template(&app, &token, "t").await;
    let id = campaign(
        &app,
        &token,
        json!({"name": "c", "channel": "email", "template_id": template}),
    )
    .await;
    launch(&app, &token, id).await;
    wait_status(&app, &token, id, "completed").await;
    let list = app
        .get("/api/v1/suppressions?kind=hard_bounce", &token)
        .await
        .body;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list:?}");
    assert_eq!(list[0]["value"], "gone@example.com");
    assert_eq!(list[0]["source"], "bounce");
    assert!(list[0]["reason"].as_str().unwrap().contains("550"));
}

async fn sink_app_with(sink: &Sink, edit: impl FnOnce(&mut farol::config::Config)) -> TestApp {
    let (mut config, dir) = test_config().await;
    config.smtp.url = format!("smtp://127.0.0.1:{}?tls=none", sink.port).into();
    config.smtp.from = "Farol <noreply@farol.test>".into();
    config.campaign.poll_ms = 50;
    edit(&mut config);
    spawn_with(config, dir).await
}

async fn email_campaign(app: &TestApp, token: &str, template: i64, extra: Value) -> i64 {
    let mut body = json!({"name": "c", "channel": "email", "template_id": template});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    campaign(app, token, body).await
}

#[tokio::test]
async fn the_frequency_cap_skips_clients_already_messaged_in_the_window() {
    let sink = Sink::start(&[]);
    let app = sink_app_with(&sink, |c| c.campaign.frequency_cap = 1).await;
    let token = app.admin().await;
    client_with_email(&app, &token, "A", "a@example.com").await;
    let template = email_template(&app, &token, "t").await;
    let first = email_campaign(&app, &token, template, json!({})).await;
    launch(&app, &token, first).await;
    wait_status(&app, &token, first, "completed").await;
    assert_eq!(results(&app, &token, first).await["sent"], 1);
    // A second campaign within 24 h: the client is at the cap.
    let second = email_campaign(&app, &token, template, json!({})).await;
    launch(&app, &token, second).await;
    wait_status(&app, &token, second, "completed").await;
    let r = results(&app, &token, second).await;
    assert_eq!(r["sent"], 0);
    assert_eq!(r["skipped_reasons"], json!({"frequency_cap": 1}));
    // The campaign's own cap wins (0: off).
    let third = email_campaign(&app, &token, template, json!({"frequency_cap": 0})).await;
    assert_eq!(
        app.get(&format!("/api/v1/campaigns/{third}"), &token)
            .await
            .body["frequency_cap"],
        0
    );
    launch(&app, &token, third).await;
    wait_status(&app, &token, third, "completed").await;
    assert_eq!(results(&app, &token, third).await["sent"], 1);
    // The account's setting wins over the configuration: 3 per window now (2 counted so far).
    let res = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/settings/campaigns",
            Some(&token),
            Some(json!({"frequency_cap": 3})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["effective"]["frequency_cap"], 3);
    let mut sent = 0;
    for _ in 0..2 {
        let id = email_campaign(&app, &token, template, json!({})).await;
        launch(&app, &token, id).await;
        wait_status(&app, &token, id, "completed").await;
        sent += results(&app, &token, id).await["sent"].as_i64().unwrap();
    }
    assert_eq!(
        sent, 1,
        "a third message fits under the cap of 3, a fourth does not"
    );
    assert_eq!(sink.to("a@example.com").len(), 3);
    let res = app
        .post(
            "/api/v1/campaigns",
            &token,
            json!({"name": "x", "channel": "email", "template_id": template, "frequency_cap": -1}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.fields(), ["frequency_cap"]);
}

#[tokio::test]
async fn concurrent_reservations_never_pass_the_frequency_cap() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let c = app.client(&token, json!({"name": "A"})).await;
    let client = c["id"].as_i64().unwrap();
    let account: i64 = sqlx::query_scalar("select account_id from clients where id = $1")
        .bind(client)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    let now = farol::db::now_ms();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let db = app.db.clone();
            tokio::spawn(async move {
                farol::campaign::policy::reserve(&db, account, client, 1000 + i, 3, 86_400_000, now)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut reserved = 0;
    for t in tasks {
        if t.await.unwrap() == farol::campaign::policy::Reservation::Reserved {
            reserved += 1;
        }
    }
    assert_eq!(reserved, 3);
    // Outside the window, old sends no longer count; a retry keeps its reservation.
    let later = now + 86_400_001;
    use farol::campaign::policy::{Reservation, reserve};
    assert_eq!(
        reserve(&app.db, account, client, 1000, 3, 86_400_000, later)
            .await
            .unwrap(),
        Reservation::Reserved
    );
    assert_eq!(
        reserve(&app.db, account, client, 2000, 3, 86_400_000, now + 1)
            .await
            .unwrap(),
        Reservation::CapReached
    );
    // Records older than the window are pruned: the 3 of the first round.
    assert_eq!(
        farol::campaign::policy::prune(&app.db, 86_400_000, later)
            .await
            .unwrap(),
        3
    );
}

#[tokio::test]
async fn business_hours_are_per_account_and_the_settings_api_validates_them() {
    let sink = Sink::start(&[]);
    let app = sink_app_with(&sink, |_| {}).await;
    let token = app.admin().await;
    let res = app.get("/api/v1/settings/campaigns", &token).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["business_hours"], Value::Null);
    assert_eq!(res.body["effective"]["time_zone"], "America/Sao_Paulo");
    assert_eq!(res.body["effective"]["frequency_window_hours"], 24);
    let put = |body: Value| {
        let app = &app;
        let token = token.clone();
        async move {
            app.request(
                reqwest::Method::PUT,
                "/api/v1/settings/campaigns",
                Some(&token),
                Some(body),
            )
            .await
        }
    };
    for (body, field) in [
        (json!({"time_zone": "Mars/Olympus"}), "time_zone"),
        (
            json!({"business_hours": "mon-fry 08:00-20:00"}),
            "business_hours",
        ),
        (json!({"frequency_cap": 5000}), "frequency_cap"),
    ] {
        let res = put(body).await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(res.fields(), [field]);
    }
    // A one-hour window twelve hours away from now in UTC: this account holds its sends.
    let hour = (jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .hour()
        + 12)
        % 24;
    let res = put(
        json!({"business_hours": format!("mon-sun {hour:02}:00-{hour:02}:59"), "time_zone": "UTC"}),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["time_zone"], "UTC");
    client_with_email(&app, &token, "A", "a@example.com").await;
    let template = email_template(&app, &token, "t").await;
    let id = email_campaign(&app, &token, template, json!({})).await;
    launch(&app, &token, id).await;
    // Another account, without a window, sends meanwhile.
    let other = app.user("outra", farol::auth::Role::Admin).await;
    client_with_email(&app, &other, "B", "b@example.com").await;
    let t2 = email_template(&app, &other, "t").await;
    let id2 = email_campaign(&app, &other, t2, json!({})).await;
    launch(&app, &other, id2).await;
    wait_status(&app, &other, id2, "completed").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = results(&app, &token, id).await;
    assert_eq!(
        (r["queued"].as_i64(), r["sent"].as_i64()),
        (Some(1), Some(0))
    );
    assert!(sink.to("a@example.com").is_empty());
    // Any time now: the queued recipient goes.
    let res = put(json!({"business_hours": ""})).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["effective"]["business_hours"], "");
    wait_status(&app, &token, id, "completed").await;
    assert_eq!(sink.to("a@example.com").len(), 1);
    assert!(
        audit_actions(&app, &token, "settings")
            .await
            .contains(&"settings.campaigns.update".to_owned())
    );
}

async fn preview_ids(app: &TestApp, token: &str, filter: Value) -> Vec<i64> {
    let res = app
        .post(
            "/api/v1/audiences",
            token,
            json!({"name": uuid::Uuid::new_v4().to_string(), "filter": filter}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    let id = res.body["id"].as_i64().unwrap();
    let p = app
        .get(&format!("/api/v1/audiences/{id}/preview"), token)
        .await
        .body;
    let ids: Vec<i64> = p["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(p["size"].as_i64(), Some(ids.len() as i64));
    ids
}

#[tokio::test]
async fn audiences_filter_by_score_class_cluster_and_last_contact() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let mut ids = Vec::new();
    for (name, score) in [("Hot", 85), ("Warm", 55), ("Cold", 10), ("Edge", 70)] {
        let c = app
            .client(
                &token,
                json!({"name": name, "score": score, "contacts": [{"kind": "email", "value": format!("{}@example.com", name.to_lowercase())}]}),
            )
            .await;
        ids.push(c["id"].as_i64().unwrap());
    }
    let (hot, warm, cold, edge) = (ids[0], ids[1], ids[2], ids[3]);
    assert_eq!(
        preview_ids(&app, &token, json!({"score_class": "hot"})).await,
        [hot, edge]
    );
    assert_eq!(
        preview_ids(&app, &token, json!({"score_class": "warm"})).await,
        [warm]
    );
    assert_eq!(
        preview_ids(&app, &token, json!({"score_class": "cold"})).await,
        [cold]
    );
    let res = app
        .post(
            "/api/v1/audiences",
            &token,
            json!({"name": "x", "filter": {"score_class": "tepid"}}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Last contacted: hot on 2026-10-01, warm on 2026-11-15, the others never.
    for (id, at) in [
        (hot, "2026-10-01T12:00:00Z"),
        (warm, "2026-11-15T12:00:00Z"),
    ] {
        let ms = at.parse::<jiff::Timestamp>().unwrap().as_millisecond();
        sqlx::query("update contacts set last_contacted_at = $1 where client_id = $2")
            .bind(ms)
            .bind(id)
            .execute(app.db.pool())
            .await
            .unwrap();
    }
    assert_eq!(
        preview_ids(&app, &token, json!({"last_contacted_after": "2026-11-01"})).await,
        [warm]
    );
    assert_eq!(
        preview_ids(&app, &token, json!({"last_contacted_before": "2026-11-01"})).await,
        [hot]
    );
    assert_eq!(
        preview_ids(&app, &token, json!({"never_contacted": true})).await,
        [cold, edge]
    );
    assert_eq!(
        preview_ids(
            &app,
            &token,
            json!({"never_contacted": false, "score_class": "hot"})
        )
        .await,
        [hot]
    );
    let res = app
        .post(
            "/api/v1/audiences",
            &token,
            json!({"name": "y", "filter": {"last_contacted_after": "ontem"}}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.fields(), ["filter.last_contacted_after"]);

    // Clusters of the active run only.
    let account: i64 = sqlx::query_scalar("select account_id from clients where id = $1")
        .bind(hot)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    let mut runs = Vec::new();
    for active in [0, 1] {
        let run: i64 = sqlx::query_scalar(
            "insert into segment_runs (account_id, status, params, active, created_at) values ($1, 'completed', '{}', $2, 0) returning id",
        )
        .bind(account)
        .bind(active)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
        runs.push(run);
    }
    for (run, ext, client, label) in [
        (runs[0], "p1", hot, 2),
        (runs[1], "p1", hot, 1),
        (runs[1], "p2", warm, 2),
        (runs[1], "p3", cold, 2),
    ] {
        sqlx::query(
            "insert into segment_members (run_id, account_id, user_ext_id, client_id, label, features) values ($1, $2, $3, $4, $5, '{}')",
        )
        .bind(run)
        .bind(account)
        .bind(ext)
        .bind(client)
        .bind(label)
        .execute(app.db.pool())
        .await
        .unwrap();
    }
    assert_eq!(
        preview_ids(&app, &token, json!({"cluster": 2})).await,
        [warm, cold]
    );
    assert_eq!(
        preview_ids(&app, &token, json!({"cluster": 1})).await,
        [hot]
    );
    assert_eq!(
        preview_ids(&app, &token, json!({"cluster": 2, "score_class": "cold"})).await,
        [cold]
    );
}

async fn force_due(app: &TestApp, id: i64) {
    sqlx::query("update campaigns set next_run_at = $1 where id = $2")
        .bind(farol::db::now_ms() - 1000)
        .bind(id)
        .execute(app.db.pool())
        .await
        .unwrap();
}

async fn occurrences(app: &TestApp, token: &str, parent: i64) -> Vec<Value> {
    let list = app.get("/api/v1/campaigns?limit=100", token).await.body;
    let mut out: Vec<Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["parent_id"].as_i64() == Some(parent))
        .cloned()
        .collect();
    out.sort_by_key(|c| c["id"].as_i64());
    out
}

async fn wait_occurrences(app: &TestApp, token: &str, parent: i64, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = occurrences(app, token, parent).await;
        if o.len() >= n {
            return o;
        }
        assert!(
            Instant::now() < deadline,
            "no occurrence {n} of {parent}: {o:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_recurring_campaign_launches_occurrences_with_fresh_snapshots_until_paused() {
    let sink = Sink::start(&[]);
    let app = app_with_sink(&sink).await;
    let token = app.admin().await;
    client_with_email(&app, &token, "A", "a@example.com").await;
    let template = email_template(&app, &token, "t").await;
    let bad = app
        .post(
            "/api/v1/campaigns",
            &token,
            json!({"name": "r", "channel": "email", "template_id": template, "cron": "0 9 * *"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.fields(), ["cron"]);
    let id = email_campaign(
        &app,
        &token,
        template,
        json!({"cron": "0 9 * * 1-5", "time_zone": "America/Sao_Paulo", "skip_previous": true}),
    )
    .await;
    launch(&app, &token, id).await;
    let c = app
        .get(&format!("/api/v1/campaigns/{id}"), &token)
        .await
        .body;
    assert_eq!(c["status"], "scheduled");
    assert_eq!(c["cron"], "0 9 * * 1-5");
    assert_eq!(c["skip_previous"], true);
    // The next occurrence is a weekday at 09:00 in São Paulo (12:00 UTC).
    let next: jiff::Timestamp = c["next_run_at"].as_str().unwrap().parse().unwrap();
    let local = next.to_zoned(jiff::tz::TimeZone::get("America/Sao_Paulo").unwrap());
    assert_eq!((local.hour(), local.minute()), (9, 0));
    assert!(local.weekday().to_monday_one_offset() <= 5);
    assert!(next > jiff::Timestamp::now());
    // Nothing is sent before its time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(occurrences(&app, &token, id).await.is_empty());

    // Its time comes: an occurrence with its own snapshot and results.
    force_due(&app, id).await;
    let o = wait_occurrences(&app, &token, id, 1).await;
    let first = o[0]["id"].as_i64().unwrap();
    assert!(o[0]["name"].as_str().unwrap().starts_with("c — "));
    wait_status(&app, &token, first, "completed").await;
    assert_eq!(results(&app, &token, first).await["sent"], 1);
    let c = app
        .get(&format!("/api/v1/campaigns/{id}"), &token)
        .await
        .body;
    assert_eq!(c["status"], "scheduled");
    let next: jiff::Timestamp = c["next_run_at"].as_str().unwrap().parse().unwrap();
    assert!(next > jiff::Timestamp::now());

    // A new client joins; the next occurrence skips the one the previous occurrence reached.
    client_with_email(&app, &token, "B", "b@example.com").await;
    force_due(&app, id).await;
    let o = wait_occurrences(&app, &token, id, 2).await;
    let second = o[1]["id"].as_i64().unwrap();
    wait_status(&app, &token, second, "completed").await;
    let r = results(&app, &token, second).await;
    assert_eq!(r["total"], 2);
    assert_eq!(r["sent"], 1);
    assert_eq!(r["skipped_reasons"], json!({"previous_occurrence": 1}));
    assert_eq!(sink.to("a@example.com").len(), 1);
    assert_eq!(sink.to("b@example.com").len(), 1);

    // Paused: no occurrence even when its time has come.
    let res = app
        .post(&format!("/api/v1/campaigns/{id}/pause"), &token, json!({}))
        .await;
    assert_eq!(res.body["status"], "paused");
    force_due(&app, id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(occurrences(&app, &token, id).await.len(), 2);
    // Resumed: waits for the next cron time (the missed one is not caught up).
    let res = app
        .post(&format!("/api/v1/campaigns/{id}/resume"), &token, json!({}))
        .await;
    assert_eq!(res.body["status"], "scheduled", "{:?}", res.body);
    let next: jiff::Timestamp = res.body["next_run_at"].as_str().unwrap().parse().unwrap();
    assert!(next > jiff::Timestamp::now());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(occurrences(&app, &token, id).await.len(), 2);
    // Cancelled: never again.
    let res = app
        .post(&format!("/api/v1/campaigns/{id}/cancel"), &token, json!({}))
        .await;
    assert_eq!(res.body["status"], "cancelled");
    force_due(&app, id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(occurrences(&app, &token, id).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_a_recurring_campaign() {
    let (config, dir) = test_config().await;
    let url = config.database_url();
    let data_dir = config.data_dir.clone();
    let app = spawn_with(config, dir).await;
    let token = app.admin().await;
    let file = data_dir.join("t.txt");
    std::fs::write(&file, "Oi {{ nome }}").unwrap();
    let out = farol_bin(&data_dir, &url)
        .args([
            "campaign",
            "create",
            "--name",
            "semanal",
            "--channel",
            "email",
            "--subject",
            "Oi",
        ])
        .arg("--template-file")
        .arg(&file)
        .args([
            "--cron",
            "0 9 * * 1-5",
            "--time-zone",
            "America/Sao_Paulo",
            "--frequency-cap",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = app
        .get(&format!("/api/v1/campaigns/{}", created["id"]), &token)
        .await
        .body;
    assert_eq!(c["cron"], "0 9 * * 1-5");
    assert_eq!(c["time_zone"], "America/Sao_Paulo");
    assert_eq!(c["frequency_cap"], 2);
    let out = farol_bin(&data_dir, &url)
        .args([
            "campaign",
            "create",
            "--name",
            "x",
            "--channel",
            "email",
            "--subject",
            "Oi",
        ])
        .arg("--template-file")
        .arg(&file)
        .args(["--cron", "0 9 * * 1-5", "--time-zone", "Mars/Olympus"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("time_zone"));
}
