//! A real `cairn` process for the black-box HTTP tests: a temporary data directory,
//! a free loopback port, a random operator token, and small helpers that speak the
//! contract in docs/api.md.
//!
//! With `CAIRN_TEST_BACKEND=postgres` every server runs on a fresh PostgreSQL
//! database (made from `CAIRN_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/test`) that is dropped afterwards; the tests
//! then fail, never skip, when PostgreSQL is unreachable. `cargo xtask ci` runs the
//! HTTP suites both ways. With `CAIRN_TEST_HOSTS=2` as well, each server has a second
//! host on its database and requests alternate between them (CI runs the HTTP
//! conformance suite so). Limits counted per host (`max_subscribers`, the metrics)
//! are not meant to hold across the pair.
#![allow(dead_code)] // each test file uses a different part of it

pub mod cli;
pub mod proxy;
pub mod sse;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`, as printed by the server.
    pub base: String,
    admin_token: String,
    pub http: Client,
    /// Outlives restarts; removed when the server is dropped.
    pub data_dir: tempfile::TempDir,
    args: Vec<String>,
    /// The PostgreSQL database made for this server, dropped with it.
    database: Option<String>,
    /// With `CAIRN_TEST_HOSTS=2` on PostgreSQL: a second host on the same database, and
    /// requests alternate between the two (`url`), so a suite runs with two hosts
    /// writing and reading.
    peer: Option<Box<Server>>,
    /// Which host the next request goes to, when there is a peer.
    turn: std::sync::atomic::AtomicUsize,
}

fn postgres_admin_url() -> String {
    std::env::var("CAIRN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Makes a fresh PostgreSQL database; returns its URL and name.
pub async fn postgres_database() -> (String, String) {
    use sqlx::Connection;
    let admin = postgres_admin_url();
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

/// Drops a database made by `postgres_database` (from any thread, runtime or not).
pub fn drop_database(name: String) {
    let dropper = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
                .await
                .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .unwrap();
        });
    });
    let _ = dropper.join();
}

/// The bytes of `target/<folder>/<name>.wasm`, built by `cargo xtask build-plugins`.
fn built_component(folder: &str, name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(folder)
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}): run `cargo xtask build-plugins` first",
            path.display()
        )
    })
}

/// A component that misbehaves on purpose (`hostile/<name>`).
pub fn hostile_bytes(name: &str) -> Vec<u8> {
    built_component("hostile", name)
}

/// An example plugin (`plugins/<name>`).
pub fn plugin_bytes(name: &str) -> Vec<u8> {
    built_component("plugins", name)
}

/// A component built against an older contract (`compat/<name>`).
pub fn compat_bytes(name: &str) -> Vec<u8> {
    built_component("compat", name)
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(&[]).await
    }

    /// With extra `cairn serve` arguments, e.g. `["--snapshot-every", "100"]`.
    pub async fn start_with(args: &[&str]) -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), args).await
    }

    /// With its data directory in `data_dir` (a small filesystem mounted there, say).
    pub async fn start_in(data_dir: tempfile::TempDir, args: &[&str]) -> Server {
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut database = None;
        let on_postgres = std::env::var("CAIRN_TEST_BACKEND").is_ok_and(|b| b == "postgres");
        if on_postgres && !args.iter().any(|a| a == "--database") {
            let (url, name) = postgres_database().await;
            args.extend(["--database".to_owned(), url]);
            database = Some(name);
        }
        // A name that outlives restarts, as a host's name does in production: after a
        // `kill -9` the new process takes its own projection leases back at once.
        if !args.iter().any(|a| a == "--host-id") {
            args.extend([
                "--host-id".to_owned(),
                format!("test-{}", uuid::Uuid::new_v4().simple()),
            ]);
        }
        let two_hosts =
            database.is_some() && std::env::var("CAIRN_TEST_HOSTS").is_ok_and(|n| n == "2");
        let mut server = Server::new(args.clone(), database);
        server.data_dir = data_dir;
        server.spawn().await;
        if two_hosts {
            let mut args = args;
            let at = args
                .iter()
                .position(|a| a == "--host-id")
                .expect("a host id");
            args[at + 1] = format!("test-{}", uuid::Uuid::new_v4().simple());
            let mut peer = Server::new(args, None);
            peer.admin_token = server.admin_token.clone();
            peer.spawn().await;
            server.peer = Some(Box::new(peer));
        }
        server
    }

    fn new(args: Vec<String>, database: Option<String>) -> Server {
        Server {
            child: None,
            base: String::new(),
            admin_token: format!("op-{}", uuid::Uuid::new_v4().simple()),
            http: Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
            data_dir: tempfile::tempdir().unwrap(),
            args,
            database,
            peer: None,
            turn: Default::default(),
        }
    }

    /// On a PostgreSQL database instead of the default SQLite file.
    pub async fn with_database(url: &str) -> Server {
        Server::start_with(&["--database", url]).await
    }

    async fn spawn(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.data_dir.path())
            .args(&self.args)
            .env("CAIRN_ADMIN_TOKEN", &self.admin_token)
            .env(
                "RUST_LOG",
                std::env::var("CAIRN_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting cairn");
        let stdout = child.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            // Keep draining so a later print never hits a closed pipe.
            std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
            line
        })
        .await
        .unwrap();
        self.child = Some(child);
        self.base = line
            .trim()
            .strip_prefix("cairn listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from cairn: {line:?}"))
            .to_owned();
        let started = Instant::now();
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.base)).send().await
                && r.status() == StatusCode::OK
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

    /// SIGTERM, then wait for the process to exit (SIGKILL after 20 s).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("cairn did not exit within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`: no shutdown at all.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A graceful stop, then a new process on the same data directory.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// `kill -9`, then a new process on the same data directory.
    pub async fn crash_restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// The database this server stores into, as `cairn serve --database` takes it.
    pub fn database_url(&self) -> String {
        match self.args.iter().position(|a| a == "--database") {
            Some(i) => self.args[i + 1].clone(),
            None => format!(
                "sqlite://{}",
                self.data_dir.path().join("cairn.db").display()
            ),
        }
    }

    /// Runs SQL straight on this server's database, e.g. to set up data as an older
    /// release left it. Stop the server first on SQLite.
    pub async fn execute_sql(&self, statement: &str) {
        use sqlx::Connection;
        let url = self.database_url();
        let statement = sqlx::AssertSqlSafe(statement.to_owned());
        if url.starts_with("postgres") {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(statement).execute(&mut conn).await.unwrap();
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(statement).execute(&mut conn).await.unwrap();
        }
    }

    pub fn admin(&self) -> &str {
        &self.admin_token
    }

    /// `path` on this server, or, with a peer, on each host in turn.
    pub fn url(&self, path: &str) -> String {
        if let Some(peer) = &self.peer
            && self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 2 == 1
        {
            return peer.url(path);
        }
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Any method, with an optional JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
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

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Creates a tenant with the operator token and returns the tenant's token.
    pub async fn create_tenant(&self, id: &str) -> String {
        self.create_tenant_with(id, json!({})).await
    }

    /// Creates a tenant with some of its limits set; returns the tenant's token.
    pub async fn create_tenant_with(&self, id: &str, limits: Value) -> String {
        let resp = self
            .post(
                "/admin/tenants",
                &self.admin_token,
                json!({"id": id, "limits": limits}),
            )
            .await;
        let body = expect(resp, StatusCode::CREATED).await;
        body["token"].as_str().expect("a token").to_owned()
    }

    pub async fn upload(&self, token: &str, tenant: &str, name: &str, bytes: Vec<u8>) -> Response {
        self.http_put(&format!("/t/{tenant}/plugins/{name}"), token, bytes)
            .await
    }

    /// A PUT of raw bytes to any path (uploads with a query string).
    pub async fn http_put(&self, path: &str, token: &str, bytes: Vec<u8>) -> Response {
        self.http
            .put(self.url(path))
            .bearer_auth(token)
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .await
            .unwrap()
    }

    /// Creates `tenant` and uploads `account.wasm` to it; returns the tenant's token.
    pub async fn tenant_with_account(&self, tenant: &str) -> String {
        let token = self.create_tenant(tenant).await;
        let resp = self
            .upload(&token, tenant, "account", plugin_bytes("account"))
            .await;
        expect(resp, StatusCode::CREATED).await;
        token
    }

    pub async fn command(
        &self,
        token: &str,
        tenant: &str,
        aggregate: &str,
        id: &str,
        body: Value,
    ) -> Response {
        self.post(
            &format!("/t/{tenant}/aggregates/{aggregate}/{id}/commands"),
            token,
            body,
        )
        .await
    }

    /// A command, with its status and JSON body.
    pub async fn command_answer(
        &self,
        token: &str,
        tenant: &str,
        aggregate: &str,
        id: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        body_of(self.command(token, tenant, aggregate, id, body).await).await
    }

    /// A `Deposit` of `amount` on `account` `id` in tenant `acme` (the tests' tenant):
    /// the raw answer, for the caller to check.
    pub async fn deposit(&self, token: &str, id: &str, amount: i64) -> Response {
        self.command(token, "acme", "account", id, deposit(amount))
            .await
    }

    /// `/metrics` as anyone sees it (the host-wide series, no token).
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A raw append to a stream.
    pub async fn append(&self, token: &str, tenant: &str, stream: &str, body: Value) -> Response {
        self.post(&format!("/t/{tenant}/streams/{stream}"), token, body)
            .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if let Some(name) = self.database.take() {
            drop_database(name);
        }
    }
}

