use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn custom_fields(app: &TestApp, token: &str) {
    for body in [
        json!({"key": "plano_atual", "label": "Plano atual", "field_type": "select", "options": ["Controle", "Pós", "Pré"]}),
        json!({"key": "linhas", "label": "Linhas", "field_type": "number"}),
        json!({"key": "vencimento", "label": "Vencimento", "field_type": "date"}),
        json!({"key": "vip", "label": "VIP", "field_type": "boolean"}),
    ] {
        let res = app.post("/api/v1/custom-fields", token, body).await;
        assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    }
}

#[tokio::test]
async fn a_client_is_created_with_normalized_contacts_tags_and_typed_custom_fields() {
    let app = spawn_app().await;
    let token = app.admin().await;
    custom_fields(&app, &token).await;
    let portfolio = app
        .post(
            "/api/v1/portfolios",
            &token,
            json!({"name": "Vivo Empresas SP"}),
        )
        .await
        .body;
    let client = app
        .client(&token, json!({
            "name": "  Padaria Pão Quente ",
            "legal_name": "Padaria Pão Quente LTDA",
            "cpf_cnpj": "11.222.333/0001-81",
            "status": "prospect",
            "portfolio_id": portfolio["id"],
            "score": 70,
            "tags": ["vip", "fibra", "vip"],
            "custom_fields": {"plano_atual": "Controle", "linhas": 12, "vencimento": "2027-01-31", "vip": true},
            "contacts": [
                {"kind": "phone", "value": "(11) 8765-4321"},
                {"kind": "phone", "value": "+55 (21) 3456-7890"},
                {"kind": "email", "value": "  Contato@PadariaPao.COM.br "}
            ]
        }))
        .await;
    assert_eq!(client["name"], "Padaria Pão Quente");
    assert_eq!(client["cpf_cnpj"], "11222333000181");
    assert_eq!(client["document_type"], "cnpj");
    assert_eq!(client["status"], "prospect");
    assert_eq!(client["tags"], json!(["fibra", "vip"]));
    assert_eq!(
        client["custom_fields"],
        json!({"plano_atual": "Controle", "linhas": 12, "vencimento": "2027-01-31", "vip": true})
    );
    let values: Vec<&str> = client["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    assert!(
        values.contains(&"+5511987654321"),
        "legacy mobile gets its ninth digit: {values:?}"
    );
    assert!(
        values.contains(&"+552134567890"),
        "landline unchanged: {values:?}"
    );
    assert!(values.contains(&"contato@padariapao.com.br"));
    let preferred_phones = client["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "phone" && c["preferred"] == true)
        .count();
    assert_eq!(preferred_phones, 1);

    let id = client["id"].as_i64().unwrap();
    let fetched = app.get(&format!("/api/v1/clients/{id}"), &token).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body, client);
}

