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

async fn open(host: &Server, token: &str, id: &str) {
    let (code, body) = host
        .command_answer(
            token,
            "acme",
            "account",
            id,
            json!({"type": "Open", "payload": {"owner": format!("o{id}")}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
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

/// Each projection's builds as one host reports them: (name, build) → the host running it.
async fn runners(host: &Server, token: &str) -> Vec<((String, u64), Option<String>)> {
    let list = expect(host.get("/t/acme/projections", token).await, StatusCode::OK).await;
    let mut runners = Vec::new();
    for projection in list.as_array().unwrap() {
        for build in projection["versions"].as_array().unwrap() {
            runners.push((
                (
                    projection["name"].as_str().unwrap().to_owned(),
                    build["build"].as_u64().unwrap(),
                ),
                build["host"].as_str().map(str::to_owned),
            ));
        }
    }
    runners.sort();
    runners
}

#[tokio::test]
async fn each_projection_build_runs_on_exactly_one_host_and_the_hosts_share_them() {
    let (hosts, database) = fleet(3).await;
    let token = hosts[0].tenant_with_account("acme").await;
    let names = ["p1", "p2", "p3", "p4", "p5", "p6"];
    for name in names {
        let resp = hosts[0]
            .upload(&token, "acme", name, plugin_bytes("balances"))
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    // Every host reports the same runner for every build, and every build has one.
    wait_for("one runner per build, the same on every host", async || {
        let seen = runners(&hosts[0], &token).await;
        if seen.len() != names.len() || seen.iter().any(|(_, host)| host.is_none()) {
            return false;
        }
        for host in &hosts[1..] {
            if runners(host, &token).await != seen {
                return false;
            }
        }
        true
    })
    .await;
    // Balanced: with six builds and three hosts, each runs two.
    wait_for("the builds shared out", async || {
        let seen = runners(&hosts[0], &token).await;
        (0..3).all(|i| {
            let id = format!("host-{i}");
            seen.iter()
                .filter(|(_, host)| host.as_deref() == Some(&id))
                .count()
                == 2
        })
    })
    .await;
    // Every build's documents are served by every host.
    open(&hosts[2], &token, "9").await;
    let position = deposit(&hosts[1], &token, "9", 3).await["position"]
        .as_u64()
        .unwrap();
    for host in &hosts {
        for name in names {
            let doc = expect(
                host.get(
                    &format!(
                        "/t/acme/projections/{name}/docs/account-9?min_position={position}&timeout_ms=20000"
                    ),
                    &token,
                )
                .await,
                StatusCode::OK,
            )
            .await;
            assert_eq!(doc["balance"], 3, "{name}: {doc}");
        }
    }
    drop(hosts);
    drop_database(database);
}

#[tokio::test]
async fn the_builds_of_a_killed_host_move_to_the_others() {
    let (mut hosts, database) = fleet(2).await;
    let token = hosts[0].tenant_with_account("acme").await;
    for name in ["p1", "p2"] {
        let resp = hosts[0]
            .upload(&token, "acme", name, plugin_bytes("balances"))
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    wait_for("each host running one build", async || {
        let seen = runners(&hosts[0], &token).await;
        ["host-0", "host-1"].iter().all(|id| {
            seen.iter()
                .filter(|(_, h)| h.as_deref() == Some(id))
                .count()
                == 1
        })
    })
    .await;
    hosts[1].kill9();
    // The survivor takes the dead host's build over once its lease expires.
    wait_for("host-0 running both builds", async || {
        runners(&hosts[0], &token)
            .await
            .iter()
            .all(|(_, h)| h.as_deref() == Some("host-0"))
    })
    .await;
    open(&hosts[0], &token, "4").await;
    let position = deposit(&hosts[0], &token, "4", 7).await["position"]
        .as_u64()
        .unwrap();
    for name in ["p1", "p2"] {
        let doc = expect(
            hosts[0]
                .get(
                    &format!(
                        "/t/acme/projections/{name}/docs/account-4?min_position={position}&timeout_ms=20000"
                    ),
                    &token,
                )
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(doc["balance"], 7, "{name}: {doc}");
    }
    drop(hosts);
    drop_database(database);
}
