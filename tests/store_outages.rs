//! PostgreSQL going away under a host, through a TCP proxy the test controls
//! (`common/proxy.rs`): cut (a restart, a lost network) and frozen (a paused server,
//! a stalled path). What must hold: every request answers, with `503
//! store_unavailable` and `Retry-After` while the database is gone (never a 500, never
//! a hang), `/readyz` says not ready, and once it is back every command retried with
//! its id is in the log exactly once, where it was acknowledged.
//!
//! Always on PostgreSQL (at `CAIRN_TEST_POSTGRES`, default 127.0.0.1:5432); fails,
//! never skips, when it is unreachable.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::proxy::{Mode, Proxy};
use common::{Server, body_of, drop_database, expect, postgres_database};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A host whose every database connection goes through a proxy.
struct Proxied {
    server: Option<Server>,
    proxy: Proxy,
    database: String,
    token: String,
}

impl Drop for Proxied {
    fn drop(&mut self) {
        self.proxy.set(Mode::Forward);
        self.server.take();
        drop_database(std::mem::take(&mut self.database));
    }
}

impl Proxied {
    async fn start() -> Proxied {
        let (url, database) = postgres_database().await;
        let upstream = url
            .split_once('@')
            .and_then(|(_, rest)| rest.split_once('/'))
            .map(|(host, _)| host.to_owned())
            .unwrap();
        let upstream = tokio::net::lookup_host(upstream)
            .await
            .unwrap()
            .find(|a| a.is_ipv4())
            .unwrap();
        let proxy = Proxy::start(upstream).await;
        let proxied = url.replace(&upstream.to_string(), &proxy.addr.to_string());
        let server = Server::start_with(&["--database", &proxied]).await;
        let token = server.tenant_with_account("acme").await;
        let (code, body) = server
            .command_answer(
                &token,
                "acme",
                "account",
                "a",
                json!({"type": "Open", "payload": {"owner": "ann"}}),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        Proxied {
            server: Some(server),
            proxy,
            database,
            token,
        }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    async fn deposit(&self, command_id: &str) -> (StatusCode, Value, Option<String>) {
        let resp = self
            .server()
            .command(&self.token, "acme", "account", "a", {
                let mut body = common::deposit(1);
                body["command_id"] = json!(command_id);
                body
            })
            .await;
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let (code, body) = body_of(resp).await;
        (code, body, retry_after)
    }

    /// Waits until `/readyz` answers `want`.
    async fn wait_ready(&self, want: StatusCode) {
        let started = Instant::now();
        loop {
            let resp = self
                .server()
                .http
                .get(self.server().url("/readyz"))
                .send()
                .await
                .unwrap();
            if resp.status() == want {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "/readyz never answered {want}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every refused command retried with its id until it goes through; then the log
    /// holds each acknowledged command once, where it was acknowledged.
    async fn settle(&self, mut acknowledged: HashMap<String, u64>, refused: Vec<String>) {
        for id in refused {
            let started = Instant::now();
            loop {
                let (code, body, _) = self.deposit(&id).await;
                if code == StatusCode::OK {
                    acknowledged.insert(id.clone(), body["position"].as_u64().unwrap());
                    break;
                }
                assert_eq!(body["error"]["code"], "store_unavailable", "{id}: {body}");
                assert!(started.elapsed() < Duration::from_secs(30), "{id}: {body}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        common::assert_log_holds_exactly(self.server(), &self.token, &acknowledged).await;
        let state = expect(
            self.server()
                .get("/t/acme/aggregates/account/a", &self.token)
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(
            state["state"]["balance"].as_u64(),
            Some(acknowledged.len() as u64)
        );
    }
}

/// Writers with command ids run while `fault` is applied for `hold`; every answer is
/// 200 or 503 store_unavailable with Retry-After.
async fn writers_through(
    host: &Arc<Proxied>,
    fault: Mode,
    hold: Duration,
) -> (HashMap<String, u64>, Vec<String>) {
    let mut writers = Vec::new();
    for w in 0..3 {
        let host = host.clone();
        writers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            let started = Instant::now();
            let mut i = 0;
            while started.elapsed() < hold * 3 {
                let id = format!("w{w}-{i}");
                i += 1;
                let (code, body, retry_after) = host.deposit(&id).await;
                if code != StatusCode::OK {
                    // As a client told to retry later would (sooner than Retry-After,
                    // to meet the recovery).
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                answers.push((id, code, body, retry_after));
            }
            answers
        }));
    }
    tokio::time::sleep(hold).await;
    host.proxy.set(fault);
    tokio::time::sleep(hold).await;
    host.proxy.set(Mode::Forward);
    let mut acknowledged = HashMap::new();
    let mut refused = Vec::new();
    for writer in writers {
        for (id, code, body, retry_after) in writer.await.unwrap() {
            match code {
                StatusCode::OK => {
                    acknowledged.insert(id, body["position"].as_u64().unwrap());
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert_eq!(body["error"]["code"], "store_unavailable", "{id}: {body}");
                    assert!(retry_after.is_some(), "{id}: 503 without Retry-After");
                    refused.push(id);
                }
                other => panic!("{id}: {other} {body} (only 200 or 503 store_unavailable)"),
            }
        }
    }
    (acknowledged, refused)
}

#[tokio::test]
async fn a_database_that_goes_away_answers_503_and_loses_nothing() {
    let host = Arc::new(Proxied::start().await);
    let (acknowledged, refused) = writers_through(&host, Mode::Cut, Duration::from_secs(3)).await;
    assert!(!refused.is_empty(), "no command met the outage");
    eprintln!(
        "{} acknowledged, {} refused",
        acknowledged.len(),
        refused.len()
    );
    host.wait_ready(StatusCode::OK).await;
    host.settle(acknowledged, refused).await;
}

#[tokio::test]
async fn a_frozen_database_answers_503_instead_of_hanging() {
    let host = Arc::new(Proxied::start().await);
    let (acknowledged, refused) =
        writers_through(&host, Mode::Frozen, Duration::from_secs(4)).await;
    assert!(!refused.is_empty(), "no command met the freeze");
    host.wait_ready(StatusCode::OK).await;
    host.settle(acknowledged, refused).await;

    // Frozen again: readiness and a read answer 503 too, not after a hang.
    host.proxy.set(Mode::Frozen);
    host.wait_ready(StatusCode::SERVICE_UNAVAILABLE).await;
    let read = host
        .server()
        .get("/t/acme/aggregates/account/a", &host.token)
        .await;
    let (code, body) = body_of(read).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable");
    host.proxy.set(Mode::Forward);
    host.wait_ready(StatusCode::OK).await;
}
