//! Segmentation end to end: a synthetic data lake with planted segments → a run started through
//! the API → clusters named in words, players linked to CRM clients, served and exported; a
//! renamed cluster keeps its name in the next run.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, farol_bin, spawn_app, spawn_with, test_config};

fn lake(dir: &Path, users: usize) {
    let out = farol_bin(dir, "")
        .args([
            "bench",
            "gen-transactions",
            "--users",
            &users.to_string(),
            "--tx-per-user",
            "40",
            "--partitioned",
            "-o",
        ])
        .arg(dir.join("lake"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn wait_run(app: &TestApp, token: &str, id: i64) -> Value {
    let start = Instant::now();
    loop {
        let r = app.get(&format!("/api/v1/segmentations/{id}"), token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        if r.body["status"] != "running" && r.body["status"] != "queued" {
            return r.body;
        }
        assert!(start.elapsed() < Duration::from_secs(180), "run {id} stuck");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_run_clusters_planted_players_names_them_and_links_them_to_clients() {
    let (mut config, dir) = test_config().await;
    lake(dir.path(), 600);
    config.segment.transactions = dir.path().join("lake/transactions").display().to_string();
    config.segment.users = dir.path().join("lake/users.csv").display().to_string();
    let lake_dir = dir.path().to_path_buf();
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
    assert_eq!(r.body["status"], "queued", "a durable job for the workers");
    let run = wait_run(&app, &token, r.body["id"].as_i64().unwrap()).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["attempts"], 1, "{run}");
    assert!(run["active"].as_bool().unwrap());
    assert_eq!(run["users"], 600);
    let quality = &run["report"]["quality"];
    assert!(quality["silhouette"].as_f64().unwrap() > 0.3, "{quality}");
    assert!(
        quality["davies_bouldin"].as_f64().is_some()
            && quality["calinski_harabasz"].as_f64().is_some()
    );
    let clean = &run["report"]["clean"];
    assert_eq!(
        clean["rows_read"], clean["rows_accepted"],
        "synthetic data is clean: {clean}"
    );
    assert_eq!(clean["users"], 600);
    assert!(run["window_start"].as_str().is_some() && run["window_end"].as_str().is_some());

    let clusters = app.get("/api/v1/clusters", &token).await.body;
    let clusters = clusters.as_array().unwrap().clone();
    assert!((4..=8).contains(&clusters.len()), "{clusters:?}");
    let total: i64 = clusters.iter().map(|c| c["size"].as_i64().unwrap()).sum();
    assert_eq!(total, 600);
    let names: Vec<&str> = clusters
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.iter().any(|n| n.starts_with("Crash")), "{names:?}");
    assert!(names.iter().any(|n| n.contains("cashback")), "{names:?}");

    // Planted segments are recovered: each planted segment lands almost entirely in one cluster.
    let planted: HashMap<String, String> =
        csv::Reader::from_path(lake_dir.join("lake/planted.csv"))
            .unwrap()
            .records()
            .map(|r| {
                let r = r.unwrap();
                (r[0].to_owned(), r[1].to_owned())
            })
            .collect();
    let mut by_planted: HashMap<String, HashMap<i64, usize>> = HashMap::new();
    for c in &clusters {
        let id = c["id"].as_i64().unwrap();
        let mut after = String::new();
        loop {
            let page = app
                .get(
                    &format!("/api/v1/clusters/{id}/users?limit=100&after={after}"),
                    &token,
                )
                .await
                .body;
            for m in page["items"].as_array().unwrap() {
                let user = m["user_ext_id"].as_str().unwrap();
                *by_planted
                    .entry(planted[user].clone())
                    .or_default()
                    .entry(id)
                    .or_default() += 1;
                assert!(
                    m["client_id"].as_i64().is_some(),
                    "every player became a client: {m}"
                );
                assert!(m["email"].as_str().unwrap().contains('@'));
            }
            match page["next_after"].as_str() {
                Some(a) => after = a.to_owned(),
                None => break,
            }
        }
    }
    for (segment, spread) in &by_planted {
        let total: usize = spread.values().sum();
        let top = spread.values().max().unwrap();
        assert!(
            *top as f64 / total as f64 > 0.9,
            "planted segment {segment} split: {spread:?}"
        );
    }

    // A player's segment and behavior, by external id or by CRM client id.
    let seg = app.get("/api/v1/users/u0000001/segment", &token).await;
    assert_eq!(seg.status, StatusCode::OK, "{}", seg.body);
    let client_id = seg.body["client_id"].as_i64().unwrap();
    let by_client = app
        .get(&format!("/api/v1/users/{client_id}/segment"), &token)
        .await;
    assert_eq!(by_client.body["cluster"]["id"], seg.body["cluster"]["id"]);
    let behavior = app
        .get("/api/v1/users/u0000001/behavior", &token)
        .await
        .body;
    assert!(behavior["bets"].as_u64().unwrap() > 0, "{behavior}");
    assert!(behavior["game_share"].as_array().unwrap().len() == 6);
    let client = app
        .get(&format!("/api/v1/clients/{client_id}"), &token)
        .await
        .body;
    assert_eq!(client["name"], "Jogador 1");
    assert_eq!(
        app.get("/api/v1/users/nobody/segment", &token).await.status,
        StatusCode::NOT_FOUND
    );

    let crash = clusters
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("Crash"))
        .unwrap();
    let id = crash["id"].as_i64().unwrap();
    let analytics = app
        .get(&format!("/api/v1/clusters/{id}/analytics"), &token)
        .await
        .body;
    assert_eq!(analytics["linked_clients"], crash["size"]);
    assert!(
        analytics["descriptors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["feature"] == "share_crash"),
        "{analytics}"
    );

    // A person renames the cluster; the next run keeps the name on the matching cluster.
    let r = app
        .patch(
            &format!("/api/v1/clusters/{id}"),
            &token,
            json!({"name": "Aviãozinho da madrugada"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let viewer = app.user("default", farol::auth::Role::Viewer).await;
    assert_eq!(
        app.patch(
            &format!("/api/v1/clusters/{id}"),
            &viewer,
            json!({"name": "x"})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let r = app.post("/api/v1/segmentations", &token, json!({})).await;
    let second = wait_run(&app, &token, r.body["id"].as_i64().unwrap()).await;
    assert_eq!(second["status"], "completed", "{second}");
    let clusters = app.get("/api/v1/clusters", &token).await.body;
    let renamed: Vec<&Value> = clusters
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "Aviãozinho da madrugada")
        .collect();
    assert_eq!(renamed.len(), 1, "{clusters}");
    assert_eq!(renamed[0]["user_named"], true);
    assert_ne!(
        renamed[0]["id"].as_i64().unwrap(),
        id,
        "a new run has new cluster rows"
    );
    // Players are not duplicated as clients by a second run.
    let n: i64 = sqlx::query_scalar("select count(*) from clients")
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(n, 600);
}

#[tokio::test]
async fn a_run_without_a_configured_lake_is_refused_and_clusters_need_a_run() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let r = app.post("/api/v1/segmentations", &token, json!({})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.fields(), ["sources"]);
    let r = app
        .post(
            "/api/v1/segmentations",
            &token,
            json!({"algorithm": "spectral"}),
        )
        .await;
    assert!(r.fields().contains(&"algorithm".to_owned()), "{}", r.body);
    assert_eq!(
        app.get("/api/v1/clusters", &token).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn farol_segment_run_and_export_write_the_final_union_table() {
    let (config, dir) = test_config().await;
    lake(dir.path(), 300);
    let url = secrecy::ExposeSecret::expose_secret(&config.database.url).to_owned();
    let out = farol_bin(dir.path(), &url)
        .args([
            "segment",
            "run",
            "--algorithm",
            "hdbscan",
            "--min-cluster-size",
            "15",
            "--json",
            "--transactions",
        ])
        .arg(dir.path().join("lake/transactions"))
        .arg("--users")
        .arg(dir.path().join("lake/users.csv"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["report"]["users"], 300);
    assert!(
        summary["clusters"].as_array().unwrap().len() >= 3,
        "{summary}"
    );

    let out = farol_bin(dir.path(), &url)
        .args(["segment", "export", "--format", "csv"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let headers = reader.headers().unwrap().clone();
    for h in [
        "user_id",
        "cluster_id",
        "cluster_name",
        "client_id",
        "email",
        "phone",
        "favorite_game",
        "avg_ticket",
        "recency_days",
    ] {
        assert!(
            headers.iter().any(|x| x == h),
            "{h} missing from {headers:?}"
        );
    }
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 300);
    let name_col = headers.iter().position(|h| h == "cluster_name").unwrap();
    assert!(rows.iter().all(|r| !r[name_col].is_empty()));

    // The same table as Parquet, typed.
    let file = dir.path().join("segments.parquet");
    let out = farol_bin(dir.path(), &url)
        .args(["segment", "export", "--format", "parquet", "--output"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    let meta = reader.metadata().file_metadata();
    assert_eq!(meta.num_rows(), 300);
    let schema = meta.schema_descr();
    let names: Vec<String> = (0..schema.num_columns())
        .map(|i| schema.column(i).name().to_owned())
        .collect();
    assert_eq!(&names[..3], ["user_id", "cluster_id", "cluster_name"]);
    assert!(
        names.iter().any(|n| n == "avg_ticket") && names.iter().any(|n| n == "favorite_game"),
        "{names:?}"
    );
    let first = reader
        .get_row_iter(None)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_string();
    assert!(
        first.starts_with("{user_id: \"u0000000\", cluster_id: "),
        "{first}"
    );
}

/// moto's S3-compatible server (installed by scripts/install-test-deps), killed on drop.
struct Moto {
    child: std::process::Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn moto() -> Moto {
    let venv = std::env::var("FAROL_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/farol/venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-test-deps (installs moto's S3 server)",
        python.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(python)
        .args(["-m", "moto.server", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start moto");
    let endpoint = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while reqwest::get(&endpoint).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "moto did not start (scripts/install-test-deps)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Moto { child, endpoint }
}

fn files_under(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_run_reads_an_s3_compatible_lake_and_later_runs_fetch_only_new_objects() {
    let s3 = moto().await;
    let (config, dir) = test_config().await;
    lake(dir.path(), 200);
    let client = farol::segment::lake::S3Client::new(&s3.endpoint, "us-east-1", "test", "test");
    client.create_bucket("lake").await.unwrap();
    let tx_root = dir.path().join("lake/transactions");
    let partitions = files_under(&tx_root);
    assert!(partitions.len() > 10, "partitioned by day");
    // All partitions but the last one now; the last one arrives later.
    let (last, first) = partitions.split_last().unwrap();
    for p in first {
        let key = format!("tx/{}", p.strip_prefix(&tx_root).unwrap().display());
        client
            .put("lake", &key, &std::fs::read(p).unwrap())
            .await
            .unwrap();
    }
    client
        .put(
            "lake",
            "users/users.csv",
            &std::fs::read(dir.path().join("lake/users.csv")).unwrap(),
        )
        .await
        .unwrap();
    let url = secrecy::ExposeSecret::expose_secret(&config.database.url).to_owned();
    let run = |json: bool, extra: &[&str]| {
        let mut cmd = farol_bin(dir.path(), &url);
        cmd.env("FAROL_SEGMENT__S3_ENDPOINT", &s3.endpoint)
            .env("FAROL_SEGMENT__S3_ACCESS_KEY_ID", "test")
            .env("FAROL_SEGMENT__S3_SECRET_ACCESS_KEY", "test")
            .args([
                "segment",
                "run",
                "--transactions",
                "s3://lake/tx/",
                "--users",
                "s3://lake/users/",
            ])
            .args(extra);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (stdout, stderr) = run(false, &[]);
    assert!(
        stderr.contains(&format!(
            "{} objects listed, {} downloaded",
            first.len(),
            first.len()
        )),
        "{stderr}"
    );
    assert!(stdout.contains("200 players"), "{stdout}");
    let (_, stderr) = run(false, &[]);
    assert!(
        stderr.contains(&format!("{} objects listed, 0 downloaded", first.len())),
        "{stderr}"
    );
    // Nothing new in the lake: nothing read again.
    assert!(
        stderr.contains(&format!(
            "incremental: 0 files read, {} reused from the last run",
            first.len()
        )),
        "{stderr}"
    );

    let key = format!("tx/{}", last.strip_prefix(&tx_root).unwrap().display());
    client
        .put("lake", &key, &std::fs::read(last).unwrap())
        .await
        .unwrap();
    let (stdout, _) = run(true, &[]);
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        summary["report"]["clean"]["files"],
        partitions.len(),
        "every partition counted: {}",
        summary["report"]["clean"]
    );
    let inc = &summary["report"]["incremental"];
    assert_eq!(inc["new_files"], 1, "only the new partition read: {inc}");
    assert_eq!(inc["reused_files"], first.len(), "{inc}");
    // --full reads everything again, with the same counts.
    let (stdout, _) = run(true, &["--full"]);
    let full: Value = serde_json::from_str(&stdout).unwrap();
    let inc = &full["report"]["incremental"];
    assert_eq!(inc["full_reason"], "full pass requested", "{inc}");
    assert_eq!(inc["new_files"], partitions.len(), "{inc}");
    assert_eq!(full["report"]["clean"], summary["report"]["clean"]);

    // A missing bucket is an error naming it.
    let out = farol_bin(dir.path(), &url)
        .env("FAROL_SEGMENT__S3_ENDPOINT", &s3.endpoint)
        .args(["segment", "run", "--transactions", "s3://nope/tx/"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ListObjectsV2 nope/tx/") && err.contains("NoSuchBucket"),
        "{err}"
    );
}

#[tokio::test]
async fn hot_reads_are_cached_in_redis_and_a_rename_is_never_served_stale() {
    let (mut config, dir) = test_config().await;
    lake(dir.path(), 200);
    config.segment.transactions = dir.path().join("lake/transactions").display().to_string();
    config.segment.users = dir.path().join("lake/users.csv").display().to_string();
    let redis_url =
        std::env::var("FAROL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    config.redis.url = secrecy::SecretString::from(redis_url.clone());
    config.redis.key_prefix = prefix.clone();
    let app = spawn_with(config, dir).await;
    let token = app.admin().await;
    let r = app.post("/api/v1/segmentations", &token, json!({})).await;
    assert_eq!(
        wait_run(&app, &token, r.body["id"].as_i64().unwrap()).await["status"],
        "completed"
    );

    let first = app.get("/api/v1/users/u0000001/segment", &token).await.body;
    let clusters = app.get("/api/v1/clusters", &token).await.body;
    let mut redis = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("Redis is reachable (FAROL_TEST_REDIS_URL)");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:segment:*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        keys.iter().any(|k| k.ends_with(":player:u0000001")),
        "{keys:?}"
    );
    assert!(keys.iter().any(|k| k.ends_with(":clusters")), "{keys:?}");
    // Served from the cache: same answer.
    assert_eq!(
        app.get("/api/v1/users/u0000001/segment", &token).await.body,
        first
    );
    assert_eq!(app.get("/api/v1/clusters", &token).await.body, clusters);

    let id = first["cluster"]["id"].as_i64().unwrap();
    let r = app
        .patch(
            &format!("/api/v1/clusters/{id}"),
            &token,
            json!({"name": "Renomeado"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let after = app.get("/api/v1/users/u0000001/segment", &token).await.body;
    assert_eq!(after["cluster"]["name"], "Renomeado");
    let clusters = app.get("/api/v1/clusters", &token).await.body;
    assert!(
        clusters
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "Renomeado")
    );
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut redis)
        .await
        .unwrap_or(());
}

#[tokio::test]
async fn a_serve_killed_mid_run_lets_the_next_process_take_the_run_over() {
    let (mut config, dir) = test_config().await;
    lake(dir.path(), 3000);
    config.segment.transactions = dir.path().join("lake/transactions").display().to_string();
    config.segment.users = dir.path().join("lake/users.csv").display().to_string();
    let url = secrecy::ExposeSecret::expose_secret(&config.database.url).to_owned();
    let db = farol::db::Db::connect(&config.database_url(), 2)
        .await
        .unwrap();
    db.migrate().await.unwrap();
    // Queued as the API does it.
    let sources = farol::segment::service::Sources::from_config(&config.segment);
    let params =
        farol::segment::routes::run_params(&config.segment, Some("kmeans"), Some(4), None).unwrap();
    let id = farol::segment::service::create(&db, 1, None, &sources, &params)
        .await
        .unwrap();
    let state = |db: farol::db::Db| async move {
        sqlx::query_as::<_, (String, Option<String>, i64)>(
            "select status, lease_owner, attempts from segment_runs where id = $1",
        )
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap()
    };
    assert_eq!(
        state(db.clone()).await,
        ("running".into(), None, 0),
        "queued"
    );

    let serve = || {
        crate::helpers::serve_process(
            dir.path(),
            &url,
            &[
                ("FAROL_SEGMENT__LEASE_SECS", "1"),
                ("FAROL_SEGMENT__TRANSACTIONS", &config.segment.transactions),
                ("FAROL_SEGMENT__USERS", &config.segment.users),
            ],
        )
    };
    let mut server = serve();
    let start = Instant::now();
    while state(db.clone()).await.1.is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no worker took the run"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().unwrap(); // SIGKILL right after the worker took the run
    server.wait().unwrap();
    let (status, owner, attempts) = state(db.clone()).await;
    assert_eq!(
        (status.as_str(), attempts),
        ("running", 1),
        "killed mid-run: neither completed nor failed"
    );
    assert!(
        owner.is_some(),
        "still held by the dead worker until its lease expires"
    );

    // A new process neither fails the run at start nor leaves it: it takes it over once the
    // dead worker's lease expires, and finishes it.
    let mut server = serve();
    let start = Instant::now();
    while state(db.clone()).await.0 == "running" {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the run was not taken over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let (status, owner, attempts) = state(db.clone()).await;
    assert_eq!((status.as_str(), owner, attempts), ("completed", None, 2));
    let (users, active): (i64, i64) =
        sqlx::query_as("select users, active from segment_runs where id = $1")
            .bind(id)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!((users, active), (3000, 1));
    let members: i64 = sqlx::query_scalar("select count(*) from segment_members where run_id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(members, 3000, "stored once, by the worker that finished it");
}

/// Every member of the active run: user → (cluster label, features from `/behavior`).
async fn members(app: &TestApp, token: &str) -> HashMap<String, (i64, Value)> {
    let mut out = HashMap::new();
    let clusters = app.get("/api/v1/clusters", token).await.body;
    for c in clusters.as_array().unwrap() {
        let id = c["id"].as_i64().unwrap();
        let mut after = String::new();
        loop {
            let page = app
                .get(
                    &format!("/api/v1/clusters/{id}/users?limit=500&after={after}"),
                    token,
                )
                .await
                .body;
            for m in page["items"].as_array().unwrap() {
                let user = m["user_ext_id"].as_str().unwrap();
                let r = app
                    .get(&format!("/api/v1/users/{user}/behavior"), token)
                    .await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.body);
                let features = r.body;
                assert!(features["bets"].is_number(), "{features}");
                out.insert(
                    m["user_ext_id"].as_str().unwrap().to_owned(),
                    (c["label"].as_i64().unwrap(), features),
                );
            }
            match page["next_after"].as_str() {
                Some(a) => after = a.to_owned(),
                None => break,
            }
        }
    }
    out
}

/// Equal JSON, numbers up to the order of floating-point additions.
fn assert_json_close(a: &Value, b: &Value, at: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
                "{at}: {x} vs {y}"
            );
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (k, v) in x {
                assert_json_close(v, &y[k], &format!("{at}.{k}"));
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                assert_json_close(v, w, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

#[tokio::test]
async fn a_later_run_reads_only_the_new_partition_and_matches_a_full_run() {
    let (mut config, dir) = test_config().await;
    lake(dir.path(), 300);
    let tx_root = dir.path().join("lake/transactions");
    config.segment.transactions = tx_root.display().to_string();
    config.segment.users = dir.path().join("lake/users.csv").display().to_string();
    let mut partitions: Vec<std::path::PathBuf> = std::fs::read_dir(&tx_root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    partitions.sort();
    let n = partitions.len();
    assert!(n > 10, "partitioned by day: {partitions:?}");
    // The last day arrives after the first run.
    let last = partitions.last().unwrap().clone();
    let held = dir.path().join("held-partition");
    std::fs::rename(&last, &held).unwrap();
    let data_dir = dir.path().to_path_buf();
    let app = spawn_with(config, dir).await;
    let token = app.admin().await;
    let start = |body: Value| {
        let (app, token) = (&app, &token);
        async move {
            let r = app.post("/api/v1/segmentations", token, body).await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
            let run = wait_run(app, token, r.body["id"].as_i64().unwrap()).await;
            assert_eq!(run["status"], "completed", "{run}");
            run
        }
    };
    let kmeans = json!({"algorithm": "kmeans", "k": 5});

    let run1 = start(kmeans.clone()).await;
    let inc = &run1["report"]["incremental"];
    assert_eq!(inc["full_reason"], "no saved state", "{inc}");
    assert_eq!(inc["new_files"], n - 1, "{inc}");
    assert_eq!(inc["reused_files"], 0, "{inc}");

    std::fs::rename(&held, &last).unwrap();
    // A run that fails after reading the transactions (the users file is gone) leaves the
    // saved state as it was: the next run still reads the new partition.
    let users_csv = data_dir.join("lake/users.csv");
    std::fs::rename(&users_csv, data_dir.join("users.away")).unwrap();
    let r = app
        .post("/api/v1/segmentations", &token, kmeans.clone())
        .await;
    let failed = wait_run(&app, &token, r.body["id"].as_i64().unwrap()).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    std::fs::rename(data_dir.join("users.away"), &users_csv).unwrap();
    let states: Vec<_> = std::fs::read_dir(data_dir.join("segment-state/account-1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(states.len(), 1, "one state, no leftovers: {states:?}");
    assert!(states[0].ends_with(".state"), "{states:?}");

    let run2 = start(kmeans.clone()).await;
    let inc = &run2["report"]["incremental"];
    assert_eq!(inc["full_reason"], Value::Null, "{inc}");
    assert_eq!(inc["new_files"], 1, "only the new partition is read: {inc}");
    assert_eq!(inc["reused_files"], n - 1, "{inc}");
    assert_eq!(run2["report"]["clean"]["files"], n);
    let incremental_members = members(&app, &token).await;
    assert_eq!(incremental_members.len(), 300);

    // The same files read in full give the same players, clusters and features.
    let mut full = kmeans.clone();
    full["full"] = json!(true);
    let run3 = start(full).await;
    let inc = &run3["report"]["incremental"];
    assert_eq!(inc["full_reason"], "full pass requested", "{inc}");
    assert_eq!(inc["new_files"], n, "{inc}");
    assert_eq!(inc["reused_files"], 0);
    assert_eq!(run3["report"]["clean"], run2["report"]["clean"]);
    assert_json_close(
        &run3["report"]["window"],
        &run2["report"]["window"],
        "window",
    );
    let full_members = members(&app, &token).await;
    assert_eq!(full_members.len(), incremental_members.len());
    for (user, (label, features)) in &full_members {
        let (l2, f2) = &incremental_members[user];
        assert_eq!(label, l2, "{user} in the same cluster");
        assert_json_close(features, f2, user);
    }

    // An old partition rewritten (new modification time): everything is read again.
    let first_file = std::fs::read_dir(&partitions[0])
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    std::fs::File::options()
        .write(true)
        .open(&first_file)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + Duration::from_secs(60))
        .unwrap();
    let run4 = start(kmeans).await;
    let inc = &run4["report"]["incremental"];
    let reason = inc["full_reason"].as_str().unwrap();
    let partition = partitions[0].file_name().unwrap().to_str().unwrap();
    assert!(
        reason.starts_with("file changed since the last run") && reason.contains(partition),
        "{reason}"
    );
    assert_eq!(inc["new_files"], n, "{inc}");
    assert_eq!(run4["report"]["clean"], run3["report"]["clean"]);
}
