//! Test harness: a real Farol server on port 0 over a fresh database per test.
//!
//! `FAROL_TEST_BACKEND=sqlite` (default) gives each test its own SQLite file;
//! `FAROL_TEST_BACKEND=postgres` gives each test its own PostgreSQL schema on
//! `FAROL_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`). When PostgreSQL is
//! selected but unreachable, tests fail: they never silently skip.

use std::sync::Arc;

use farol::app::App;
use farol::audit::Actor;
use farol::auth::Role;
use farol::auth::token::TokenKeys;
use farol::auth::users::{self, NewUser};
use farol::config::Config;
use farol::db::Db;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub db: Db,
    pub tokens: Arc<TokenKeys>,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn backend() -> String {
    std::env::var("FAROL_TEST_BACKEND").unwrap_or_else(|_| "sqlite".into())
}

async fn postgres_schema_url() -> String {
    let base = std::env::var("FAROL_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let admin = Db::connect(&base, 1)
        .await
        .unwrap_or_else(|e| panic!("FAROL_TEST_BACKEND=postgres but {base} is unreachable: {e}"));
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("create schema {schema}")))
        .execute(admin.pool())
        .await
        .expect("create test schema");
    admin.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// A config for a test: fresh database, cheap password hashing.
pub async fn test_config() -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.auth.argon2_memory_kib = 64;
    config.auth.argon2_iterations = 1;
    config.database.max_connections = 5;
    match backend().as_str() {
        "sqlite" => {}
        "postgres" => config.database.url = SecretString::from(postgres_schema_url().await),
        other => panic!("FAROL_TEST_BACKEND must be sqlite or postgres, not {other}"),
    }
    (config, dir)
}

pub async fn spawn_app() -> TestApp {
    let (config, dir) = test_config().await;
    spawn_with(config, dir).await
}

pub async fn spawn_with(config: Config, dir: tempfile::TempDir) -> TestApp {
    let app = App::build(config).await.expect("app builds");
    let db = app.state.db.clone();
    let tokens = app.state.tokens.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        app.serve(listener, async {
            let _ = rx.await;
        })
        .await
        .expect("server runs");
    });
    TestApp {
        base,
        http: reqwest::Client::new(),
        db,
        tokens,
        _dir: dir,
        shutdown: Some(tx),
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    /// The `field` names of a validation error body.
    pub fn fields(&self) -> Vec<String> {
        self.body["fields"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| f["field"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl TestApp {
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.request(Method::GET, path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.request(Method::POST, path, Some(token), Some(body))
            .await
    }
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.request(Method::PATCH, path, Some(token), Some(body))
            .await
    }
    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.request(Method::DELETE, path, Some(token), None).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Resp {
        self.request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await
    }

    /// Creates a user with `role` in `account` (created when missing) and returns its access token.
    pub async fn user(&self, account: &str, role: Role) -> String {
        let account_id = farol::accounts::ensure(&self.db, account)
            .await
            .expect("account");
        let email = format!(
            "{}-{}@{}.test",
            role.as_str(),
            uuid::Uuid::new_v4().simple(),
            account
        );
        users::create(
            &self.db,
            farol::auth::password::HashCost {
                memory_kib: 64,
                iterations: 1,
            },
            &Actor::system(account_id, "test"),
            NewUser {
                email: email.clone(),
                name: "Test".into(),
                password: PASSWORD.into(),
                role,
            },
        )
        .await
        .expect("user created");
        let res = self.login(&email, PASSWORD).await;
        assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
        res.body["access_token"]
            .as_str()
            .expect("token")
            .to_string()
    }

    pub async fn admin(&self) -> String {
        self.user("default", Role::Admin).await
    }

    /// Creates a client and returns its JSON.
    pub async fn client(&self, token: &str, body: Value) -> Value {
        let res = self.post("/api/v1/clients", token, body).await;
        assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
        res.body
    }
}

// A test that runs `farol_bin(…).output()` (a blocking wait) while its in-process server runs
// must use a multi-thread runtime: on the default current-thread runtime the wait freezes the
// server's tasks, and one caught inside a SQLite write transaction holds the write lock until
// the CLI gives up with "database is locked".
/// The `farol` binary with a clean environment, a data directory and (when given) a database.
pub fn farol_bin(data_dir: &std::path::Path, database_url: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_farol"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FAROL_DATA_DIR", data_dir)
        .current_dir(data_dir);
    if !database_url.is_empty() {
        cmd.env("DATABASE_URL", database_url);
    }
    cmd
}

/// `farol serve` as a child process on a free port, with extra environment, output discarded
/// (crash and take-over tests kill it with SIGKILL).
pub fn serve_process(
    data_dir: &std::path::Path,
    database_url: &str,
    env: &[(&str, &str)],
) -> std::process::Child {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = farol_bin(data_dir, database_url);
    cmd.env("FAROL_LISTEN", format!("127.0.0.1:{port}"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}
