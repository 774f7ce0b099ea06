//! Containment under a determined attacker: one tenant attacks on every front at once
//! with components written straight against `wit/cairn.wit` (`hostile/`), while a
//! neighbour tenant keeps running commands and read-your-writes. The neighbour must
//! never fail, and every refusal must be a clear error charged to the attacker.
//! Also the storage quotas that cover more than events: documents and plugins.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Runs deposits and read-your-writes for `good` until `stop`; returns how many
/// rounds succeeded, and panics on the first failure.
async fn neighbour(server: Arc<Server>, good: String, stop: Arc<AtomicBool>) -> u64 {
    let mut rounds = 0;
    while !stop.load(Ordering::Relaxed) {
        let (code, body) = server
            .command_answer(
                &good,
                "good",
                "account",
                "1",
                json!({"type": "Deposit", "payload": {"amount": 1}}),
            )
            .await;
        assert_eq!(
            code,
            StatusCode::OK,
            "the neighbour's command failed: {body}"
        );
        let position = body["position"].as_u64().unwrap();
        let (code, doc) = body_of(
            server
                .get(
                    &format!(
                        "/t/good/projections/balances/docs/account-1\
                         ?min_position={position}&timeout_ms=20000"
                    ),
                    &good,
                )
                .await,
        )
        .await;
        assert_eq!(code, StatusCode::OK, "the neighbour's read failed: {doc}");
        rounds += 1;
    }
    rounds
}

/// `n` copies of one command sent at once by the attacker; returns each answer.
async fn attack(
    server: &Arc<Server>,
    evil: &str,
    command: &str,
    n: usize,
) -> Vec<(StatusCode, Value)> {
    let calls = (0..n).map(|i| {
        let (server, evil) = (server.clone(), evil.to_owned());
        let command = command.to_owned();
        tokio::spawn(async move {
            server
                .command_answer(
                    &evil,
                    "evil",
                    "h",
                    &(i % 4).to_string(),
                    json!({"type": command}),
                )
                .await
        })
    });
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    answers
}

fn assert_refused(answers: &[(StatusCode, Value)], command: &str, reasons: &[&str]) {
    for (code, body) in answers {
        assert_error_body(
            *code,
            body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "plugin_failed",
        );
        let reason = body["error"]["reason"].as_str().unwrap_or_default();
        assert!(reasons.contains(&reason), "{command}: {body}");
    }
}

