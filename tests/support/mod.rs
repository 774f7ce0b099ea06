//! A real `cairn` process for black-box tests: a temporary data directory, a free
//! loopback port, the operator token, and helpers that speak the HTTP contract.
#![allow(dead_code)] // each test file uses a different part of it

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{Value, json};

pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub admin: String,
    pub http: Client,
    /// Kept so the data directory outlives restarts and is removed at the end.
    pub data_dir: tempfile::TempDir,
    extra_args: Vec<String>,
}

/// The component built from `plugins/<name>` or `hostile/<name>` by `cargo xtask build-plugins`.
pub fn component(group: &str, name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(group)
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}): run `cargo xtask build-plugins` first",
            path.display()
        )
    })
}

pub fn plugin(name: &str) -> Vec<u8> {
    component("plugins", name)
}

pub fn hostile(name: &str) -> Vec<u8> {
    component("hostile", name)
}

/// A fresh PostgreSQL database for one test, dropped by `drop_database`. PostgreSQL
/// must be reachable: tests that need it fail, never skip.
pub async fn postgres_database() -> (String, String) {
    use sqlx::Connection;
    let admin = std::env::var("CAIRN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL is required for this test and is not reachable at {admin}: {e}")
        });
    let name = format!("cairn_http_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').unwrap().0;
    (format!("{base}/{name}"), name)
}

pub async fn drop_database(name: &str) {
    use sqlx::Connection;
    let admin = std::env::var("CAIRN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(&[]).await
    }

    /// Starts a server with extra `cairn serve` arguments.
    pub async fn start_with(args: &[&str]) -> Server {
        let mut server = Server {
            child: None,
            base: String::new(),
            admin: format!("admin-{}", uuid::Uuid::new_v4().simple()),
            http: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            data_dir: tempfile::tempdir().unwrap(),
            extra_args: args.iter().map(|a| a.to_string()).collect(),
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.data_dir.path())
            .args(&self.extra_args)
            .env("CAIRN_ADMIN_TOKEN", &self.admin)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting cairn");
        let stdout = child.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            line
        })
        .await
        .unwrap();
        self.base = line
            .trim()
            .strip_prefix("cairn listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from cairn: {line:?}"))
            .to_owned();
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Ok(r) = self.http.get(self.url("/readyz")).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "cairn never became ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`: no shutdown, no flush beyond what was committed.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Kills the process and starts a new one on the same data directory.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.send(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.send(Method::POST, path, token, Some(body)).await
    }

    /// Creates a tenant and returns its token.
    pub async fn tenant(&self, id: &str) -> String {
        let (status, body) = json_of(
            self.send(
                Method::POST,
                "/admin/tenants",
                &self.admin.clone(),
                Some(json!({"id": id})),
            )
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    pub async fn upload(&self, tenant: &str, token: &str, name: &str, wasm: Vec<u8>) -> Response {
        self.http
            .put(self.url(&format!("/t/{tenant}/plugins/{name}")))
            .bearer_auth(token)
            .header("content-type", "application/wasm")
            .body(wasm)
            .send()
            .await
            .unwrap()
    }

    /// Sends a command to `account`-like aggregates and returns status and body.
    pub async fn command(
        &self,
        tenant: &str,
        token: &str,
        aggregate: &str,
        id: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        json_of(
            self.post(
                &format!("/t/{tenant}/aggregates/{aggregate}/{id}/commands"),
                token,
                body,
            )
            .await,
        )
        .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub async fn json_of(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Asserts the contract's error shape and code.
pub fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}
