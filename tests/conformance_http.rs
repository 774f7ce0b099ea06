//! The store and command semantics over HTTP, run on both backends: each scenario
//! runs once on SQLite and once on PostgreSQL (a fresh database per test).

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Server, assert_error, json_of, plugin};

macro_rules! on_every_backend {
    ($name:ident, $scenario:ident $(, $arg:expr)*) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let server = super::Server::start_with(&[$($arg),*]).await;
                super::$scenario(std::sync::Arc::new(server)).await;
            }
            #[tokio::test]
            async fn postgres() {
                let (url, name) = super::support::postgres_database().await;
                let server = super::Server::start_with(&["--database", &url $(, $arg)*]).await;
                super::$scenario(std::sync::Arc::new(server)).await;
                super::support::drop_database(&name).await;
            }
        }
    };
}

async fn append(server: &Server, token: &str, stream: &str, body: Value) -> (StatusCode, Value) {
    json_of(
        server
            .post(&format!("/t/acme/streams/{stream}"), token, body)
            .await,
    )
    .await
}

fn events(ids: &[&str]) -> Value {
    Value::Array(
        ids.iter()
            .map(|id| json!({"event_id": id, "type": "Happened", "data": {"id": id}}))
            .collect(),
    )
}

async fn head(server: &Server, token: &str) -> u64 {
    let (_, log) = json_of(server.get("/t/acme/events?limit=1", token).await).await;
    log["head"].as_u64().unwrap()
}

