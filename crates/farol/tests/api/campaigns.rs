//! Campaigns end to end: templates, audiences, launch, the send workers delivering to a real
//! SMTP server on localhost (scripts/smtp_sink.py on aiosmtpd), failures, pause/resume,
//! throttle.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_with, test_config};

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("FAROL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/farol/venv")
        });
    let python = venv.join("bin/python");
    let ok = python.exists()
        && Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the campaign tests need aiosmtpd in {}: run scripts/install-test-deps (or set FAROL_VENV)",
        venv.display()
    );
    python
}

/// A real SMTP server (aiosmtpd) saving each message as JSON.
pub(crate) struct Sink {
    child: Child,
    pub(crate) port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sink {
    /// `rejects`: `address=CODE[:TIMES]` rules (see smtp_sink.py).
    pub(crate) fn start(rejects: &[&str]) -> Sink {
        let args: Vec<&str> = rejects.iter().flat_map(|r| ["--reject", r]).collect();
        Sink::start_args(&args)
    }

    /// A sink that requires AUTH with `user:password`.
    pub(crate) fn start_with_auth(credentials: &str) -> Sink {
        Sink::start_args(&["--auth", credentials])
    }

    fn start_args(args: &[&str]) -> Sink {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/smtp_sink.py");
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(venv_python());
        cmd.arg(&script).arg("--dir").arg(dir.path()).args(args);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start smtp_sink.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("smtp_sink.py did not report its port: {line:?}"));
        Sink { child, port, dir }
    }

    pub(crate) fn messages(&self) -> Vec<Value> {
        let mut out: Vec<Value> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect();
        out.sort_by(|a, b| {
            a["received_at"]
                .as_f64()
                .partial_cmp(&b["received_at"].as_f64())
                .unwrap()
        });
        out
    }

    pub(crate) fn to(&self, address: &str) -> Vec<Value> {
        self.messages()
            .into_iter()
            .filter(|m| {
                m["rcpt_tos"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r == address)
            })
            .collect()
    }
}

pub(crate) fn header<'a>(msg: &'a Value, name: &str) -> Option<&'a str> {
    msg["headers"].as_array().unwrap().iter().find_map(|h| {
        (h[0].as_str().unwrap().eq_ignore_ascii_case(name)).then(|| h[1].as_str().unwrap())
    })
}

