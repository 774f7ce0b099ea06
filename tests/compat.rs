//! Components built against the 0.1.0 contract keep working after the 0.2.0 bump: an
//! aggregate whose `decide` refuses with a plain rejection (the reserved code
//! `invalid_command` meaning an unreadable command), and a projection importing
//! `documents@0.1.0`; beside current components in one tenant.

mod common;

use common::{Server, assert_error, body_of, compat_bytes, expect, plugin_bytes};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_0_1_0_aggregate_and_projection_are_served_beside_current_plugins() {
    let server = Server::start().await;
    let token = server.tenant_with_account("acme").await;
    for (name, bytes) in [
        ("counter", compat_bytes("counter-0-1")),
        ("totals", compat_bytes("totals-0-1")),
        ("balances", plugin_bytes("balances")),
    ] {
        let (code, body) = body_of(server.upload(&token, "acme", name, bytes).await).await;
        assert_eq!(code, StatusCode::CREATED, "{name}: {body}");
    }

    let add = |by: i64| json!({"type": "Add", "payload": {"by": by}});
    let (code, body) = server
        .command_answer(&token, "acme", "counter", "c1", add(2))
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, body) = server
        .command_answer(&token, "acme", "counter", "c1", add(5))
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let position = body["position"].as_u64().unwrap();

    // Its domain rejection is a 422, as before.
    let refused = assert_error(
        server
            .command(&token, "acme", "counter", "c1", add(0))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "rejected",
    )
    .await;
    assert_eq!(refused["domain_code"], "invalid_amount", "{refused}");
    // The reserved code becomes the 0.2.0 answer: the command could not be read.
    for command in [
        json!({"type": "Subtract", "payload": {"by": 1}}),
        json!({"type": "Add", "payload": {"by": "two"}}),
    ] {
        let invalid = assert_error(
            server
                .command(&token, "acme", "counter", "c1", command.clone())
                .await,
            StatusCode::BAD_REQUEST,
            "invalid_command",
        )
        .await;
        let message = invalid["message"].as_str().unwrap();
        assert!(
            message.contains("Add does not decode") || message.contains("unknown command type"),
            "the guest's message is passed on: {invalid}"
        );
    }
    let state = expect(
        server.get("/t/acme/aggregates/counter/c1", &token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(state["state"], json!({"total": 7}), "{state}");
    assert_eq!(state["version"], 2, "{state}");

    // The 0.1.0 projection reads the log and writes documents through documents@0.1.0.
    let doc = expect(
        server
            .get(
                &format!("/t/acme/projections/totals/docs/counter-c1?min_position={position}"),
                &token,
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(doc, json!({"total": 7}));

    // And the current aggregate beside it answers a malformed command with 400 too.
    assert_error(
        server
            .command(
                &token,
                "acme",
                "account",
                "a1",
                json!({"type": "Deposit", "payload": {"amount": "lots"}}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_command",
    )
    .await;
}
