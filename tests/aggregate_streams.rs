//! The mapping from (aggregate, id) to a stream is one-to-one, and streams written
//! under the old mapping (`{name}-{id}` for every name) follow their aggregate after
//! the upgrade (migration 0007).

mod common;

use common::{Server, body_of, deposit, expect, plugin_bytes};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn upload_account_as(server: &Server, token: &str, name: &str) {
    let resp = server
        .upload(token, "acme", name, plugin_bytes("account"))
        .await;
    let (code, body) = body_of(resp).await;
    assert!(code.is_success(), "uploading {name}: {code} {body}");
}

async fn run(server: &Server, token: &str, name: &str, id: &str, command: Value) -> Value {
    let (code, body) = server
        .command_answer(token, "acme", name, id, command)
        .await;
    assert_eq!(code, StatusCode::OK, "{name}/{id}: {body}");
    body
}

async fn state(server: &Server, token: &str, name: &str, id: &str) -> Value {
    expect(
        server
            .get(&format!("/t/acme/aggregates/{name}/{id}"), token)
            .await,
        StatusCode::OK,
    )
    .await
}

fn open() -> Value {
    json!({"type": "Open", "payload": {"owner": "ann"}})
}

#[tokio::test]
async fn aggregates_whose_names_overlap_never_share_a_stream() {
    let server = Server::start().await;
    let token = server.create_tenant("acme").await;
    upload_account_as(&server, &token, "ev").await;
    upload_account_as(&server, &token, "ev-a").await;

    // `ev` with id `a-1` and `ev-a` with id `1` were both `ev-a-1`.
    let first = run(&server, &token, "ev", "a-1", open()).await;
    run(&server, &token, "ev", "a-1", deposit(10)).await;
    let second = run(&server, &token, "ev-a", "1", open()).await;
    assert_eq!(first["stream_id"], "ev-a-1");
    assert_eq!(second["stream_id"], "ev_a-1");
    assert_eq!(
        second["version"], 1,
        "ev-a/1 starts its own stream: {second}"
    );
    run(&server, &token, "ev-a", "1", deposit(5)).await;

    let ev = state(&server, &token, "ev", "a-1").await;
    let ev_a = state(&server, &token, "ev-a", "1").await;
    assert_eq!(
        (ev["version"].clone(), ev["state"]["balance"].clone()),
        (json!(2), json!(10))
    );
    assert_eq!(
        (ev_a["version"].clone(), ev_a["state"]["balance"].clone()),
        (json!(2), json!(5))
    );
}

#[tokio::test]
async fn raw_appends_into_an_aggregate_stream_are_folded_by_it() {
    // Documented: a raw append to `{category}-{id}` is the tenant writing that
    // aggregate's history on purpose (that is how history is imported).
    let server = Server::start().await;
    let token = server.tenant_with_account("acme").await;
    let resp = server
        .append(
            &token,
            "acme",
            "account-7",
            json!({"events": [
                {"type": "Opened", "data": {"owner": "importer"}},
                {"type": "Deposited", "data": {"amount": 40}}
            ]}),
        )
        .await;
    expect(resp, StatusCode::OK).await;
    let answer = run(&server, &token, "account", "7", deposit(2)).await;
    assert_eq!(answer["version"], 3, "{answer}");
    let now = state(&server, &token, "account", "7").await;
    assert_eq!(now["state"]["balance"], 42, "{now}");

    // The host now holds account 7's state in memory at version 3. A raw append
    // behind its back must still be seen: by the next command that writes...
    let deposit_raw =
        |amount: i64| json!({"events": [{"type": "Deposited", "data": {"amount": amount}}]});
    let resp = server
        .append(&token, "acme", "account-7", deposit_raw(100))
        .await;
    expect(resp, StatusCode::OK).await;
    let answer = run(&server, &token, "account", "7", deposit(1)).await;
    assert_eq!(
        answer["version"], 5,
        "decided on the raw append too: {answer}"
    );
    // ...by a command the cached state would refuse (balance 43 without it)...
    let resp = server
        .append(&token, "acme", "account-7", deposit_raw(1000))
        .await;
    expect(resp, StatusCode::OK).await;
    let answer = run(
        &server,
        &token,
        "account",
        "7",
        json!({"type": "Withdraw", "payload": {"amount": 500}}),
    )
    .await;
    assert_eq!(answer["version"], 7, "{answer}");
    // ...and by a command that names the version the raw append made.
    let resp = server
        .append(&token, "acme", "account-7", deposit_raw(5))
        .await;
    expect(resp, StatusCode::OK).await;
    let mut named = deposit(1);
    named["expected_version"] = json!(8);
    let answer = run(&server, &token, "account", "7", named).await;
    assert_eq!(answer["version"], 9, "{answer}");
    let now = state(&server, &token, "account", "7").await;
    assert_eq!(
        now["state"]["balance"],
        42 + 100 + 1 + 1000 - 500 + 5 + 1,
        "{now}"
    );
}

#[tokio::test]
async fn streams_written_under_the_old_mapping_follow_their_aggregate() {
    let mut server = Server::start().await;
    let token = server.create_tenant("acme").await;
    upload_account_as(&server, &token, "bank-account").await;
    upload_account_as(&server, &token, "ev").await;
    upload_account_as(&server, &token, "ev-a").await;

    // What an older release wrote: every aggregate's streams as `{name}-{id}`.
    for (stream, amount) in [("bank-account-7", 30), ("ev-a-9", 4)] {
        let resp = server
            .append(
                &token,
                "acme",
                stream,
                json!({"events": [
                    {"type": "Opened", "data": {"owner": "ann"}},
                    {"type": "Deposited", "data": {"amount": amount}}
                ]}),
            )
            .await;
        expect(resp, StatusCode::OK).await;
    }
    // Run the upgrade again on that data, as the first start of the new release does.
    server.stop();
    server
        .execute_sql("DELETE FROM _sqlx_migrations WHERE version = 7")
        .await;
    server.restart().await;

    // `bank-account`'s stream moved to its new name, with its whole history.
    let moved = state(&server, &token, "bank-account", "7").await;
    assert_eq!(moved["stream_id"], "bank_account-7");
    assert_eq!(
        (moved["version"].clone(), moved["state"]["balance"].clone()),
        (json!(2), json!(30))
    );
    let answer = run(&server, &token, "bank-account", "7", deposit(1)).await;
    assert_eq!(answer["version"], 3, "{answer}");
    let old = server.get("/t/acme/streams/bank-account-7", &token).await;
    assert_eq!(old.status(), StatusCode::NOT_FOUND);
    let new = expect(
        server.get("/t/acme/streams/bank_account-7", &token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(new["events"].as_array().unwrap().len(), 3, "{new}");

    // `ev-a-9` was claimed by both `ev` (id `a-9`) and `ev-a` (id `9`); it stays
    // where `ev` reads it under the new mapping too.
    let shared = state(&server, &token, "ev", "a-9").await;
    assert_eq!(shared["version"], 2, "{shared}");
    let fresh = server.get("/t/acme/aggregates/ev-a/9", &token).await;
    assert_eq!(fresh.status(), StatusCode::NOT_FOUND);
}
