//! Plugins in Python and JavaScript beside Rust ones: the Python `account`
//! (`examples/python/account`, componentize-py) and the JavaScript `balances`
//! (`examples/js/balances`, componentize-js) run the banking scenario and answer exactly
//! what their Rust twins answer: commands, rejections, events, states and documents
//! (as JSON values; the exact bytes are the native tests' to check);
//! languages mix within one tenant, and the Python aggregate passes strict verification
//! against the Rust one's history. Also how the host takes components of that size:
//! their data segments are not counted in `max_plugin_bytes`, their code is.
//!
//! Needs `cargo xtask build-plugins --polyglot` (target/plugins/python-account.wasm and
//! js-balances.wasm).

mod common;

use std::time::{Duration, Instant};

use common::{Server, assert_error, body_of, expect, plugin_bytes};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// One test of this file at a time: each starts a server that compiles the Python
/// component (tens of seconds of both cores), and compiles racing each other on a
/// small machine would measure the machine, not the default `compile_timeout_ms`.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Which language each plugin of a tenant is written in.
struct Setup {
    tenant: &'static str,
    account: &'static str,
    balances: &'static str,
}

/// `target/plugins/<name>.wasm`: a Rust plugin, `python-account` or `js-balances`.
fn component(name: &str) -> Vec<u8> {
    let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins")
        .join(format!("{name}.wasm"));
    assert!(
        built.is_file(),
        "{} is missing: run `cargo xtask build-plugins --polyglot` first",
        built.display()
    );
    plugin_bytes(name)
}

/// The banking scenario: every command and its answer, with what the host makes up
/// (event ids, timestamps) left out. Domain rejections keep their code and message;
/// an unreadable command keeps its status and code (its message is the guest's own
/// parser's, and differs by language).
async fn scenario(server: &Server, token: &str, tenant: &str) -> Vec<Value> {
    let commands = [
        ("1", json!({"type": "Deposit", "payload": {"amount": 5}})),
        ("1", json!({"type": "Open", "payload": {"owner": "ann"}})),
        ("1", json!({"type": "Deposit", "payload": {"amount": 100}})),
        ("1", json!({"type": "Withdraw", "payload": {"amount": 30}})),
        ("1", json!({"type": "Withdraw", "payload": {"amount": 71}})),
        ("1", json!({"type": "Open", "payload": {"owner": "again"}})),
        ("1", json!({"type": "Deposit", "payload": {"amount": 0}})),
        ("1", json!({"type": "Withdraw", "payload": {"amount": -3}})),
        (
            "2",
            json!({"type": "Open", "payload": {"owner": "Bob Ñandú 🏦"}}),
        ),
        (
            "2",
            json!({"type": "Deposit", "payload": {"amount": 9_223_372_036_854_775_000_i64}}),
        ),
        (
            "2",
            json!({"type": "Deposit", "payload": {"amount": 1_000}}),
        ),
        (
            "2",
            json!({"type": "Withdraw", "payload": {"amount": 9_223_372_036_854_775_000_i64}}),
        ),
        (
            "3",
            json!({"type": "Open", "payload": {"owner": "cy", "extra": [1, 2]}}),
        ),
        (
            "3",
            json!({"type": "Deposit", "payload": {"amount": 7}, "command_id": "pay-1"}),
        ),
        // The same command id again: the first answer, nothing written.
        (
            "3",
            json!({"type": "Deposit", "payload": {"amount": 7}, "command_id": "pay-1"}),
        ),
        // Unreadable commands: 400 invalid_command, whatever the language.
        ("3", json!({"type": "Close", "payload": {}})),
        (
            "3",
            json!({"type": "Deposit", "payload": {"amount": "ten"}}),
        ),
        ("3", json!({"type": "Deposit", "payload": {"amount": 1.5}})),
        ("3", json!({"type": "Deposit", "payload": {}})),
        ("3", json!({"type": "Open", "payload": {"owner": 7}})),
    ];
    let mut transcript = Vec::new();
    for (id, command) in commands {
        let (code, mut body) = server
            .command_answer(token, tenant, "account", id, command.clone())
            .await;
        if let Some(events) = body["events"].as_array_mut() {
            for event in events {
                let event = event.as_object_mut().unwrap();
                event.remove("event_id");
                event.remove("recorded_at");
                event.remove("metadata");
            }
        }
        if body["error"]["code"] == "invalid_command" {
            body["error"]
                .as_object_mut()
                .unwrap()
                .retain(|k, _| k == "code");
        }
        if let Some(error) = body["error"].as_object_mut() {
            error.remove("request_id");
        }
        transcript.push(json!({"command": command, "status": code.as_u16(), "answer": body}));
    }
    transcript
}