/// The send queue these tests run against: `FAROL_TEST_QUEUE=database` (default) or
/// `rabbitmq` (`FAROL_TEST_AMQP_URL`, a queue of its own per test).
pub(crate) fn with_queue(config: &mut farol::config::Config) {
    match std::env::var("FAROL_TEST_QUEUE").as_deref() {
        Err(_) | Ok("database") => {}
        Ok("rabbitmq") => {
            let url = std::env::var("FAROL_TEST_AMQP_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
            config.amqp.url = url.into();
            config.campaign.queue = "rabbitmq".into();
            config.campaign.queue_name =
                format!("farol-test-{}.sends", uuid::Uuid::new_v4().simple());
        }
        Ok(other) => panic!("FAROL_TEST_QUEUE must be database or rabbitmq, not {other}"),
    }
}

/// An app whose e-mail channel is the sink, with quick polling and retries.
pub(crate) async fn app_with_sink(sink: &Sink) -> TestApp {
    let (mut config, dir) = test_config().await;
    with_queue(&mut config);
    config.smtp.url = format!("smtp://127.0.0.1:{}?tls=none", sink.port).into();
    config.smtp.from = "Farol <noreply@farol.test>".into();
    config.campaign.poll_ms = 50;
    config.campaign.retry_base_ms = 50;
    config.campaign.retry_cap_ms = 200;
    config.campaign.max_attempts = 4;
    spawn_with(config, dir).await
}

pub(crate) async fn client_with_email(
    app: &TestApp,
    token: &str,
    name: &str,
    email: &str,
) -> Value {
    app.client(
        token,
        json!({"name": name, "contacts": [{"kind": "email", "value": email}]}),
    )
    .await
}

pub(crate) async fn email_template(app: &TestApp, token: &str, name: &str) -> i64 {
    let res = app
        .post(
            "/api/v1/templates",
            token,
            json!({
                "name": name,
                "channel": "email",
                "subject": "Oferta para {{ nome | primeiro_nome }}",
                "html": "<p>Olá {{ nome }}, seu plano {{ plano_atual | default('básico') }}.</p><p><a href=\"{{ link_descadastro }}\">Sair</a></p>",
            }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    res.body["id"].as_i64().unwrap()
}

pub(crate) async fn campaign(app: &TestApp, token: &str, body: Value) -> i64 {
    let res = app.post("/api/v1/campaigns", token, body).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    assert_eq!(res.body["status"], "draft");
    res.body["id"].as_i64().unwrap()
}

pub(crate) async fn launch(app: &TestApp, token: &str, id: i64) {
    let res = app
        .post(&format!("/api/v1/campaigns/{id}/launch"), token, json!({}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
}

/// Polls the campaign until its status is `status` (a deadline, not a timing assertion).
pub(crate) async fn wait_status(app: &TestApp, token: &str, id: i64, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let res = app.get(&format!("/api/v1/campaigns/{id}"), token).await;
        if res.body["status"] == status {
            return res.body;
        }
        assert!(
            Instant::now() < deadline,
            "campaign {id} never became {status}: {:?}; results {:?}",
            res.body,
            app.get(&format!("/api/v1/campaigns/{id}/results"), token)
                .await
                .body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn results(app: &TestApp, token: &str, id: i64) -> Value {
    let res = app
        .get(&format!("/api/v1/campaigns/{id}/results"), token)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    res.body
}

#[tokio::test]
async fn a_template_with_unknown_variables_is_rejected_naming_them_and_previews_for_a_client() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let res = app
        .post(
            "/api/v1/custom-fields",
            &token,
            json!({"key": "plano", "label": "Plano", "field_type": "text"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);

    let res = app
        .post(
            "/api/v1/templates",
            &token,
            json!({
                "name": "ruim",
                "channel": "email",
                "subject": "Oi {{ apelido }}",
                "html": "<p>{{ nome }} {{ cf.desconto }} {{ cf.plano }}</p>",
            }),
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        res.body
    );
    assert_eq!(res.fields(), vec!["subject", "html"]);
    let fields = res.body["fields"].as_array().unwrap();
    assert_eq!(fields[0]["code"], "unknown_variables");
    assert!(fields[0]["message"].as_str().unwrap().contains("apelido"));
    let html = fields[1]["message"].as_str().unwrap();
    assert!(
        html.contains("cf.desconto") && !html.contains("cf.plano"),
        "{html}"
    );

    // Channel shape: SMS needs a body and has no subject.
    let res = app
        .post(
            "/api/v1/templates",
            &token,
            json!({"name": "sms", "channel": "sms", "subject": "x"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.fields(), vec!["body", "subject"]);

    let res = app
        .post(
            "/api/v1/templates",
            &token,
            json!({
                "name": "boa",
                "channel": "email",
                "subject": "Oferta para {{ nome | primeiro_nome }}",
                "html": "<p>Plano {{ cf.plano }} em {{ cidade | default('sua cidade') }}</p>",
            }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    let id = res.body["id"].as_i64().unwrap();
    let client = app
        .client(
            &token,
            json!({"name": "MARIA DA SILVA", "custom_fields": {"plano": "Ouro"},
                   "contacts": [{"kind": "email", "value": "maria@example.com"}]}),
        )
        .await;
    let res = app
        .post(
            &format!("/api/v1/templates/{id}/preview"),
            &token,
            json!({"client_id": client["id"]}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["subject"], "Oferta para Maria");
    assert_eq!(res.body["html"], "<p>Plano Ouro em sua cidade</p>");
    assert_eq!(res.body["text"], "Plano Ouro em sua cidade");

    // Same name twice: 409; another account cannot see it.
    let res = app
        .post(
            "/api/v1/templates",
            &token,
            json!({"name": "boa", "channel": "sms", "body": "Oi {{ nome }}"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{:?}", res.body);
    let other = app.user("outra", farol::auth::Role::Admin).await;
    let res = app.get(&format!("/api/v1/templates/{id}"), &other).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_audience_preview_counts_and_samples_the_matching_clients() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let portfolio = app
        .post("/api/v1/portfolios", &token, json!({"name": "SP"}))
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    app.post(
        "/api/v1/custom-fields",
        &token,
        json!({"key": "plano", "label": "Plano", "field_type": "text"}),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let c = app
            .client(
                &token,
                json!({
                    "name": format!("Cliente {i}"),
                    "status": if i % 2 == 0 { "active" } else { "lead" },
                    "portfolio_id": if i < 4 { Some(portfolio) } else { None },
                    "tags": if i < 3 { vec!["vip"] } else { vec![] },
                    "custom_fields": {"plano": if i == 0 { "Ouro" } else { "Prata" }},
                }),
            )
            .await;
        ids.push(c["id"].as_i64().unwrap());
    }
    let preview = |body: Value| {
        let app = &app;
        let token = &token;
        async move {
            let res = app.post("/api/v1/audiences", token, body).await;
            assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
            let id = res.body["id"].as_i64().unwrap();
            let res = app
                .get(&format!("/api/v1/audiences/{id}/preview"), token)
                .await;
            assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
            res.body
        }
    };
    // active (0, 2, 4) in portfolio SP (0..4) → 0, 2.
    let p =
        preview(json!({"name": "a", "filter": {"status": "active", "portfolio_id": portfolio}}))
            .await;
    assert_eq!(p["size"], 2);
    let sample: Vec<i64> = p["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(sample, vec![ids[0], ids[2]]);
    // tag vip (0, 1, 2) and plano Prata → 1, 2.
    let p = preview(
        json!({"name": "b", "filter": {"tags": ["vip"], "custom_fields": {"plano": "Prata"}}}),
    )
    .await;
    assert_eq!(p["size"], 2);
    // A static list keeps only the account's clients.
    let other = app.user("outra", farol::auth::Role::Admin).await;
    let foreign = app.client(&other, json!({"name": "Alheio"})).await["id"]
        .as_i64()
        .unwrap();
    let p = preview(json!({"name": "c", "client_ids": [ids[5], ids[3], foreign, 999_999]})).await;
    assert_eq!(p["size"], 2);
    assert_eq!(p["sample"][0]["id"].as_i64().unwrap(), ids[3]);
    // Another account sees none of these audiences.
    let listed = app.get("/api/v1/audiences", &other).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 0);
    let first = app.get("/api/v1/audiences", &token).await.body[0]["id"]
        .as_i64()
        .unwrap();
    let res = app
        .get(&format!("/api/v1/audiences/{first}/preview"), &other)
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    // Unknown custom field and bad time name their fields.
    let res = app
        .post(
            "/api/v1/audiences",
            &token,
            json!({"name": "d", "filter": {"custom_fields": {"nope": 1}, "created_from": "ontem"}}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        res.fields(),
        vec!["filter.custom_fields.nope", "filter.created_from"]
    );
}

#[tokio::test]
async fn an_email_campaign_reaches_each_recipient_exactly_once_and_never_an_opted_out_one() {
    let sink = Sink::start(&[]);
    let app = app_with_sink(&sink).await;
    let token = app.admin().await;
    let maria = client_with_email(&app, &token, "MARIA DA SILVA", "maria@example.com").await;
    client_with_email(&app, &token, "João Souza", "joao@example.com").await;
    let ana = client_with_email(&app, &token, "Ana Lima", "ana@example.com").await;
    app.client(&token, json!({"name": "Sem E-mail"})).await;
    let ana_contact = ana["contacts"][0]["id"].as_i64().unwrap();
    let res = app
        .patch(
            &format!("/api/v1/contacts/{ana_contact}"),
            &token,
            json!({"opted_out": true}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);

    let template = email_template(&app, &token, "oferta").await;
    let id = campaign(
        &app,
        &token,
        json!({"name": "Oferta", "channel": "email", "template_id": template}),
    )
    .await;
    launch(&app, &token, id).await;
    wait_status(&app, &token, id, "completed").await;

    assert_eq!(sink.to("maria@example.com").len(), 1);
    assert_eq!(sink.to("joao@example.com").len(), 1);
    assert_eq!(sink.to("ana@example.com").len(), 0);
    assert_eq!(sink.messages().len(), 2);
    let m = &sink.to("maria@example.com")[0];
    assert_eq!(m["subject"], "Oferta para Maria");
    let html = m["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["content_type"] == "text/html")
        .expect("an HTML part")["body"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        html.contains("Olá MARIA DA SILVA, seu plano básico."),
        "{html}"
    );
    assert!(
        m["parts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["content_type"] == "text/plain")
    );
    let unsubscribe = header(m, "List-Unsubscribe").expect("List-Unsubscribe");
    assert!(
        unsubscribe.contains("/api/v1/unsubscribe/"),
        "{unsubscribe}"
    );
    assert_eq!(
        header(m, "List-Unsubscribe-Post"),
        Some("List-Unsubscribe=One-Click")
    );
    assert!(header(m, "Message-ID").is_some());

    let r = results(&app, &token, id).await;
    let other = app.user("outra", farol::auth::Role::Admin).await;
    let res = app
        .get(&format!("/api/v1/campaigns/{id}/results"), &other)
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(r["status"], "completed");
    assert_eq!(r["total"], 4);
    assert_eq!(r["sent"], 2);
    assert_eq!(r["skipped"], 2);
    assert_eq!(r["opted_out"], 1);
    assert_eq!(r["queued"], 0);
    assert_eq!(r["skipped_reasons"]["no_address"], 1);
    assert_eq!(r["by_channel"]["email"]["sent"], 2);
    let minutes = r["over_time"].as_array().unwrap();
    let per_minute: i64 = minutes.iter().map(|m| m["sent"].as_i64().unwrap()).sum();
    assert_eq!(per_minute, 2);
    assert!(
        minutes[0]["minute"].as_str().unwrap().ends_with(":00Z"),
        "{minutes:?}"
    );

    // The send is on Maria's timeline.
    let mid = maria["id"].as_i64().unwrap();
    let tl = app
        .get(&format!("/api/v1/clients/{mid}/timeline"), &token)
        .await;
    let item = tl.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "campaign_message")
        .unwrap_or_else(|| panic!("no campaign item: {:?}", tl.body));
    assert_eq!(item["text"], "E-mail sent: Oferta para Maria");
    assert_eq!(item["metadata"]["campaign_id"], id);

    // One-click unsubscribe (RFC 8058) opts Maria's address out.
    let token_part = unsubscribe
        .trim_matches(|c| c == '<' || c == '>')
        .rsplit('/')
        .next()
        .unwrap();
    let res = app
        .http
        .post(format!("{}/api/v1/unsubscribe/{token_part}", app.base))
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let c = app.get(&format!("/api/v1/clients/{mid}"), &token).await;
    assert_eq!(c.body["contacts"][0]["opted_out"], true);

    // A second campaign to everyone now skips Maria too.
    let second = campaign(
        &app,
        &token,
        json!({"name": "De novo", "channel": "email", "template_id": template}),
    )
    .await;
    launch(&app, &token, second).await;
    wait_status(&app, &token, second, "completed").await;
    assert_eq!(sink.to("maria@example.com").len(), 1);
    assert_eq!(sink.to("joao@example.com").len(), 2);
    assert_eq!(results(&app, &token, second).await["opted_out"], 2);
}

#[tokio::test]
async fn a_contact_opted_out_after_launch_is_skipped_at_send_time() {
    let sink = Sink::start(&[]);
    let app = app_with_sink(&sink).await;
    let token = app.admin().await;
    let bia = client_with_email(&app, &token, "Bia", "bia@example.com").await;
    client_with_email(&app, &token, "Caio", "caio@example.com").await;
    let template = email_template(&app, &token, "t").await;
    let id = campaign(
        &app,
        &token,
        json!({"name": "c", "channel": "email", "template_id": template}),
    )
    .await;
    // Launch scheduled in the future: the snapshot is taken, nothing is sent yet.
    let res = app
        .post(
            &format!("/api/v1/campaigns/{id}/launch"),
            &token,
            json!({"scheduled_at": "2099-01-01T09:00[America/Sao_Paulo]"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["status"], "scheduled");
    assert_eq!(results(&app, &token, id).await["queued"], 2);
    // Its template is frozen until the campaign ends.
    let res = app
        .patch(
            &format!("/api/v1/templates/{template}"),
            &token,
            json!({"subject": "Outro"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{:?}", res.body);
    let contact = bia["contacts"][0]["id"].as_i64().unwrap();
    app.patch(
        &format!("/api/v1/contacts/{contact}"),
        &token,
        json!({"opted_out": true}),
    )
    .await;
    // Bring the start forward.
    sqlx::query("update campaigns set scheduled_at = 0 where id = $1")
        .bind(id)
        .execute(app.db.pool())
        .await
        .unwrap();
    wait_status(&app, &token, id, "completed").await;
    assert_eq!(sink.to("bia@example.com").len(), 0);
    assert_eq!(sink.to("caio@example.com").len(), 1);
    let r = results(&app, &token, id).await;
    assert_eq!(
        (r["sent"].as_i64(), r["opted_out"].as_i64()),
        (Some(1), Some(1))
    );
}

#[tokio::test]
async fn a_550_fails_the_recipient_and_marks_the_contact_while_a_451_is_retried() {
    let sink = Sink::start(&["bad@example.com=550", "slow@example.com=451:2"]);
    let app = app_with_sink(&sink).await;
    let token = app.admin().await;
    let bad = client_with_email(&app, &token, "Bad", "bad@example.com").await;
    client_with_email(&app, &token, "Slow", "slow@example.com").await;
    client_with_email(&app, &token, "Good", "good@example.com").await;
    let template = email_template(&app, &token, "t").await;
    let id = campaign(
        &app,
        &token,
        json!({"name": "c", "channel": "email", "template_id": template}),
    )
    .await;
    launch(&app, &token, id).await;
    wait_status(&app, &token, id, "completed").await;

    assert_eq!(sink.to("good@example.com").len(), 1);
    assert_eq!(sink.to("slow@example.com").len(), 1);
    assert_eq!(sink.to("bad@example.com").len(), 0);
    let r = results(&app, &token, id).await;
    assert_eq!(
        (r["sent"].as_i64(), r["failed"].as_i64()),
        (Some(2), Some(1))
    );

    let rows: Vec<(String, String, i64, Option<String>)> = sqlx::query_as(
        "select address, status, attempts, error from campaign_recipients where campaign_id = $1 order by address",
    )
    .bind(id)
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    let bad_row = &rows[0];
    assert_eq!((bad_row.1.as_str(), bad_row.2), ("failed", 1));
    assert!(
        bad_row.3.as_deref().unwrap().contains("smtp_550"),
        "{bad_row:?}"
    );
    let slow_row = &rows[2];
    assert_eq!(
        (slow_row.1.as_str(), slow_row.2),
        ("sent", 3),
        "{slow_row:?}"
    );

    // The contact is marked invalid and the failure is on the timeline.
    let (invalid_at,): (Option<i64>,) =
        sqlx::query_as("select invalid_at from contacts where value = 'bad@example.com'")
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert!(invalid_at.is_some());
    let bid = bad["id"].as_i64().unwrap();
    let tl = app
        .get(&format!("/api/v1/clients/{bid}/timeline"), &token)
        .await;
    assert!(
        tl.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "campaign_failed"),
        "{:?}",
        tl.body
    );
}

#[tokio::test]
async fn a_transient_failure_that_never_clears_fails_after_the_last_attempt() {
    let sink = Sink::start(&["busy@example.com=421"]);
    let app = app_with_sink(&sink).await;
    let token = app.admin().await;
    client_with_email(&app, &token, "Busy", "busy@example.com").await;
    let template = email_template(&app, &token, "t").await;
    let id = campaign(
        &app,
        &token,
        json!({"name": "c", "channel": "email", "template_id": template}),
    )
    .await;
    launch(&app, &token, id).await;
    wait_status(&app, &token, id, "completed").await;
    let (status, attempts): (String, i64) =
        sqlx::query_as("select status, attempts from campaign_recipients where campaign_id = $1")
            .bind(id)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts), ("failed", 4));
}

#[tokio::test]
async fn a_paused_campaign_sends_nothing_until_resumed() {
    let sink = Sink::start(&[]);
    let app = app_with_sink(&sink).await;
    let token = app.admin().await;
    for i in 0..30 {
        client_with_email(&app, &token, &format!("C{i}"), &format!("c{i}@example.com")).await;
    }
    let template = email_template(&app, &token, "t").await;
    let id = campaign(
        &app,
        &token,
        json!({"name": "c", "channel": "email", "template_id": template, "throttle_per_sec": 10}),
    )
    .await;
    launch(&app, &token, id).await;
    // Let a few go, then pause.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.messages().len() < 3 {
        assert!(Instant::now() < deadline, "nothing was sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let res = app
        .post(&format!("/api/v1/campaigns/{id}/pause"), &token, json!({}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["status"], "paused");
    // Sends already claimed finish; then nothing moves while paused.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = results(&app, &token, id).await;
        if r["sending"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "sends in flight never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent_at_pause = results(&app, &token, id).await["sent"].as_i64().unwrap();
    assert!(
        sent_at_pause < 30,
        "paused too late to observe: {sent_at_pause}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = results(&app, &token, id).await;
    assert_eq!(r["sent"].as_i64().unwrap(), sent_at_pause);
    assert_eq!(sink.messages().len() as i64, sent_at_pause);
    // Resume, pause is refused twice, and the campaign completes with each recipient once.
    let res = app
        .post(&format!("/api/v1/campaigns/{id}/resume"), &token, json!({}))
        .await;
    assert_eq!(res.body["status"], "running", "{:?}", res.body);
    let res = app
        .post(&format!("/api/v1/campaigns/{id}/resume"), &token, json!({}))
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    let id_clone = id;
    app.patch(
        &format!("/api/v1/campaigns/{id_clone}"),
        &token,
        json!({"throttle_per_sec": 200}),
    )
    .await;
    wait_status(&app, &token, id, "completed").await;
    for i in 0..30 {
        assert_eq!(sink.to(&format!("c{i}@example.com")).len(), 1, "c{i}");
    }
}

#[tokio::test]
async fn two_throttled_campaigns_each_hold_their_configured_rate() {
    let sink = Sink::start(&[]);
    let app = app_with_sink(&sink).await;
    let token = app.admin().await;
    let template = email_template(&app, &token, "t").await;
    // (rate, recipients): each campaign runs about 3 s, at the same time as the other.
    let plan = [(20.0, 61), (10.0, 31)];
    let mut campaigns = Vec::new();
    for (k, (rate, n)) in plan.iter().enumerate() {
        let mut ids = Vec::new();
        for i in 0..*n {
            let c = client_with_email(
                &app,
                &token,
                &format!("C{k}-{i}"),
                &format!("r{k}-{i}@example.com"),
            )
            .await;
            ids.push(c["id"].as_i64().unwrap());
        }
        let audience = app
            .post(
                "/api/v1/audiences",
                &token,
                json!({"name": format!("a{k}"), "client_ids": ids}),
            )
            .await
            .body["id"]
            .as_i64()
            .unwrap();
        let id = campaign(
            &app,
            &token,
            json!({"name": format!("c{k}"), "channel": "email", "template_id": template,
                   "audience_id": audience, "throttle_per_sec": rate}),
        )
        .await;
        campaigns.push(id);
    }
    for id in &campaigns {
        launch(&app, &token, *id).await;
    }
    for id in &campaigns {
        wait_status(&app, &token, *id, "completed").await;
    }
    for (k, (rate, n)) in plan.iter().enumerate() {
        let times: Vec<f64> = sink
            .messages()
            .iter()
            .filter(|m| {
                m["rcpt_tos"][0]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("r{k}-"))
            })
            .map(|m| m["received_at"].as_f64().unwrap())
            .collect();
        assert_eq!(times.len(), *n);
        // n messages at `rate`/s span (n - 1) / rate seconds: the achieved rate is (n - 1) / span.
        let span = times[n - 1] - times[0];
        let achieved = (n - 1) as f64 / span;
        eprintln!("campaign {k}: {achieved:.3}/s over {span:.3} s, configured {rate}/s");
        assert!(
            (achieved - rate).abs() <= rate * 0.05,
            "campaign {k}: achieved {achieved:.2}/s over {span:.2} s, configured {rate}/s"
        );
    }
}

#[tokio::test]
async fn unthrottled_and_throttled_campaigns_can_be_created_one_after_the_other() {
    // Regression: on PostgreSQL a NULL throttle bound first on a connection used to fix the
    // cached statement's parameter type, and the next throttled campaign failed with 500.
    let app = spawn_app().await;
    let token = app.admin().await;
    let template = email_template(&app, &token, "t").await;
    let mut ids = Vec::new();
    for (i, rate) in [None, None, None, None, None, None, Some(200.5)]
        .into_iter()
        .cycle()
        .take(14)
        .enumerate()
    {
        let id = campaign(
            &app,
            &token,
            json!({"name": format!("c{i}"), "channel": "email", "template_id": template,
                   "throttle_per_sec": rate}),
        )
        .await;
        ids.push((id, rate));
    }
    for (id, rate) in ids {
        let res = app.get(&format!("/api/v1/campaigns/{id}"), &token).await;
        assert_eq!(
            res.body["throttle_per_sec"].as_f64(),
            rate,
            "{:?}",
            res.body
        );
        let res = app
            .patch(
                &format!("/api/v1/campaigns/{id}"),
                &token,
                json!({"throttle_per_sec": rate.map_or(12.25, |_| 7.0)}),
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    }
}

#[tokio::test]
async fn launching_needs_a_draft_and_a_configured_channel() {
    let app = spawn_app().await;
    let token = app.admin().await;
    client_with_email(&app, &token, "A", "a@example.com").await;
    let template = email_template(&app, &token, "t").await;
    let id = campaign(
        &app,
        &token,
        json!({"name": "c", "channel": "email", "template_id": template}),
    )
    .await;
    let res = app
        .post(&format!("/api/v1/campaigns/{id}/launch"), &token, json!({}))
        .await;
    assert_eq!(
        res.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        res.body
    );
    assert_eq!(res.fields(), vec!["channel"]);
    // A template of another channel is refused.
    let sms = app
        .post(
            "/api/v1/templates",
            &token,
            json!({"name": "s", "channel": "sms", "body": "Oi {{ nome }}"}),
        )
        .await
        .body["id"]
        .clone();
    let res = app
        .post(
            "/api/v1/campaigns",
            &token,
            json!({"name": "x", "channel": "email", "template_id": sms, "throttle_per_sec": -1}),
        )
        .await;
    assert_eq!(res.fields(), vec!["throttle_per_sec", "template_id"]);
    // Cancel a draft; it cannot be launched afterwards; the template is in use.
    let res = app
        .post(&format!("/api/v1/campaigns/{id}/cancel"), &token, json!({}))
        .await;
    assert_eq!(res.body["status"], "cancelled");
    let res = app
        .post(&format!("/api/v1/campaigns/{id}/launch"), &token, json!({}))
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    let res = app
        .delete(&format!("/api/v1/templates/{template}"), &token)
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
}

/// The `farol` binary with a test's database and the sink as its e-mail channel.
fn farol_bin(config: &farol::config::Config, sink: &Sink) -> Command {
    use secrecy::ExposeSecret;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_farol"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FAROL_DATA_DIR", &config.data_dir)
        .env("FAROL_LOG__LEVEL", "warn")
        .env(
            "FAROL_SMTP_URL",
            format!("smtp://127.0.0.1:{}?tls=none", sink.port),
        )
        .env("FAROL_SMTP_FROM", "Farol <noreply@farol.test>")
        .env("FAROL_CAMPAIGN__POLL_MS", "50")
        .env("FAROL_CAMPAIGN__LEASE_SECS", "2")
        .current_dir(&config.data_dir);
    let url = config.database.url.expose_secret();
    if !url.is_empty() {
        cmd.env("DATABASE_URL", url);
    }
    if config.campaign.queue == "rabbitmq" {
        cmd.env("FAROL_CAMPAIGN__QUEUE", "rabbitmq")
            .env("FAROL_CAMPAIGN__QUEUE_NAME", &config.campaign.queue_name)
            .env("AMQP_URL", config.amqp.url.expose_secret());
    }
    cmd
}

/// An API-only app (no send workers) and its config, for tests that send from other processes.
async fn api_only(sink: &Sink) -> (TestApp, farol::config::Config) {
    let (mut config, dir) = test_config().await;
    with_queue(&mut config);
    config.smtp.url = format!("smtp://127.0.0.1:{}?tls=none", sink.port).into();
    config.smtp.from = "Farol <noreply@farol.test>".into();
    config.campaign.workers = 0;
    let keep = config.clone();
    (spawn_with(config, dir).await, keep)
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "farol did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn count(app: &TestApp, sql: &'static str, id: i64) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(app.db.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_launches_and_waits_for_an_email_campaign() {
    let sink = Sink::start(&[]);
    let (app, config) = api_only(&sink).await;
    let token = app.admin().await;
    client_with_email(&app, &token, "Maria Silva", "maria@example.com").await;
    client_with_email(&app, &token, "João", "joao@example.com").await;
    let file = config.data_dir.join("oferta.html");
    std::fs::write(&file, "<p>Olá {{ nome | primeiro_nome }}!</p>").unwrap();

    let out = farol_bin(&config, &sink)
        .args([
            "campaign",
            "create",
            "--name",
            "Oferta",
            "--channel",
            "email",
        ])
        .arg("--template-file")
        .arg(&file)
        .args([
            "--subject",
            "Para {{ nome }}",
            "--throttle",
            "50/s",
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
    let id = created["id"].as_i64().unwrap();
    let c = app.get(&format!("/api/v1/campaigns/{id}"), &token).await;
    assert_eq!(c.body["throttle_per_sec"], 50.0);
    assert_eq!(c.body["status"], "draft");

    let out = farol_bin(&config, &sink)
        .args(["campaign", "launch", &id.to_string(), "--wait", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (r["status"].as_str(), r["sent"].as_i64()),
        (Some("completed"), Some(2))
    );
    assert_eq!(sink.to("maria@example.com").len(), 1);
    assert_eq!(sink.to("joao@example.com").len(), 1);
    assert_eq!(
        sink.to("maria@example.com")[0]["subject"],
        "Para Maria Silva"
    );

    let out = farol_bin(&config, &sink)
        .args(["campaign", "results", &id.to_string(), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let r2: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r2["sent"], 2);

    // A subject is required for e-mail; errors name the problem.
    let out = farol_bin(&config, &sink)
        .args(["campaign", "create", "--name", "X", "--channel", "email"])
        .arg("--template-file")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--subject"));
}

/// 40 recipients at 20/s through a `farol worker` process.
async fn worker_campaign(app: &TestApp, token: &str) -> i64 {
    for i in 0..40 {
        client_with_email(app, token, &format!("C{i}"), &format!("w{i}@example.com")).await;
    }
    let template = email_template(app, token, "t").await;
    let id = campaign(
        app,
        token,
        json!({"name": "c", "channel": "email", "template_id": template, "throttle_per_sec": 20}),
    )
    .await;
    launch(app, token, id).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_sends_and_a_restart_sends_nothing_twice() {
    let sink = Sink::start(&[]);
    let (app, config) = api_only(&sink).await;
    let token = app.admin().await;
    let id = worker_campaign(&app, &token).await;

    let mut worker = farol_bin(&config, &sink).arg("worker").spawn().unwrap();
    wait_until("the first sends", async || sink.messages().len() >= 8).await;
    sigterm(&worker);
    assert!(wait_exit(&mut worker).await.success());
    let sending = count(
        &app,
        "select count(*) from campaign_recipients where campaign_id = $1 and status = 'sending'",
        id,
    )
    .await;
    let sent = count(
        &app,
        "select count(*) from campaign_recipients where campaign_id = $1 and status = 'sent'",
        id,
    )
    .await;
    assert_eq!(sending, 0, "a graceful stop leaves nothing in flight");
    assert!(sent < 40, "stopped too late to observe: {sent}");
    assert_eq!(
        sink.messages().len() as i64,
        sent,
        "every accepted message is recorded"
    );

    let mut worker = farol_bin(&config, &sink).arg("worker").spawn().unwrap();
    wait_status(&app, &token, id, "completed").await;
    sigterm(&worker);
    assert!(wait_exit(&mut worker).await.success());
    for i in 0..40 {
        assert_eq!(sink.to(&format!("w{i}@example.com")).len(), 1, "w{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_a_restart_finishes_the_campaign_with_duplicates_bounded_by_the_sends_in_flight()
 {
    let sink = Sink::start(&[]);
    let (app, config) = api_only(&sink).await;
    let token = app.admin().await;
    let id = worker_campaign(&app, &token).await;

    let mut worker = farol_bin(&config, &sink).arg("worker").spawn().unwrap();
    wait_until("the first sends", async || sink.messages().len() >= 8).await;
    worker.kill().unwrap(); // SIGKILL
    worker.wait().unwrap();
    // Whatever was claimed but not recorded at the kill is all that may be sent twice.
    let in_flight = count(
        &app,
        "select count(*) from campaign_recipients where campaign_id = $1 and status = 'sending'",
        id,
    )
    .await;

    let mut worker = farol_bin(&config, &sink).arg("worker").spawn().unwrap();
    wait_status(&app, &token, id, "completed").await;
    sigterm(&worker);
    assert!(wait_exit(&mut worker).await.success());
    let mut duplicates = 0;
    for i in 0..40 {
        let n = sink.to(&format!("w{i}@example.com")).len() as i64;
        assert!(n >= 1, "w{i} never got the message");
        duplicates += n - 1;
    }
    eprintln!("kill -9: {in_flight} in flight, {duplicates} duplicates");
    assert!(
        duplicates <= in_flight,
        "{duplicates} duplicates, {in_flight} sends in flight at the kill"
    );
    let r = results(&app, &token, id).await;
    assert_eq!(r["sent"], 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_pace_one_campaign_together_through_redis() {
    let redis_url =
        std::env::var("FAROL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let sink = Sink::start(&[]);
    let (app, config) = api_only(&sink).await;
    let token = app.admin().await;
    let n = 81;
    for i in 0..n {
        client_with_email(&app, &token, &format!("C{i}"), &format!("p{i}@example.com")).await;
    }
    let template = email_template(&app, &token, "t").await;
    let rate = 20.0;
    let id = campaign(
        &app,
        &token,
        json!({"name": "c", "channel": "email", "template_id": template, "throttle_per_sec": rate}),
    )
    .await;
    // Each test its own schedule keys (parallel tests share the Redis).
    let prefix = format!("farol-test-{}", uuid::Uuid::new_v4().simple());
    let start = |_: usize| {
        farol_bin(&config, &sink)
            .env("REDIS_URL", &redis_url)
            .env("FAROL_REDIS__KEY_PREFIX", &prefix)
            // A claim is about one second of sends at the campaign's rate; shared by two
            // processes it takes two, more than half of farol_bin's 2 s lease (a recipient
            // not started by then goes back to the queue and its slot is lost).
            .env("FAROL_CAMPAIGN__LEASE_SECS", "10")
            .arg("worker")
            .spawn()
            .unwrap()
    };
    let mut workers: Vec<Child> = (0..2).map(start).collect();
    launch(&app, &token, id).await;
    wait_status(&app, &token, id, "completed").await;
    for w in &workers {
        sigterm(w);
    }
    for w in &mut workers {
        assert!(wait_exit(w).await.success());
    }
    let owners = count(
        &app,
        "select count(distinct lease_owner) from campaign_recipients where campaign_id = $1",
        id,
    )
    .await;
    assert_eq!(owners, 0, "leases are cleared once recorded");
    let mut times: Vec<f64> = sink
        .messages()
        .iter()
        .map(|m| m["received_at"].as_f64().unwrap())
        .collect();
    assert_eq!(times.len(), n, "each recipient exactly once");
    for i in 0..n {
        assert_eq!(sink.to(&format!("p{i}@example.com")).len(), 1, "p{i}");
    }
    times.sort_by(f64::total_cmp);
    // Both processes claim batches of about one second of sends (20) as soon as the campaign
    // runs, so both send throughout; each pacing alone would make about 40/s together.
    let span = times[n - 1] - times[0];
    let achieved = (n - 1) as f64 / span;
    eprintln!("two processes: {achieved:.3}/s over {span:.3} s, configured {rate}/s");
    assert!(
        (achieved - rate).abs() <= rate * 0.05,
        "achieved {achieved:.2}/s over {span:.2} s, configured {rate}/s"
    );
}

/// The RabbitMQ queue for a config, whatever FAROL_TEST_QUEUE says (the tests below are about
/// the broker itself).
fn force_rabbitmq(config: &mut farol::config::Config) {
    let url = std::env::var("FAROL_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    config.amqp.url = url.into();
    config.campaign.queue = "rabbitmq".into();
    config.campaign.queue_name = format!("farol-test-{}.sends", uuid::Uuid::new_v4().simple());
}

async fn amqp_channel(config: &farol::config::Config) -> (lapin::Connection, lapin::Channel) {
    use secrecy::ExposeSecret;
    let conn = lapin::Connection::connect(
        config.amqp.url.expose_secret(),
        lapin::ConnectionProperties::default(),
    )
    .await
    .expect("RabbitMQ is reachable (FAROL_TEST_AMQP_URL)");
    let channel = conn.create_channel().await.unwrap();
    (conn, channel)
}

/// (messages ready, consumers) of a queue; `None` while it does not exist. A passive declare
/// of a missing queue closes its channel, so each look uses a channel of its own.
async fn queue_state(conn: &lapin::Connection, name: &str) -> Option<(u32, u32)> {
    let channel = conn.create_channel().await.unwrap();
    let declared = tokio::time::timeout(
        Duration::from_secs(5),
        channel.queue_declare(
            name.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        ),
    )
    .await
    .expect("RabbitMQ answers a passive declare");
    let state = declared
        .ok()
        .map(|q| (q.message_count(), q.consumer_count()));
    let _ = channel.close(200, "done".into()).await;
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_two_worker_processes_share_a_campaign_and_a_kill_9_duplicates_only_sends_in_flight()
 {
    let sink = Sink::start(&[]);
    let (app, mut config) = api_only(&sink).await;
    force_rabbitmq(&mut config);
    let token = app.admin().await;
    let n = 300;
    for i in 0..n {
        client_with_email(&app, &token, &format!("C{i}"), &format!("q{i}@example.com")).await;
    }
    let template = email_template(&app, &token, "t").await;
    let id = campaign(
        &app,
        &token,
        json!({"name": "c", "channel": "email", "template_id": template, "throttle_per_sec": 100}),
    )
    .await;
    let start = || {
        farol_bin(&config, &sink)
            .env("FAROL_CAMPAIGN__BATCH", "10")
            .arg("worker")
            .spawn()
            .unwrap()
    };
    let mut a = start();
    let mut b = start();
    let (conn, _channel) = amqp_channel(&config).await;
    let queue = config.campaign.queue_name.clone();
    wait_until("both workers consuming", async || {
        queue_state(&conn, &queue).await.is_some_and(|q| q.1 == 2)
    })
    .await;
    // The API process (no workers) only wrote the rows; the workers publish and consume.
    launch(&app, &token, id).await;
    wait_until("the first sends", async || sink.messages().len() >= 60).await;
    a.kill().unwrap(); // SIGKILL mid-campaign
    a.wait().unwrap();
    let in_flight = count(
        &app,
        "select count(*) from campaign_recipients where campaign_id = $1 and status = 'sending'",
        id,
    )
    .await;
    // The survivor finishes, including what the dead one held once its lease expires.
    wait_status(&app, &token, id, "completed").await;
    sigterm(&b);
    assert!(wait_exit(&mut b).await.success());
    let mut duplicates = 0;
    for i in 0..n {
        let got = sink.to(&format!("q{i}@example.com")).len() as i64;
        assert!(got >= 1, "q{i} never got the message");
        duplicates += got - 1;
    }
    eprintln!("rabbitmq kill -9: {in_flight} in flight, {duplicates} duplicates");
    assert!(
        duplicates <= in_flight,
        "{duplicates} duplicates, {in_flight} sends in flight at the kill"
    );
    let r = results(&app, &token, id).await;
    assert_eq!(r["sent"], n as i64);
    assert_eq!(
        queue_state(&conn, &queue).await.map(|q| q.0),
        Some(0),
        "nothing left queued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_a_message_that_cannot_be_read_is_dead_lettered() {
    let sink = Sink::start(&[]);
    let (app, mut config) = api_only(&sink).await;
    force_rabbitmq(&mut config);
    let mut worker = farol_bin(&config, &sink).arg("worker").spawn().unwrap();
    let (conn, channel) = amqp_channel(&config).await;
    let queue = config.campaign.queue_name.clone();
    let dead = format!("{queue}.dead");
    wait_until("the worker consuming", async || {
        queue_state(&conn, &queue).await.is_some_and(|q| q.1 == 1)
    })
    .await;
    channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            lapin::options::BasicPublishOptions::default(),
            b"not json",
            lapin::BasicProperties::default(),
        )
        .await
        .unwrap();
    wait_until("the poison message in the dead-letter queue", async || {
        queue_state(&conn, &dead).await.is_some_and(|q| q.0 == 1)
    })
    .await;
    assert_eq!(queue_state(&conn, &queue).await.map(|q| q.0), Some(0));
    sigterm(&worker);
    assert!(wait_exit(&mut worker).await.success());
    drop(app);
}

#[tokio::test]
async fn cancelling_a_running_campaign_skips_whatever_was_not_sent() {
    let sink = Sink::start(&[]);
    let app = app_with_sink(&sink).await;
    let token = app.admin().await;
    for i in 0..20 {
        client_with_email(&app, &token, &format!("C{i}"), &format!("x{i}@example.com")).await;
    }
    let template = email_template(&app, &token, "t").await;
    let id = campaign(
        &app,
        &token,
        json!({"name": "c", "channel": "email", "template_id": template, "throttle_per_sec": 10}),
    )
    .await;
    launch(&app, &token, id).await;
    wait_until("the first sends", async || sink.messages().len() >= 2).await;
    let res = app
        .post(&format!("/api/v1/campaigns/{id}/cancel"), &token, json!({}))
        .await;
    assert_eq!(res.body["status"], "cancelled", "{:?}", res.body);
    wait_until("sends in flight to finish", async || {
        let r = results(&app, &token, id).await;
        r["sending"] == 0 && r["queued"] == 0
    })
    .await;
    let r = results(&app, &token, id).await;
    let sent = r["sent"].as_i64().unwrap();
    assert!(sent < 20, "{r:?}");
    assert_eq!(sent + r["skipped"].as_i64().unwrap(), 20, "{r:?}");
    assert_eq!(
        r["skipped_reasons"]["cancelled"].as_i64().unwrap(),
        20 - sent
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.messages().len() as i64, sent);
    // A cancelled campaign can be deleted; a running one could not.
    let res = app.delete(&format!("/api/v1/campaigns/{id}"), &token).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_group_commit_with_one_bad_outcome_still_records_the_others() {
    use farol::campaign::recorder::{Record, write};
    use farol::campaign::store::{Outcome, claim};
    use farol::campaign::templates::Channel;
    let sink = Sink::start(&[]);
    // No workers: the test claims and records itself.
    let (app, _) = api_only(&sink).await;
    let token = app.admin().await;
    let mut clients = Vec::new();
    for i in 0..5 {
        let c =
            client_with_email(&app, &token, &format!("C{i}"), &format!("g{i}@example.com")).await;
        clients.push(c["id"].as_i64().unwrap());
    }
    let template = email_template(&app, &token, "t").await;
    let id = campaign(
        &app,
        &token,
        json!({"name": "c", "channel": "email", "template_id": template}),
    )
    .await;
    launch(&app, &token, id).await;
    let account: i64 = sqlx::query_scalar("select account_id from campaigns where id = $1")
        .bind(id)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    let mut claimed = claim(&app.db, id, "owner-a", 10, 60_000).await.unwrap();
    claimed.sort_by_key(|r| clients.iter().position(|c| *c == r.client_id));
    assert_eq!(claimed.len(), 5);
    // The client of the fourth recipient is deleted while its message is in flight: its
    // timeline item cannot be written (foreign key), which fails the group's statement.
    sqlx::query("delete from clients where id = $1")
        .bind(clients[3])
        .execute(app.db.pool())
        .await
        .unwrap();
    let record = |i: usize, owner: &str, outcome: Outcome| Record {
        recipient_id: claimed[i].id,
        client_id: claimed[i].client_id,
        account_id: account,
        campaign_id: id,
        owner: owner.into(),
        channel: Channel::Email,
        address: format!("g{i}@example.com"),
        outcome,
        summary: "Oferta".into(),
    };
    let sent = |pmid: &str| Outcome::Sent {
        provider_message_id: pmid.into(),
    };
    let retry_at = farol::db::now_ms() + 60_000;
    let records = [
        record(0, "owner-a", sent("m0")),
        record(
            1,
            "owner-a",
            Outcome::Retry {
                at: retry_at,
                error: "451 try later".into(),
            },
        ),
        record(
            2,
            "owner-a",
            Outcome::Failed {
                error: "554 rejected".into(),
            },
        ),
        record(3, "owner-a", sent("m3")),
        // Another worker holds this one's lease: nothing is written.
        record(4, "owner-b", sent("m4")),
    ];
    let refs: Vec<&Record> = records.iter().collect();
    let results = write(&app.db, &refs).await;
    let held: Vec<Option<bool>> = results.iter().map(|r| r.as_ref().ok().copied()).collect();
    assert_eq!(
        held,
        [Some(true), Some(true), Some(true), None, Some(false)]
    );

    type Row = (String, Option<String>, Option<String>, i64, Option<String>);
    let row = async |i: usize| -> Row {
        sqlx::query_as(
            "select status, provider_message_id, error, next_attempt_at, lease_owner from campaign_recipients where id = $1",
        )
        .bind(claimed[i].id)
        .fetch_one(app.db.pool())
        .await
        .unwrap()
    };
    let r0 = row(0).await;
    assert_eq!(
        (r0.0.as_str(), r0.1.as_deref(), r0.4),
        ("sent", Some("m0"), None)
    );
    let r1 = row(1).await;
    assert_eq!(
        (r1.0.as_str(), r1.2.as_deref(), r1.3),
        ("queued", Some("451 try later"), retry_at)
    );
    let r2 = row(2).await;
    assert_eq!(
        (r2.0.as_str(), r2.2.as_deref()),
        ("failed", Some("554 rejected"))
    );
    // Not recorded: still leased, sent again once the lease expires (then skipped, the client
    // being gone).
    assert_eq!(row(3).await.0, "sending");
    let r4 = row(4).await;
    assert_eq!(
        (r4.0.as_str(), r4.4.as_deref()),
        ("sending", Some("owner-a"))
    );

    // The side effects of the written outcomes, and only theirs.
    let contacted: Vec<i64> = sqlx::query_scalar(
        "select client_id from contacts where last_contacted_at is not null order by client_id",
    )
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    assert_eq!(contacted, [clients[0]]);
    let items: Vec<(i64, String, String)> = sqlx::query_as(
        "select client_id, kind, text from timeline_items where kind like 'campaign_%' order by client_id",
    )
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    assert_eq!(
        items,
        [
            (
                clients[0],
                "campaign_message".into(),
                "E-mail sent: Oferta".into()
            ),
            (
                clients[2],
                "campaign_failed".into(),
                "E-mail not delivered: 554 rejected".into()
            ),
        ]
    );
    let counted: Vec<i64> = sqlx::query_scalar("select recipient_id from frequency_sends")
        .fetch_all(app.db.pool())
        .await
        .unwrap();
    assert_eq!(counted, [claimed[0].id]);
}

#[tokio::test]
async fn outside_business_hours_recipients_wait_queued() {
    let sink = Sink::start(&[]);
    let (mut config, dir) = test_config().await;
    with_queue(&mut config);
    config.smtp.url = format!("smtp://127.0.0.1:{}?tls=none", sink.port).into();
    config.smtp.from = "Farol <noreply@farol.test>".into();
    config.campaign.poll_ms = 50;
    // A one-hour window twelve hours away from now, every day.
    let hour = (jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .hour()
        + 12)
        % 24;
    config.campaign.business_hours = format!("mon-sun {hour:02}:00-{hour:02}:59");
    config.campaign.time_zone = "UTC".into();
    let app = spawn_with(config, dir).await;
    let token = app.admin().await;
    client_with_email(&app, &token, "A", "a@example.com").await;
    let template = email_template(&app, &token, "t").await;
    let id = campaign(
        &app,
        &token,
        json!({"name": "c", "channel": "email", "template_id": template}),
    )
    .await;
    launch(&app, &token, id).await;
    // Many worker polls later, nothing has moved.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = results(&app, &token, id).await;
    assert_eq!(
        (r["queued"].as_i64(), r["sent"].as_i64()),
        (Some(1), Some(0))
    );
    assert_eq!(r["status"], "running");
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn a_channel_that_keeps_failing_trips_its_breaker_and_sends_wait() {
    let mut rules = Vec::new();
    for i in 0..20 {
        rules.push(format!("down{i}@example.com=421"));
    }
    let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
    let sink = Sink::start(&rules);
    let (mut config, dir) = test_config().await;
    with_queue(&mut config);
    config.smtp.url = format!("smtp://127.0.0.1:{}?tls=none", sink.port).into();
    config.smtp.from = "Farol <noreply@farol.test>".into();
    config.campaign.poll_ms = 50;
    config.campaign.retry_base_ms = 10;
    config.campaign.retry_cap_ms = 20;
    config.campaign.max_attempts = 100;
    config.campaign.concurrency = 1;
    config.campaign.breaker_failures = 3;
    config.campaign.breaker_cool_down_secs = 3600;
    let app = spawn_with(config, dir).await;
    let token = app.admin().await;
    for i in 0..20 {
        client_with_email(
            &app,
            &token,
            &format!("D{i}"),
            &format!("down{i}@example.com"),
        )
        .await;
    }
    let template = email_template(&app, &token, "t").await;
    let id = campaign(
        &app,
        &token,
        json!({"name": "c", "channel": "email", "template_id": template}),
    )
    .await;
    launch(&app, &token, id).await;
    wait_until("the breaker to open", async || {
        count(
            &app,
            "select cast(coalesce(sum(attempts), 0) as bigint) from campaign_recipients where campaign_id = $1",
            id,
        )
        .await
            >= 3
    })
    .await;
    // Plenty of polls and retry delays later, no further attempt was made.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let attempts = count(
        &app,
        "select cast(coalesce(sum(attempts), 0) as bigint) from campaign_recipients where campaign_id = $1",
        id,
    )
    .await;
    assert_eq!(attempts, 3, "the breaker let more sends through");
    // The operator is told: one open alert for the configuration's SMTP (no channel account).
    let alerts = app.get("/api/v1/alerts?unresolved=true", &token).await.body;
    let alerts = alerts["items"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["kind"], "breaker_open");
    assert_eq!(alerts[0]["provider"], "smtp");
    assert!(alerts[0]["channel_account_id"].is_null());
    assert!(
        alerts[0]["reason"].as_str().unwrap().contains("421"),
        "{alerts:?}"
    );
    let r = results(&app, &token, id).await;
    assert_eq!(
        (r["queued"].as_i64(), r["failed"].as_i64()),
        (Some(20), Some(0))
    );
}
