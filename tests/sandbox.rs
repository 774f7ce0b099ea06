//! The sandbox against a corpus of real hostile components (hostile/): each attack
//! answers a clear error, writes nothing, leaves the host serving, and a neighbour
//! tenant's commands keep completing meanwhile. Also per-tenant limits and usage.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use common::{Server, assert_error_body, body_of, hostile_bytes, plugin_bytes};
use reqwest::StatusCode;
use serde_json::json;

async fn version_of(server: &Server, tenant: &str, token: &str, stream: &str) -> u64 {
    let (code, body) = body_of(
        server
            .get(
                &format!("/t/{tenant}/streams/{stream}?direction=backward&limit=1"),
                token,
            )
            .await,
    )
    .await;
    if code == StatusCode::NOT_FOUND {
        return 0;
    }
    body["events"][0]["version"].as_u64().unwrap()
}

#[tokio::test]
async fn hostile_aggregate_corpus_is_contained() {
    let server = Arc::new(Server::start().await);
    // A small memory limit, so the bomb reaches it long before its time budget even
    // on a loaded machine.
    let evil = server
        .create_tenant_with("evil", json!({"memory_bytes": 24 << 20}))
        .await;
    let good = server.create_tenant("good").await;
    assert_eq!(
        server
            .upload(&evil, "evil", "h", hostile_bytes("aggregate"))
            .await
            .status(),
        201
    );
    assert_eq!(
        server
            .upload(&good, "good", "account", plugin_bytes("account"))
            .await
            .status(),
        201
    );
    let (code, _) = server
        .command_answer(
            &good,
            "good",
            "account",
            "1",
            json!({"type": "Open", "payload": {"owner": "n"}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK);

    // The neighbour works the whole time; its latencies are reported at the end.
    let stop = Arc::new(AtomicBool::new(false));
    let neighbour = {
        let (server, good, stop) = (server.clone(), good.clone(), stop.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let (code, body) = server
                    .command_answer(
                        &good,
                        "good",
                        "account",
                        "1",
                        json!({"type": "Deposit", "payload": {"amount": 1}}),
                    )
                    .await;
                assert_eq!(code, StatusCode::OK, "the neighbour failed: {body}");
                latencies.push(sent.elapsed());
            }
            latencies
        })
    };

    let (code, _) = server
        .command_answer(&evil, "evil", "h", "1", json!({"type": "Ok"}))
        .await;
    assert_eq!(code, StatusCode::OK);
    // A million events exhaust the guest's memory first, or its time on a busy machine.
    for (attack, reasons) in [
        ("Loop", &["deadline"][..]),
        ("Bomb", &["memory"]),
        ("Recurse", &["trap"]),
        ("Panic", &["trap"]),
        ("Flood", &["memory", "deadline"]),
        // Sleeping spends no CPU budget; the call's wall-time bound stops it.
        ("Sleep", &["deadline"]),
        // decide's output obeys what a raw append must: the body limit, printable types.
        ("Huge", &["invalid_output"]),
        ("BadType", &["invalid_output"]),
    ] {
        let (code, body) = server
            .command_answer(&evil, "evil", "h", "1", json!({"type": attack}))
            .await;
        assert_error_body(
            code,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "plugin_failed",
        );
        let reason = body["error"]["reason"].as_str().unwrap_or_default();
        assert!(reasons.contains(&reason), "{attack}: {body}");
        assert_eq!(
            version_of(&server, "evil", &evil, "h-1").await,
            1,
            "{attack} wrote nothing"
        );
    }
    let (_, body) = server
        .command_answer(&evil, "evil", "h", "1", json!({"type": "Sleep"}))
        .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wall-time limit of 1000 ms"),
        "{body}"
    );
    // The panic message reaches the caller and the plugin's logs.
    let (_, body) = server
        .command_answer(&evil, "evil", "h", "1", json!({"type": "Panic"}))
        .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("panicked on purpose"),
        "{body}"
    );
    let (_, logs) = body_of(server.get("/t/evil/plugins/h/logs", &evil).await).await;
    assert!(
        logs["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("panicked on purpose")),
        "{logs}"
    );
    // Files and sockets do not exist inside the sandbox: the plugin sees an error.
    for attack in ["OpenFile", "Connect"] {
        let (code, body) = server
            .command_answer(&evil, "evil", "h", "1", json!({"type": attack}))
            .await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{attack}: {body}");
        assert_eq!(
            body["error"]["domain_code"], "sandboxed",
            "{attack}: {body}"
        );
    }
    // A poisoned stream: evolve loops on it, every later command is refused cleanly.
    let (code, _) = server
        .command_answer(&evil, "evil", "h", "2", json!({"type": "Poison"}))
        .await;
    assert_eq!(code, StatusCode::OK);
    let (code, body) = server
        .command_answer(&evil, "evil", "h", "2", json!({"type": "Ok"}))
        .await;
    assert_error_body(
        code,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "plugin_failed",
    );
    assert_eq!(body["error"]["reason"], "deadline");
    assert_eq!(version_of(&server, "evil", &evil, "h-2").await, 1);

    stop.store(true, Ordering::Relaxed);
    let mut latencies = neighbour.await.unwrap();
    latencies.sort();
    assert!(
        !latencies.is_empty(),
        "the neighbour completed commands meanwhile"
    );
    eprintln!(
        "neighbour during the corpus: {} commands, p50 {:?}, max {:?}",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies.last().unwrap()
    );
    // The host still serves, and the usage shows what happened.
    let (code, tenant) = body_of(server.get("/admin/tenants/evil", server.admin()).await).await;
    assert_eq!(code, StatusCode::OK);
    let usage = &tenant["usage"];
    assert!(usage["deadline_hits"].as_u64().unwrap() >= 2, "{usage}");
    assert!(usage["memory_hits"].as_u64().unwrap() >= 1, "{usage}");
    assert!(usage["traps"].as_u64().unwrap() >= 3, "{usage}");
    assert!(usage["plugin_calls"].as_u64().unwrap() >= 10, "{usage}");
    let metrics_as = async |token: Option<&str>| {
        let mut request = server.http.get(server.url("/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().text().await.unwrap()
    };
    let metrics = metrics_as(Some(server.admin())).await;
    assert!(
        metrics.contains("cairn_tenant_limit_hits_total{tenant=\"evil\"}"),
        "{metrics}"
    );
    // Tenant ids are the operator's to see: without its token, or with a tenant's,
    // /metrics shows the host-wide counters only.
    for token in [None, Some(evil.as_str())] {
        let metrics = metrics_as(token).await;
        assert!(metrics.contains("cairn_commands_total"), "{metrics}");
        assert!(!metrics.contains("tenant=\""), "{metrics}");
    }
}

/// The host reuses instance slots, and where the kernel allows it keeps a freed
/// slot's pages mapped, putting them back to their first contents in place. Whatever
/// way a slot is reset, no call may see what an earlier call wrote in its memory.
#[tokio::test]
async fn no_call_sees_the_memory_an_earlier_call_wrote() {
    let server = Server::start().await;
    let token = server.create_tenant("acme").await;
    assert_eq!(
        server
            .upload(&token, "acme", "h", hostile_bytes("aggregate"))
            .await
            .status(),
        201
    );
    for i in 0..40 {
        // The same stream again and again, and new streams: slots are reused either way.
        let id = if i % 2 == 0 {
            "same".to_owned()
        } else {
            format!("s{i}")
        };
        let (code, body) = server
            .command_answer(
                &token,
                "acme",
                "h",
                &id,
                json!({"type": "Snoop", "payload": {}}),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert_eq!(body["events"][0]["type"], "Pristine", "call {i}: {body}");
    }
}

#[tokio::test]
async fn components_that_import_unknown_interfaces_are_refused_at_upload() {
    let server = Server::start().await;
    let token = server.create_tenant("acme").await;
    let (code, body) = body_of(
        server
            .upload(&token, "acme", "bad", hostile_bytes("bad-import"))
            .await,
    )
    .await;
    assert_error_body(
        code,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_plugin",
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("evil:host/backdoor"),
        "{body}"
    );
    let (code, _) = body_of(server.get("/t/acme/plugins/bad", &token).await).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "nothing was recorded");
}

#[tokio::test]
async fn limits_are_enforced_per_tenant() {
    let server = Server::start().await;
    // Bad limit values are a 400.
    for limits in [
        json!({"memory_bytes": 0}),
        json!({"call_timeout_ms": "fast"}),
        json!({"nonsense": 1}),
    ] {
        let (code, body) = body_of(
            server
                .post(
                    "/admin/tenants",
                    server.admin(),
                    json!({"id": "bad", "limits": limits}),
                )
                .await,
        )
        .await;
        assert_error_body(code, &body, StatusCode::BAD_REQUEST, "bad_request");
    }
    let (code, body) = body_of(
        server
            .post(
                "/admin/tenants",
                server.admin(),
                json!({"id": "small", "limits": {"max_plugin_bytes": 65536, "commands_per_second": 2, "max_body_bytes": 2048}}),
            )
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    // A plugin over the tenant's size limit: 413, refused on its declared length.
    let (code, body) = body_of(
        server
            .upload(&token, "small", "account", plugin_bytes("account"))
            .await,
    )
    .await;
    assert_error_body(code, &body, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    // Raise the limit through the admin API, then the same upload works.
    let (code, body) = body_of(
        server
            .send(
                reqwest::Method::PATCH,
                "/admin/tenants/small",
                server.admin(),
                Some(json!({"limits": {"max_plugin_bytes": 16777216}})),
            )
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(
        body["limits"]["commands_per_second"], 2,
        "other limits kept"
    );
    assert_eq!(
        server
            .upload(&token, "small", "account", plugin_bytes("account"))
            .await
            .status(),
        201
    );
    // A body over the tenant's body limit.
    let big = "x".repeat(4096);
    let (code, body) = server
        .command_answer(
            &token,
            "small",
            "account",
            "1",
            json!({"type": "Open", "payload": {"owner": big}}),
        )
        .await;
    assert_error_body(code, &body, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    // The command rate: a burst beyond 2 per second meets 429.
    let mut over = 0;
    for _ in 0..6 {
        let (code, body) = server
            .command_answer(
                &token,
                "small",
                "account",
                "1",
                json!({"type": "Open", "payload": {"owner": "x"}}),
            )
            .await;
        if code == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["error"]["code"], "over_limit");
            over += 1;
        }
    }
    assert!(over >= 3, "{over} of 6 commands were limited");
}

#[tokio::test]
async fn a_huge_upload_is_refused_before_it_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start().await;
    let token = server.create_tenant("acme").await;
    // Announce 200 MiB and send only the head: the answer must come from the header
    // alone. A raw socket, so that no client library insists on sending the body.
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "PUT /t/acme/plugins/huge HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/wasm\r\nContent-Length: {}\r\n\r\n",
        200u64 << 20
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&[0u8; 4096]).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), socket.read(&mut answer))
        .await
        .expect("an answer before the body was sent")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"too_large\""), "{answer}");
}

