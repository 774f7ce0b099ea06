//! A fleet of hosts on one PostgreSQL database: each follows what the others change
//! through the notices they send (`LISTEN/NOTIFY`). The hosts here check the database
//! on their own only every ten minutes (`--poll-interval-ms`), so within these tests
//! only a notice can carry a change from one host to another: each test fails if
//! notices do. PostgreSQL must be reachable: these fail, never skip, without it.

mod common;

use std::time::{Duration, Instant};

use common::sse::Sse;
use common::{Server, body_of, drop_database, expect, plugin_bytes, postgres_database};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// `n` hosts on one fresh database, and the database's name (dropped by the caller).
async fn fleet(n: usize) -> (Vec<Server>, String) {
    let (url, name) = postgres_database().await;
    let mut hosts = Vec::new();
    for i in 0..n {
        let id = format!("host-{i}");
        hosts.push(
            Server::start_with(&[
                "--database",
                &url,
                "--host-id",
                &id,
                "--poll-interval-ms",
                "600000",
            ])
            .await,
        );
    }
    (hosts, name)
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn deposit(host: &Server, token: &str, id: &str, amount: i64) -> Value {
    let (code, body) = host
        .command_answer(
            token,
            "acme",
            "account",
            id,
            json!({"type": "Deposit", "payload": {"amount": amount}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn an_append_through_one_host_reaches_a_live_subscriber_on_another() {
    let (hosts, database) = fleet(2).await;
    let token = hosts[0].tenant_with_account("acme").await;
    let opened = hosts[0]
        .command_answer(
            &token,
            "acme",
            "account",
            "1",
            json!({"type": "Open", "payload": {"owner": "ann"}}),
        )
        .await;
    assert_eq!(opened.0, StatusCode::OK, "{}", opened.1);

    let mut live = Sse::connect(&hosts[1], &token, "/t/acme/events/live?after=0", None).await;
    live.expect_event(1, "Opened").await;
    live.expect_caught_up().await;
    // Appends through the other host arrive in order, each within the reader's 10 s.
    for n in 0..3 {
        let body = deposit(&hosts[0], &token, "1", 10 + n).await;
        let position = body["position"].as_u64().unwrap();
        let event = live.expect_event(position, "Deposited").await;
        assert_eq!(event["data"]["amount"], 10 + n, "{event}");
    }
    drop(hosts);
    drop_database(database);
}

#[tokio::test]
async fn a_projection_uploaded_through_one_host_is_built_promoted_and_served_by_another() {
    let (hosts, database) = fleet(2).await;
    let token = hosts[0].tenant_with_account("acme").await;
    for id in ["1", "2"] {
        hosts[0]
            .command_answer(
                &token,
                "acme",
                "account",
                id,
                json!({"type": "Open", "payload": {"owner": format!("o{id}")}}),
            )
            .await;
    }
    let resp = hosts[0]
        .upload(&token, "acme", "balances", plugin_bytes("balances"))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let position = deposit(&hosts[0], &token, "1", 5).await["position"]
        .as_u64()
        .unwrap();
    // The other host learnt of the build and runs it: its read waits for the position.
    let doc = expect(
        hosts[1]
            .get(
                &format!(
                    "/t/acme/projections/balances/docs/account-1?min_position={position}&timeout_ms=20000"
                ),
                &token,
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(doc["balance"], 5, "{doc}");

    // A new version uploaded through the first host takes over on both.
    let resp = hosts[0]
        .upload(&token, "acme", "balances", plugin_bytes("balances-v2"))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    for host in &hosts {
        wait_for("version 2 active on every host", async || {
            let (_, status) = body_of(host.get("/t/acme/projections/balances", &token).await).await;
            status["active_version"] == 2
        })
        .await;
    }
    // A rollback through the second host is what the first serves.
    let (code, body) = body_of(
        hosts[1]
            .post(
                "/t/acme/projections/balances/promote",
                &token,
                json!({"version": 1}),
            )
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    wait_for("the rollback seen by the first host", async || {
        let (_, status) = body_of(hosts[0].get("/t/acme/projections/balances", &token).await).await;
        status["active_version"] == 1
    })
    .await;
    let (_, doc) = body_of(
        hosts[0]
            .get("/t/acme/projections/balances/docs/account-1", &token)
            .await,
    )
    .await;
    assert_eq!(doc["balance"], 5, "version 1's document shape: {doc}");
    drop(hosts);
    drop_database(database);
}

#[tokio::test]
async fn token_rotation_and_tenant_deletion_reach_every_host() {
    let (hosts, database) = fleet(2).await;
    let token = hosts[0].tenant_with_account("acme").await;
    // The second host learns (and caches) the token.
    let state = hosts[1].get("/t/acme/plugins", &token).await;
    assert_eq!(state.status(), StatusCode::OK);

    let rotated = expect(
        hosts[0]
            .http
            .post(hosts[0].url("/admin/tenants/acme/token"))
            .bearer_auth(hosts[0].admin())
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let new_token = rotated["token"].as_str().unwrap().to_owned();
    wait_for("the old token refused on the second host", async || {
        hosts[1].get("/t/acme/plugins", &token).await.status() == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_eq!(
        hosts[1].get("/t/acme/plugins", &new_token).await.status(),
        StatusCode::OK
    );

    let deleted = hosts[0]
        .http
        .delete(hosts[0].url("/admin/tenants/acme"))
        .bearer_auth(hosts[0].admin())
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    wait_for(
        "the deleted tenant refused on the second host",
        async || {
            hosts[1].get("/t/acme/plugins", &new_token).await.status() == StatusCode::UNAUTHORIZED
        },
    )
    .await;
    drop(hosts);
    drop_database(database);
}

#[tokio::test]
async fn every_host_is_listed_and_a_stopped_one_leaves() {
    let (mut hosts, database) = fleet(2).await;
    let listed = |body: &Value| -> Vec<(String, bool)> {
        body["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["host_id"].as_str().unwrap().to_owned(),
                    h["alive"] == true,
                )
            })
            .collect()
    };
    let hosts_of = async |host: &Server| {
        expect(
            host.http
                .get(host.url("/admin/hosts"))
                .bearer_auth(host.admin())
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await
    };
    let body = hosts_of(&hosts[0]).await;
    assert_eq!(body["host_id"], "host-0", "{body}");
    assert_eq!(
        listed(&body),
        [("host-0".to_owned(), true), ("host-1".to_owned(), true)],
        "{body}"
    );
    hosts[1].stop();
    let body = hosts_of(&hosts[0]).await;
    assert_eq!(listed(&body), [("host-0".to_owned(), true)], "{body}");
    drop(hosts);
    drop_database(database);
}