/// States, stream contents and documents after the scenario.
async fn outcome(server: &Server, token: &str, tenant: &str, projection: &str) -> Value {
    let (_, head) = body_of(
        server
            .get(&format!("/t/{tenant}/events?after=0&limit=1000"), token)
            .await,
    )
    .await;
    let last = head["events"]
        .as_array()
        .and_then(|events| events.last())
        .map_or(0, |e| e["position"].as_u64().unwrap());
    let mut out = json!({});
    for id in ["1", "2", "3"] {
        let state = expect(
            server
                .get(&format!("/t/{tenant}/aggregates/account/{id}"), token)
                .await,
            StatusCode::OK,
        )
        .await;
        let stream = expect(
            server
                .get(&format!("/t/{tenant}/streams/account-{id}"), token)
                .await,
            StatusCode::OK,
        )
        .await;
        let events: Vec<Value> = stream["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| json!([e["version"], e["position"], e["type"], e["data"]]))
            .collect();
        let doc = expect(
            server
                .get(
                    &format!(
                        "/t/{tenant}/projections/{projection}/docs/account-{id}?min_position={last}&timeout_ms=30000"
                    ),
                    token,
                )
                .await,
            StatusCode::OK,
        )
        .await;
        out[id] = json!({"state": state, "events": events, "document": doc});
    }
    out
}

async fn run(server: &Server, setup: &Setup) -> (Vec<Value>, Value) {
    let token = server.create_tenant(setup.tenant).await;
    for (name, file) in [("account", setup.account), ("balances", setup.balances)] {
        let (code, body) = body_of(
            server
                .upload(&token, setup.tenant, name, component(file))
                .await,
        )
        .await;
        assert_eq!(code, StatusCode::CREATED, "{file}: {body}");
    }
    let transcript = scenario(server, &token, setup.tenant).await;
    let outcome = outcome(server, &token, setup.tenant, "balances").await;
    (transcript, outcome)
}

#[tokio::test]
async fn python_account_and_js_balances_answer_exactly_what_the_rust_ones_answer() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let server = Server::start().await;
    let reference = run(
        &server,
        &Setup {
            tenant: "rust",
            account: "account",
            balances: "balances",
        },
    )
    .await;
    // The reference itself is what the scenario means.
    let (transcript, outcome) = &reference;
    assert_eq!(transcript[0]["answer"]["error"]["domain_code"], "not_open");
    assert_eq!(
        transcript[4]["answer"]["error"]["message"],
        "the balance is 70, less than 71"
    );
    assert_eq!(transcript[15]["status"], 400);
    assert_eq!(
        outcome["1"]["state"]["state"],
        json!({"open": true, "owner": "ann", "balance": 70})
    );
    assert_eq!(
        outcome["2"]["document"],
        json!({"owner": "Bob Ñandú 🏦", "balance": 0, "version": 3})
    );
    assert_eq!(outcome["3"]["state"]["version"], 2);
    assert_eq!(
        transcript[10]["answer"]["error"]["domain_code"],
        "invalid_amount"
    );

    for setup in [
        Setup {
            tenant: "python",
            account: "python-account",
            balances: "balances",
        },
        Setup {
            tenant: "js",
            account: "account",
            balances: "js-balances",
        },
        Setup {
            tenant: "both",
            account: "python-account",
            balances: "js-balances",
        },
    ] {
        let (transcript, outcome) = run(&server, &setup).await;
        for (theirs, ours) in transcript.iter().zip(&reference.0) {
            assert_eq!(theirs, ours, "tenant {}", setup.tenant);
        }
        assert_eq!(transcript.len(), reference.0.len());
        assert_eq!(outcome, reference.1, "tenant {}", setup.tenant);
    }
}