#[tokio::test]
async fn event_types_and_ids_must_be_printable() {
    let server = Server::start().await;
    let token = server.create_tenant("acme").await;
    for (bad_type, code_point) in [
        ("Bad\nType", "U+000A"),
        ("Nul\u{0}", "U+0000"),
        ("Esc\u{1b}[31m", "U+001B"),
        ("Rev\u{202e}ersed", "U+202E"),
    ] {
        let (code, body) = body_of(
            server
                .append(
                    &token,
                    "acme",
                    "s-1",
                    json!({"events": [{"type": bad_type, "data": {}}]}),
                )
                .await,
        )
        .await;
        assert_error_body(code, &body, StatusCode::BAD_REQUEST, "bad_request");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(code_point),
            "{body}"
        );
    }
    let (code, body) = body_of(
        server
            .append(
                &token,
                "acme",
                "s-1",
                json!({"events": [{"type": "Fine", "event_id": "a\rb", "data": {}}]}),
            )
            .await,
    )
    .await;
    assert_error_body(code, &body, StatusCode::BAD_REQUEST, "bad_request");
    // Nothing was written; ordinary Unicode is fine.
    let (code, _) = body_of(
        server
            .append(
                &token,
                "acme",
                "s-1",
                json!({"events": [{"type": "Überweisung-erhalten", "data": {}}]}),
            )
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(version_of(&server, "acme", &token, "s-1").await, 1);
}

