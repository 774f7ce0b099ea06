//! Long histories: a stream of 100,000 events written by raw appends serves commands,
//! before and after a new aggregate version, and reads in its middle; a slow component
//! folds a long stream in smaller batches instead of failing; a load that runs out of
//! its budget saves its progress and the retry finishes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Appends `count` events made by `event(i)` to `stream`, a thousand per request.
async fn append_many(
    server: &Server,
    token: &str,
    tenant: &str,
    stream: &str,
    count: usize,
    event: impl Fn(usize) -> Value,
) {
    for start in (0..count).step_by(1000) {
        let events: Vec<Value> = (start..count.min(start + 1000)).map(&event).collect();
        let (code, body) = body_of(
            server
                .append(token, tenant, stream, json!({"events": events}))
                .await,
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }
}

async fn state(server: &Server, token: &str, query: &str) -> Value {
    expect(
        server
            .get(&format!("/t/acme/aggregates/account/big{query}"), token)
            .await,
        StatusCode::OK,
    )
    .await
}

/// Uploads `bytes` as `name` and waits until verification settles; returns the view.
async fn upload_settled(server: &Server, token: &str, name: &str, bytes: Vec<u8>) -> Value {
    let resp = server
        .http_put(&format!("/t/acme/plugins/{name}"), token, bytes)
        .await;
    let accepted = expect(resp, StatusCode::ACCEPTED).await;
    let url = accepted["status_url"].as_str().unwrap().to_owned();
    let started = Instant::now();
    loop {
        let view = expect(server.get(&url, token).await, StatusCode::OK).await;
        if view["status"] != "verifying" {
            return view;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "verification never finished: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_hundred_thousand_event_stream_serves_before_and_after_an_upgrade() {
    let server = Server::start().await;
    let token = server.tenant_with_account("acme").await;
    const EVENTS: usize = 100_000;
    append_many(&server, &token, "acme", "account-big", EVENTS, |i| {
        if i == 0 {
            json!({"type": "Opened", "data": {"owner": "importer"}})
        } else {
            json!({"type": "Deposited", "data": {"amount": 1}})
        }
    })
    .await;

    // The first command folds the whole history, each evolve call on its own budget.
    let answer = expect(server.deposit(&token, "big", 1).await, StatusCode::OK).await;
    assert_eq!(answer["version"], EVENTS as u64 + 1, "{answer}");
    let now = state(&server, &token, "").await;
    assert_eq!(now["state"]["balance"], EVENTS as u64, "{now}");

    // A read in the middle answers, from the nearest snapshot below it.
    let middle = state(&server, &token, "?version=50000").await;
    assert_eq!(middle["version"], 50_000, "{middle}");
    assert_eq!(middle["state"]["balance"], 49_999, "{middle}");

    // A new version, reading the history through an upcaster: verified by replaying
    // the whole stream, which also leaves it a snapshot to start from.
    let upcaster = upload_settled(
        &server,
        &token,
        "account-upcaster",
        plugin_bytes("account-upcaster"),
    )
    .await;
    assert_eq!(upcaster["status"], "active", "{upcaster}");
    let v2 = upload_settled(&server, &token, "account", plugin_bytes("account-v2")).await;
    assert_eq!(v2["status"], "active", "{v2}");
    let answer = expect(server.deposit(&token, "big", 1).await, StatusCode::OK).await;
    assert_eq!(answer["version"], EVENTS as u64 + 2, "{answer}");
    let now = state(&server, &token, "").await;
    assert_eq!(now["state"]["balance"], EVENTS as u64 + 1, "{now}");
    let middle = state(&server, &token, "?version=60000").await;
    assert_eq!(middle["state"]["balance"], 59_999, "{middle}");
}

#[tokio::test]
async fn a_slow_component_folds_a_long_stream_in_smaller_batches() {
    let server = Server::start().await;
    let token = server.create_tenant("acme").await;
    let up = server
        .upload(&token, "acme", "h", hostile_bytes("aggregate"))
        .await;
    assert_eq!(up.status(), 201);
    // About 1 ms of CPU per event: a first batch of 512 is five times the budget of
    // one call. The instance halves its batches until they fit, and the command is
    // served instead of failing on every retry.
    append_many(
        &server,
        &token,
        "acme",
        "h-slow",
        3000,
        |_| json!({"type": "Heavy", "data": {}}),
    )
    .await;
    let (code, body) = server
        .command_answer(&token, "acme", "h", "slow", json!({"type": "Ok"}))
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 3001, "{body}");
}

#[tokio::test]
async fn a_load_past_its_budget_saves_progress_and_the_retry_finishes() {
    let server = Server::start().await;
    let token = server
        .create_tenant_with("acme", json!({"load_timeout_ms": 100}))
        .await;
    let up = server
        .upload(&token, "acme", "h", hostile_bytes("aggregate"))
        .await;
    assert_eq!(up.status(), 201);
    // 6,000 events of 1 ms each: far more than one 100 ms load can fold.
    append_many(
        &server,
        &token,
        "acme",
        "h-long",
        6000,
        |_| json!({"type": "Heavy", "data": {}}),
    )
    .await;
    let mut incomplete = 0;
    let mut saved = Vec::new();
    loop {
        let (code, body) = server
            .command_answer(&token, "acme", "h", "long", json!({"type": "Ok"}))
            .await;
        if code == StatusCode::OK {
            assert_eq!(body["version"], 6001, "{body}");
            break;
        }
        assert_error_body(
            code,
            &body,
            StatusCode::SERVICE_UNAVAILABLE,
            "load_incomplete",
        );
        saved.push(body["error"]["snapshot_version"].as_u64().unwrap());
        incomplete += 1;
        assert!(incomplete < 200, "the retries never finished: {saved:?}");
        // Snapshots are written in the background.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        incomplete >= 1,
        "a 100 ms budget folded 6,000 slow events at once"
    );
    // Each retry started further along than the one before it had.
    assert!(
        saved.windows(2).all(|w| w[1] >= w[0]),
        "progress went backwards: {saved:?}"
    );
    assert!(
        saved.last() > saved.first() || saved.len() == 1,
        "no progress was kept: {saved:?}"
    );
}