async fn expected_versions_and_idempotency(server: Arc<Server>) {
    let token = server.tenant("acme").await;
    let (code, body) = append(
        &server,
        &token,
        "s",
        json!({"expected_version": "stream_exists", "events": events(&["a"])}),
    )
    .await;
    assert_error(code, &body, StatusCode::CONFLICT, "wrong_expected_version");
    assert_eq!(body["error"]["current_version"], 0);
    let (code, first) = append(
        &server,
        &token,
        "s",
        json!({"expected_version": "no_stream", "events": events(&["a", "b"])}),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{first}");
    assert_eq!(
        first,
        json!({"first_version": 1, "last_version": 2, "first_position": 1, "last_position": 2})
    );
    let (code, body) = append(
        &server,
        &token,
        "s",
        json!({"expected_version": "no_stream", "events": events(&["c"])}),
    )
    .await;
    assert_error(code, &body, StatusCode::CONFLICT, "wrong_expected_version");
    assert_eq!(body["error"]["current_version"], 2);
    let (code, _) = append(
        &server,
        &token,
        "s",
        json!({"expected_version": 2, "events": events(&["c"])}),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (code, body) = append(
        &server,
        &token,
        "s",
        json!({"expected_version": 2, "events": events(&["d"])}),
    )
    .await;
    assert_error(code, &body, StatusCode::CONFLICT, "wrong_expected_version");
    assert_eq!(body["error"]["current_version"], 3);
    let (code, _) = append(
        &server,
        &token,
        "s",
        json!({"expected_version": "stream_exists", "events": events(&["d"])}),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = append(
        &server,
        &token,
        "s",
        json!({"expected_version": "any", "events": events(&["e"])}),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    // Ids are generated when absent.
    let (code, _) = append(
        &server,
        &token,
        "s",
        json!({"events": [{"type": "NoId", "data": {}}]}),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    // The same ids at the same place: the original positions, nothing written.
    let before = head(&server, &token).await;
    let (code, retry) = append(
        &server,
        &token,
        "s",
        json!({"expected_version": "no_stream", "events": events(&["a", "b"])}),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{retry}");
    assert_eq!(retry, first);
    assert_eq!(head(&server, &token).await, before);
    // Ids that only partly match.
    let (code, body) = append(&server, &token, "s", json!({"events": events(&["b", "z"])})).await;
    assert_error(code, &body, StatusCode::CONFLICT, "idempotency_conflict");
    assert_eq!(
        head(&server, &token).await,
        before,
        "a refused append writes nothing"
    );
    // Malformed input.
    let response = server
        .http
        .post(server.url("/t/acme/streams/s"))
        .bearer_auth(&token)
        .body("{\"events\": [")
        .send()
        .await
        .unwrap();
    let (code, body) = json_of(response).await;
    assert_error(code, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (code, body) = append(
        &server,
        &token,
        "s",
        json!({"expected_version": "sometimes", "events": events(&["q"])}),
    )
    .await;
    assert_error(code, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (code, body) = append(&server, &token, "s", json!({"events": []})).await;
    assert_error(code, &body, StatusCode::BAD_REQUEST, "bad_request");
}
on_every_backend!(appends, expected_versions_and_idempotency);

async fn reads_and_the_log(server: Arc<Server>) {
    let token = server.tenant("acme").await;
    let other = server.tenant("other").await;
    let ids: Vec<String> = (1..=7).map(|i| format!("e{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let kind = if i % 2 == 0 { "Even" } else { "Odd" };
        let (code, _) = append(
            &server,
            &token,
            "s",
            json!({"events": [{"event_id": id, "type": kind, "data": {}}]}),
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        let (code, _) = json_of(
            server
                .post(
                    "/t/other/streams/x",
                    &other,
                    json!({"events": [{"type": "Theirs", "data": {}}]}),
                )
                .await,
        )
        .await;
        assert_eq!(code, StatusCode::OK);
    }
    let versions = |body: &Value| -> Vec<u64> {
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["version"].as_u64().unwrap())
            .collect()
    };
    let (_, page) = json_of(server.get("/t/acme/streams/s?from=1&limit=3", &token).await).await;
    assert_eq!(
        (versions(&page), page["next"].clone()),
        (vec![1, 2, 3], json!(4))
    );
    let (_, page) = json_of(server.get("/t/acme/streams/s?from=4&limit=4", &token).await).await;
    assert_eq!(
        (versions(&page), page["next"].clone()),
        (vec![4, 5, 6, 7], Value::Null)
    );
    let (_, back) = json_of(
        server
            .get("/t/acme/streams/s?direction=backward&limit=3", &token)
            .await,
    )
    .await;
    assert_eq!(
        (versions(&back), back["next"].clone()),
        (vec![7, 6, 5], json!(4))
    );
    let (code, body) = json_of(server.get("/t/acme/streams/nothing", &token).await).await;
    assert_error(code, &body, StatusCode::NOT_FOUND, "not_found");
    // The log: the tenant's own positions 1..7, in order, filtered by type.
    let (_, log) = json_of(server.get("/t/acme/events?after=2&limit=3", &token).await).await;
    let positions: Vec<u64> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, [3, 4, 5]);
    assert_eq!(log["head"], 7);
    let (_, odd) = json_of(server.get("/t/acme/events?types=Odd", &token).await).await;
    let positions: Vec<u64> = odd["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, [2, 4, 6]);
    let (_, theirs) = json_of(server.get("/t/other/events", &other).await).await;
    assert_eq!(
        theirs["events"][0]["position"], 1,
        "positions are per tenant"
    );
    assert_eq!(theirs["head"], 7);
}
on_every_backend!(reads, reads_and_the_log);

async fn command_semantics(server: Arc<Server>) {
    let token = server.tenant("acme").await;
    assert_eq!(
        server
            .upload("acme", &token, "account", plugin("account"))
            .await
            .status(),
        201
    );
    let cmd = |body: Value| {
        let (server, token) = (server.clone(), token.clone());
        async move { server.command("acme", &token, "account", "1", body).await }
    };
    let (code, opened) = cmd(json!({"type": "Open", "payload": {"owner": "ann"},
        "command_id": "c-1", "metadata": {"user": "ann", "correlation_id": "corr-9"}}))
    .await;
    assert_eq!(code, StatusCode::OK, "{opened}");
    let meta = &opened["events"][0]["metadata"];
    assert_eq!(meta["user"], "ann");
    assert_eq!(meta["correlation_id"], "corr-9", "carried over");
    assert_eq!(meta["causation_id"], "c-1", "the command id");
    let (code, again) =
        cmd(json!({"type": "Open", "payload": {"owner": "ann"}, "command_id": "c-1"})).await;
    assert_eq!(
        code,
        StatusCode::OK,
        "a repeat answers the first answer, not already_open: {again}"
    );
    assert_eq!(again, opened);
    let (_, stream) = json_of(server.get("/t/acme/streams/account-1", &token).await).await;
    assert_eq!(
        stream["events"].as_array().unwrap().len(),
        1,
        "the repeat wrote nothing"
    );
    let (code, body) =
        cmd(json!({"type": "Deposit", "payload": {"amount": 5}, "expected_version": 0})).await;
    assert_error(code, &body, StatusCode::CONFLICT, "wrong_expected_version");
    assert_eq!(body["error"]["current_version"], 1);
    let (code, _) =
        cmd(json!({"type": "Deposit", "payload": {"amount": 5}, "expected_version": 1})).await;
    assert_eq!(code, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = chrono_now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // 300 commands on one stream, then exact state now, at version 11 and at a time.
    for _ in 0..300 {
        let (code, body) = cmd(json!({"type": "Deposit", "payload": {"amount": 1}})).await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }
    let (_, now) = json_of(server.get("/t/acme/aggregates/account/1", &token).await).await;
    assert_eq!(
        (now["version"].as_u64(), now["state"]["balance"].as_i64()),
        (Some(302), Some(305))
    );
    let (_, at11) = json_of(
        server
            .get("/t/acme/aggregates/account/1?version=11", &token)
            .await,
    )
    .await;
    assert_eq!(
        (at11["version"].as_u64(), at11["state"]["balance"].as_i64()),
        (Some(11), Some(14))
    );
    let (_, then) = json_of(
        server
            .get(
                &format!("/t/acme/aggregates/account/1?at={between}"),
                &token,
            )
            .await,
    )
    .await;
    assert_eq!(
        (then["version"].as_u64(), then["state"]["balance"].as_i64()),
        (Some(2), Some(5))
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
    let written: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cairn_snapshots_written_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(written >= 2, "snapshots every 100 events: {written}");

    // A second version of the aggregate mid-stream (same code, other bytes): it serves
    // the next commands, ignores the old snapshots, and the state stays exact.
    let (code, v2) = json_of(
        server
            .upload(
                "acme",
                &token,
                "account",
                with_custom_section(plugin("account")),
            )
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(v2["version"], 2);
    let (code, body) = cmd(json!({"type": "Withdraw", "payload": {"amount": 300}})).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (_, now) = json_of(server.get("/t/acme/aggregates/account/1", &token).await).await;
    assert_eq!(
        (now["version"].as_u64(), now["state"]["balance"].as_i64()),
        (Some(303), Some(5))
    );
}
on_every_backend!(commands, command_semantics, "--snapshot-every", "100");

fn chrono_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    // RFC 3339 in UTC from the unix time, without a date library.
    let secs = now.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        now.subsec_millis()
    )
}

/// The same component with a custom section appended: other bytes, same behaviour.
fn with_custom_section(mut wasm: Vec<u8>) -> Vec<u8> {
    let name = b"cairn-test-version";
    let payload = b"2";
    wasm.push(0); // custom section id
    wasm.push((1 + name.len() + payload.len()) as u8);
    wasm.push(name.len() as u8);
    wasm.extend_from_slice(name);
    wasm.extend_from_slice(payload);
    wasm
}

async fn concurrency(server: Arc<Server>) {
    let token = server.tenant("acme").await;
    assert_eq!(
        server
            .upload("acme", &token, "account", plugin("account"))
            .await
            .status(),
        201
    );
    let (code, _) = server
        .command(
            "acme",
            &token,
            "account",
            "hot",
            json!({"type": "Open", "payload": {"owner": "h"}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    // Many writers on one stream, without expected versions: the host retries its
    // own conflicts, nothing is lost, versions stay contiguous.
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let (server, token) = (server.clone(), token.clone());
            tokio::spawn(async move {
                for _ in 0..25 {
                    let (code, body) = server
                        .command(
                            "acme",
                            &token,
                            "account",
                            "hot",
                            json!({"type": "Deposit", "payload": {"amount": 1}}),
                        )
                        .await;
                    assert_eq!(code, StatusCode::OK, "{body}");
                }
            })
        })
        .collect();
    // Writers on many streams at once, and a follower of the log that must see every
    // event exactly once, with no gap.
    let many: Vec<_> = (0..8)
        .map(|w| {
            let (server, token) = (server.clone(), token.clone());
            tokio::spawn(async move {
                for i in 0..25 {
                    let (code, body) = json_of(
                        server
                            .post(
                                &format!("/t/acme/streams/many-{w}"),
                                &token,
                                json!({"events": [{"type": "M", "data": {"i": i}}]}),
                            )
                            .await,
                    )
                    .await;
                    assert_eq!(code, StatusCode::OK, "{body}");
                }
            })
        })
        .collect();
    let follower = {
        let (server, token) = (server.clone(), token.clone());
        tokio::spawn(async move {
            let mut after = 0;
            let mut seen = HashSet::new();
            while seen.len() < 401 {
                let (_, log) = json_of(
                    server
                        .get(&format!("/t/acme/events?after={after}&limit=50"), &token)
                        .await,
                )
                .await;
                for e in log["events"].as_array().unwrap() {
                    let position = e["position"].as_u64().unwrap();
                    assert_eq!(position, after + 1, "the follower skipped a position");
                    after = position;
                    assert!(
                        seen.insert(e["event_id"].as_str().unwrap().to_owned()),
                        "seen twice"
                    );
                }
            }
            seen.len()
        })
    };
    for task in writers.into_iter().chain(many) {
        task.await.unwrap();
    }
    assert_eq!(follower.await.unwrap(), 401);
    let (_, stream) = json_of(
        server
            .get("/t/acme/streams/account-hot?limit=1000", &token)
            .await,
    )
    .await;
    let versions: Vec<u64> = stream["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, (1..=201).collect::<Vec<_>>());
    let (_, state) = json_of(server.get("/t/acme/aggregates/account/hot", &token).await).await;
    assert_eq!(state["state"]["balance"], 200);
}
on_every_backend!(concurrent_writers, concurrency);

/// Reads SSE frames until `until` matches one; returns the frames read.
async fn read_sse(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
    until: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut frames = Vec::new();
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let frame = buffer[..end].to_owned();
            buffer.drain(..end + 2);
            let done = until(&frame);
            frames.push(frame);
            if done {
                return frames;
            }
        }
        let chunk = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("no SSE data within 20 s")
            .expect("the SSE stream ended")
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

async fn live_subscriptions(server: Arc<Server>) {
    let token = server.tenant("acme").await;
    for i in 0..3 {
        append(
            &server,
            &token,
            "s",
            json!({"events": [{"type": "Before", "data": {"i": i}}]}),
        )
        .await;
    }
    let response = server.get("/t/acme/events/live", &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let frames = read_sse(&mut stream, &mut buffer, |f| f.contains("event: caught-up")).await;
    let ids: Vec<&str> = frames
        .iter()
        .filter_map(|f| f.lines().find_map(|l| l.strip_prefix("id: ")))
        .collect();
    assert_eq!(
        ids,
        ["1", "2", "3"],
        "the backlog, in order, before caught-up"
    );
    append(
        &server,
        &token,
        "s",
        json!({"events": [{"type": "After", "data": {}}]}),
    )
    .await;
    let frames = read_sse(&mut stream, &mut buffer, |f| f.contains("id: 4")).await;
    let last = frames.last().unwrap();
    assert!(last.contains("event: After"), "{last}");
    assert!(last.contains("\"position\":4"), "{last}");
    // Resume after 2 with Last-Event-ID.
    let response = server
        .http
        .get(server.url("/t/acme/events/live"))
        .bearer_auth(&token)
        .header("last-event-id", "2")
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let frames = read_sse(&mut stream, &mut buffer, |f| f.contains("event: caught-up")).await;
    let ids: Vec<&str> = frames
        .iter()
        .filter_map(|f| f.lines().find_map(|l| l.strip_prefix("id: ")))
        .collect();
    assert_eq!(ids, ["3", "4"]);
}
on_every_backend!(live, live_subscriptions);
