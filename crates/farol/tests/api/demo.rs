use farol_normalize::{Email, Phone, TaxId};
use reqwest::StatusCode;

use crate::helpers::{spawn_with, test_config};

#[tokio::test]
async fn demo_data_is_valid_normalized_and_generated_once() {
    let (config, dir) = test_config().await;
    let built = farol::app::App::build(config.clone()).await.unwrap();
    let summary = farol::demo::populate(&built.state, 1200, 7).await.unwrap();
    assert!(summary.contains("Generated 1200"), "{summary}");
    let again = farol::demo::populate(&built.state, 1200, 7).await.unwrap();
    assert!(again.contains("already present (1200 clients)"), "{again}");

    let app = spawn_with(config, dir).await;
    let login = app
        .login("viewer@farol.demo", farol::demo::DEMO_PASSWORD)
        .await;
    assert_eq!(login.status, StatusCode::OK);
    let token = login.body["access_token"].as_str().unwrap().to_string();
    let mut seen = 0;
    let mut cursor = String::new();
    loop {
        let page = app
            .get(&format!("/api/v1/clients?limit=500{cursor}"), &token)
            .await
            .body;
        for c in page["items"].as_array().unwrap() {
            seen += 1;
            let doc = c["cpf_cnpj"].as_str().unwrap();
            assert_eq!(TaxId::parse(doc).unwrap().as_str(), doc);
            assert!(c["portfolio_id"].is_i64());
            assert_eq!(c["custom_fields"].as_object().unwrap().len(), 3);
            for k in c["contacts"].as_array().unwrap() {
                let v = k["value"].as_str().unwrap();
                match k["kind"].as_str().unwrap() {
                    "phone" => assert_eq!(Phone::parse(v).unwrap().phone.as_str(), v),
                    _ => assert_eq!(Email::parse(v).unwrap().as_str(), v),
                }
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, 1200);
    let found = app.get("/api/v1/clients?q=silva&limit=1", &token).await;
    assert_eq!(found.body["items"].as_array().unwrap().len(), 1);
}
