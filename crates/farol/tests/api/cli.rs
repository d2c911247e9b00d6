//! The `farol` binary itself: help, configuration errors, `user add`, and `serve` with a
//! graceful stop on SIGTERM.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use secrecy::ExposeSecret;

use crate::helpers::test_config;

fn farol(data_dir: &std::path::Path, database_url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_farol"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FAROL_DATA_DIR", data_dir)
        .env("FAROL_AUTH__ARGON2_MEMORY_KIB", "64")
        .env("FAROL_AUTH__ARGON2_ITERATIONS", "1")
        .current_dir(data_dir);
    if !database_url.is_empty() {
        cmd.env("DATABASE_URL", database_url);
    }
    cmd
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["demo", "--help"],
        vec!["migrate", "--help"],
        vec!["user", "add", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_farol"))
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("--data-dir") && text.contains("--config"),
            "{args:?}: {text}"
        );
    }
}

#[tokio::test]
async fn a_bad_configuration_value_stops_farol_naming_the_key() {
    let (_config, dir) = test_config().await;
    let out = farol(dir.path(), "")
        .env("FAROL_AUTH__LOGIN_MAX_ATTEMPTS", "lots")
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.login_max_attempts"), "{err}");

    let out = farol(dir.path(), "")
        .args(["--config", "missing.toml", "migrate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

#[tokio::test]
async fn user_add_then_serve_then_sigterm_stops_cleanly() {
    let (config, dir) = test_config().await;
    let url = config.database.url.expose_secret().to_string();

    let out = farol(dir.path(), &url).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let refused = farol(dir.path(), &url)
        .args(["user", "add", "--email", "a@b.co", "--role", "admin"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--password-stdin"));

    let mut child = farol(dir.path(), &url)
        .args([
            "user",
            "add",
            "--email",
            "Chefe@Acme.com",
            "--password-stdin",
            "--role",
            "admin",
            "--account",
            "acme",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"uma senha bem longa\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("chefe@acme.com"));

    let csv_path = dir.path().join("clients.csv");
    let out = farol(dir.path(), &url)
        .args(["clients", "export", "--account", "acme", "--output"])
        .arg(&csv_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("exported 0 clients"));
    let text = std::fs::read_to_string(&csv_path).unwrap();
    assert!(text.starts_with("id,name,legal_name,cpf_cnpj,"), "{text}");
    let missing = farol(dir.path(), &url)
        .args(["clients", "export", "--account", "nope"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("account `nope` does not exist"));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = farol(dir.path(), &url)
        .env("FAROL_LISTEN", format!("127.0.0.1:{port}"))
        .args(["--log-format", "json", "serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..100 {
        if http.get(format!("{base}/health")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "server did not come up");
    let login = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": "chefe@acme.com", "password": "uma senha bem longa"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);

    let kill = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = server.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = status.expect("farol stops within 10 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut server.stderr.take().unwrap(), &mut logs).unwrap();
    let last: serde_json::Value =
        serde_json::from_str(logs.lines().last().unwrap()).expect("JSON log lines");
    assert_eq!(last["message"], "stopped", "{logs}");
    assert!(
        !logs.contains("uma senha bem longa"),
        "secrets never logged"
    );
}
