//! Safe plugin evolution against a real `cairn` process: aggregate versions verified
//! by replaying history before they serve, state comparison (warn and strict),
//! activation and rollback, upcasters, and the deterministic sandbox.
//! `CAIRN_TEST_BACKEND=postgres` runs the same on PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use common::{Server, assert_error, body_of, expect, hostile_bytes, plugin_bytes};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wasm_variant::with_custom_section;

async fn command(server: &Server, token: &str, id: &str, body: Value) -> Value {
    let (status, answer) = server
        .command_answer(token, "acme", "account", id, body)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

/// Opens accounts `0..accounts` and deposits `1..=deposits` into each.
async fn history(server: &Server, token: &str, accounts: usize, deposits: i64) {
    for a in 0..accounts {
        let id = a.to_string();
        command(
            server,
            token,
            &id,
            json!({"type": "Open", "payload": {"owner": id}}),
        )
        .await;
        for amount in 1..=deposits {
            command(
                server,
                token,
                &id,
                json!({"type": "Deposit", "payload": {"amount": amount}}),
            )
            .await;
        }
    }
}

async fn balance(server: &Server, token: &str, id: &str) -> Value {
    let state = expect(
        server
            .get(&format!("/t/acme/aggregates/account/{id}"), token)
            .await,
        StatusCode::OK,
    )
    .await;
    state["state"]["balance"].clone()
}

/// Polls a version's status URL until it leaves `verifying`; returns the version view.
async fn settled(server: &Server, token: &str, status_url: &str) -> Value {
    let started = Instant::now();
    loop {
        let view = expect(server.get(status_url, token).await, StatusCode::OK).await;
        if view["status"] != "verifying" {
            return view;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "verification never finished: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Uploads and expects verification to start (202); returns the settled version view.
async fn upload_verified(
    server: &Server,
    token: &str,
    name: &str,
    query: &str,
    bytes: Vec<u8>,
) -> Value {
    let resp = server
        .http_put(&format!("/t/acme/plugins/{name}{query}"), token, bytes)
        .await;
    let accepted = expect(resp, StatusCode::ACCEPTED).await;
    assert_eq!(accepted["status"], "verifying", "{accepted}");
    let url = accepted["status_url"].as_str().expect("a status URL");
    assert_eq!(
        url,
        format!("/t/acme/plugins/{name}/versions/{}", accepted["version"])
    );
    settled(server, token, url).await
}

async fn listing(server: &Server, token: &str, name: &str) -> Value {
    expect(
        server.get(&format!("/t/acme/plugins/{name}"), token).await,
        StatusCode::OK,
    )
    .await
}

#[tokio::test]
async fn an_incompatible_upload_is_rejected_and_the_active_version_keeps_serving() {
    let server = Server::start().await;
    let token = server.tenant_with_account("acme").await;
    history(&server, &token, 3, 2).await;

    // account-v2 stores Deposited{cents} and cannot read Deposited{amount}.
    let report = upload_verified(&server, &token, "account", "", plugin_bytes("account-v2")).await;
    assert_eq!(report["status"], "rejected", "{report}");
    let verification = &report["verification"];
    assert_eq!(verification["streams_total"], 3, "{verification}");
    assert_eq!(verification["streams_checked"], 3, "{verification}");
    assert_eq!(verification["failures_total"], 3, "{verification}");
    let failures = verification["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 3);
    for failure in failures {
        assert!(
            failure["stream_id"]
                .as_str()
                .unwrap()
                .starts_with("account-"),
            "{failure}"
        );
        assert_eq!(failure["version"], 2, "the first deposit: {failure}");
        assert_eq!(failure["event_type"], "Deposited", "{failure}");
        assert!(
            failure["error"]
                .as_str()
                .unwrap()
                .contains("does not decode"),
            "the guest's error: {failure}"
        );
    }
    assert!(verification["finished_at"].is_string(), "{verification}");

    // Version 1 still serves: existing streams, and new ones (no `Opened` written by
    // the rejected version's rules, which would also be v1's here, but from v1).
    let plugin = listing(&server, &token, "account").await;
    assert_eq!(plugin["active_version"], 1, "{plugin}");
    assert_eq!(plugin["versions"][1]["status"], "rejected", "{plugin}");
    command(
        &server,
        &token,
        "0",
        json!({"type": "Deposit", "payload": {"amount": 10}}),
    )
    .await;
    assert_eq!(balance(&server, &token, "0").await, 13);
    let events = expect(
        server.get("/t/acme/streams/account-0?from=4", &token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        events["events"][0]["data"],
        json!({"amount": 10}),
        "written by version 1"
    );

    // A rejected version can never be activated.
    let refused = server
        .post(
            "/t/acme/plugins/account/activate",
            &token,
            json!({"version": 2}),
        )
        .await;
    let error = assert_error(refused, StatusCode::CONFLICT, "not_verified").await;
    assert_eq!(error["status"], "rejected");
}

#[tokio::test]
async fn a_compatible_upload_activates_and_rollback_restores_the_old_version() {
    let server = Server::start().await;
    let token = server.tenant_with_account("acme").await;
    history(&server, &token, 4, 3).await;

    let v2 = upload_verified(
        &server,
        &token,
        "account",
        "",
        with_custom_section(&plugin_bytes("account"), "cairn-test-version", b"2"),
    )
    .await;
    assert_eq!(v2["status"], "active", "{v2}");
    let verification = &v2["verification"];
    assert_eq!(verification["streams_checked"], 4, "{verification}");
    assert_eq!(verification["events_total"], 16, "{verification}");
    assert_eq!(verification["events_folded"], 16, "{verification}");
    assert_eq!(verification["state_differences"], 0, "{verification}");
    assert_eq!(verification["compared_with"], 1, "{verification}");
    assert_eq!(verification["sampled"], false, "{verification}");
    assert_eq!(
        listing(&server, &token, "account").await["active_version"],
        2
    );
    command(
        &server,
        &token,
        "1",
        json!({"type": "Deposit", "payload": {"amount": 4}}),
    )
    .await;
    assert_eq!(balance(&server, &token, "1").await, 10);

    // Rollback: version 1 serves again, with the state exact.
    let rolled = expect(
        server
            .post(
                "/t/acme/plugins/account/activate",
                &token,
                json!({"version": 1}),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(rolled["active_version"], 1, "{rolled}");
    assert_eq!(rolled["versions"][1]["status"], "staged", "{rolled}");
    command(
        &server,
        &token,
        "1",
        json!({"type": "Deposit", "payload": {"amount": 1}}),
    )
    .await;
    assert_eq!(balance(&server, &token, "1").await, 11);

    // ?activate=manual stages a verified version without activating it.
    let v3 = upload_verified(
        &server,
        &token,
        "account",
        "?activate=manual",
        with_custom_section(&plugin_bytes("account"), "cairn-test-version", b"3"),
    )
    .await;
    assert_eq!(v3["status"], "staged", "{v3}");
    assert_eq!(
        listing(&server, &token, "account").await["active_version"],
        1
    );
    let activated = expect(
        server
            .post(
                "/t/acme/plugins/account/activate",
                &token,
                json!({"version": 3}),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(activated["active_version"], 3);

    // Unknown versions and bad bodies answer in the error shape.
    let missing = server
        .post(
            "/t/acme/plugins/account/activate",
            &token,
            json!({"version": 9}),
        )
        .await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;
    let bad = server
        .http_put(
            "/t/acme/plugins/account?verify=maybe",
            &token,
            plugin_bytes("account"),
        )
        .await;
    assert_error(bad, StatusCode::BAD_REQUEST, "bad_request").await;
}

#[tokio::test]
async fn a_state_change_is_a_warning_by_default_and_a_rejection_when_strict() {
    let server = Server::start().await;
    let token = server.tenant_with_account("acme").await;
    history(&server, &token, 2, 1).await;
    // The hostile aggregate folds account events into `{}`: it folds, but the state
    // differs from account's on every stream.
    let strict = upload_verified(
        &server,
        &token,
        "account",
        "?verify=strict",
        hostile_bytes("aggregate"),
    )
    .await;
    assert_eq!(strict["status"], "rejected", "{strict}");
    let verification = &strict["verification"];
    assert_eq!(verification["failures_total"], 0, "{verification}");
    assert_eq!(verification["state_differences"], 2, "{verification}");
    let example = &verification["difference_examples"][0];
    assert_eq!(example["stream_id"], "account-0", "{example}");
    assert_eq!(example["active_state"]["balance"], 1, "{example}");
    assert_eq!(example["new_state"], json!({}), "{example}");
    assert_eq!(
        listing(&server, &token, "account").await["active_version"],
        1
    );

    let warned = upload_verified(
        &server,
        &token,
        "account",
        "",
        with_custom_section(&hostile_bytes("aggregate"), "cairn-test-version", b"w"),
    )
    .await;
    assert_eq!(warned["status"], "active", "{warned}");
    assert_eq!(warned["verification"]["state_differences"], 2, "{warned}");
    assert!(
        warned["verification"]["outcome"]
            .as_str()
            .unwrap()
            .contains("warning"),
        "{warned}"
    );
}

#[tokio::test]
async fn an_upcaster_lets_a_new_event_shape_read_old_history() {
    let server = Server::start().await;
    let token = server.tenant_with_account("acme").await;
    history(&server, &token, 2, 2).await;

    let without = upload_verified(&server, &token, "account", "", plugin_bytes("account-v2")).await;
    assert_eq!(without["status"], "rejected", "{without}");

    // Every stored Deposited must upcast before the upcaster is used.
    let upcaster = upload_verified(
        &server,
        &token,
        "account-upcaster",
        "",
        plugin_bytes("account-upcaster"),
    )
    .await;
    assert_eq!(upcaster["status"], "active", "{upcaster}");
    assert_eq!(upcaster["verification"]["events_folded"], 4, "{upcaster}");
    // Version 1 of account read history as written and still does.
    command(
        &server,
        &token,
        "0",
        json!({"type": "Deposit", "payload": {"amount": 5}}),
    )
    .await;

    // The same v2 bytes again: verified anew, now through the upcaster.
    let with = upload_verified(&server, &token, "account", "", plugin_bytes("account-v2")).await;
    assert_eq!(with["status"], "active", "{with}");
    assert_eq!(with["version"], 3, "{with}");
    assert_eq!(with["upcasters"][0]["name"], "account-upcaster", "{with}");
    assert_eq!(with["verification"]["failures_total"], 0, "{with}");
    assert_eq!(with["verification"]["state_differences"], 0, "{with}");
    assert_eq!(balance(&server, &token, "0").await, 8);
    command(
        &server,
        &token,
        "0",
        json!({"type": "Deposit", "payload": {"amount": 2}}),
    )
    .await;
    assert_eq!(balance(&server, &token, "0").await, 10);
    // Rolling back to version 1 with a fresh verification: it cannot read the
    // Deposited{cents} that version 3 wrote since, so it is refused and 3 serves on.
    let back = server
        .post(
            "/t/acme/plugins/account/activate",
            &token,
            json!({"version": 1, "verify": true}),
        )
        .await;
    let back = expect(back, StatusCode::ACCEPTED).await;
    let back = settled(&server, &token, back["status_url"].as_str().unwrap()).await;
    assert_eq!(back["status"], "rejected", "{back}");
    let failure = &back["verification"]["failures"][0];
    assert_eq!(failure["stream_id"], "account-0", "{failure}");
    assert_eq!(failure["version"], 5, "the first cents deposit: {failure}");
    assert_eq!(
        listing(&server, &token, "account").await["active_version"],
        3
    );
    // A read at an old version folds old events through the upcaster too.
    let at = expect(
        server
            .get("/t/acme/aggregates/account/1?version=2", &token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(at["state"]["balance"], 1, "{at}");

    // Stored bytes never change; ?upcast=true shows what readers see.
    let stored = expect(
        server
            .get("/t/acme/streams/account-0?from=2&limit=1", &token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(stored["events"][0]["data"], json!({"amount": 1}));
    let upcast = expect(
        server
            .get(
                "/t/acme/streams/account-0?from=2&limit=1&upcast=true",
                &token,
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(upcast["events"][0]["type"], "Deposited");
    assert_eq!(upcast["events"][0]["data"], json!({"cents": 1}));
    let log = expect(
        server
            .get("/t/acme/events?upcast=true&types=Deposited", &token)
            .await,
        StatusCode::OK,
    )
    .await;
    let events = log["events"].as_array().unwrap();
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e["data"].get("cents").is_some()),
        "{log}"
    );
    // The newest event was written by v2 in the new shape.
    let newest = events.last().unwrap();
    assert_eq!(newest["data"], json!({"cents": 2}));

    // A projection uploaded now reads history through the active upcasters too:
    // balances-cents knows only Deposited{cents}, yet folds v1's deposits.
    let up = server
        .upload(
            &token,
            "acme",
            "balances-cents",
            plugin_bytes("balances-cents"),
        )
        .await;
    let up = expect(up, StatusCode::CREATED).await;
    assert_eq!(up["kind"], "projection");
    let head = log["head"].as_u64().unwrap();
    let doc = expect(
        server
            .get(
                &format!("/t/acme/projections/balances-cents/docs/account-0?min_position={head}"),
                &token,
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(doc["balance"], 10, "{doc}");
    let plugin = listing(&server, &token, "balances-cents").await;
    assert_eq!(
        plugin["versions"][0]["upcasters"][0]["name"], "account-upcaster",
        "{plugin}"
    );
}

#[tokio::test]
async fn clocks_and_random_are_deterministic_in_aggregates() {
    let server = Server::start().await;
    let token = server.create_tenant("acme").await;
    let up = server
        .upload(&token, "acme", "clock", hostile_bytes("clock"))
        .await;
    expect(up, StatusCode::CREATED).await;
    let stamp = async |id: &str, command_id: &str| -> Value {
        let (status, answer) = server
            .command_answer(
                &token,
                "acme",
                "clock",
                id,
                json!({"type": "Stamp", "payload": {}, "command_id": command_id}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["events"][0]["data"].clone()
    };
    // Command ids are the tenant's (a second use on another stream is a conflict), so
    // the same id is sent to a second tenant's aggregate.
    let other = server.create_tenant("beta").await;
    let up = server
        .upload(&other, "beta", "clock", hostile_bytes("clock"))
        .await;
    expect(up, StatusCode::CREATED).await;
    let before = chrono::Utc::now().timestamp_millis() as u64;
    let a = stamp("a", "same-id").await;
    let (status, answer) = server
        .command_answer(
            &other,
            "beta",
            "clock",
            "b",
            json!({"type": "Stamp", "payload": {}, "command_id": "same-id"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let b = answer["events"][0]["data"].clone();
    let c = stamp("c", "other-id").await;
    let after = chrono::Utc::now().timestamp_millis() as u64;
    // Random bytes are seeded by the command id.
    assert_eq!(a["random"], b["random"], "{a} {b}");
    assert_ne!(a["random"], c["random"], "{a} {c}");
    // The wall clock answers the command's issue time; the monotonic clock advances
    // one microsecond per reading.
    let wall = a["wall_ms"].as_u64().unwrap();
    assert!(
        (before..=after).contains(&wall),
        "{before} <= {wall} <= {after}"
    );
    assert_eq!(a["mono_delta_ns"], 1000, "{a}");

    // Evolve reads clocks and random too, into the state: a new upload with the same
    // logic replays every stream to the very same state, so strict mode accepts it.
    let state_before = expect(
        server.get("/t/acme/aggregates/clock/a", &token).await,
        StatusCode::OK,
    )
    .await;
    let resp = server
        .http_put(
            "/t/acme/plugins/clock?verify=strict",
            &token,
            with_custom_section(&hostile_bytes("clock"), "cairn-test-version", b"2"),
        )
        .await;
    let accepted = expect(resp, StatusCode::ACCEPTED).await;
    let view = settled(&server, &token, accepted["status_url"].as_str().unwrap()).await;
    assert_eq!(view["status"], "active", "{view}");
    assert_eq!(view["verification"]["state_differences"], 0, "{view}");
    let state_after = expect(
        server.get("/t/acme/aggregates/clock/a", &token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(state_before["state"], state_after["state"]);
    assert!(
        state_after["state"]["evolve_random"].is_u64(),
        "{state_after}"
    );
    // A temporal read folds again and agrees.
    let at = expect(
        server
            .get("/t/acme/aggregates/clock/a?version=1", &token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(at["state"], state_after["state"]);
}

#[tokio::test]
async fn verification_survives_a_restart_and_reports_a_sample_over_budget() {
    let mut server = Server::start().await;
    let token = server
        .create_tenant_with("acme", json!({"verify_max_events": 10}))
        .await;
    expect(
        server
            .upload(&token, "acme", "account", plugin_bytes("account"))
            .await,
        StatusCode::CREATED,
    )
    .await;
    history(&server, &token, 6, 2).await;
    let view = upload_verified(
        &server,
        &token,
        "account",
        "",
        with_custom_section(&plugin_bytes("account"), "cairn-test-version", b"s"),
    )
    .await;
    assert_eq!(view["status"], "active", "{view}");
    let verification = &view["verification"];
    assert_eq!(verification["sampled"], true, "{verification}");
    assert_eq!(verification["streams_total"], 6, "{verification}");
    // 3 events per stream, 10 in the budget: three streams fit.
    assert_eq!(verification["streams_checked"], 3, "{verification}");
    assert_eq!(
        verification["sampled_streams"].as_array().unwrap().len(),
        3,
        "{verification}"
    );
    assert!(verification["sample_rule"].is_string(), "{verification}");

    // The report and the activation outlive the process.
    server.restart().await;
    let again = expect(
        server
            .get("/t/acme/plugins/account/versions/2", &token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["status"], "active");
    assert_eq!(again["verification"], view["verification"]);
    let (status, _) = body_of(
        server
            .command(
                &token,
                "acme",
                "account",
                "0",
                json!({"type": "Deposit", "payload": {"amount": 1}}),
            )
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn verification_stops_at_the_first_twenty_failures() {
    let server = Server::start().await;
    let token = server.tenant_with_account("acme").await;
    for i in 0..25 {
        let resp = server
            .append(
                &token,
                "acme",
                &format!("account-{i:02}"),
                json!({"events": [
                    {"type": "Opened", "data": {"owner": "x"}},
                    {"type": "Deposited", "data": {"amount": 3}},
                ]}),
            )
            .await;
        expect(resp, StatusCode::OK).await;
    }
    let view = upload_verified(&server, &token, "account", "", plugin_bytes("account-v2")).await;
    assert_eq!(view["status"], "rejected", "{view}");
    let verification = &view["verification"];
    assert_eq!(verification["streams_total"], 25, "{verification}");
    assert_eq!(verification["streams_checked"], 20, "{verification}");
    assert_eq!(verification["failures"].as_array().unwrap().len(), 20);
    assert_eq!(verification["stopped_early"], true, "{verification}");
    assert_eq!(verification["failures"][0]["stream_id"], "account-00");
}