#[tokio::test]
async fn validation_errors_name_every_bad_field() {
    let app = spawn_app().await;
    let token = app.admin().await;
    custom_fields(&app, &token).await;
    let res = app
        .post(
            "/api/v1/clients",
            &token,
            json!({
                "name": "",
                "cpf_cnpj": "123.456.789-00",
                "score": 101,
                "portfolio_id": 999999,
                "custom_fields": {"plano_atual": "Ilimitado", "linhas": "doze", "nao_existe": 1},
                "contacts": [{"kind": "phone", "value": "123"}, {"kind": "email", "value": "ana@"}]
            }),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.body["code"], "validation_failed");
    let fields: HashSet<String> = res.fields().into_iter().collect();
    for f in [
        "name",
        "cpf_cnpj",
        "score",
        "portfolio_id",
        "custom_fields.plano_atual",
        "custom_fields.linhas",
        "custom_fields.nao_existe",
        "contacts[0].value",
        "contacts[1].value",
    ] {
        assert!(fields.contains(f), "{f} missing from {fields:?}");
    }
    // Type errors in the JSON itself name the path too.
    let res = app
        .post(
            "/api/v1/clients",
            &token,
            json!({"name": "A", "contacts": [{"kind": "fax", "value": "1"}]}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.fields(), vec!["contacts[0].kind"]);
    let res = app
        .post("/api/v1/clients", &token, json!({"nome": "A"}))
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Nothing was stored.
    let list = app.get("/api/v1/clients", &token).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn required_custom_fields_are_enforced() {
    let app = spawn_app().await;
    let token = app.admin().await;
    app.post(
        "/api/v1/custom-fields",
        &token,
        json!({"key": "segmento", "label": "Segmento", "field_type": "text", "required": true}),
    )
    .await;
    let res = app
        .post("/api/v1/clients", &token, json!({"name": "Ana"}))
        .await;
    assert_eq!(res.fields(), vec!["custom_fields.segmento"]);
    let c = app
        .client(
            &token,
            json!({"name": "Ana", "custom_fields": {"segmento": "PME"}}),
        )
        .await;
    let res = app
        .patch(
            &format!("/api/v1/clients/{}", c["id"]),
            &token,
            json!({"custom_fields": {"segmento": null}}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_phone_or_email_belongs_to_one_client_per_account() {
    let app = spawn_app().await;
    let token = app.admin().await;
    app.client(
        &token,
        json!({"name": "Ana", "contacts": [{"kind": "phone", "value": "11987654321"}]}),
    )
    .await;
    let dup = app.post("/api/v1/clients", &token, json!({"name": "Outra Ana", "contacts": [{"kind": "phone", "value": "+55 11 98765-4321"}]})).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.fields(), vec!["contacts[0].value"]);
    assert_eq!(
        app.get("/api/v1/clients", &token).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "the failed create left nothing behind"
    );

    app.client(&token, json!({"name": "Bia", "cpf_cnpj": "529.982.247-25"}))
        .await;
    let dup_doc = app
        .post(
            "/api/v1/clients",
            &token,
            json!({"name": "Bia 2", "cpf_cnpj": "52998224725"}),
        )
        .await;
    assert_eq!(dup_doc.status, StatusCode::CONFLICT);
    assert_eq!(dup_doc.fields(), vec!["cpf_cnpj"]);
}

#[tokio::test]
async fn patch_changes_only_given_fields_clears_nulls_and_logs_status_changes() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let c = app.client(&token, json!({"name": "Ana", "city": "Recife/PE", "category": "PF", "status": "lead", "tags": ["a"]})).await;
    let id = c["id"].as_i64().unwrap();
    let res = app
        .patch(
            &format!("/api/v1/clients/{id}"),
            &token,
            json!({"status": "active", "city": null, "tags": ["b", "c"]}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["status"], "active");
    assert_eq!(res.body["city"], Value::Null);
    assert_eq!(res.body["category"], "PF");
    assert_eq!(res.body["tags"], json!(["b", "c"]));

    let note = app
        .post(
            &format!("/api/v1/clients/{id}/timeline"),
            &token,
            json!({"text": "Ligou pedindo proposta", "kind": "call"}),
        )
        .await;
    assert_eq!(note.status, StatusCode::CREATED);
    let timeline = app
        .get(&format!("/api/v1/clients/{id}/timeline"), &token)
        .await
        .body;
    let kinds: Vec<&str> = timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["call", "status_changed", "client_created"]);
    assert_eq!(
        timeline["items"][1]["metadata"],
        json!({"from": "lead", "to": "active"})
    );
    let bad = app
        .post(
            &format!("/api/v1/clients/{id}/timeline"),
            &token,
            json!({"text": "", "kind": "sms"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.fields().len(), 2);
}

#[tokio::test]
async fn contacts_have_their_own_crud_and_keep_one_preferred_per_kind() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let c = app
        .client(
            &token,
            json!({"name": "Ana", "contacts": [{"kind": "phone", "value": "11 98765 4321"}]}),
        )
        .await;
    let id = c["id"].as_i64().unwrap();
    let added = app
        .post(
            &format!("/api/v1/clients/{id}/contacts"),
            &token,
            json!({"kind": "phone", "value": "(21) 99876-5432", "preferred": true}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    let list = app
        .get(
            &format!("/api/v1/contacts?client_id={id}&kind=phone"),
            &token,
        )
        .await
        .body;
    let preferred: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["preferred"] == true)
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    assert_eq!(preferred, vec!["+5521998765432"]);

    let by_value = app
        .get("/api/v1/contacts?value=(11)%2098765-4321", &token)
        .await
        .body;
    assert_eq!(by_value["items"][0]["client_id"], id);

    let cid = added.body["id"].as_i64().unwrap();
    let res = app
        .patch(
            &format!("/api/v1/contacts/{cid}"),
            &token,
            json!({"opted_out": true, "value": "bad"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.fields(), vec!["value"]);
    let res = app
        .patch(
            &format!("/api/v1/contacts/{cid}"),
            &token,
            json!({"opted_out": true}),
        )
        .await;
    assert_eq!(res.body["opted_out"], true);
    assert_eq!(
        app.delete(&format!("/api/v1/contacts/{cid}"), &token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&format!("/api/v1/contacts/{cid}"), &token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // The client is no longer found by the deleted number.
    let found = app.get("/api/v1/clients?q=21998765432", &token).await.body;
    assert_eq!(found["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn deleting_a_client_removes_it_with_its_contacts() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let c = app
        .client(
            &token,
            json!({"name": "Ana", "contacts": [{"kind": "email", "value": "ana@example.com"}]}),
        )
        .await;
    let id = c["id"].as_i64().unwrap();
    assert_eq!(
        app.delete(&format!("/api/v1/clients/{id}"), &token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&format!("/api/v1/clients/{id}"), &token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&format!("/api/v1/clients/{id}"), &token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // The e-mail is free again.
    app.client(
        &token,
        json!({"name": "Ana 2", "contacts": [{"kind": "email", "value": "ana@example.com"}]}),
    )
    .await;
}

async fn seed(app: &TestApp, token: &str) -> (i64, i64) {
    custom_fields(app, token).await;
    let p1 = app
        .post("/api/v1/portfolios", token, json!({"name": "Carteira A"}))
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    let p2 = app
        .post("/api/v1/portfolios", token, json!({"name": "Carteira B"}))
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    let names = [
        "Ana Souza",
        "Bruno Lima",
        "Carla Dias",
        "Daniel Rocha",
        "Eduarda Nunes",
        "Fábio Costa",
        "Gabriela Alves",
    ];
    for (i, name) in names.iter().enumerate() {
        app.client(token, json!({
            "name": name,
            "status": if i % 2 == 0 { "active" } else { "lead" },
            "portfolio_id": if i < 4 { p1 } else { p2 },
            "score": i * 10,
            "tags": if i % 3 == 0 { vec!["vip"] } else { vec![] },
            "custom_fields": {"plano_atual": if i < 3 { "Controle" } else { "Pós" }, "linhas": i},
            "contacts": [{"kind": "phone", "value": format!("(11) 9{}765-43{:02}", 6 + i % 4, i)}, {"kind": "email", "value": format!("cliente{i}@example.com")}]
        }))
        .await;
    }
    (p1, p2)
}

fn names(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn cursor_pagination_visits_every_client_once_in_every_sort_order() {
    let app = spawn_app().await;
    let token = app.admin().await;
    seed(&app, &token).await;
    for sort in [
        "name",
        "-name",
        "created_at",
        "-created_at",
        "score",
        "-score",
        "id",
        "-id",
        "updated_at",
    ] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut url = format!("/api/v1/clients?limit=3&sort={sort}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page = app.get(&url, &token).await;
            assert_eq!(page.status, StatusCode::OK, "{sort}: {:?}", page.body);
            seen.extend(names(&page.body));
            pages += 1;
            match page.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(pages, 3, "{sort}");
        assert_eq!(seen.len(), 7, "{sort}: {seen:?}");
        assert_eq!(
            seen.iter().collect::<HashSet<_>>().len(),
            7,
            "{sort}: duplicates in {seen:?}"
        );
        if sort == "name" {
            let mut sorted = seen.clone();
            sorted.sort();
            assert_eq!(seen, sorted);
        }
    }
    let bad = app.get("/api/v1/clients?cursor=garbage", &token).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.fields(), vec!["cursor"]);
    let bad = app
        .get("/api/v1/clients?sort=color&limit=0&statsu=x", &token)
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn filters_combine_status_portfolio_tag_custom_fields_and_created_range() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let (p1, p2) = seed(&app, &token).await;
    let get = |q: String| {
        let app = &app;
        let token = token.clone();
        async move {
            let res = app
                .get(&format!("/api/v1/clients?sort=name&{q}"), &token)
                .await;
            assert_eq!(res.status, StatusCode::OK, "{q}: {:?}", res.body);
            names(&res.body)
        }
    };
    assert_eq!(
        get("status=active".into()).await,
        vec!["Ana Souza", "Carla Dias", "Eduarda Nunes", "Gabriela Alves"]
    );
    assert_eq!(
        get(format!("portfolio_id={p2}")).await,
        vec!["Eduarda Nunes", "Fábio Costa", "Gabriela Alves"]
    );
    assert_eq!(
        get(format!("portfolio_id={p1}&status=lead")).await,
        vec!["Bruno Lima", "Daniel Rocha"]
    );
    assert_eq!(
        get("tag=vip".into()).await,
        vec!["Ana Souza", "Daniel Rocha", "Gabriela Alves"]
    );
    assert_eq!(get("tag=vip&tag=nope".into()).await, Vec::<String>::new());
    assert_eq!(
        get("cf.plano_atual=Controle".into()).await,
        vec!["Ana Souza", "Bruno Lima", "Carla Dias"]
    );
    assert_eq!(get("cf.linhas=4".into()).await, vec!["Eduarda Nunes"]);
    assert_eq!(
        get("created_from=2000-01-01&created_to=2100-01-01".into())
            .await
            .len(),
        7
    );
    assert_eq!(get("created_from=2100-01-01".into()).await.len(), 0);
    let bad = app
        .get(
            "/api/v1/clients?status=ativo&cf.nope=1&created_from=ontem&portfolio_id=x",
            &token,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: HashSet<String> = bad.fields().into_iter().collect();
    assert_eq!(
        fields,
        ["status", "cf.nope", "created_from", "portfolio_id"]
            .map(String::from)
            .into_iter()
            .collect()
    );
}

#[tokio::test]
async fn search_finds_clients_by_name_phone_email_and_document_however_typed() {
    let app = spawn_app().await;
    let token = app.admin().await;
    seed(&app, &token).await;
    app.client(&token, json!({"name": "João da Silva", "legal_name": "Mercadinho Pão de Açúcar ME", "cpf_cnpj": "529.982.247-25",
        "contacts": [{"kind": "phone", "value": "(85) 98877-6655"}, {"kind": "email", "value": "joao.silva@gmail.com"}]})).await;
    let search = |q: &'static str| {
        let app = &app;
        let token = token.clone();
        async move {
            let res = app
                .get(&format!("/api/v1/clients?q={}", urlencode(q)), &token)
                .await;
            assert_eq!(res.status, StatusCode::OK, "{q}: {:?}", res.body);
            names(&res.body)
        }
    };
    for q in [
        "joão",
        "JOAO",
        "joa sil",
        "silva",
        "mercadinho acucar",
        "(85) 98877-6655",
        "+55 85 988776655",
        "55 85 98877",
        "+55 (85) 9887",
        "85988776655",
        "98877-6655",
        "8877",
        "529.982.247-25",
        "52998224725",
        "joao.silva@gmail.com",
        "JOAO.SILVA@GMAIL.COM",
        "joao.silva@gm",
        "gmail",
    ] {
        let found = search(q).await;
        if q == "8877" {
            // Not a prefix of any token: digits match from the start of a number.
            assert!(found.is_empty(), "{q}: {found:?}");
            continue;
        }
        assert_eq!(found, vec!["João da Silva"], "search {q:?}");
    }
    assert_eq!(search("souza").await, vec!["Ana Souza"]);
    assert!(search("zzzz").await.is_empty());
    let bad = app.get("/api/v1/clients?q=%3F%3F%3F", &token).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn tags_portfolios_and_custom_fields_have_crud() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let tag = app
        .post(
            "/api/v1/tags",
            &token,
            json!({"name": "vip", "color": "#660098"}),
        )
        .await;
    assert_eq!(tag.status, StatusCode::CREATED);
    let dup = app
        .post("/api/v1/tags", &token, json!({"name": "vip"}))
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    let bad = app
        .post(
            "/api/v1/tags",
            &token,
            json!({"name": "", "color": "purple"}),
        )
        .await;
    assert_eq!(bad.fields().len(), 2);
    let tid = tag.body["id"].as_i64().unwrap();
    let c = app
        .client(&token, json!({"name": "Ana", "tags": ["vip"]}))
        .await;
    let renamed = app
        .patch(
            &format!("/api/v1/tags/{tid}"),
            &token,
            json!({"name": "VIP ouro"}),
        )
        .await;
    assert_eq!(renamed.body["name"], "VIP ouro");
    assert_eq!(
        app.get(&format!("/api/v1/clients/{}", c["id"]), &token)
            .await
            .body["tags"],
        json!(["VIP ouro"])
    );
    assert_eq!(
        app.delete(&format!("/api/v1/tags/{tid}"), &token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&format!("/api/v1/clients/{}", c["id"]), &token)
            .await
            .body["tags"],
        json!([])
    );

    let p = app
        .post("/api/v1/portfolios", &token, json!({"name": "Claro PME"}))
        .await
        .body;
    let pid = p["id"].as_i64().unwrap();
    app.patch(
        &format!("/api/v1/clients/{}", c["id"]),
        &token,
        json!({"portfolio_id": pid}),
    )
    .await;
    assert_eq!(
        app.get(&format!("/api/v1/portfolios/{pid}"), &token)
            .await
            .body["client_count"],
        1
    );
    assert_eq!(
        app.delete(&format!("/api/v1/portfolios/{pid}"), &token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&format!("/api/v1/clients/{}", c["id"]), &token)
            .await
            .body["portfolio_id"],
        Value::Null
    );

    let f = app
        .post(
            "/api/v1/custom-fields",
            &token,
            json!({"key": "Plano Atual", "label": "", "field_type": "select"}),
        )
        .await;
    assert_eq!(f.fields().len(), 3, "{:?}", f.body);
    let f = app
        .post(
            "/api/v1/custom-fields",
            &token,
            json!({"key": "plano", "label": "Plano", "field_type": "select", "options": ["A"]}),
        )
        .await
        .body;
    let fid = f["id"].as_i64().unwrap();
    let patched = app
        .patch(
            &format!("/api/v1/custom-fields/{fid}"),
            &token,
            json!({"options": ["A", "B"], "visible": false}),
        )
        .await;
    assert_eq!(patched.body["options"], json!(["A", "B"]));
    assert_eq!(patched.body["visible"], false);
    let listed = app.get("/api/v1/custom-fields", &token).await.body;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.delete(&format!("/api/v1/custom-fields/{fid}"), &token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn export_writes_every_client_with_normalized_contacts_as_csv() {
    let app = spawn_app().await;
    let token = app.admin().await;
    custom_fields(&app, &token).await;
    app.client(&token, json!({"name": "Ana, \"a Grande\"", "cpf_cnpj": "529.982.247-25", "tags": ["vip", "fibra"],
        "custom_fields": {"plano_atual": "Pós", "linhas": 3},
        "contacts": [{"kind": "phone", "value": "(11) 8765-4321"}, {"kind": "phone", "value": "(21) 3456-7890", "preferred": true},
                     {"kind": "email", "value": " ANA@Example.com "}]})).await;
    app.client(&token, json!({"name": "Bruno"})).await;
    let account = farol::accounts::find(&app.db, "default")
        .await
        .unwrap()
        .unwrap();
    let mut out = Vec::new();
    let n = farol::crm::export::write_csv(&app.db, account, &mut out)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let mut reader = csv::Reader::from_reader(out.as_slice());
    let headers = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let col = |row: &csv::StringRecord, name: &str| {
        row[headers.iter().position(|h| h == name).unwrap()].to_string()
    };
    let ana = rows
        .iter()
        .find(|r| col(r, "name").starts_with("Ana"))
        .unwrap();
    assert_eq!(col(ana, "name"), "Ana, \"a Grande\"");
    assert_eq!(col(ana, "cpf_cnpj"), "52998224725");
    assert_eq!(col(ana, "phone"), "+552134567890");
    assert_eq!(col(ana, "phones"), "+552134567890 +5511987654321");
    assert_eq!(col(ana, "email"), "ana@example.com");
    assert_eq!(col(ana, "tags"), "fibra|vip");
    assert_eq!(col(ana, "cf.plano_atual"), "Pós");
    assert_eq!(col(ana, "cf.linhas"), "3");
    let bruno = rows.iter().find(|r| col(r, "name") == "Bruno").unwrap();
    assert_eq!(col(bruno, "phone"), "");
}
