//! Imports: chunked uploads, preview, mapping errors, dedupe policies, re-imports, concurrent
//! imports, cancellation, reports — through the API — and `farol import` with a kill -9 in the
//! middle and a resume.

use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::{TestApp, backend, farol_bin, spawn_app, spawn_with, test_config};

const MESSY: &str = "Nome;CPF/CNPJ;Celular;E-mail;Situação;Carteira;Tags\n\
Maria  da Silva;529.982.247-25;(11) 8765-4321;Maria@Example.com;Ativo;Varejo;vip,pme\n\
João;;123;joao@;;;\n\
José;;011 98888 7777;;inativo;Varejo;\n\
Maria S.;;+55(11)98765.4321;;;;novo\n\
;;;;;;\n\
Ana;111.111.111-12;;ana@x.com.br;lead;PME;\n";

fn latin1(s: &str) -> Vec<u8> {
    // Excel in Brazil saves CSV in Windows-1252.
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).expect("Latin-1 text"))
        .collect()
}

async fn put_chunk(
    app: &TestApp,
    token: &str,
    id: i64,
    offset: usize,
    bytes: &[u8],
) -> reqwest::Response {
    app.http
        .put(format!("{}/api/v1/imports/{id}/files/0", app.base))
        .bearer_auth(token)
        .header("Upload-Offset", offset.to_string())
        .body(bytes.to_vec())
        .send()
        .await
        .expect("chunk sent")
}

