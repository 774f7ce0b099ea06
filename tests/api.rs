//! The foundation scenario, black-box: a new user's first hour against a real `cairn`
//! process (tenants, uploads, commands, a domain rejection, state, streams, auth,
//! junk uploads, a restart that keeps everything).

mod support;

use reqwest::StatusCode;
use serde_json::json;
use support::{Server, assert_error, json_of, plugin};

#[tokio::test]
async fn the_first_hour() {
    let mut server = Server::start().await;
    let (ok, body) = json_of(server.get("/healthz", "").await).await;
    assert_eq!(ok, StatusCode::OK, "{body}");

    // Tenants: created with a token; a duplicate is 409; a bad id is 400.
    let token = server.tenant("acme").await;
    assert!(token.starts_with("cairn_"));
    let (code, body) = json_of(
        server
            .post("/admin/tenants", &server.admin, json!({"id": "acme"}))
            .await,
    )
    .await;
    assert_error(code, &body, StatusCode::CONFLICT, "already_exists");
    for bad in ["Acme", "-acme", "a_b", ""] {
        let (code, body) = json_of(
            server
                .post("/admin/tenants", &server.admin, json!({"id": bad}))
                .await,
        )
        .await;
        assert_error(code, &body, StatusCode::BAD_REQUEST, "bad_request");
    }

    // Upload: 201 with kind and digest; the same bytes again are 200, same version.
    let (code, first) = json_of(
        server
            .upload("acme", &token, "account", plugin("account"))
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{first}");
    assert_eq!(first["kind"], "aggregate");
    assert_eq!(first["version"], 1);
    assert!(first["digest"].as_str().unwrap().starts_with("sha256:"));
    let (code, again) = json_of(
        server
            .upload("acme", &token, "account", plugin("account"))
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(again, first);

    // Junk and a core module are refused with what is wrong.
    let (code, body) = json_of(
        server
            .upload("acme", &token, "junk", b"not wasm at all".to_vec())
            .await,
    )
    .await;
    assert_error(
        code,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_plugin",
    );
    let (code, body) = json_of(
        server
            .upload("acme", &token, "core", b"\0asm\x01\0\0\0".to_vec())
            .await,
    )
    .await;
    assert_error(
        code,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_plugin",
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a component"),
        "{body}"
    );

    // The banking scenario.
    let cmd = |body| server.command("acme", &token, "account", "42", body);
    let (code, body) = cmd(json!({"type": "Open", "payload": {"owner": "ann"}})).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["stream_id"], "account-42");
    assert_eq!(body["version"], 1);
    let (code, body) = cmd(json!({"type": "Deposit", "payload": {"amount": 100}})).await;
    assert_eq!((code, body["version"].as_u64()), (StatusCode::OK, Some(2)));
    let (code, body) = cmd(json!({"type": "Withdraw", "payload": {"amount": 500}})).await;
    assert_error(code, &body, StatusCode::UNPROCESSABLE_ENTITY, "rejected");
    assert_eq!(body["error"]["domain_code"], "insufficient_funds");
    let (code, body) = cmd(json!({"type": "Withdraw", "payload": {"amount": 30}})).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 3, "the rejected command wrote nothing");
    assert_eq!(body["events"][0]["type"], "Withdrawn");
    assert_eq!(body["events"][0]["data"], json!({"amount": 30}));

    let (code, state) = json_of(server.get("/t/acme/aggregates/account/42", &token).await).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(state["version"], 3);
    assert_eq!(state["state"]["balance"], 70);
    assert_eq!(state["state"]["owner"], "ann");

    let (code, stream) = json_of(server.get("/t/acme/streams/account-42", &token).await).await;
    assert_eq!(code, StatusCode::OK);
    let events = stream["events"].as_array().unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Opened", "Deposited", "Withdrawn"]);
    let positions: Vec<_> = events
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, [1, 2, 3]);
    assert!(events[0]["recorded_at"].as_str().unwrap().ends_with('Z'));

    // Auth: a second tenant's token is 403, a wrong token and none are 401, a tenant
    // token on /admin is 403.
    let other = server.tenant("other").await;
    let (code, body) = json_of(server.get("/t/acme/aggregates/account/42", &other).await).await;
    assert_error(code, &body, StatusCode::FORBIDDEN, "forbidden");
    let (code, body) = json_of(
        server
            .get("/t/acme/aggregates/account/42", "cairn_nope")
            .await,
    )
    .await;
    assert_error(code, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (code, body) = json_of(
        server
            .http
            .get(server.url("/t/acme/events"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(code, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (code, body) = json_of(server.get("/admin/tenants", &token).await).await;
    assert_error(code, &body, StatusCode::FORBIDDEN, "forbidden");

    // Bad requests answer in the error shape.
    let response = server
        .http
        .post(server.url("/t/acme/aggregates/account/42/commands"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (code, body) = json_of(response).await;
    assert_error(code, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (code, body) = cmd(json!({"type": "Deposit", "payload": [1, 2]})).await;
    assert_error(code, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (code, body) = server
        .command("acme", &token, "nothing", "1", json!({"type": "X"}))
        .await;
    assert_error(code, &body, StatusCode::NOT_FOUND, "not_found");
    let (code, body) = json_of(server.get("/t/acme/streams/account-999", &token).await).await;
    assert_error(code, &body, StatusCode::NOT_FOUND, "not_found");

    // Listing.
    let (code, list) = json_of(server.get("/t/acme/plugins", &token).await).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list[0]["name"], "account");
    assert_eq!(list[0]["kind"], "aggregate");
    assert_eq!(list[0]["active_version"], 1);
    assert_eq!(list[0]["versions"][0]["digest"], first["digest"]);

    // A restart on the same data directory keeps everything.
    server.restart().await;
    let (code, body) = server
        .command(
            "acme",
            &token,
            "account",
            "42",
            json!({"type": "Deposit", "payload": {"amount": 5}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 4);
    let (_, state) = json_of(server.get("/t/acme/aggregates/account/42", &token).await).await;
    assert_eq!(state["state"]["balance"], 75);
    let (code, _) = json_of(server.get("/t/acme/aggregates/account/42", &other).await).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "tokens survive the restart");
}

#[tokio::test]
async fn a_restart_loads_compiled_components_from_the_cache() {
    let mut server = Server::start().await;
    let token = server.tenant("acme").await;
    assert_eq!(
        server
            .upload("acme", &token, "account", plugin("account"))
            .await
            .status(),
        201
    );
    let artifacts = server.data_dir.path().join("artifacts");
    let files: Vec<_> = std::fs::read_dir(&artifacts).unwrap().collect();
    assert_eq!(files.len(), 1, "the compiled component is cached on disk");
    server.restart().await;
    let (code, body) = server
        .command(
            "acme",
            &token,
            "account",
            "1",
            json!({"type": "Open", "payload": {"owner": "a"}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(std::fs::read_dir(&artifacts).unwrap().count(), 1);
    let metrics = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
async fn operations_endpoints() {
    let server = Server::start().await;
    let (code, ready) = json_of(server.get("/readyz", "").await).await;
    assert_eq!(
        (code, ready["status"].as_str()),
        (StatusCode::OK, Some("ready"))
    );
    let metrics = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("cairn_commands_total"));
    let (code, openapi) = json_of(server.get("/openapi.json", "").await).await;
    assert_eq!(code, StatusCode::OK);
    // Every route in the document answers something other than "no such route".
    for path in openapi["paths"].as_object().unwrap().keys() {
        let concrete = path
            .replace("{tenant}", "acme")
            .replace("{name}", "p")
            .replace("{id}", "1")
            .replace("{stream}", "s")
            .replace("{key}", "k");
        let method = openapi["paths"][path]
            .as_object()
            .unwrap()
            .keys()
            .next()
            .unwrap()
            .to_uppercase();
        let (_, body) = json_of(
            server
                .send(method.parse().unwrap(), &concrete, &server.admin, None)
                .await,
        )
        .await;
        assert_ne!(body["error"]["message"], "no such route", "{method} {path}");
    }
    let (code, body) = json_of(server.get("/no/such/thing", &server.admin).await).await;
    assert_error(code, &body, StatusCode::NOT_FOUND, "not_found");
}
