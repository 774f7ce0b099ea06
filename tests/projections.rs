//! Projections end to end against a real server: read-your-writes, exactly-once across
//! `kill -9`, a hot swap under concurrent readers, rollback, rebuild, a failing
//! projection parked while another keeps up, and fairness between tenants.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{Server, assert_error_body, body_of, expect, hostile_bytes, plugin_bytes, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Appends `deposits` Deposited events to each of `accounts` account streams with raw
/// appends (fast), after an Opened event; returns the expected balance per account.
async fn load(server: &Server, tenant: &str, token: &str, accounts: u64, deposits: u64) -> u64 {
    let mut head = 0;
    for a in 0..accounts {
        let mut events = vec![json!({"type": "Opened", "data": {"owner": format!("o{a}")}})];
        for d in 0..deposits {
            events.push(json!({"type": "Deposited", "data": {"amount": d + 1}}));
        }
        let (status, body) = body_of(
            server
                .post(
                    &format!("/t/{tenant}/streams/account-{a}"),
                    token,
                    json!({"expected_version": "no_stream", "events": events}),
                )
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        head = body["last_position"].as_u64().unwrap();
    }
    head
}

async fn status(server: &Server, tenant: &str, token: &str, name: &str) -> Value {
    let (code, body) = body_of(
        server
            .get(&format!("/t/{tenant}/projections/{name}"), token)
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

/// `account-{a}`'s `balances` document once the build has reached `head` (waiting up to
/// `timeout_ms`), asserting it is there.
async fn balance_at(server: &Server, token: &str, a: usize, head: u64, timeout_ms: u64) -> Value {
    let (code, doc) = body_of(
        server
            .get(
                &format!("/t/acme/projections/balances/docs/account-{a}?min_position={head}&timeout_ms={timeout_ms}"),
                token,
            )
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{doc}");
    doc
}

#[tokio::test]
async fn commands_then_read_your_writes() {
    let server = Server::start().await;
    let token = server.create_tenant("acme").await;
    assert_eq!(
        server
            .upload(&token, "acme", "account", plugin_bytes("account"))
            .await
            .status(),
        201
    );
    assert_eq!(
        server
            .upload(&token, "acme", "balances", plugin_bytes("balances"))
            .await
            .status(),
        201
    );
    let mut last = 0;
    for id in 0..20 {
        server
            .command_answer(
                &token,
                "acme",
                "account",
                &id.to_string(),
                json!({"type": "Open", "payload": {"owner": "x"}}),
            )
            .await;
        for _ in 0..10 {
            let (code, body) = server
                .command_answer(
                    &token,
                    "acme",
                    "account",
                    &id.to_string(),
                    json!({"type": "Deposit", "payload": {"amount": 3}}),
                )
                .await;
            assert_eq!(code, StatusCode::OK, "{body}");
            last = body["position"].as_u64().unwrap();
        }
    }
    let (code, doc) = body_of(
        server
            .get(
                &format!("/t/acme/projections/balances/docs/account-7?min_position={last}"),
                &token,
            )
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{doc}");
    assert_eq!(doc, json!({"owner": "x", "balance": 30, "version": 11}));
    let (code, page) = body_of(
        server
            .get(
                &format!(
                    "/t/acme/projections/balances/docs?prefix=account-&limit=15&min_position={last}"
                ),
                &token,
            )
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(page["docs"].as_array().unwrap().len(), 15);
    let next = page["next"].as_str().unwrap().to_owned();
    let (_, rest) = body_of(
        server
            .get(
                &format!("/t/acme/projections/balances/docs?prefix=account-&after={next}"),
                &token,
            )
            .await,
    )
    .await;
    assert_eq!(rest["docs"].as_array().unwrap().len(), 5);
    assert!(rest["next"].is_null());
    // A position the projection cannot reach yet: 503 after the bound.
    let (code, body) = body_of(
        server
            .get(
                &format!(
                    "/t/acme/projections/balances/docs/account-7?min_position={}&timeout_ms=200",
                    last + 100
                ),
                &token,
            )
            .await,
    )
    .await;
    assert_error_body(
        code,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "not_caught_up",
    );
}

#[tokio::test]
async fn exactly_once_across_kill_9_mid_catch_up() {
    let mut server = Server::start().await;
    let token = server.create_tenant("acme").await;
    let head = load(&server, "acme", &token, 40, 99).await; // 4000 events
    assert_eq!(
        server
            .upload(&token, "acme", "balances", plugin_bytes("balances"))
            .await
            .status(),
        201
    );
    // Let the first batches commit, then kill the process without warning.
    wait_for("the first batch", async || {
        status(&server, "acme", &token, "balances").await["versions"][0]["position"]
            .as_u64()
            .unwrap()
            > 0
    })
    .await;
    server.kill9();
    server.crash_restart().await;
    let expected: u64 = (1..=99).sum();
    for a in 0..40 {
        let doc = balance_at(&server, &token, a, head, 30_000).await;
        assert_eq!(
            doc["balance"], expected,
            "account-{a}: every deposit counted exactly once"
        );
        assert_eq!(doc["version"], 100);
    }
}

/// A catch-up reads pages ahead while it handles one. Where every event is of
/// interest, pages after the next are read on the guess that they start a page's
/// length (5,000 positions) apart; events of another type in the middle of the log break that guess
/// for a while. Every deposit must still be counted exactly once.
#[tokio::test]
async fn a_catch_up_over_many_pages_counts_every_event_once() {
    let server = Server::start().await;
    let token = server.create_tenant("acme").await;
    let accounts = 7;
    let mut lines: Vec<Value> = (0..accounts)
        .map(
            |a| json!({"stream": format!("account-{a}"), "type": "Opened", "data": {"owner": "o"}}),
        )
        .collect();
    let mut expected = vec![0u64; accounts];
    for i in 0..32_000u64 {
        let a = (i % accounts as u64) as usize;
        // Positions ~10,000 to ~17,000: every other event is one balances does not read.
        if (10_000..17_000).contains(&i) && i % 2 == 0 {
            lines.push(json!({"stream": format!("account-{a}"), "type": "Audited", "data": {}}));
            continue;
        }
        let amount = i % 5 + 1;
        expected[a] += amount;
        lines.push(
            json!({"stream": format!("account-{a}"), "type": "Deposited", "data": {"amount": amount}}),
        );
    }
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let (code, imported) = body_of(
        server
            .http
            .post(server.url("/t/acme/import"))
            .bearer_auth(&token)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{imported}");
    let head = lines.len();
    assert_eq!(
        server
            .upload(&token, "acme", "balances", plugin_bytes("balances"))
            .await
            .status(),
        201
    );
    for (a, balance) in expected.iter().enumerate() {
        let doc = balance_at(&server, &token, a, head as u64, 60_000).await;
        assert_eq!(doc["balance"], *balance, "account-{a}: {doc}");
    }
}

#[tokio::test]
async fn hot_swap_under_readers_then_rollback_and_rebuild() {
    let server = Arc::new(Server::start().await);
    let token = server.create_tenant("acme").await;
    let head = load(&server, "acme", &token, 10, 50).await;
    assert_eq!(
        server
            .upload(&token, "acme", "balances", plugin_bytes("balances"))
            .await
            .status(),
        201
    );
    let doc_path =
        format!("/t/acme/projections/balances/docs/account-3?min_position={head}&timeout_ms=30000");
    let (code, v1) = body_of(server.get(&doc_path, &token).await).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v1["balance"], 1275);

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let saw_v2 = Arc::new(AtomicBool::new(false));
    let reader = {
        let (server, token, stop, failures, reads, saw_v2) = (
            server.clone(),
            token.clone(),
            stop.clone(),
            failures.clone(),
            reads.clone(),
            saw_v2.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (code, doc) = body_of(
                    server
                        .get("/t/acme/projections/balances/docs/account-3", &token)
                        .await,
                )
                .await;
                reads.fetch_add(1, Ordering::Relaxed);
                let good = code == StatusCode::OK
                    && (doc["balance"] == 1275 || doc["balance"]["amount"] == 1275);
                if !good {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                if doc["holder"].is_string() {
                    saw_v2.store(true, Ordering::Relaxed);
                }
            }
        })
    };
    assert_eq!(
        server
            .upload(&token, "acme", "balances", plugin_bytes("balances-v2"))
            .await
            .status(),
        201
    );
    wait_for("version 2 to take over", async || {
        status(&server, "acme", &token, "balances").await["active_version"] == 2
    })
    .await;
    wait_for("a reader to see version 2", async || {
        saw_v2.load(Ordering::Relaxed)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    reader.await.unwrap();
    assert!(reads.load(Ordering::Relaxed) > 10);
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no failed or empty read during the swap"
    );
    let s = status(&server, "acme", &token, "balances").await;
    assert_eq!(s["active_build"], 2, "{s}");
    assert_eq!(s["versions"][0]["status"], "retired");
    assert_eq!(s["versions"][1]["status"], "active");

    let promote = async |body: Value| {
        body_of(
            server
                .post("/t/acme/projections/balances/promote", &token, body)
                .await,
        )
        .await
    };
    // Rollback to version 1, named by its plugin version.
    let (code, body) = promote(json!({"version": 1})).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"name": "balances", "active_version": 1, "active_build": 1})
    );
    let (_, doc) = body_of(server.get(&doc_path, &token).await).await;
    assert_eq!(doc, json!({"owner": "o3", "balance": 1275, "version": 51}));

    // Rebuild the active code beside itself: a new build of the same version that
    // takes over; the version a user sees stays 1.
    let (code, body) = body_of(
        server
            .post("/t/acme/projections/balances/rebuild", &token, json!({}))
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["version"], 1, "{body}");
    let rebuilt = body["build"].as_u64().unwrap();
    assert_eq!(rebuilt, 3);
    wait_for("the rebuild to take over", async || {
        status(&server, "acme", &token, "balances").await["active_build"] == rebuilt
    })
    .await;
    let s = status(&server, "acme", &token, "balances").await;
    assert_eq!(s["active_version"], 1, "{s}");
    let (_, doc) = body_of(server.get(&doc_path, &token).await).await;
    assert_eq!(doc["owner"], "o3", "the rebuild runs version 1's code");
    // Promoting version 1 now names its active build: nothing changes.
    let (code, body) = promote(json!({"version": 1})).await;
    assert_eq!(
        (code, body["active_build"].clone()),
        (StatusCode::OK, json!(3))
    );
    // A build id and a version that disagree are refused.
    let (code, body) = promote(json!({"version": 2, "build": 1})).await;
    assert_error_body(code, &body, StatusCode::BAD_REQUEST, "bad_request");
    // Unknown versions and builds cannot be promoted.
    let (code, body) = promote(json!({"version": 42})).await;
    assert_error_body(code, &body, StatusCode::NOT_FOUND, "not_found");
    let (code, body) = promote(json!({"build": 42})).await;
    assert_error_body(code, &body, StatusCode::NOT_FOUND, "not_found");

    // A kept build is deleted on request; the active one is not.
    let (code, body) = body_of(
        server
            .send(
                reqwest::Method::DELETE,
                "/t/acme/projections/balances/builds/3",
                &token,
                None,
            )
            .await,
    )
    .await;
    assert_error_body(code, &body, StatusCode::CONFLICT, "active_build");
    let (code, body) = body_of(
        server
            .send(
                reqwest::Method::DELETE,
                "/t/acme/projections/balances/builds/2",
                &token,
                None,
            )
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"name": "balances", "build": 2, "deleted": true})
    );
    let s = status(&server, "acme", &token, "balances").await;
    let kept: Vec<u64> = s["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["build"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [1, 3], "{s}");
    let (code, body) = promote(json!({"version": 2})).await;
    assert_error_body(code, &body, StatusCode::NOT_FOUND, "not_found");
    // A retired build stands still: build 1 does not follow appends made after the
    // rebuild retired it.
    let before = s["versions"][0]["position"].as_u64().unwrap();
    let appended = expect(
        server
            .append(
                &token,
                "acme",
                "account-3",
                json!({"events": [{"type": "Deposited", "data": {"amount": 1}}]}),
            )
            .await,
        StatusCode::OK,
    )
    .await["last_position"]
        .as_u64()
        .unwrap();
    assert!(appended > before);
    let fresh = format!(
        "/t/acme/projections/balances/docs/account-3?min_position={appended}&timeout_ms=30000"
    );
    let (_, doc) = body_of(server.get(&fresh, &token).await).await;
    assert_eq!(doc["balance"], 1276, "the active build follows: {doc}");
    let s = status(&server, "acme", &token, "balances").await;
    assert_eq!(s["versions"][0]["position"], before, "{s}");
    // Promoted back, it follows the log again from where it stopped.
    let (code, _) = promote(json!({"build": 1})).await;
    assert_eq!(code, StatusCode::OK);
    let (_, doc) = body_of(server.get(&fresh, &token).await).await;
    assert_eq!(doc["balance"], 1276, "build 1 caught up again: {doc}");
    let s = status(&server, "acme", &token, "balances").await;
    assert_eq!(s["active_build"], 1, "{s}");
}

#[tokio::test]
async fn a_failing_projection_is_parked_while_another_keeps_up() {
    let server = Server::start().await;
    let token = server.create_tenant("acme").await;
    assert_eq!(
        server
            .upload(&token, "acme", "stuck", hostile_bytes("projection"))
            .await
            .status(),
        201
    );
    assert_eq!(
        server
            .upload(&token, "acme", "balances", plugin_bytes("balances"))
            .await
            .status(),
        201
    );
    let head = load(&server, "acme", &token, 2, 3).await;
    let (code, body) = body_of(
        server
            .post(
                "/t/acme/streams/poison-1",
                &token,
                json!({"events": [{"type": "Poison", "data": {}}]}),
            )
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let poison = body["last_position"].as_u64().unwrap();
    let (code, body) = body_of(
        server
            .post(
                "/t/acme/streams/account-9",
                &token,
                json!({"events": [{"type": "Opened", "data": {"owner": "late"}}, {"type": "Deposited", "data": {"amount": 4}}]}),
            )
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let last = body["last_position"].as_u64().unwrap();
    wait_for("the hostile projection to be parked", async || {
        status(&server, "acme", &token, "stuck").await["versions"][0]["status"] == "failed"
    })
    .await;
    let stuck = status(&server, "acme", &token, "stuck").await;
    let error = stuck["versions"][0]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("event at position {poison}")),
        "{error}"
    );
    assert!(error.contains("deadline"), "{error}");
    assert_eq!(
        stuck["versions"][0]["position"], head,
        "parked before the poison event"
    );
    // A read that waits for a position past the parked one is told at once, not
    // after its wait: 409 projection_failed with where and why.
    let started = std::time::Instant::now();
    let parked = common::assert_error(
        server
            .get(
                &format!("/t/acme/projections/stuck/docs?min_position={last}&timeout_ms=20000"),
                &token,
            )
            .await,
        StatusCode::CONFLICT,
        "projection_failed",
    )
    .await;
    assert_eq!(parked["position"], head, "{parked}");
    assert!(
        parked["error"].as_str().unwrap().contains("deadline"),
        "{parked}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "answered before the wait ran out"
    );
    // Projection calls count against the tenant like any plugin call.
    let (_, tenant) = body_of(server.get("/admin/tenants/acme", server.admin()).await).await;
    assert!(
        tenant["usage"]["deadline_hits"].as_u64().unwrap() >= 1,
        "{tenant}"
    );
    // The healthy projection went past the poison and keeps up with later events.
    let (code, doc) = body_of(
        server
            .get(
                &format!("/t/acme/projections/balances/docs/account-9?min_position={last}"),
                &token,
            )
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{doc}");
    assert_eq!(doc, json!({"owner": "late", "balance": 4, "version": 2}));
    // Parked versions cannot be promoted.
    let (code, body) = body_of(
        server
            .post(
                "/t/acme/projections/stuck/promote",
                &token,
                json!({"version": 1}),
            )
            .await,
    )
    .await;
    assert_eq!(
        code,
        StatusCode::OK,
        "promoting the active one again is harmless: {body}"
    );
}

#[tokio::test]
async fn a_heavy_tenant_does_not_starve_a_light_one() {
    let server = Server::start().await;
    let heavy = server.create_tenant("heavy").await;
    let light = server.create_tenant("light").await;
    load(&server, "heavy", &heavy, 100, 199).await; // 20 000 events to catch up
    for (tenant, token) in [("heavy", &heavy), ("light", &light)] {
        assert_eq!(
            server
                .upload(token, tenant, "balances", plugin_bytes("balances"))
                .await
                .status(),
            201
        );
    }
    let head = load(&server, "light", &light, 1, 1).await;
    let (code, doc) = body_of(
        server
            .get(
                &format!("/t/light/projections/balances/docs/account-0?min_position={head}"),
                &light,
            )
            .await,
    )
    .await;
    assert_eq!(
        code,
        StatusCode::OK,
        "the light tenant read its write: {doc}"
    );
    assert_eq!(doc["balance"], 1);
    let lag = status(&server, "heavy", &heavy, "balances").await["versions"][0]["lag"]
        .as_u64()
        .unwrap();
    assert!(lag > 0, "the heavy tenant was still catching up meanwhile");
}

#[tokio::test]
async fn sleeping_projections_of_one_tenant_never_stall_another() {
    let server = Server::start().await;
    let evil = server.create_tenant("evil").await;
    let good = server.create_tenant("good").await;
    for name in ["sleepy-1", "sleepy-2", "sleepy-3", "sleepy-4", "sleepy-5"] {
        let up = server
            .upload(&evil, "evil", name, hostile_bytes("projection"))
            .await;
        assert_eq!(up.status(), 201);
    }
    for plugin in ["account", "balances"] {
        let up = server
            .upload(&good, "good", plugin, plugin_bytes(plugin))
            .await;
        assert_eq!(up.status(), 201);
    }
    // Each of evil's projections blocks 5 s in a WASI sleep on this event: more
    // sleepers than the host has projection batch slots.
    let (code, body) = body_of(
        server
            .post(
                "/t/evil/streams/s-1",
                &evil,
                json!({"events": [{"type": "Sleep", "data": {}}]}),
            )
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    // Meanwhile good's read-your-writes keep being answered, each within its wait.
    for round in 0..5 {
        let (code, body) = server
            .command_answer(
                &good,
                "good",
                "account",
                "1",
                if round == 0 {
                    json!({"type": "Open", "payload": {"owner": "g"}})
                } else {
                    json!({"type": "Deposit", "payload": {"amount": 1}})
                },
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        let position = body["position"].as_u64().unwrap();
        let (code, doc) = body_of(
            server
                .get(
                    &format!(
                        "/t/good/projections/balances/docs/account-1?min_position={position}&timeout_ms=3000"
                    ),
                    &good,
                )
                .await,
        )
        .await;
        assert_eq!(code, StatusCode::OK, "round {round}: {doc}");
    }
    // Evil's sleepers are cut by the wall-time bound and parked with that reason.
    wait_for("the sleeping projection to be parked", async || {
        status(&server, "evil", &evil, "sleepy-1").await["versions"][0]["status"] == "failed"
    })
    .await;
    let parked = status(&server, "evil", &evil, "sleepy-1").await;
    let error = parked["versions"][0]["error"].as_str().unwrap();
    assert!(error.contains("wall-time limit"), "{error}");
}

#[tokio::test]
async fn a_batch_too_slow_for_the_budget_is_halved_not_replayed_event_by_event() {
    let server = Server::start().await;
    let token = server
        .create_tenant_with("acme", json!({"call_timeout_ms": 100}))
        .await;
    // About a millisecond of CPU per `Heavy` event: the first batches (up to 500
    // events) run past the 100 ms budget.
    let mut head = 0;
    for _ in 0..3 {
        let events: Vec<Value> = (0..500)
            .map(|_| json!({"type": "Heavy", "data": {}}))
            .collect();
        let (code, body) = body_of(
            server
                .post("/t/acme/streams/heavy-1", &token, json!({"events": events}))
                .await,
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        head = body["last_position"].as_u64().unwrap();
    }
    assert_eq!(
        server
            .upload(&token, "acme", "slow", hostile_bytes("projection"))
            .await
            .status(),
        201
    );
    wait_for("the slow projection to catch up", async || {
        status(&server, "acme", &token, "slow").await["versions"][0]["position"] == head
    })
    .await;
    assert_eq!(
        status(&server, "acme", &token, "slow").await["versions"][0]["status"],
        "active"
    );

    // The projection recorded every batch it was given (only committed ones remain).
    let mut sizes = Vec::new();
    let mut after = String::new();
    loop {
        let page = body_of(
            server
                .get(
                    &format!(
                        "/t/acme/projections/slow/docs?prefix=batch-&limit=1000&after={after}"
                    ),
                    &token,
                )
                .await,
        )
        .await
        .1;
        for doc in page["docs"].as_array().unwrap() {
            sizes.push(doc["doc"]["size"].as_u64().unwrap());
        }
        match page["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(
        sizes.iter().sum::<u64>(),
        1500,
        "every event once: {sizes:?}"
    );
    assert!(
        sizes.iter().all(|s| *s < 500),
        "a 500-event batch cannot fit the budget: {sizes:?}"
    );
    // Retrying event by event would commit hundreds of one-event batches.
    assert!(
        sizes.len() < 150,
        "{} batches for 1,500 events: the batch size did not adapt: {sizes:?}",
        sizes.len()
    );
}

/// The operator's `/metrics` shows, per tenant, command latency and plugin call latency
/// histograms, and per projection build its position, lag, events/s and status.
#[tokio::test]
async fn metrics_show_command_and_plugin_latency_and_each_projection_build() {
    let server = Server::start().await;
    let token = server.tenant_with_account("acme").await;
    assert_eq!(
        server
            .upload(&token, "acme", "balances", plugin_bytes("balances"))
            .await
            .status(),
        201
    );
    let (code, body) = server
        .command_answer(
            &token,
            "acme",
            "account",
            "1",
            json!({"type": "Open", "payload": {"owner": "x"}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let position = body["position"].as_u64().unwrap();
    // Wait until the projection has handled the event, then read the metrics.
    let doc = server
        .get(
            &format!("/t/acme/projections/balances/docs/account-1?min_position={position}"),
            &token,
        )
        .await;
    assert_eq!(doc.status(), StatusCode::OK);
    let text = server
        .http
        .get(server.url("/metrics"))
        .bearer_auth(server.admin())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in {text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(
        value("cairn_command_duration_seconds_count{tenant=\"acme\"}"),
        1.0
    );
    assert_eq!(
        value("cairn_command_duration_seconds_bucket{tenant=\"acme\",le=\"+Inf\"}"),
        1.0
    );
    assert!(
        value(
            "cairn_plugin_call_duration_seconds_count{tenant=\"acme\",plugin=\"account\",call=\"decide\"}"
        ) >= 1.0
    );
    assert!(
        value(
            "cairn_plugin_call_duration_seconds_count{tenant=\"acme\",plugin=\"balances\",call=\"handle\"}"
        ) >= 1.0
    );
    let build = "{tenant=\"acme\",projection=\"balances\",version=\"1\",build=\"1\"}";
    assert_eq!(
        value(&format!("cairn_projection_position{build}")),
        position as f64
    );
    assert_eq!(value(&format!("cairn_projection_lag{build}")), 0.0);
    assert_eq!(
        value(
            "cairn_projection_status{tenant=\"acme\",projection=\"balances\",version=\"1\",build=\"1\",status=\"active\"}"
        ),
        1.0
    );
}