async fn usage(server: &Server, tenant: &str) -> Value {
    let (code, body) = body_of(
        server
            .get(&format!("/admin/tenants/{tenant}"), server.admin())
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body["usage"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attack_on_every_front_leaves_the_neighbour_serving() {
    let server = Arc::new(Server::start().await);
    let evil = server
        .create_tenant_with("evil", json!({"max_stored_bytes": 16 << 20}))
        .await;
    let good = server.create_tenant("good").await;
    let up = server
        .upload(&evil, "evil", "h", hostile_bytes("aggregate"))
        .await;
    assert_eq!(up.status(), 201);
    // Ten projections, active while the log is empty.
    for n in 0..10 {
        let up = server
            .upload(
                &evil,
                "evil",
                &format!("sleepy-{n}"),
                hostile_bytes("projection"),
            )
            .await;
        assert_eq!(up.status(), 201, "sleepy-{n}");
    }
    for plugin in ["account", "balances"] {
        let up = server
            .upload(&good, "good", plugin, plugin_bytes(plugin))
            .await;
        assert_eq!(up.status(), 201);
    }
    let (code, body) = server
        .command_answer(
            &good,
            "good",
            "account",
            "1",
            json!({"type": "Open", "payload": {"owner": "n"}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");

    let stop = Arc::new(AtomicBool::new(false));
    let neighbour = tokio::spawn(neighbour(server.clone(), good.clone(), stop.clone()));

    // Evil's projections sleep in every batch that holds this event; then evil asks
    // for a rebuild of each, more than a tenant may have building at once (a new
    // rebuild of the same projection replaces its pending one, so it takes distinct
    // projections to reach the cap).
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
    let mut rebuilds = Vec::new();
    for n in 0..10 {
        let path = format!("/t/evil/projections/sleepy-{n}/rebuild");
        let (code, body) = body_of(server.post(&path, &evil, json!({})).await).await;
        rebuilds.push((code, body));
    }
    let refused: Vec<_> = rebuilds
        .iter()
        .filter(|(code, _)| *code == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(
        !refused.is_empty(),
        "20 rebuilds were all accepted: {rebuilds:?}"
    );
    for (code, body) in &refused {
        assert_error_body(*code, body, StatusCode::TOO_MANY_REQUESTS, "over_limit");
    }

    // Calls that sleep in WASI, loop, and ask for memory, all at once: more than the
    // tenant's call slots and CPU turns.
    let (sleeps, loops, bombs) = tokio::join!(
        attack(&server, &evil, "Sleep", 24),
        attack(&server, &evil, "Loop", 24),
        attack(&server, &evil, "Bomb", 8),
    );
    assert_refused(&sleeps, "Sleep", &["deadline"]);
    assert_refused(&loops, "Loop", &["deadline"]);
    // Under this much contention a bomb may reach its wall-time bound (waiting for a
    // CPU turn counts) before its memory limit.
    assert_refused(&bombs, "Bomb", &["memory", "deadline"]);

    // Storage: appends until the quota refuses one, in the error shape, nothing written.
    let blob = json!({"events": [{"type": "Blob", "data": {"x": "a".repeat(900 << 10)}}]});
    let mut refused_at = None;
    for n in 0..40 {
        let (code, body) = body_of(
            server
                .append(&evil, "evil", &format!("blob-{n}"), blob.clone())
                .await,
        )
        .await;
        if code != StatusCode::OK {
            assert_error_body(
                code,
                &body,
                StatusCode::INSUFFICIENT_STORAGE,
                "quota_exceeded",
            );
            refused_at = Some(n);
            break;
        }
    }
    let refused_at = refused_at.expect("16 MiB of appends were never refused");
    let (code, body) = body_of(
        server
            .get(&format!("/t/evil/streams/blob-{refused_at}"), &evil)
            .await,
    )
    .await;
    assert_error_body(code, &body, StatusCode::NOT_FOUND, "not_found");

    stop.store(true, Ordering::Relaxed);
    let rounds = neighbour
        .await
        .expect("the neighbour failed during the attack");
    assert!(rounds > 0, "the neighbour completed no round");

    // Everything was charged to the attacker; nothing to the neighbour.
    let evil_usage = usage(&server, "evil").await;
    let hits = |counter: &str| evil_usage[counter].as_u64().unwrap();
    assert!(
        hits("deadline_hits") + hits("memory_hits") >= 56,
        "{evil_usage}"
    );
    let good_usage = usage(&server, "good").await;
    for counter in ["deadline_hits", "memory_hits", "traps"] {
        assert_eq!(
            good_usage[counter], 0,
            "{counter} charged to the neighbour: {good_usage}"
        );
    }
    let (_, status) = body_of(server.get("/t/good/projections/balances", &good).await).await;
    assert_eq!(status["versions"][0]["status"], "active", "{status}");
}

#[tokio::test]
async fn documents_and_plugins_count_toward_the_storage_quota() {
    let server = Server::start().await;
    let token = server
        .create_tenant_with(
            "small",
            json!({"max_stored_bytes": 8 << 20, "max_plugin_versions": 2}),
        )
        .await;
    let bytes = hostile_bytes("projection");
    let size = bytes.len() as u64;
    assert_eq!(
        server.upload(&token, "small", "docs", bytes).await.status(),
        201
    );

    // The upload and its compiled artifact are counted, and the parts add up.
    let counted = usage(&server, "small").await;
    let plugins = counted["stored"]["plugin_bytes"].as_u64().unwrap();
    assert!(plugins > size, "the artifact is not counted: {counted}");
    let parts: u64 = [
        "event_bytes",
        "document_bytes",
        "snapshot_bytes",
        "plugin_bytes",
    ]
    .iter()
    .map(|part| counted["stored"][part].as_u64().unwrap())
    .sum();
    assert_eq!(
        counted["bytes_stored"].as_u64().unwrap(),
        parts,
        "{counted}"
    );

    // Versions are limited too, before anything compiles.
    let (code, body) = body_of(
        server
            .upload(&token, "small", "account", plugin_bytes("account"))
            .await,
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let refused = server
        .upload(&token, "small", "account", plugin_bytes("account-v2"))
        .await;
    let body = assert_error(refused, StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded").await;
    assert_eq!(body["max_plugin_versions"], 2, "{body}");

    // Each `Big` event makes the projection write a document of 900 KiB: more than
    // the quota holds. The build stops with the quota's message instead of writing.
    let events: Vec<Value> = (0..12)
        .map(|_| json!({"type": "Big", "data": {}}))
        .collect();
    let (code, body) = body_of(
        server
            .append(&token, "small", "b-1", json!({"events": events}))
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let mut parked = Value::Null;
    for _ in 0..200 {
        let (_, status) = body_of(server.get("/t/small/projections/docs", &token).await).await;
        if status["versions"][0]["status"] == "failed" {
            parked = status;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let error = parked["versions"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("max_stored_bytes"),
        "not parked for its quota: {parked}"
    );
    let stored = usage(&server, "small").await["bytes_stored"]
        .as_u64()
        .unwrap();
    assert!(stored <= 8 << 20, "stored {stored} bytes past the quota");

    // The operator sees each tenant's storage in /metrics; nobody else sees tenants.
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
    assert!(
        text.contains("cairn_tenant_stored_bytes{tenant=\"small\"}"),
        "{text}"
    );
    assert!(
        text.contains("cairn_tenant_max_stored_bytes{tenant=\"small\"} 8388608"),
        "{text}"
    );
    let anonymous = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!anonymous.contains("small"), "{anonymous}");
}

#[tokio::test]
async fn an_upcasters_output_is_bounded_per_event_and_per_page() {
    let server = Server::start().await;
    let token = server.create_tenant("acme").await;
    let uploaded = server
        .upload(&token, "acme", "multiplier", hostile_bytes("upcaster"))
        .await;
    let body = expect(uploaded, StatusCode::CREATED).await;
    assert_eq!(body["status"], "active", "{body}");
    let boom = |copies: u32, bytes: u32| json!({"type": "Boom", "data": {"copies": copies, "bytes": bytes}});
    let read = |query: &'static str| {
        let server = &server;
        let token = token.clone();
        async move {
            body_of(
                server
                    .get(&format!("/t/acme/events?upcast=true&{query}"), &token)
                    .await,
            )
            .await
        }
    };

    // A few copies: served.
    expect(
        server
            .append(&token, "acme", "s-1", json!({"events": [boom(3, 0)]}))
            .await,
        StatusCode::OK,
    )
    .await;
    let (code, page) = read("after=0").await;
    assert_eq!(code, StatusCode::OK, "{page}");
    assert_eq!(page["events"].as_array().unwrap().len(), 3, "{page}");

    // One stored event asking for a thousand: refused, the tenant's error.
    expect(
        server
            .append(&token, "acme", "s-1", json!({"events": [boom(1000, 0)]}))
            .await,
        StatusCode::OK,
    )
    .await;
    let (code, body) = read("after=1").await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "plugin_failed", "{body}");
    assert_eq!(body["error"]["reason"], "invalid_output", "{body}");

    // Each within the per-event bound, but every copy keeps its source's 60 KB of
    // metadata: past the bytes a call may make, refused too (the guest's own work
    // stays small, so only the bound can refuse it).
    let padded: Vec<Value> = (0..10)
        .map(|_| {
            let mut event = boom(100, 0);
            event["metadata"] = json!({"pad": "m".repeat(60_000)});
            event
        })
        .collect();
    expect(
        server
            .append(&token, "acme", "s-2", json!({"events": padded}))
            .await,
        StatusCode::OK,
    )
    .await;
    let (code, body) = read("after=2&limit=1000").await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["reason"], "invalid_output", "{body}");
    // A smaller page of the same events is served.
    let (code, page) = read("after=2&limit=1").await;
    assert_eq!(code, StatusCode::OK, "{page}");
    assert_eq!(page["events"].as_array().unwrap().len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenants_uploads_compile_one_at_a_time_so_a_neighbour_is_not_queued_behind_them() {
    let server = Arc::new(Server::start().await);
    let busy = server.create_tenant("busy").await;
    let other = server.create_tenant("other").await;
    // Four different components (no compile is shared), uploaded at once by one tenant.
    let mut uploads = Vec::new();
    for name in ["account", "account-v2", "balances", "daily-totals"] {
        let server = server.clone();
        let busy = busy.clone();
        uploads.push(tokio::spawn(async move {
            let resp = server.upload(&busy, "busy", name, plugin_bytes(name)).await;
            expect(resp, StatusCode::CREATED).await;
            std::time::Instant::now()
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let resp = server
        .upload(&other, "other", "balances-v2", plugin_bytes("balances-v2"))
        .await;
    expect(resp, StatusCode::CREATED).await;
    let neighbour_done = std::time::Instant::now();
    let mut busy_done = Vec::new();
    for upload in uploads {
        busy_done.push(upload.await.unwrap());
    }
    busy_done.sort();
    // The neighbour's compile took the host's free slot at once: it was not queued
    // behind the busy tenant's later uploads, which wait for that tenant's own turn.
    assert!(
        neighbour_done < busy_done[3],
        "the neighbour's upload finished after all four of the busy tenant's"
    );
}

#[tokio::test]
async fn every_refusal_is_charged_to_the_tenant() {
    let server = Server::start().await;
    let token = server
        .create_tenant_with("acme", json!({"max_stored_bytes": 1 << 20}))
        .await;
    // A write past the quota, an unusable upload: each refused and counted.
    let big = json!({"events": [{"type": "A", "data": {"pad": "x".repeat(600_000)}}]});
    expect(
        server.append(&token, "acme", "s-1", big.clone()).await,
        StatusCode::OK,
    )
    .await;
    assert_error(
        server.append(&token, "acme", "s-1", big).await,
        StatusCode::INSUFFICIENT_STORAGE,
        "quota_exceeded",
    )
    .await;
    assert_error(
        server
            .upload(&token, "acme", "junk", b"not wasm".to_vec())
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_plugin",
    )
    .await;
    let usage = usage(&server, "acme").await;
    assert_eq!(usage["quota_refused"], 1, "{usage}");
    assert_eq!(usage["uploads_refused"], 1, "{usage}");
    let metrics = server
        .http
        .get(server.url("/metrics"))
        .bearer_auth(server.admin())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "cairn_tenant_quota_refused_total{tenant=\"acme\"} 1",
        "cairn_tenant_uploads_refused_total{tenant=\"acme\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} not in /metrics");
    }
}

/// A tenant's requests past its `requests_per_second`, on any route (an unknown one
/// here, answered 404 when admitted), are refused 429 with `Retry-After` and charged to
/// it; its neighbour and requests without its token are not affected.
#[tokio::test]
async fn a_tenants_requests_are_limited_on_every_route_and_charged() {
    let server = Server::start().await;
    let noisy = server
        .create_tenant_with("noisy", json!({"requests_per_second": 1}))
        .await;
    let good = server.create_tenant("good").await;
    let mut refused = 0u64;
    let started = std::time::Instant::now();
    for _ in 0..30 {
        let resp = server.get("/t/noisy/no-such-route", &noisy).await;
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry = resp.headers().get("retry-after").cloned();
            let body = assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "over_limit").await;
            assert_eq!(body["limit"], "requests_per_second", "{body}");
            assert_eq!(body["requests_per_second"], 1, "{body}");
            assert!(retry.is_some(), "a 429 without Retry-After");
            refused += 1;
        } else {
            assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;
        }
    }
    // One request of burst, then one a second.
    let admitted_at_most = 2 + started.elapsed().as_secs();
    assert!(
        refused + admitted_at_most >= 30,
        "only {refused} of 30 requests refused"
    );
    // Without the tenant's token, a request is not the tenant's: answered for what it is.
    assert_error(
        server.get("/t/noisy/plugins", "not-a-token").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    expect(server.get("/t/good/plugins", &good).await, StatusCode::OK).await;
    let usage = usage(&server, "noisy").await;
    assert_eq!(usage["requests"], 30, "{usage}");
    assert_eq!(usage["requests_rate_limited"], refused, "{usage}");
    let metrics = operator_metrics(&server).await;
    let series = format!("cairn_tenant_requests_rate_limited_total{{tenant=\"noisy\"}} {refused}");
    assert!(metrics.contains(&series), "{series} not in /metrics");
}

/// Slow clients of one tenant (bodies dripping) hold at most its
/// `max_concurrent_requests` (and `max_concurrent_imports`): one more is refused at
/// once, a neighbour is served, and the places come back when the clients go.
#[tokio::test]
async fn a_tenants_slow_requests_hold_only_its_share_of_connections() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start().await;
    let noisy = server
        .create_tenant_with("noisy", json!({"max_concurrent_requests": 3}))
        .await;
    let importer = server
        .create_tenant_with("importer", json!({"max_concurrent_imports": 1}))
        .await;
    let good = server.create_tenant("good").await;
    let address = server.base.strip_prefix("http://").unwrap().to_owned();
    // A request whose head arrives and whose body never finishes.
    let drip = |path: &'static str, token: &str| {
        let (address, token) = (address.clone(), token.to_owned());
        async move {
            let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
            let head = format!(
                "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
                 content-type: application/json\r\ncontent-length: 100000\r\n\r\n{{"
            );
            socket.write_all(head.as_bytes()).await.unwrap();
            socket
        }
    };
    let held = vec![
        drip("/t/noisy/import", &noisy).await,
        drip("/t/noisy/streams/s-1", &noisy).await,
        drip("/t/noisy/streams/s-2", &noisy).await,
    ];
    // Each drip admitted before anything else is asked (a request sent meanwhile could
    // take a place first).
    admitted(&server, "noisy", 3).await;
    let busy = refused_naming(
        &server,
        &noisy,
        "/t/noisy/plugins",
        "max_concurrent_requests",
    )
    .await;
    assert!(busy, "a fourth request was not refused");
    expect(server.get("/t/good/plugins", &good).await, StatusCode::OK).await;
    // Imports have a bound of their own, below the requests'.
    let import = drip("/t/importer/import", &importer).await;
    admitted(&server, "importer", 1).await;
    let refused = refused_naming(
        &server,
        &importer,
        "/t/importer/import",
        "max_concurrent_imports",
    )
    .await;
    assert!(refused, "a second import was not refused");
    drop(held);
    drop(import);
    let mut served = false;
    for _ in 0..100 {
        if server.get("/t/noisy/plugins", &noisy).await.status() == StatusCode::OK {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(served, "the places did not come back when the clients went");
    let usage = usage(&server, "noisy").await;
    assert!(usage["requests_busy"].as_u64().unwrap() >= 1, "{usage}");
}

/// Waits until `tenant` has had `requests` requests admitted.
async fn admitted(server: &Server, tenant: &str, requests: u64) {
    for _ in 0..200 {
        let usage = usage(server, tenant).await;
        if usage["requests"] == requests {
            assert_eq!(usage["requests_busy"], 0, "{usage}");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{tenant}'s requests were not admitted");
}

/// Asks `path` (an import when it ends so) until it is refused 429 naming `limit`,
/// for up to five seconds.
async fn refused_naming(server: &Server, token: &str, path: &str, limit: &str) -> bool {
    for _ in 0..100 {
        let resp = if path.ends_with("/import") {
            server
                .http
                .post(server.url(path))
                .bearer_auth(token)
                .body("")
                .send()
                .await
                .unwrap()
        } else {
            server.get(path, token).await
        };
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            let body = assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "over_limit").await;
            if body["limit"] == limit {
                return true;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// A component whose one core module has `functions` functions, every one referenced
/// as a value (a declarative element segment): its instances' state grows 32 bytes per
/// function, past what the pool gives an instance once there are more than 32,768.
fn component_with_escaping_functions(functions: u32) -> Vec<u8> {
    use wasm_variant::wasm_encoder::{
        CodeSection, ElementSection, Elements, Function, FunctionSection, Module, ModuleSection,
        TypeSection,
    };
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut declared = FunctionSection::new();
    let mut code = CodeSection::new();
    for _ in 0..functions {
        declared.function(0);
        let mut body = Function::new([]);
        body.instructions().end();
        code.function(&body);
    }
    let indices: Vec<u32> = (0..functions).collect();
    let mut elements = ElementSection::new();
    elements.declared(Elements::Functions(indices.into()));
    let mut module = Module::new();
    module
        .section(&types)
        .section(&declared)
        .section(&elements)
        .section(&code);
    let mut component = wasm_variant::wasm_encoder::Component::new();
    component.section(&ModuleSection(&module));
    component.finish()
}

/// The value of one unlabelled series of `/metrics`.
fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

/// What the pool would refuse at link is refused before compiling: no compile starts,
/// and the error names the limit.
#[tokio::test]
async fn a_component_the_pool_cannot_hold_is_refused_before_it_compiles() {
    let server = Server::start().await;
    let token = server.create_tenant("acme").await;
    let before = server.metrics().await;
    let body = assert_error(
        server
            .upload(
                &token,
                "acme",
                "wide",
                component_with_escaping_functions(40_000),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_plugin",
    )
    .await;
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("40000 functions referenced as values") && message.contains("1048576"),
        "{body}"
    );
    let after = server.metrics().await;
    for name in [
        "cairn_components_compiles_started_total",
        "cairn_components_compiled_total",
    ] {
        assert_eq!(metric(&before, name), metric(&after, name), "{name} moved");
    }
    assert_eq!(usage(&server, "acme").await["uploads_refused"], 1);
}

/// Past its `compile_cpu_ms_per_hour`, a tenant's uploads are refused before
/// compiling, with `Retry-After`, and the compile CPU is in its usage.
#[tokio::test]
async fn a_tenants_compile_cpu_is_budgeted_per_hour() {
    let server = Server::start().await;
    let token = server
        .create_tenant_with("acme", json!({"compile_cpu_ms_per_hour": 1}))
        .await;
    expect(
        server
            .upload(&token, "acme", "account", plugin_bytes("account"))
            .await,
        StatusCode::CREATED,
    )
    .await;
    let resp = server
        .upload(&token, "acme", "balances", plugin_bytes("balances"))
        .await;
    assert!(resp.headers().contains_key("retry-after"), "no Retry-After");
    let body = assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "over_limit").await;
    assert_eq!(body["limit"], "compile_cpu_ms_per_hour", "{body}");
    let usage = usage(&server, "acme").await;
    assert!(usage["compile_cpu_ms"].as_u64().unwrap() >= 1, "{usage}");
    assert_eq!(usage["compiles_refused"], 1, "{usage}");
    let metrics = operator_metrics(&server).await;
    assert!(
        metrics.contains("cairn_tenant_compiles_refused_total{tenant=\"acme\"} 1"),
        "not in /metrics"
    );
}

/// `/metrics` as the operator sees it, per-tenant series included.
async fn operator_metrics(server: &Server) -> String {
    let resp = server.get("/metrics", server.admin()).await;
    resp.text().await.unwrap()
}
