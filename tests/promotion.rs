//! Which projection build is active, under races: an explicit promote during a rebuild
//! is not undone when the rebuild catches up; an older upload that catches up after a
//! newer one took over never replaces it, across `kill -9`; retired builds are deleted
//! while every build's worker is busy writing, and no worker is parked for it.
//!
//! The hostile projection sleeps 5 s on a `Sleep` event: a build of it is reliably
//! still catching up while the test acts.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Server, body_of, expect, hostile_bytes, plugin_bytes, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A tenant whose plugin calls may block long enough for the hostile `Sleep`.
async fn tenant(server: &Server) -> String {
    server
        .create_tenant_with("acme", json!({"call_timeout_ms": 1000}))
        .await
}

async fn upload(server: &Server, token: &str, bytes: Vec<u8>) {
    let resp = server.upload(token, "acme", "p", bytes).await;
    let (code, body) = body_of(resp).await;
    assert!(
        code == StatusCode::CREATED || code == StatusCode::OK,
        "{code} {body}"
    );
}

async fn append(server: &Server, token: &str, ty: &str) -> u64 {
    let body = expect(
        server
            .append(
                token,
                "acme",
                "account-1",
                json!({"events": [{"type": ty, "data": {"amount": 1, "owner": "o"}}]}),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    body["last_position"].as_u64().unwrap()
}

async fn status(server: &Server, token: &str) -> Value {
    expect(
        server.get("/t/acme/projections/p", token).await,
        StatusCode::OK,
    )
    .await
}

/// Build `id` in a projection's status.
fn build(status: &Value, id: u64) -> Option<Value> {
    status["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["build"] == id)
        .cloned()
}

/// Waits until build `id` has handled everything up to `position`.
async fn wait_position(server: &Server, token: &str, id: u64, position: u64) {
    wait_for(&format!("build {id} at {position}"), async || {
        build(&status(server, token).await, id)
            .is_some_and(|b| b["position"].as_u64().unwrap() >= position)
    })
    .await;
}

async fn wait_active(server: &Server, token: &str, id: u64) {
    wait_for(&format!("build {id} active"), async || {
        status(server, token).await["active_build"] == id
    })
    .await;
}

/// Promotes build `id`.
async fn promote(server: &Server, token: &str, id: u64) {
    expect(
        server
            .post("/t/acme/projections/p/promote", token, json!({"build": id}))
            .await,
        StatusCode::OK,
    )
    .await;
}

/// After a build reached the head it decides on promotion before its next batch:
/// one more event, handled, means that decision is taken.
async fn settle(server: &Server, token: &str, id: u64) {
    let head = append(server, token, "Nudge").await;
    wait_position(server, token, id, head).await;
}

/// The hostile projection sleeps this long on a `Sleep` event; a worker asked to stop
/// finishes the batch it is in, so this long after a stop it has certainly ended.
const SLEEP_AND_MARGIN: Duration = Duration::from_secs(7);

#[tokio::test]
async fn an_explicit_promote_during_a_rebuild_stands_when_the_rebuild_catches_up() {
    let server = Server::start().await;
    let token = tenant(&server).await;
    upload(&server, &token, plugin_bytes("balances")).await; // v1, active at once
    append(&server, &token, "Opened").await;
    append(&server, &token, "Sleep").await;
    upload(&server, &token, hostile_bytes("projection")).await; // v2: sleeps 5 s
    wait_active(&server, &token, 2).await;

    let rebuild = server
        .post("/t/acme/projections/p/rebuild", &token, json!({}))
        .await;
    assert_eq!(rebuild.status(), StatusCode::ACCEPTED);
    // Build 3 is asleep on the Sleep event: roll back to build 1 meanwhile.
    promote(&server, &token, 1).await;
    let now = status(&server, &token).await;
    assert_eq!(now["active_build"], 1, "{now}");
    assert_eq!(now["active_version"], 1, "{now}");
    assert_eq!(build(&now, 3).unwrap()["status"], "retired", "{now}");

    // Build 3 finishes the batch it slept in, then stands still: a retired build
    // does not follow the log, and never takes over.
    let head = append(&server, &token, "Deposited").await;
    tokio::time::sleep(SLEEP_AND_MARGIN).await;
    settle(&server, &token, 1).await;
    let now = status(&server, &token).await;
    assert_eq!(
        now["active_build"], 1,
        "the rebuild did not undo the rollback: {now}"
    );
    let rebuild = build(&now, 3).unwrap();
    assert_eq!(rebuild["status"], "retired", "{now}");
    assert!(
        rebuild["position"].as_u64().unwrap() < head,
        "a retired build went on following the log: {now}"
    );
}

#[tokio::test]
async fn an_older_upload_never_replaces_a_newer_one_across_kill_9() {
    let mut server = Server::start().await;
    // Compiled once in another tenant, so the uploads below take milliseconds, well
    // inside v2's sleep (components are compiled and cached by digest).
    let warm = server.create_tenant("warm").await;
    for (name, bytes) in [
        ("h", hostile_bytes("projection")),
        ("b", plugin_bytes("balances-v2")),
    ] {
        let resp = server.upload(&warm, "warm", name, bytes).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let token = tenant(&server).await;
    upload(&server, &token, plugin_bytes("balances")).await; // v1, active at once
    append(&server, &token, "Opened").await;
    append(&server, &token, "Sleep").await;
    upload(&server, &token, hostile_bytes("projection")).await; // v2: sleeps 5 s
    // Let v2's worker start its first batch (the first Sleep, 5 s) before anything
    // else is appended: a second Sleep in the same batch would exceed its wall time.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // While v2 sleeps, v3 is uploaded, then a second Sleep: v3 (balances-v2 ignores
    // it) catches up and takes over while v2 still has a 5 s event ahead of it.
    upload(&server, &token, plugin_bytes("balances-v2")).await; // v3
    let head = append(&server, &token, "Sleep").await;
    wait_active(&server, &token, 3).await;
    let now = status(&server, &token).await;
    assert_eq!(build(&now, 2).unwrap()["status"], "retired", "{now}");

    // v2 is mid-sleep (or about to be): kill and restart. A retired build is not
    // resumed, so it never catches up and never takes over.
    server.crash_restart().await;
    tokio::time::sleep(SLEEP_AND_MARGIN).await;
    settle(&server, &token, 3).await;
    let now = status(&server, &token).await;
    assert_eq!(now["active_build"], 3, "an older build took over: {now}");
    let older = build(&now, 2).unwrap();
    assert_eq!(older["status"], "retired", "{now}");
    assert!(
        older["position"].as_u64().unwrap() < head,
        "a retired build was resumed after the restart: {now}"
    );
}

#[tokio::test]
async fn retired_builds_are_deleted_while_every_worker_writes() {
    let server = Arc::new(Server::start().await);
    let token = tenant(&server).await;
    upload(&server, &token, plugin_bytes("balances")).await; // v1
    for a in 0..20 {
        server
            .append(
                &token,
                "acme",
                &format!("account-{a}"),
                json!({"events": [{"type": "Opened", "data": {"owner": "o"}}]}),
            )
            .await;
    }
    // Deposits all along: every build's worker keeps writing documents.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (server, token, stop) = (server.clone(), token.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let resp = server
                    .append(
                        &token,
                        "acme",
                        &format!("account-{}", n % 20),
                        json!({"events": [{"type": "Deposited", "data": {"amount": 1}}]}),
                    )
                    .await;
                assert_eq!(resp.status(), StatusCode::OK);
                n += 1;
                // Steady, not flat out: builds must be able to catch up.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            n
        })
    };
    upload(&server, &token, plugin_bytes("balances-v2")).await; // v2
    wait_active(&server, &token, 2).await;
    // Rebuilds and rollbacks: each promotion past two retired builds deletes one.
    for _ in 0..4 {
        let rebuild = expect(
            server
                .post("/t/acme/projections/p/rebuild", &token, json!({}))
                .await,
            StatusCode::ACCEPTED,
        )
        .await;
        assert_eq!(
            rebuild["version"], 2,
            "a rebuild runs the active version: {rebuild}"
        );
        let id = rebuild["build"].as_u64().unwrap();
        wait_active(&server, &token, id).await;
        // And an explicit promote of the newest retired one, straight away.
        let now = status(&server, &token).await;
        let retired = now["versions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["status"] == "retired")
            .map(|b| b["build"].as_u64().unwrap())
            .max()
            .unwrap();
        promote(&server, &token, retired).await;
    }
    stop.store(true, Ordering::Relaxed);
    let appended = writer.await.unwrap();
    assert!(appended > 0);

    let now = status(&server, &token).await;
    let versions = now["versions"].as_array().unwrap();
    for b in versions {
        assert!(b["error"].is_null(), "a worker was parked: {now}");
        assert_ne!(b["status"], "failed", "{now}");
    }
    let retired = versions.iter().filter(|b| b["status"] == "retired").count();
    assert!(retired <= 2, "at most two retired builds are kept: {now}");
    // The active build (balances-v2 code) is whole: it counts every deposit to account-0.
    let head = expect(
        server.get("/t/acme/events?after=0&limit=1", &token).await,
        StatusCode::OK,
    )
    .await["head"]
        .as_u64()
        .unwrap();
    let doc = expect(
        server
            .get(
                &format!(
                    "/t/acme/projections/p/docs/account-0?min_position={head}&timeout_ms=30000"
                ),
                &token,
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(doc["balance"]["amount"], appended.div_ceil(20), "{doc}");
}