/// Polls a version's status URL until it leaves `verifying`.
async fn settled(server: &Server, token: &str, status_url: &str) -> Value {
    let started = Instant::now();
    loop {
        let view = expect(server.get(status_url, token).await, StatusCode::OK).await;
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
async fn languages_mix_in_one_tenant_and_python_replaces_rust_under_strict_verification() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let server = Server::start().await;
    let token = server.create_tenant("acme").await;
    // Rust, Python and JavaScript side by side: two aggregates, two projections.
    for (name, file) in [
        ("account", "account"),
        ("pyaccount", "python-account"),
        ("balances", "balances"),
        ("jsbalances", "js-balances"),
    ] {
        let (code, body) =
            body_of(server.upload(&token, "acme", name, component(file)).await).await;
        assert_eq!(code, StatusCode::CREATED, "{name}: {body}");
    }
    let mut last = 0;
    for (aggregate, id) in [("account", "1"), ("account", "2"), ("pyaccount", "1")] {
        for command in [
            json!({"type": "Open", "payload": {"owner": format!("{aggregate}-{id}")}}),
            json!({"type": "Deposit", "payload": {"amount": 40}}),
            json!({"type": "Withdraw", "payload": {"amount": 15}}),
        ] {
            let (code, body) = server
                .command_answer(&token, "acme", aggregate, id, command)
                .await;
            assert_eq!(code, StatusCode::OK, "{aggregate} {id}: {body}");
            last = body["position"].as_u64().unwrap();
        }
    }
    // Both projections read every account stream (`account-*`), whoever wrote it; the
    // Python aggregate's streams are `pyaccount-*`, which both skip alike.
    for projection in ["balances", "jsbalances"] {
        let page = expect(
            server
                .get(
                    &format!("/t/acme/projections/{projection}/docs?prefix=account-&min_position={last}&timeout_ms=30000"),
                    &token,
                )
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(
            page["docs"],
            json!([
                {"key": "account-1", "doc": {"owner": "account-1", "balance": 25, "version": 3}},
                {"key": "account-2", "doc": {"owner": "account-2", "balance": 25, "version": 3}},
            ]),
            "{projection}: {page}"
        );
    }
    let state = expect(
        server.get("/t/acme/aggregates/pyaccount/1", &token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        state["state"],
        json!({"open": true, "owner": "pyaccount-1", "balance": 25})
    );

    // The Python aggregate as version 2 of the Rust `account`: strict verification
    // replays the Rust history through it and compares every state it folds with the
    // Rust version's.
    let resp = server
        .http_put(
            "/t/acme/plugins/account?verify=strict",
            &token,
            component("python-account"),
        )
        .await;
    let accepted = expect(resp, StatusCode::ACCEPTED).await;
    let view = settled(&server, &token, accepted["status_url"].as_str().unwrap()).await;
    assert_eq!(view["status"], "active", "{view}");
    assert_eq!(view["verification"]["state_differences"], 0, "{view}");
    assert_eq!(view["verification"]["failures_total"], 0, "{view}");
    // And it serves the history the Rust version wrote.
    let refused = assert_error(
        server
            .command(
                &token,
                "acme",
                "account",
                "1",
                json!({"type": "Withdraw", "payload": {"amount": 26}}),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "rejected",
    )
    .await;
    assert_eq!(
        refused["message"], "the balance is 25, less than 26",
        "{refused}"
    );
    let (code, body) = server
        .command_answer(
            &token,
            "acme",
            "account",
            "1",
            json!({"type": "Withdraw", "payload": {"amount": 25}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let state = expect(
        server.get("/t/acme/aggregates/account/1", &token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        state["state"],
        json!({"open": true, "owner": "account-1", "balance": 0})
    );
}

/// A PUT that announces `length` bytes and sends only its head; the answer.
async fn declared_only(server: &Server, token: &str, path: &str, length: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/wasm\r\nContent-Length: {length}\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut answer))
        .await
        .expect("an answer before the body was sent")
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[tokio::test]
async fn large_components_are_limited_by_their_code_not_their_data() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let server = Server::start().await;
    let python = component("python-account");
    // Larger than the default `max_plugin_bytes` (16 MiB) in all, which the default
    // tenant above already took; most of it is the interpreter's data segments.
    assert!(python.len() > 16 << 20, "{} bytes", python.len());
    // A tenant whose code limit is below the component's code is refused at once.
    let small = server
        .create_tenant_with("small", json!({"max_plugin_bytes": 4 << 20}))
        .await;
    let refused = assert_error(
        server
            .upload(&small, "small", "account", python.clone())
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    )
    .await;
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("besides their data segments"), "{refused}");
    // More than `max_plugin_bytes + memory_bytes` in all is refused on the declared
    // length, before the body is read (a raw socket: the answer comes while the client
    // would still be sending).
    let tiny = server
        .create_tenant_with(
            "tiny",
            json!({"max_plugin_bytes": 1 << 20, "memory_bytes": 4 << 20}),
        )
        .await;
    let answer = declared_only(&server, &tiny, "/t/tiny/plugins/account", python.len()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"too_large\""), "{answer}");
    assert!(answer.contains("5242880 bytes in all"), "{answer}");
    // A code limit above its code takes it, whatever its data.
    let fits = server
        .create_tenant_with("fits", json!({"max_plugin_bytes": 12 << 20}))
        .await;
    let (code, body) = body_of(server.upload(&fits, "fits", "account", python).await).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let (code, body) = server
        .command_answer(
            &fits,
            "fits",
            "account",
            "1",
            json!({"type": "Open", "payload": {"owner": "f"}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    // An instance memory below the interpreter's initial heap: every call fails as
    // this tenant's own plugin failure, in the error shape.
    let (code, body) = body_of(
        server
            .send(
                reqwest::Method::PATCH,
                "/admin/tenants/fits",
                server.admin(),
                Some(json!({"limits": {"memory_bytes": 8 << 20}})),
            )
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let failed = assert_error(
        server
            .command(
                &fits,
                "fits",
                "account",
                "1",
                json!({"type": "Deposit", "payload": {"amount": 1}}),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "plugin_failed",
    )
    .await;
    assert!(failed["message"].is_string(), "{failed}");
}
