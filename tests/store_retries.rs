//! Store failures that pass are retried, not parked: a server on PostgreSQL whose
//! connections are terminated again and again (`pg_terminate_backend`, as an operator
//! or a failover does) while a projection catches up and commands run keeps every
//! projection build running, and its documents equal a fold of the log; a plugin's own
//! failure still parks its build. PostgreSQL must be reachable: these fail, never
//! skip, without it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Server, body_of, drop_database, hostile_bytes, plugin_bytes, postgres_database};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A server on a fresh PostgreSQL database of its own, dropped after it.
struct OnPostgres {
    server: Option<Arc<Server>>,
    url: String,
    database: String,
}

impl OnPostgres {
    async fn start() -> OnPostgres {
        let (url, database) = postgres_database().await;
        let server = Server::start_with(&["--database", &url, "--host-id", "solo"]).await;
        OnPostgres {
            server: Some(Arc::new(server)),
            url,
            database,
        }
    }

    fn server(&self) -> Arc<Server> {
        self.server.clone().expect("running")
    }
}

impl Drop for OnPostgres {
    fn drop(&mut self) {
        self.server.take();
        drop_database(std::mem::take(&mut self.database));
    }
}

/// Terminates every backend of the database but its own, every `every`, until
/// `done`; returns how many it terminated.
fn terminate_backends(
    url: String,
    every: Duration,
    done: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let mut terminated = 0;
        while !done.load(Ordering::Relaxed) {
            let killed: Vec<(bool,)> = sqlx::query_as(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            terminated += killed.iter().filter(|(k,)| *k).count() as u64;
            tokio::time::sleep(every).await;
        }
        terminated
    })
}