#[tokio::test]
async fn a_compile_past_its_time_limit_is_killed_and_refused() {
    let server = Server::start().await;
    let token = server
        .create_tenant_with("slow", json!({"compile_timeout_ms": 1}))
        .await;
    let (code, body) = body_of(
        server
            .upload(&token, "slow", "account", plugin_bytes("account"))
            .await,
    )
    .await;
    assert_error_body(
        code,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_plugin",
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("compiling took longer than its limit of 1 ms"),
        "{body}"
    );
    // Nothing was recorded, and the same bytes compile for a tenant with time to spare.
    let (_, plugins) = body_of(server.get("/t/slow/plugins", &token).await).await;
    assert_eq!(plugins, json!([]));
    let other = server.create_tenant("other").await;
    let (code, body) = body_of(
        server
            .upload(&other, "other", "account", plugin_bytes("account"))
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn appends_past_the_storage_quota_are_refused() {
    let server = Server::start().await;
    let token = server
        .create_tenant_with("small", json!({"max_stored_bytes": 4 << 20}))
        .await;
    let up = server
        .upload(&token, "small", "account", plugin_bytes("account"))
        .await;
    assert_eq!(up.status(), 201);
    // Appends of 800 KiB fit until the quota (the plugin's bytes count too) is near.
    let blob =
        |kib: usize| json!({"events": [{"type": "Blob", "data": {"x": "a".repeat(kib << 10)}}]});
    let fill = |kib: usize| {
        let server = &server;
        let token = token.clone();
        async move {
            for n in 0.. {
                let stream = format!("blob-{kib}-{n}");
                let (code, body) =
                    body_of(server.append(&token, "small", &stream, blob(kib)).await).await;
                if code != StatusCode::OK {
                    assert_error_body(
                        code,
                        &body,
                        StatusCode::INSUFFICIENT_STORAGE,
                        "quota_exceeded",
                    );
                    assert_eq!(body["error"]["max_stored_bytes"], 4 << 20, "{body}");
                    // Nothing of the refused append was written.
                    assert_eq!(version_of(server, "small", &token, &stream).await, 0);
                    return n;
                }
            }
            unreachable!()
        }
    };
    assert!(fill(800).await >= 2, "the quota refused appends that fit");
    // Then small ones until less than 50 KiB is left.
    fill(50).await;
    // Commands are appends too.
    let (code, body) = server
        .command_answer(
            &token,
            "small",
            "account",
            "1",
            json!({"type": "Open", "payload": {"owner": "o".repeat(100 << 10)}}),
        )
        .await;
    assert_error_body(
        code,
        &body,
        StatusCode::INSUFFICIENT_STORAGE,
        "quota_exceeded",
    );
    assert_eq!(version_of(&server, "small", &token, "account-1").await, 0);
}