/// Declares, uploads (one chunk) and starts an import; returns its id.
async fn import(app: &TestApp, token: &str, name: &str, bytes: &[u8], extra: Value) -> i64 {
    let mut body = json!({"files": [{"name": name, "size": bytes.len()}]});
    for (k, v) in extra.as_object().expect("object") {
        body[k] = v.clone();
    }
    let r = app.post("/api/v1/imports", token, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_i64().expect("id");
    let res = put_chunk(app, token, id, 0, bytes).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let r = app
        .post(&format!("/api/v1/imports/{id}/start"), token, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    id
}

async fn wait(app: &TestApp, token: &str, id: i64) -> Value {
    let start = Instant::now();
    loop {
        let r = app.get(&format!("/api/v1/imports/{id}"), token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let status = r.body["status"].as_str().unwrap_or_default().to_owned();
        if matches!(status.as_str(), "completed" | "failed" | "cancelled") {
            return r.body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "import {id} stuck: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(app.db.pool())
        .await
        .expect("count")
}

async fn client_by_phone(app: &TestApp, token: &str, phone: &str) -> Value {
    let r = app
        .get(
            &format!("/api/v1/clients?q={}", phone.replace('+', "%2B")),
            token,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "one client has {phone}: {}", r.body);
    items[0].clone()
}

#[tokio::test]
async fn a_chunked_upload_resumes_at_the_server_offset_and_imports_a_messy_latin1_file() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let bytes = latin1(MESSY);
    let r = app
        .post(
            "/api/v1/imports",
            &token,
            json!({"files": [{"name": "clientes.csv", "size": bytes.len()}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["status"], "uploading");
    let id = r.body["id"].as_i64().unwrap();

    let (first, rest) = bytes.split_at(40);
    assert_eq!(
        put_chunk(&app, &token, id, 0, first).await.status(),
        StatusCode::NO_CONTENT
    );
    // A retried chunk at a stale offset is refused with the offset the server has.
    let res = put_chunk(&app, &token, id, 0, first).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(res.headers()["upload-offset"], "40");
    let head = app
        .http
        .head(format!("{}/api/v1/imports/{id}/files/0", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["upload-offset"], "40");
    assert_eq!(
        head.headers()["upload-length"],
        bytes.len().to_string().as_str()
    );
    // Starting before every byte is in names the incomplete file.
    let r = app
        .post(&format!("/api/v1/imports/{id}/start"), &token, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.fields(), ["files[0]"]);
    let res = put_chunk(&app, &token, id, 40, rest).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        res.headers()["upload-offset"],
        bytes.len().to_string().as_str()
    );

    // Preview: the proposed mapping and the rows as they would be stored, with problems.
    let r = app
        .post(
            &format!("/api/v1/imports/{id}/preview?rows=3"),
            &token,
            json!(null),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let file = &r.body[0];
    assert_eq!(file["format"]["encoding"], "windows-1252", "{file}");
    assert_eq!(file["format"]["delimiter"], ";");
    let fields: Vec<&str> = file["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(
        fields,
        [
            "name",
            "cpf_cnpj",
            "phone",
            "email",
            "status",
            "portfolio",
            "tags"
        ]
    );
    let rows = file["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["values"]["phones"], json!(["+5511987654321"]));
    assert_eq!(rows[0]["values"]["name"], "Maria da Silva");
    assert_eq!(rows[0]["values"]["cpf_cnpj"], "52998224725");
    assert_eq!(rows[1]["status"], "invalid");
    assert_eq!(rows[1]["problems"][0]["column"], "Celular");
    assert_eq!(rows[1]["problems"][0]["value"], "123");
    assert_eq!(rows[1]["problems"][0]["severity"], "error");

    let r = app
        .post(&format!("/api/v1/imports/{id}/start"), &token, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let done = wait(&app, &token, id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let c = &done["counts"];
    assert_eq!(
        (
            c["rows_read"].as_i64(),
            c["imported"].as_i64(),
            c["duplicates"].as_i64(),
            c["invalid"].as_i64()
        ),
        (Some(5), Some(3), Some(1), Some(1)),
        "{done}"
    );
    assert_eq!(c["reasons"]["no_contact"], 1);
    assert_eq!(c["reasons"]["invalid_cpf_cnpj.wrong_check_digit"], 1);
    assert_eq!(done["progress"]["percent"], 100.0);

    let maria = client_by_phone(&app, &token, "+5511987654321").await;
    assert_eq!(maria["name"], "Maria da Silva");
    assert_eq!(maria["status"], "active");
    assert_eq!(maria["tags"], json!(["pme", "vip"]));
    assert_eq!(maria["contacts"][1]["value"], "maria@example.com");

    // The report and its CSV name file, row, column, raw value and reason.
    let r = app
        .get(&format!("/api/v1/imports/{id}/report"), &token)
        .await;
    let samples = r.body["samples"].as_array().unwrap();
    assert!(
        samples
            .iter()
            .any(|s| s["row_number"] == 3 && s["column_name"] == "Celular" && s["value"] == "123")
    );
    assert!(
        samples
            .iter()
            .any(|s| s["row_number"] == 5 && s["code"] == "duplicate")
    );
    let csv = app
        .http
        .get(format!("{}/api/v1/imports/{id}/issues.csv", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().await.unwrap();
    assert!(
        text.starts_with("file,row,column,value,severity,code,message\n"),
        "{text}"
    );
    assert!(
        text.contains("clientes.csv,3,Celular,123,error,invalid_phone.too_short,"),
        "{text}"
    );
}

#[tokio::test]
async fn a_mapping_that_does_not_fit_is_refused_before_anything_is_written() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let bytes = b"Nome;Fone\nAna;11987654321\n";
    let r = app
        .post(
            "/api/v1/imports",
            &token,
            json!({"files": [{"name": "a.csv", "size": bytes.len()}], "options": {"mapping": [{"column": "Telefone", "field": "phone"}]}}),
        )
        .await;
    let id = r.body["id"].as_i64().unwrap();
    put_chunk(&app, &token, id, 0, bytes).await;
    let r = app
        .post(&format!("/api/v1/imports/{id}/start"), &token, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let message = r.body["fields"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("a.csv") && message.contains("\"Telefone\"") && message.contains("Fone"),
        "{message}"
    );
    // Ignoring the only contact column leaves nothing to import: refused, naming the columns.
    let r = app
        .post(
            &format!("/api/v1/imports/{id}/start"),
            &token,
            json!({"options": {"mapping": [{"column": "Fone", "field": "ignore"}]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body["fields"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no column maps to phone or email")
    );
    // A custom field that does not exist.
    let r = app
        .post(
            &format!("/api/v1/imports/{id}/start"),
            &token,
            json!({"options": {"mapping": [{"column": "Nome", "field": "cf.plano"}]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body["fields"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no custom field `plano`")
    );
    assert_eq!(count(&app, "select count(*) from clients").await, 0);
    // Fixed with an override, it runs.
    let r = app
        .post(
            &format!("/api/v1/imports/{id}/start"),
            &token,
            json!({"options": {"mapping": [{"column": "Fone", "field": "phone"}]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(wait(&app, &token, id).await["counts"]["imported"], 1);
}

const FIRST: &str = "Nome,Telefone,E-mail,Cidade,Tags\n\
Ana Souza,11987654321,ana@example.com,,a\n\
Bruno Lima,21987654321,,Niterói,\n";

const SECOND: &str = "Nome,Telefone,E-mail,Cidade,Tags\n\
Ana S.,(11) 98765-4321,,Santos,b\n\
Bruno,,bruno@example.com,,\n\
Carla,31987654321,,,\n";

#[tokio::test]
async fn each_dedupe_policy_handles_a_client_already_stored() {
    for (policy, ana_name, ana_city, ana_tags, imported, updated, duplicates) in [
        (
            "keep-first",
            "Ana Souza",
            Value::Null,
            json!(["a"]),
            2,
            0,
            1,
        ),
        (
            "keep-last",
            "Ana S.",
            json!("Santos"),
            json!(["a", "b"]),
            2,
            1,
            0,
        ),
        (
            "merge",
            "Ana Souza",
            json!("Santos"),
            json!(["a", "b"]),
            2,
            1,
            0,
        ),
    ] {
        let app = spawn_app().await;
        let token = app.admin().await;
        let first = import(&app, &token, "crm.csv", FIRST.as_bytes(), json!({})).await;
        assert_eq!(wait(&app, &token, first).await["counts"]["imported"], 2);
        let second = import(
            &app,
            &token,
            "erp.csv",
            SECOND.as_bytes(),
            json!({"dedupe": policy}),
        )
        .await;
        let done = wait(&app, &token, second).await;
        let c = &done["counts"];
        // "Bruno" and "Carla" match nobody (no shared phone or e-mail): new in every policy.
        assert_eq!(
            (
                c["imported"].as_i64(),
                c["updated"].as_i64(),
                c["duplicates"].as_i64()
            ),
            (Some(imported), Some(updated), Some(duplicates)),
            "{policy}: {done}"
        );
        let ana = client_by_phone(&app, &token, "+5511987654321").await;
        assert_eq!(ana["name"], ana_name, "{policy}");
        assert_eq!(ana["city"], ana_city, "{policy}");
        assert_eq!(ana["tags"], ana_tags, "{policy}");
        assert_eq!(
            ana["contacts"].as_array().unwrap().len(),
            2,
            "{policy}: contacts kept"
        );
        assert_eq!(
            count(&app, "select count(*) from clients").await,
            4,
            "{policy}"
        );
    }
}

#[tokio::test]
async fn repeated_rows_within_a_file_follow_the_policy_and_are_counted() {
    let file = "Nome;Celular;E-mail;Cidade\n\
Ana;11987654321;;\n\
Ana Maria;(11) 98765-4321;ana@example.com;Santos\n";
    for (policy, name, emails, city) in [
        ("keep-first", "Ana", 0, Value::Null),
        ("keep-last", "Ana Maria", 1, json!("Santos")),
        ("merge", "Ana", 1, json!("Santos")),
    ] {
        let app = spawn_app().await;
        let token = app.admin().await;
        let id = import(
            &app,
            &token,
            "f.csv",
            file.as_bytes(),
            json!({"dedupe": policy}),
        )
        .await;
        let done = wait(&app, &token, id).await;
        assert_eq!(done["counts"]["imported"], 1, "{policy}: {done}");
        assert_eq!(done["counts"]["duplicates"], 1, "{policy}: {done}");
        let ana = client_by_phone(&app, &token, "+5511987654321").await;
        assert_eq!(ana["name"], name, "{policy}");
        assert_eq!(ana["city"], city, "{policy}");
        let n = ana["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["kind"] == "email")
            .count();
        assert_eq!(n, emails, "{policy}");
    }
}

#[tokio::test]
async fn a_reimport_of_the_same_file_changes_nothing_and_a_new_version_updates() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let v1 = "Código;Nome;Celular;Plano\n\
C1;Ana;11987654321;Controle\n\
C2;Bruno;21987654321;Pós\n\
C2;Bruno Lima;21987654321;Pós\n";
    let map = json!({"options": {"mapping": [{"column": "Código", "field": "external_id"}, {"column": "Plano", "field": "current_product"}]}});
    let first = import(&app, &token, "carteira.csv", v1.as_bytes(), map.clone()).await;
    let done = wait(&app, &token, first).await;
    assert_eq!(
        (
            done["counts"]["imported"].as_i64(),
            done["counts"]["duplicates"].as_i64()
        ),
        (Some(2), Some(1))
    );

    let again = import(&app, &token, "carteira.csv", v1.as_bytes(), map.clone()).await;
    let done = wait(&app, &token, again).await;
    let c = &done["counts"];
    assert_eq!(
        (
            c["imported"].as_i64(),
            c["updated"].as_i64(),
            c["unchanged"].as_i64()
        ),
        (Some(0), Some(0), Some(2)),
        "{done}"
    );
    assert!(
        done["summary"]
            .as_str()
            .unwrap()
            .starts_with("Nothing changed"),
        "{done}"
    );
    let bruno = client_by_phone(&app, &token, "+5521987654321").await;
    assert_eq!(bruno["name"], "Bruno", "the repeated row stays a duplicate");

    // Version 2 of the file: Ana changed plan and number (matched by her code), Carla is new.
    let v2 = "Código;Nome;Celular;Plano\n\
C1;Ana;11912345678;Pós\n\
C2;Bruno;21987654321;Pós\n\
C3;Carla;31987654321;Pré\n";
    let third = import(&app, &token, "carteira.csv", v2.as_bytes(), map).await;
    let done = wait(&app, &token, third).await;
    let c = &done["counts"];
    assert_eq!(
        (
            c["imported"].as_i64(),
            c["updated"].as_i64(),
            c["unchanged"].as_i64()
        ),
        (Some(1), Some(1), Some(1)),
        "{done}"
    );
    assert_eq!(count(&app, "select count(*) from clients").await, 3);
    let ana = client_by_phone(&app, &token, "+5511912345678").await;
    assert_eq!(ana["current_product"], "Pós");
    let phones: Vec<&str> = ana["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["value"].as_str())
        .collect();
    assert_eq!(
        phones,
        ["+5511987654321", "+5511912345678"],
        "the old number is kept, the new one added"
    );
    let source: (Option<String>, Option<i64>) = sqlx::query_as(
        "select source_file, source_import_id from clients where external_id = 'C1'",
    )
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    assert_eq!(source, (Some("carteira.csv".into()), Some(third)));
    // …and the API shows it.
    assert_eq!(ana["external_id"], "C1");
    assert_eq!(
        ana["source"],
        json!({"file": "carteira.csv", "import_id": third})
    );
}

async fn search(app: &TestApp, token: &str, q: &str) -> Vec<String> {
    let r = app.get(&format!("/api/v1/clients?q={q}"), token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut names: Vec<String> = r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn imported_clients_are_searchable_when_the_import_ends_even_after_a_lost_index_entry() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let v1 = "Nome;Celular;E-mail\n\
Maria Aparecida;11987650001;maria@empresa.com.br\n\
Bruno Lima;21987650002;bruno@x.com\n";
    let first = import(&app, &token, "a.csv", v1.as_bytes(), json!({})).await;
    assert_eq!(wait(&app, &token, first).await["status"], "completed");
    assert_eq!(search(&app, &token, "aparec").await, ["Maria Aparecida"]);
    assert_eq!(search(&app, &token, "987650002").await, ["Bruno Lima"]);
    assert_eq!(search(&app, &token, "empresa").await, ["Maria Aparecida"]);

    if backend() == "postgres" {
        // What a kill -9 between a batch's commit and its indexing leaves: clients without
        // search entries. The next import of the account repairs them when it ends.
        sqlx::query("delete from client_search")
            .execute(app.db.pool())
            .await
            .unwrap();
        assert!(search(&app, &token, "aparec").await.is_empty());
    }
    // keep-last renames Bruno: the search text follows the update.
    let v2 = "Nome;Celular\nBruno Souza;21987650002\nCarla Dias;31987650003\n";
    let second = import(
        &app,
        &token,
        "b.csv",
        v2.as_bytes(),
        json!({"dedupe": "keep-last"}),
    )
    .await;
    let done = wait(&app, &token, second).await;
    assert_eq!(
        (
            done["counts"]["imported"].as_i64(),
            done["counts"]["updated"].as_i64()
        ),
        (Some(1), Some(1)),
        "{done}"
    );
    assert_eq!(search(&app, &token, "aparec").await, ["Maria Aparecida"]);
    assert_eq!(search(&app, &token, "souza").await, ["Bruno Souza"]);
    assert!(search(&app, &token, "lima").await.is_empty());
    assert_eq!(search(&app, &token, "carla").await, ["Carla Dias"]);
    if backend() == "postgres" {
        let (clients, entries): (i64, i64) = sqlx::query_as(
            "select (select count(*) from clients), (select count(*) from client_search s \
             join clients c on c.id = s.client_id and c.search_text = s.search_text)",
        )
        .fetch_one(app.db.pool())
        .await
        .unwrap();
        assert_eq!(entries, clients, "every client has a current search entry");
    }
}

fn many_rows(from: usize, to: usize) -> String {
    let mut s = String::from("Nome;Celular;E-mail\n");
    for i in from..to {
        s.push_str(&format!(
            "Cliente {i};119{:08};c{i}@example.com\n",
            60_000_000 + i
        ));
    }
    s
}

#[tokio::test]
async fn a_search_matching_thousands_of_clients_pages_through_all_of_them_and_a_rare_one_finds_one()
{
    // More matches than the sparse-search limit (5,000), so PostgreSQL takes both paths.
    let app = spawn_app().await;
    let token = app.admin().await;
    let id = import(
        &app,
        &token,
        "muitos.csv",
        many_rows(0, 5_010).as_bytes(),
        json!({}),
    )
    .await;
    assert_eq!(wait(&app, &token, id).await["counts"]["imported"], 5_010);
    assert_eq!(
        search(&app, &token, "cliente%204242").await,
        ["Cliente 4242"]
    );
    assert_eq!(search(&app, &token, "c4242").await, ["Cliente 4242"]);
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("/api/v1/clients?q=cliente&limit=500&sort=name&cursor={c}"),
            None => "/api/v1/clients?q=cliente&limit=500&sort=name".to_owned(),
        };
        let page = app.get(&url, &token).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for c in page.body["items"].as_array().unwrap() {
            assert!(seen.insert(c["id"].as_i64().unwrap()), "{c} twice");
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5_010);
}

#[tokio::test]
async fn concurrent_imports_into_one_account_never_create_a_client_twice() {
    let (mut config, dir) = test_config().await;
    config.import.workers = 2;
    config.import.batch_rows = 50;
    let app = spawn_with(config, dir).await;
    let token = app.admin().await;
    // Overlapping files: 0..1500 and 500..2000, started together.
    let a = many_rows(0, 1500);
    let b = many_rows(500, 2000);
    let (ia, ib) = tokio::join!(
        import(&app, &token, "a.csv", a.as_bytes(), json!({})),
        import(&app, &token, "b.csv", b.as_bytes(), json!({}))
    );
    let (da, db) = tokio::join!(wait(&app, &token, ia), wait(&app, &token, ib));
    assert_eq!(da["status"], "completed", "{da}");
    assert_eq!(db["status"], "completed", "{db}");
    assert_eq!(count(&app, "select count(*) from clients").await, 2000);
    let imported =
        da["counts"]["imported"].as_i64().unwrap() + db["counts"]["imported"].as_i64().unwrap();
    let duplicates =
        da["counts"]["duplicates"].as_i64().unwrap() + db["counts"]["duplicates"].as_i64().unwrap();
    assert_eq!((imported, duplicates), (2000, 1000));
    assert_eq!(
        count(&app, "select count(distinct client_id) from contacts").await,
        2000
    );
}

#[tokio::test]
async fn a_cancelled_import_keeps_its_committed_batches_and_says_so() {
    let (mut config, dir) = test_config().await;
    config.import.batch_rows = 100;
    let app = spawn_with(config, dir).await;
    let token = app.admin().await;
    let rows = many_rows(0, 30_000);
    let id = import(&app, &token, "big.csv", rows.as_bytes(), json!({})).await;
    // Cancel once the first batches are in.
    let start = Instant::now();
    loop {
        let r = app.get(&format!("/api/v1/imports/{id}"), &token).await;
        if r.body["counts"]["imported"].as_i64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no progress: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = app
        .post(&format!("/api/v1/imports/{id}/cancel"), &token, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let done = wait(&app, &token, id).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    let imported = done["counts"]["imported"].as_i64().unwrap();
    assert!(imported > 0 && imported < 30_000, "{done}");
    assert_eq!(imported % 100, 0, "whole batches only: {done}");
    assert_eq!(count(&app, "select count(*) from clients").await, imported);
    assert!(
        done["summary"].as_str().unwrap().starts_with("Cancelled"),
        "{done}"
    );
    // A finished import cannot be started again.
    let r = app
        .post(&format!("/api/v1/imports/{id}/start"), &token, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn presets_feed_the_mapping_and_only_import_roles_may_import() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let r = app
        .post("/api/v1/import-presets", &token, json!({"name": "ERP", "mapping": [{"column": "Fone", "field": "phone"}, {"column": "X", "field": "bogus"}]}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.fields(), ["mapping[1].field"]);
    let r = app
        .post(
            "/api/v1/import-presets",
            &token,
            json!({"name": "ERP", "mapping": [{"column": "Fone", "field": "phone"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = import(
        &app,
        &token,
        "erp.csv",
        b"Cliente;Fone\nAna;11987654321\n",
        json!({"preset": "ERP"}),
    )
    .await;
    assert_eq!(wait(&app, &token, id).await["counts"]["imported"], 1);
    let r = app
        .post(
            "/api/v1/imports",
            &token,
            json!({"files": [{"name": "x.csv", "size": 3}], "preset": "nope"}),
        )
        .await;
    assert_eq!(r.fields(), ["preset"]);

    let agent = app.user("default", farol::auth::Role::Agent).await;
    let r = app
        .post(
            "/api/v1/imports",
            &agent,
            json!({"files": [{"name": "x.csv", "size": 3}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app.get("/api/v1/imports", &agent).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let list = app.get("/api/v1/imports", &token).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);
}

/// Generates a messy file of `rows` rows in `dir` and imports it, uninterrupted, into a database
/// of its own: the reference report a crashed-and-resumed import must end with.
async fn generated_file_and_reference(
    dir: &std::path::Path,
    name: &str,
    rows: u32,
    seed: u32,
) -> (
    std::path::PathBuf,
    Value,
    (farol::config::Config, tempfile::TempDir),
) {
    let file = dir.join(name);
    let out = farol_bin(dir, "")
        .args([
            "bench",
            "gen-clients",
            &rows.to_string(),
            "--seed",
            &seed.to_string(),
            "-o",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ref_config, ref_dir) = test_config().await;
    let ref_url = ref_config.database.url.expose_secret().to_owned();
    let out = farol_bin(ref_dir.path(), &ref_url)
        .args(["import", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: Value = serde_json::from_slice(&out.stdout).expect("--json prints the report");
    assert_eq!(reference["status"], "completed");
    (file, reference, (ref_config, ref_dir))
}

#[tokio::test]
async fn farol_import_killed_mid_file_resumes_without_losing_or_doubling_a_client() {
    // Reference: the same file imported without interruption.
    let (config, dir) = test_config().await;
    let (file, reference, (ref_config, _ref_dir)) =
        generated_file_and_reference(dir.path(), "clientes.csv", 20_000, 7).await;
    assert!(
        reference["counts"]["imported"].as_i64().unwrap() > 19_000,
        "{}",
        reference["counts"]
    );

    let url = config.database.url.expose_secret().to_owned();
    let mut child = farol_bin(dir.path(), &url)
        .env("FAROL_IMPORT__BATCH_ROWS", "250")
        .env("FAROL_IMPORT__LEASE_SECS", "1")
        .args(["import", "--json"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let db = farol::db::Db::connect(&config.database_url(), 1)
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let done: Option<i64> =
            sqlx::query_scalar("select rows_imported from imports where id = 1")
                .fetch_optional(db.pool())
                .await
                .unwrap_or(None);
        if done.unwrap_or(0) >= 2000 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the import made no progress"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up.
    child.wait().unwrap();
    let (status, imported): (String, i64) =
        sqlx::query_as("select status, rows_imported from imports where id = 1")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(
        status, "running",
        "the killed import still looks alive until its lease expires"
    );
    let stored: i64 = sqlx::query_scalar("select count(*) from clients")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(stored, imported, "committed batches and counters agree");
    assert!(imported < 19_000, "killed before the end");

    // Resuming right away is refused (the lease is still held); after it expires, it works.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = farol_bin(dir.path(), &url)
        .args(["import", "--json", "--resume", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resumed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(resumed["status"], "completed");
    assert_eq!(
        resumed["counts"], reference["counts"],
        "same counts as the uninterrupted import"
    );
    let stored: i64 = sqlx::query_scalar("select count(*) from clients")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(stored, reference["counts"]["imported"].as_i64().unwrap());
    let contacts: i64 = sqlx::query_scalar("select count(*) from contacts")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let ref_db = farol::db::Db::connect(&ref_config.database_url(), 1)
        .await
        .unwrap();
    let ref_contacts: i64 = sqlx::query_scalar("select count(*) from contacts")
        .fetch_one(ref_db.pool())
        .await
        .unwrap();
    assert_eq!(contacts, ref_contacts);

    // The export has every client with normalized contacts.
    let out = farol_bin(dir.path(), &url)
        .args(["clients", "export"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count() as i64, stored + 1);
    assert!(
        text.lines().skip(1).all(|l| l.contains(",+55")),
        "every generated client has a phone"
    );
}

#[test]
fn farol_import_names_a_bad_mapping_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.csv"), "Nome;Fone\nAna;11987654321\n").unwrap();
    let out = farol_bin(dir.path(), "")
        .args(["import", "a.csv", "--map", "Telefone=phone"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("a.csv") && err.contains("unknown column \"Telefone\""),
        "{err}"
    );
    let out = farol_bin(dir.path(), "")
        .args([
            "import",
            "a.csv",
            "--map",
            "Fone=phone",
            "--portfolio",
            "Varejo",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Import #1 — Completed: 1 rows read: 1 new"),
        "{text}"
    );
}

#[test]
fn farol_import_reads_several_files_including_a_named_xlsx_sheet_in_one_job() {
    use rust_xlsxwriter::Workbook;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.csv"),
        "Nome,Celular\r\nAna,(11) 98765-4321\r\n",
    )
    .unwrap();
    let mut wb = Workbook::new();
    let cover = wb.add_worksheet();
    cover.set_name("Capa").unwrap();
    cover.write_string(0, 0, "Relatório de clientes").unwrap();
    let ws = wb.add_worksheet();
    ws.set_name("Clientes").unwrap();
    for (c, h) in ["Nome", "Telefone", "E-mail", "CPF"].iter().enumerate() {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    // Excel stores typed phones and documents as numbers.
    ws.write_string(1, 0, "Bruno").unwrap();
    ws.write_number(1, 1, 21987654321.0).unwrap();
    ws.write_string(1, 2, "BRUNO@EXAMPLE.COM").unwrap();
    ws.write_number(1, 3, 52998224725.0).unwrap();
    ws.write_string(2, 0, "Ana de novo").unwrap();
    ws.write_number(2, 1, 11987654321.0).unwrap();
    wb.save(dir.path().join("b.xlsx")).unwrap();

    let out = farol_bin(dir.path(), "")
        .args(["import", "a.csv", "b.xlsx", "--sheet", "Clientes", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &report["counts"];
    assert_eq!(
        (
            c["rows_read"].as_i64(),
            c["imported"].as_i64(),
            c["duplicates"].as_i64()
        ),
        (Some(3), Some(2), Some(1)),
        "{report}"
    );
    let names: Vec<&str> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.csv", "b.xlsx"]);
    let out = farol_bin(dir.path(), "")
        .args(["clients", "export"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Bruno,,52998224725,"), "{text}");
    assert!(text.contains("+5521987654321,bruno@example.com"), "{text}");

    // A sheet that does not exist is named, with the ones that do.
    let out = farol_bin(dir.path(), "")
        .args(["import", "b.xlsx", "--sheet", "Vendas"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("b.xlsx") && err.contains("\"Vendas\"") && err.contains("\"Clientes\""),
        "{err}"
    );
}

#[tokio::test]
async fn a_serve_killed_mid_import_resumes_it_after_a_restart() {
    let (config, dir) = test_config().await;
    let (file, reference, _reference_db) =
        generated_file_and_reference(dir.path(), "carteira.csv", 15_000, 11).await;

    // Queue the import directly (as the upload API would once every byte is in).
    let url = secrecy::ExposeSecret::expose_secret(&config.database.url).to_owned();
    let db = farol::db::Db::connect(&config.database_url(), 2)
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    let id = farol::import::store::create(
        &mut tx,
        1,
        None,
        farol::import::store::Status::Queued,
        farol::import::writer::Dedupe::KeepFirst,
        &Default::default(),
        &[farol::import::store::NewFile {
            name: "carteira.csv".into(),
            path: file.display().to_string(),
            size: None,
        }],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let serve = || {
        crate::helpers::serve_process(
            dir.path(),
            &url,
            &[
                ("FAROL_IMPORT__BATCH_ROWS", "250"),
                ("FAROL_IMPORT__LEASE_SECS", "1"),
            ],
        )
    };
    let progress = |db: farol::db::Db| async move {
        sqlx::query_as::<_, (String, i64)>(
            "select status, rows_imported from imports where id = $1",
        )
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap()
    };
    let mut server = serve();
    let start = Instant::now();
    while progress(db.clone()).await.1 < 2000 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the worker made no progress"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().unwrap(); // SIGKILL mid-import
    server.wait().unwrap();
    let (status, imported) = progress(db.clone()).await;
    assert_eq!(status, "running");
    let stored: i64 = sqlx::query_scalar("select count(*) from clients")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(stored, imported, "committed batches and counters agree");

    // A new process takes the import over once the dead worker's lease expires.
    let mut server = serve();
    let start = Instant::now();
    while progress(db.clone()).await.0 != "completed" {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the import was not resumed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let row = farol::import::store::get_any(&mut db.pool().acquire().await.unwrap(), id)
        .await
        .unwrap();
    let counts = serde_json::to_value(farol::import::store::Counters::of(&row)).unwrap();
    assert_eq!(
        counts, reference["counts"],
        "same counts as an uninterrupted import"
    );
    let stored: i64 = sqlx::query_scalar("select count(*) from clients")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(stored, reference["counts"]["imported"].as_i64().unwrap());
    let attempts: i64 = sqlx::query_scalar("select attempts from imports where id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(
        attempts, 2,
        "claimed by the first server, then taken over by the second"
    );
}

#[tokio::test]
async fn of_two_chunks_sent_at_once_for_the_same_offset_exactly_one_lands() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let a = "Nome;Fone\nAna;11987654321\n".as_bytes();
    let b = "Nome;Fone\nBia;21987654321\n".as_bytes();
    let r = app
        .post(
            "/api/v1/imports",
            &token,
            json!({"files": [{"name": "x.csv", "size": a.len()}]}),
        )
        .await;
    let id = r.body["id"].as_i64().unwrap();
    let (ra, rb) = tokio::join!(
        put_chunk(&app, &token, id, 0, a),
        put_chunk(&app, &token, id, 0, b)
    );
    let mut statuses = [ra.status().as_u16(), rb.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [204, 409]);
    let winner = if ra.status() == StatusCode::NO_CONTENT {
        a
    } else {
        b
    };
    let r = app
        .post(&format!("/api/v1/imports/{id}/start"), &token, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(wait(&app, &token, id).await["counts"]["imported"], 1);
    let name = if winner == a { "Ana" } else { "Bia" };
    let n: i64 = sqlx::query_scalar("select count(*) from clients where name = $1")
        .bind(name)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(n, 1, "the stored bytes are the winning chunk's");
}