/// Asserts the contract's error shape on a status and body already read.
pub fn assert_error_body(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "unexpected status; body: {body}");
    assert_eq!(body["error"]["code"], code, "unexpected error code: {body}");
    assert!(body["error"]["message"].is_string(), "no message: {body}");
}

/// Status and body (JSON, or the text as a JSON string when it is not JSON).
pub async fn body_of(resp: Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// The `account` aggregate's `Deposit` command; add `command_id` or `metadata` to it
/// where a test needs them.
pub fn deposit(amount: i64) -> Value {
    json!({"type": "Deposit", "payload": {"amount": amount}})
}

/// How long `wait_for` waits: long enough for a projection to catch up on a loaded
/// CI machine shared with other builds; a condition that holds returns at once.
pub const WAIT_FOR: Duration = Duration::from_secs(90);

/// Polls `check` every 50 ms until it holds; fails the test naming `what` after
/// `WAIT_FOR`.
pub async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < WAIT_FOR, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts the status and returns the JSON body.
pub async fn expect(resp: Response, status: StatusCode) -> Value {
    let (got, body) = body_of(resp).await;
    assert_eq!(got, status, "unexpected status; body: {body}");
    body
}

/// Asserts the status and the contract's error shape
/// `{"error": {"code": <code>, "message": <string>, ...}}`; returns the `error` object.
pub async fn assert_error(resp: Response, status: StatusCode, code: &str) -> Value {
    let (got, body) = body_of(resp).await;
    assert_eq!(got, status, "unexpected status; body: {body}");
    let error = &body["error"];
    assert!(error.is_object(), "not the error shape: {body}");
    assert_eq!(error["code"], code, "unexpected error code: {body}");
    let message = error["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {body}"));
    assert!(!message.is_empty(), "empty message: {body}");
    error.clone()
}