/// Sends `request` until it answers `expected` (store failures answer 503 while the
/// connections are being terminated); panics on any other answer or after 60 s.
async fn until_ok(
    what: &str,
    expected: StatusCode,
    mut request: impl AsyncFnMut() -> (StatusCode, Value),
) -> Value {
    let started = Instant::now();
    loop {
        let (code, body) = request().await;
        // A retried creation may find its first attempt stored (200, not 201).
        if code == expected || (code.is_success() && expected.is_success()) {
            return body;
        }
        // Terminated connections are the store's passing failure: 503, never a 500.
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{what}: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: still {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every build of `name`, as the status shows it (retried through store failures).
async fn builds(server: &Server, token: &str, name: &str) -> Vec<Value> {
    let body = until_ok("projection status", StatusCode::OK, async || {
        body_of(
            server
                .get(&format!("/t/acme/projections/{name}"), token)
                .await,
        )
        .await
    })
    .await;
    body["versions"].as_array().unwrap().clone()
}

/// The balance document of each account, folded from its stream as the API reads it.
async fn folded(server: &Server, token: &str, accounts: usize) -> Vec<Value> {
    let mut docs = Vec::new();
    for a in 0..accounts {
        let mut doc = json!({"owner": null, "balance": 0, "version": 0});
        let mut from = 1;
        loop {
            let page = until_ok("a stream read", StatusCode::OK, async || {
                body_of(
                    server
                        .get(
                            &format!("/t/acme/streams/account-{a}?from={from}&limit=1000"),
                            token,
                        )
                        .await,
                )
                .await
            })
            .await;
            for event in page["events"].as_array().unwrap() {
                match event["type"].as_str().unwrap() {
                    "Opened" => doc["owner"] = event["data"]["owner"].clone(),
                    "Deposited" => {
                        let balance = doc["balance"].as_i64().unwrap();
                        doc["balance"] = json!(balance + event["data"]["amount"].as_i64().unwrap());
                    }
                    other => panic!("unexpected event {other}"),
                }
                doc["version"] = event["version"].clone();
            }
            match page["next"].as_u64() {
                Some(next) => from = next,
                None => break,
            }
        }
        docs.push(doc);
    }
    docs
}

/// No build parked or failed: the store's passing failures must not show as either.
fn assert_not_parked(builds: &[Value], when: &str) {
    for build in builds {
        assert_ne!(build["status"], "failed", "{when}: {build}");
        assert!(build["error"].is_null(), "{when}: {build}");
    }
}

#[tokio::test]
async fn terminated_connections_never_park_a_projection() {
    let pg = OnPostgres::start().await;
    let server = pg.server();
    let token = server.tenant_with_account("acme").await;
    const ACCOUNTS: usize = 12;
    // A history to catch up on: the build starts from 0 while connections die.
    for a in 0..ACCOUNTS {
        let mut events = vec![json!({"type": "Opened", "data": {"owner": format!("o{a}")}})];
        events
            .extend((0..400).map(|d| json!({"type": "Deposited", "data": {"amount": d % 7 + 1}})));
        let (code, body) = body_of(
            server
                .append(
                    &token,
                    "acme",
                    &format!("account-{a}"),
                    json!({"expected_version": "no_stream", "events": events}),
                )
                .await,
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }
    let done = Arc::new(AtomicBool::new(false));
    let killer = terminate_backends(pg.url.clone(), Duration::from_millis(150), done.clone());
    until_ok("the upload", StatusCode::CREATED, async || {
        body_of(
            server
                .upload(&token, "acme", "balances", plugin_bytes("balances"))
                .await,
        )
        .await
    })
    .await;

    // Commands on every account meanwhile, each retried with its command id until it
    // is answered.
    let head = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (server, token, done, head) =
            (server.clone(), token.clone(), done.clone(), head.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !done.load(Ordering::Relaxed) {
                let a = (w * 5 + n) % ACCOUNTS;
                let command = json!({"type": "Deposit", "payload": {"amount": 3}, "command_id": format!("w{w}-{n}")});
                let id = a.to_string();
                let started = Instant::now();
                let body = loop {
                    let (code, body) = server
                        .command_answer(&token, "acme", "account", &id, command.clone())
                        .await;
                    if code == StatusCode::OK {
                        break body;
                    }
                    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "a deposit: {body}");
                    assert!(started.elapsed() < Duration::from_secs(60), "a deposit: still {code} {body}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                };
                head.fetch_max(body["position"].as_u64().unwrap(), Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    // A rebuild in the middle: a second catch-up under the same faults.
    tokio::time::sleep(Duration::from_secs(3)).await;
    until_ok("a rebuild", StatusCode::ACCEPTED, async || {
        body_of(
            server
                .post("/t/acme/projections/balances/rebuild", &token, json!({}))
                .await,
        )
        .await
    })
    .await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(7) {
        assert_not_parked(
            &builds(&server, &token, "balances").await,
            "while connections die",
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done.store(true, Ordering::Relaxed);
    let terminated = killer.await.unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(terminated >= 20, "only {terminated} backends terminated");

    // Everything settles without an operator: the build that is active reaches the
    // head and its documents are the fold of the log.
    let head = head.load(Ordering::Relaxed);
    for a in 0..ACCOUNTS {
        until_ok("a read past the head", StatusCode::OK, async || {
            body_of(
                server
                    .get(&format!("/t/acme/projections/balances/docs/account-{a}?min_position={head}&timeout_ms=20000"), &token)
                    .await,
            )
            .await
        })
        .await;
    }
    let expected = folded(&server, &token, ACCOUNTS).await;
    for (a, expected) in expected.iter().enumerate() {
        let (code, doc) = body_of(
            server
                .get(
                    &format!("/t/acme/projections/balances/docs/account-{a}"),
                    &token,
                )
                .await,
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{doc}");
        assert_eq!(&doc, expected, "account-{a}");
    }
    // A build may be in its last backoff (up to 5 s) when the faults stop: it leaves
    // it by itself, parked by none of them.
    let started = Instant::now();
    loop {
        let builds = builds(&server, &token, "balances").await;
        assert_not_parked(&builds, "after the faults");
        if builds.iter().all(|b| b["retrying"] == false) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still retrying 30 s after the faults: {builds:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_plugin_failure_still_parks_while_the_store_is_retried() {
    let pg = OnPostgres::start().await;
    let server = &*pg.server();
    let token = server.create_tenant("acme").await;
    for (name, bytes) in [
        ("stuck", hostile_bytes("projection")),
        ("balances", plugin_bytes("balances")),
    ] {
        let (code, body) = body_of(server.upload(&token, "acme", name, bytes).await).await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
    }
    let done = Arc::new(AtomicBool::new(false));
    let killer = terminate_backends(pg.url.clone(), Duration::from_millis(200), done.clone());
    let mut last = 0;
    for (stream, events) in [
        (
            "account-1",
            json!([{"type": "Opened", "data": {"owner": "ann"}}, {"type": "Deposited", "data": {"amount": 5}}]),
        ),
        ("poison-1", json!([{"type": "Poison", "data": {}}])),
        (
            "account-2",
            json!([{"type": "Opened", "data": {"owner": "bob"}}, {"type": "Deposited", "data": {"amount": 7}}]),
        ),
    ] {
        // Event ids make a retried append the same append.
        let events: Vec<Value> = events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e["event_id"] = json!(uuid::Uuid::new_v4().to_string());
                e
            })
            .collect();
        let body = until_ok("an append", StatusCode::OK, async || {
            body_of(
                server
                    .append(&token, "acme", stream, json!({"events": events}))
                    .await,
            )
            .await
        })
        .await;
        last = body["last_position"].as_u64().unwrap();
    }
    // The hostile projection loops on the poison event: its own failure, which parks
    // it after its attempts, whatever the store does meanwhile.
    let started = Instant::now();
    let stuck = loop {
        let stuck = builds(server, &token, "stuck").await;
        if stuck[0]["status"] == "failed" {
            break stuck[0].clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never parked: {stuck:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    done.store(true, Ordering::Relaxed);
    killer.await.unwrap();
    let error = stuck["error"].as_str().unwrap();
    assert!(
        error.contains("deadline"),
        "the plugin's failure, not the store's: {error}"
    );
    assert_eq!(
        stuck["retrying"], false,
        "parked for good, not retrying: {stuck}"
    );
    let parked = common::assert_error(
        server
            .get(
                &format!("/t/acme/projections/stuck/docs?min_position={last}"),
                &token,
            )
            .await,
        StatusCode::CONFLICT,
        "projection_failed",
    )
    .await;
    assert!(
        parked["error"].as_str().unwrap().contains("deadline"),
        "{parked}"
    );
    // The healthy projection went on through the same faults.
    let doc = until_ok("a balance", StatusCode::OK, async || {
        body_of(
            server
                .get(&format!("/t/acme/projections/balances/docs/account-2?min_position={last}&timeout_ms=20000"), &token)
                .await,
        )
        .await
    })
    .await;
    assert_eq!(doc, json!({"owner": "bob", "balance": 7, "version": 2}));
    let balances = builds(server, &token, "balances").await;
    assert_not_parked(&balances, "the healthy projection");
    assert_eq!(balances[0]["retrying"], false, "{balances:?}");
}
