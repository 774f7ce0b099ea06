//! The foundation scenario against a real `cairn` process: tenants, plugin uploads,
//! the banking commands, auth, restarts and the error shape (docs/api.md).

mod common;

use common::{Server, assert_error, body_of, expect, plugin_bytes};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

#[tokio::test]
async fn tenants_are_created_once_with_valid_ids() {
    let server = Server::start().await;
    let resp = server
        .post("/admin/tenants", server.admin(), json!({"id": "acme"}))
        .await;
    let body = expect(resp, StatusCode::CREATED).await;
    assert_eq!(body["id"], "acme");
    let token = body["token"].as_str().expect("a token");
    assert!(!token.is_empty() && token != server.admin());
    // The token reaches its tenant.
    let plugins = expect(server.get("/t/acme/plugins", token).await, StatusCode::OK).await;
    assert_eq!(plugins, json!([]));

    let dup = server
        .post("/admin/tenants", server.admin(), json!({"id": "acme"}))
        .await;
    assert_error(dup, StatusCode::CONFLICT, "already_exists").await;

    let too_long = "a".repeat(64);
    for bad in ["Acme", "-acme", "", "a_b", "a.b", "ünï", too_long.as_str()] {
        let resp = server
            .post("/admin/tenants", server.admin(), json!({"id": bad}))
            .await;
        assert_error(resp, StatusCode::BAD_REQUEST, "bad_request").await;
    }
    // 63 characters is the longest valid id.
    let longest = "a".repeat(63);
    let resp = server
        .post("/admin/tenants", server.admin(), json!({"id": longest}))
        .await;
    expect(resp, StatusCode::CREATED).await;

    let list = expect(
        server.get("/admin/tenants", server.admin()).await,
        StatusCode::OK,
    )
    .await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{list}");
    assert!(
        ids.contains(&"acme") && ids.contains(&longest.as_str()),
        "{list}"
    );
    let one = expect(
        server.get("/admin/tenants/acme", server.admin()).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(one["id"], "acme");
    assert!(
        one["limits"].is_object() && one["usage"].is_object(),
        "{one}"
    );
    let missing = server.get("/admin/tenants/nobody", server.admin()).await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn uploading_account_gives_a_version_and_same_bytes_give_it_again() {
    let server = Server::start().await;
    let token = server.create_tenant("acme").await;
    let wasm = plugin_bytes("account");
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&wasm)));

    let resp = server.upload(&token, "acme", "account", wasm.clone()).await;
    let first = expect(resp, StatusCode::CREATED).await;
    assert_eq!(first["name"], "account");
    assert_eq!(first["version"], 1);
    assert_eq!(first["kind"], "aggregate");
    assert_eq!(first["digest"], digest.as_str());

    let resp = server.upload(&token, "acme", "account", wasm).await;
    let again = expect(resp, StatusCode::OK).await;
    assert_eq!(again, first, "identical bytes answer the same version");

    let listed = expect(server.get("/t/acme/plugins", &token).await, StatusCode::OK).await;
    assert_eq!(
        listed[0]["versions"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
}

#[tokio::test]
async fn junk_and_core_modules_are_invalid_plugins() {
    let server = Server::start().await;
    let token = server.create_tenant("acme").await;

    let junk = server
        .upload(&token, "acme", "junk", b"this is not wasm at all".to_vec())
        .await;
    assert_error(junk, StatusCode::UNPROCESSABLE_ENTITY, "invalid_plugin").await;

    // A valid, empty core module: WebAssembly, but not a component.
    let core = server
        .upload(&token, "acme", "core", b"\0asm\x01\0\0\0".to_vec())
        .await;
    assert_error(core, StatusCode::UNPROCESSABLE_ENTITY, "invalid_plugin").await;

    let listed = expect(server.get("/t/acme/plugins", &token).await, StatusCode::OK).await;
    assert_eq!(listed, json!([]), "a refused upload keeps nothing");
    let core = server.get("/t/acme/plugins/core", &token).await;
    assert_error(core, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn banking_scenario() {
    let server = Server::start().await;
    let token = server.tenant_with_account("acme").await;
    let cmd = |body: Value| server.command(&token, "acme", "account", "42", body);

    let opened = expect(
        cmd(json!({"type": "Open", "payload": {"owner": "ann"}})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(opened["stream_id"], "account-42");
    assert_eq!(opened["version"], 1);
    assert_eq!(opened["events"][0]["type"], "Opened");
    assert_eq!(opened["events"][0]["version"], 1);
    assert_eq!(opened["position"], opened["events"][0]["position"]);

    let deposited = expect(
        cmd(json!({"type": "Deposit", "payload": {"amount": 100}})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(deposited["version"], 2);

    let refused = cmd(json!({"type": "Withdraw", "payload": {"amount": 500}})).await;
    let error = assert_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "rejected").await;
    assert_eq!(error["domain_code"], "insufficient_funds");
    let state = expect(
        server.get("/t/acme/aggregates/account/42", &token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(state["version"], 2, "a rejection writes nothing: {state}");
    assert_eq!(state["state"]["balance"], 100);

    let withdrawn = expect(
        cmd(json!({"type": "Withdraw", "payload": {"amount": 30}})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(withdrawn["version"], 3);

    let state = expect(
        server.get("/t/acme/aggregates/account/42", &token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(state["stream_id"], "account-42");
    assert_eq!(state["version"], 3);
    assert_eq!(state["state"]["owner"], "ann");
    assert_eq!(state["state"]["balance"], 70);

    let read = expect(
        server.get("/t/acme/streams/account-42", &token).await,
        StatusCode::OK,
    )
    .await;
    let events = read["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "{read}");
    assert_eq!(read["next"], Value::Null);
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["Opened", "Deposited", "Withdrawn"]);
    let positions: Vec<u64> = events
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, [1, 2, 3], "the tenant's first three positions");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["version"], i as u64 + 1);
        assert_eq!(e["stream_id"], "account-42");
        assert!(e["event_id"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
        assert!(e["metadata"].is_object(), "{e}");
        assert!(is_rfc3339(&e["recorded_at"]), "{e}");
    }
    assert_eq!(events[0]["data"]["owner"], "ann");
    assert_eq!(events[1]["data"]["amount"], 100);
    assert_eq!(events[2]["data"]["amount"], 30);
    assert_eq!(withdrawn["position"], 3);
}

#[tokio::test]
async fn domain_rejections_carry_their_codes() {
    let server = Server::start().await;
    let token = server.tenant_with_account("acme").await;
    let cmd = |body: Value| server.command(&token, "acme", "account", "7", body);
    let not_open = cmd(json!({"type": "Deposit", "payload": {"amount": 5}})).await;
    let e = assert_error(not_open, StatusCode::UNPROCESSABLE_ENTITY, "rejected").await;
    assert_eq!(e["domain_code"], "not_open");
    expect(
        cmd(json!({"type": "Open", "payload": {"owner": "bob"}})).await,
        StatusCode::OK,
    )
    .await;
    let twice = cmd(json!({"type": "Open", "payload": {"owner": "bob"}})).await;
    let e = assert_error(twice, StatusCode::UNPROCESSABLE_ENTITY, "rejected").await;
    assert_eq!(e["domain_code"], "already_open");
    let zero = cmd(json!({"type": "Deposit", "payload": {"amount": 0}})).await;
    let e = assert_error(zero, StatusCode::UNPROCESSABLE_ENTITY, "rejected").await;
    assert_eq!(e["domain_code"], "invalid_amount");
    let state = expect(
        server.get("/t/acme/aggregates/account/7", &token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(state["version"], 1);
}

/// Plugins run optimised, where `+` wraps: a deposit past `i64::MAX` must be refused,
/// and projections must not turn a huge (raw-appended) amount into a negative sum.
#[tokio::test]
async fn a_deposit_past_the_largest_balance_is_refused_and_sums_never_wrap() {
    let server = Server::start().await;
    let token = server.tenant_with_account("acme").await;
    let up = server.upload(&token, "acme", "balances", plugin_bytes("balances"));
    expect(up.await, StatusCode::CREATED).await;
    let cmd = |body: Value| server.command(&token, "acme", "account", "7", body);
    for body in [
        json!({"type": "Open", "payload": {"owner": "ann"}}),
        json!({"type": "Deposit", "payload": {"amount": 5}}),
    ] {
        expect(cmd(body).await, StatusCode::OK).await;
    }
    let over = cmd(json!({"type": "Deposit", "payload": {"amount": i64::MAX}})).await;
    let e = assert_error(over, StatusCode::UNPROCESSABLE_ENTITY, "rejected").await;
    assert_eq!(e["domain_code"], "invalid_amount");
    let state = server.get("/t/acme/aggregates/account/7", &token).await;
    assert_eq!(expect(state, StatusCode::OK).await["state"]["balance"], 5);
    // A raw append bypasses decide: folding it saturates instead of wrapping.
    let event = json!({"type": "Deposited", "data": {"amount": i64::MAX}});
    let raw = server.append(&token, "acme", "account-7", json!({"events": [event]}));
    let position = expect(raw.await, StatusCode::OK).await["last_position"].clone();
    let state = server.get("/t/acme/aggregates/account/7", &token).await;
    assert_eq!(
        expect(state, StatusCode::OK).await["state"]["balance"],
        i64::MAX
    );
    let doc = format!("/t/acme/projections/balances/docs/account-7?min_position={position}");
    let doc = expect(server.get(&doc, &token).await, StatusCode::OK).await;
    assert_eq!(doc["balance"], i64::MAX, "{doc}");
}

#[tokio::test]
async fn auth_401_for_missing_or_wrong_tokens_and_403_across_tenants() {
    let server = Server::start().await;
    let acme = server.tenant_with_account("acme").await;
    let other = server.create_tenant("other").await;
    expect(
        server
            .command(
                &acme,
                "acme",
                "account",
                "1",
                json!({"type": "Open", "payload": {"owner": "ann"}}),
            )
            .await,
        StatusCode::OK,
    )
    .await;

    let paths = [
        "/t/acme/plugins",
        "/t/acme/plugins/account",
        "/t/acme/aggregates/account/1",
        "/t/acme/streams/account-1",
        "/t/acme/events",
    ];
    for path in paths {
        let none = server.http.get(server.url(path)).send().await.unwrap();
        assert_error(none, StatusCode::UNAUTHORIZED, "unauthorized").await;
        let wrong = server.get(path, "not-a-token").await;
        assert_error(wrong, StatusCode::UNAUTHORIZED, "unauthorized").await;
        let foreign = server.get(path, &other).await;
        let (status, body) = body_of(foreign).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert_eq!(body["error"]["code"], "forbidden", "{path}: {body}");
        assert!(!body.to_string().contains("ann"), "leaked data: {body}");
        // The rightful owner and the operator get through.
        expect(server.get(path, &acme).await, StatusCode::OK).await;
        expect(server.get(path, server.admin()).await, StatusCode::OK).await;
    }
    // Writes too.
    let foreign_cmd = server
        .command(
            &other,
            "acme",
            "account",
            "1",
            json!({"type": "Deposit", "payload": {"amount": 1}}),
        )
        .await;
    assert_error(foreign_cmd, StatusCode::FORBIDDEN, "forbidden").await;
    let foreign_upload = server
        .upload(&other, "acme", "account", plugin_bytes("account"))
        .await;
    assert_error(foreign_upload, StatusCode::FORBIDDEN, "forbidden").await;

    // Tenant tokens never reach /admin.
    let listed = server.get("/admin/tenants", &acme).await;
    assert_error(listed, StatusCode::FORBIDDEN, "forbidden").await;
    let create = server
        .post("/admin/tenants", &acme, json!({"id": "sneaky"}))
        .await;
    assert_error(create, StatusCode::FORBIDDEN, "forbidden").await;
    let none = server
        .http
        .get(server.url("/admin/tenants"))
        .send()
        .await
        .unwrap();
    assert_error(none, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let state = expect(
        server.get("/t/acme/aggregates/account/1", &acme).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(state["version"], 1, "a refused write wrote nothing");
}

async fn restart_keeps_everything(crash: bool) {
    let mut server = Server::start().await;
    let token = server.tenant_with_account("acme").await;
    for body in [
        json!({"type": "Open", "payload": {"owner": "ann"}}),
        json!({"type": "Deposit", "payload": {"amount": 100}}),
        json!({"type": "Withdraw", "payload": {"amount": 30}}),
    ] {
        expect(
            server.command(&token, "acme", "account", "42", body).await,
            StatusCode::OK,
        )
        .await;
    }
    let plugins_before = expect(server.get("/t/acme/plugins", &token).await, StatusCode::OK).await;

    if crash {
        server.crash_restart().await;
    } else {
        server.restart().await;
    }

    let plugins_after = expect(server.get("/t/acme/plugins", &token).await, StatusCode::OK).await;
    assert_eq!(plugins_after, plugins_before);
    let state = expect(
        server.get("/t/acme/aggregates/account/42", &token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(state["version"], 3);
    assert_eq!(state["state"]["balance"], 70);
    assert_eq!(state["state"]["owner"], "ann");
    let after = expect(
        server
            .command(
                &token,
                "acme",
                "account",
                "42",
                json!({"type": "Deposit", "payload": {"amount": 5}}),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(after["version"], 4);
    assert_eq!(after["position"], 4, "positions continue after a restart");
    let state = expect(
        server.get("/t/acme/aggregates/account/42", &token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(state["state"]["balance"], 75);
    // The operator token (from the environment) and tenant list survive too.
    let list = expect(
        server.get("/admin/tenants", server.admin()).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_graceful_restart_keeps_everything() {
    restart_keeps_everything(false).await;
}

#[tokio::test]
async fn a_kill_9_restart_keeps_everything() {
    restart_keeps_everything(true).await;
}

#[tokio::test]
async fn plugin_listing_shape() {
    let server = Server::start().await;
    let token = server.tenant_with_account("acme").await;
    let up = server
        .upload(&token, "acme", "daily-totals", plugin_bytes("daily-totals"))
        .await;
    let up = expect(up, StatusCode::CREATED).await;
    assert_eq!(up["kind"], "projection");

    let list = expect(server.get("/t/acme/plugins", &token).await, StatusCode::OK).await;
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), 2);
    let account = list
        .iter()
        .find(|p| p["name"] == "account")
        .expect("account listed");
    assert_eq!(account["kind"], "aggregate");
    assert_eq!(account["active_version"], 1);
    let versions = account["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0]["version"], 1);
    assert!(
        versions[0]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(is_rfc3339(&versions[0]["uploaded_at"]), "{account}");
    let totals = list
        .iter()
        .find(|p| p["name"] == "daily-totals")
        .expect("listed");
    assert_eq!(totals["kind"], "projection");

    let one = expect(
        server.get("/t/acme/plugins/account", &token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(&one, account);
    let missing = server.get("/t/acme/plugins/nope", &token).await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn malformed_bodies_are_400_in_the_error_shape() {
    let server = Server::start().await;
    let token = server.tenant_with_account("acme").await;
    let raw = |path: &str, token: &str, body: &'static str| {
        server
            .http
            .post(server.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in ["{not json", "", "[1,2", "{\"type\": 5}"] {
        let resp = raw("/t/acme/aggregates/account/1/commands", &token, body)
            .await
            .unwrap();
        assert_error(resp, StatusCode::BAD_REQUEST, "invalid_body").await;
        let resp = raw("/t/acme/streams/s-1", &token, body).await.unwrap();
        assert_error(resp, StatusCode::BAD_REQUEST, "invalid_body").await;
        let resp = raw("/admin/tenants", server.admin(), body).await.unwrap();
        assert_error(resp, StatusCode::BAD_REQUEST, "invalid_body").await;
    }
    // A payload that is not an object.
    for payload in [json!(5), json!("Deposit"), json!([1, 2])] {
        let resp = server
            .command(
                &token,
                "acme",
                "account",
                "1",
                json!({"type": "Open", "payload": payload}),
            )
            .await;
        let (status, body) = body_of(resp).await;
        assert!(status.is_client_error(), "{status}: {body}");
        assert!(body["error"]["code"].is_string(), "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    // Nothing of it was written.
    let missing = server.get("/t/acme/streams/account-1", &token).await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;
    let log = expect(server.get("/t/acme/events", &token).await, StatusCode::OK).await;
    assert_eq!(log["head"], 0);
}

#[tokio::test]
async fn unknown_plugin_is_404() {
    let server = Server::start().await;
    let token = server.tenant_with_account("acme").await;
    let resp = server
        .command(
            &token,
            "acme",
            "nosuch",
            "1",
            json!({"type": "Open", "payload": {"owner": "x"}}),
        )
        .await;
    assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;
    let resp = server.get("/t/acme/aggregates/nosuch/1", &token).await;
    assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;
    // An empty stream of a known plugin is a 404 too.
    let resp = server.get("/t/acme/aggregates/account/1", &token).await;
    assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;
    // And an unknown tenant, for the operator.
    let resp = server.get("/t/nobody/plugins", server.admin()).await;
    assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_restart_loads_compiled_components_from_the_cache() {
    let mut server = Server::start().await;
    let token = server.tenant_with_account("acme").await;
    let artifacts = server.data_dir.path().join("artifacts");
    assert_eq!(
        std::fs::read_dir(&artifacts).unwrap().count(),
        1,
        "the compiled component is cached on disk"
    );
    server.crash_restart().await;
    let resp = server
        .command(
            &token,
            "acme",
            "account",
            "1",
            json!({"type": "Open", "payload": {"owner": "a"}}),
        )
        .await;
    expect(resp, StatusCode::OK).await;
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("cairn_components_compiled_total 0"),
        "not recompiled: {metrics}"
    );
    assert!(
        metrics.contains("cairn_components_loaded_from_cache_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_upload_of_bytes_compiled_before_a_restart_is_not_compiled_again() {
    let mut server = Server::start().await;
    server.tenant_with_account("acme").await;
    server.crash_restart().await;
    // Another tenant uploads the same bytes: the artifact on disk serves.
    server.tenant_with_account("globex").await;
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("cairn_components_compiled_total 0"),
        "not recompiled: {metrics}"
    );
}

#[tokio::test]
async fn operations_endpoints() {
    let server = Server::start().await;
    let ready = expect(server.get("/readyz", "").await, StatusCode::OK).await;
    assert_eq!(ready["status"], "ready");
    let metrics = server.metrics().await;
    assert!(metrics.contains("cairn_commands_total"));
    // `/openapi.json` is checked in tests/openapi.rs.
    assert_error(
        server.get("/no/such/thing", server.admin()).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

/// The group commit's counters: every append request is counted once, in the
/// transactions that carried it, with the time those took.
#[tokio::test]
async fn metrics_count_group_commits_and_the_appends_they_carry() {
    let server = Server::start().await;
    let token = server.tenant_with_account("acme").await;
    let counters = |metrics: &str| {
        let value = |name: &str| {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} "))?.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("{name} missing: {metrics}"))
        };
        (
            value("cairn_append_transactions_total"),
            value("cairn_append_requests_total"),
            value("cairn_append_transaction_seconds_total"),
        )
    };
    let (transactions_before, requests_before, _) = counters(&server.metrics().await);
    expect(
        server
            .command(
                &token,
                "acme",
                "account",
                "1",
                json!({"type": "Open", "payload": {"owner": "ann"}}),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    // Ten deposits at once: each is one append request, however they are batched.
    let deposits = (0..10).map(|_| {
        server.command(
            &token,
            "acme",
            "account",
            "1",
            json!({"type": "Deposit", "payload": {"amount": 1}}),
        )
    });
    for answer in futures::future::join_all(deposits).await {
        expect(answer, StatusCode::OK).await;
    }
    let (transactions, requests, seconds) = counters(&server.metrics().await);
    assert_eq!(requests - requests_before, 11.0, "one request per command");
    let committed = transactions - transactions_before;
    assert!(
        (1.0..=11.0).contains(&committed),
        "11 appends in 1 to 11 transactions, not {committed}"
    );
    assert!(seconds > 0.0, "commits take time: {seconds}");
}

/// `--log-format json` writes one JSON object per line on stderr, with a request line
/// for every request: method, route pattern, status, latency, tenant and request id.
#[test]
fn json_logs_carry_a_line_per_request_with_its_route_status_and_request_id() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data.path())
        .env("CAIRN_ADMIN_TOKEN", "op")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let address = line
        .trim()
        .trim_start_matches("cairn listening on http://")
        .to_owned();
    let mut socket = std::net::TcpStream::connect(&address).unwrap();
    write!(
        socket,
        "GET /t/acme/streams/s-1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer op\r\n\
         x-request-id: logged-1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    // Stop the server so its stderr ends, then read every line of it.
    // SAFETY: kill has no memory preconditions; the pid is our own child, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    child.wait().unwrap();
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["backend"] == "sqlite"),
        "start-up names the backend: {logs}"
    );
    let request = lines
        .iter()
        .find(|l| l["message"] == "request" && l["request_id"] == "logged-1")
        .unwrap_or_else(|| panic!("no request line: {logs}"));
    assert_eq!(request["method"], "GET", "{request}");
    assert_eq!(
        request["route"], "/t/{tenant}/streams/{stream}",
        "{request}"
    );
    assert_eq!(request["tenant"], "acme", "{request}");
    assert!(request["status"].as_u64().unwrap() >= 400, "{request}");
    assert!(request["latency_ms"].is_number(), "{request}");
    assert!(!logs.contains('\u{1b}'), "no colour codes off a terminal");
}

/// A command the aggregate cannot read (unknown type, payload that does not decode)
/// is the client's mistake, 400 `invalid_command`, not a domain rejection; the
/// corrected request may reuse its command id.
#[tokio::test]
async fn a_malformed_command_is_a_400_not_a_rejection() {
    let server = Server::start().await;
    let token = server.tenant_with_account("acme").await;
    let unknown = server
        .command(
            &token,
            "acme",
            "account",
            "1",
            json!({"type": "Teleport", "payload": {}, "command_id": "c-1"}),
        )
        .await;
    let body = assert_error(unknown, StatusCode::BAD_REQUEST, "invalid_command").await;
    assert!(
        body["message"].as_str().unwrap().contains("Teleport"),
        "{body}"
    );
    let undecodable = server
        .command(
            &token,
            "acme",
            "account",
            "1",
            json!({"type": "Open", "payload": {"owner": 5}}),
        )
        .await;
    assert_error(undecodable, StatusCode::BAD_REQUEST, "invalid_command").await;
    let fixed = server
        .command(
            &token,
            "acme",
            "account",
            "1",
            json!({"type": "Open", "payload": {"owner": "ann"}, "command_id": "c-1"}),
        )
        .await;
    assert_eq!(fixed.status(), StatusCode::OK);
}