/// Reads tenant `acme`'s whole log and checks it against the commands a test saw
/// acknowledged (command id → position): positions gap-free from 1, each `Deposited`
/// there once, every acknowledged command where it was acknowledged, and nothing
/// in the log that was never acknowledged.
pub async fn assert_log_holds_exactly(
    server: &Server,
    token: &str,
    acknowledged: &std::collections::HashMap<String, u64>,
) {
    let mut seen = std::collections::HashMap::new();
    let mut after = 0;
    loop {
        let page = expect(
            server
                .get(&format!("/t/acme/events?after={after}&limit=1000"), token)
                .await,
            StatusCode::OK,
        )
        .await;
        for event in page["events"].as_array().unwrap() {
            let position = event["position"].as_u64().unwrap();
            assert_eq!(position, after + 1, "a gap in the log");
            after = position;
            if event["type"] == "Deposited" {
                let id = event["metadata"]["causation_id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                assert!(seen.insert(id.clone(), position).is_none(), "{id} twice");
            }
        }
        if page["next"].is_null() {
            break;
        }
    }
    for (id, position) in acknowledged {
        assert_eq!(
            seen.get(id),
            Some(position),
            "{id} acknowledged at {position}"
        );
    }
    assert_eq!(
        seen.len(),
        acknowledged.len(),
        "commands in the log never acknowledged"
    );
}
