//! Store and command semantics over HTTP against a real `cairn` process: expected
//! versions, idempotent appends, paged reads, the tenant's log, command ids,
//! metadata, temporal reads, snapshots, concurrency, gap-free following and SSE.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wasm_variant::with_custom_section;

use common::sse::Sse;
use common::{Server, assert_error, body_of, expect};

/// One event of `data` with the given type.
fn ev(event_type: &str) -> Value {
    json!({"type": event_type, "data": {"n": 1}})
}

async fn append_ok(server: &Server, token: &str, tenant: &str, stream: &str, body: Value) -> Value {
    expect(
        server.append(token, tenant, stream, body).await,
        StatusCode::OK,
    )
    .await
}

async fn head(server: &Server, token: &str, tenant: &str) -> u64 {
    let log = expect(
        server
            .get(&format!("/t/{tenant}/events?limit=1"), token)
            .await,
        StatusCode::OK,
    )
    .await;
    log["head"].as_u64().expect("a head")
}

fn field(events: &Value, name: &str) -> Vec<u64> {
    events
        .as_array()
        .expect("an array of events")
        .iter()
        .map(|e| e[name].as_u64().unwrap())
        .collect()
}

async fn open(server: &Server, token: &str, id: &str) -> Value {
    let resp = server
        .command(
            token,
            "acme",
            "account",
            id,
            json!({"type": "Open", "payload": {"owner": "ann"}}),
        )
        .await;
    expect(resp, StatusCode::OK).await
}

async fn state(server: &Server, token: &str, query: &str) -> Value {
    expect(
        server
            .get(&format!("/t/acme/aggregates/account/42{query}"), token)
            .await,
        StatusCode::OK,
    )
    .await
}

#[tokio::test]
async fn expected_version_modes_on_raw_appends() {
    let server = Server::start().await;
    let t = server.create_tenant("acme").await;

    // any: on an empty stream, then on an existing one.
    let r = append_ok(
        &server,
        &t,
        "acme",
        "s-any",
        json!({"expected_version": "any", "events": [ev("A")]}),
    )
    .await;
    assert_eq!(
        r,
        json!({"first_version": 1, "last_version": 1, "first_position": 1, "last_position": 1})
    );
    let r = append_ok(
        &server,
        &t,
        "acme",
        "s-any",
        json!({"events": [ev("A"), ev("B")]}),
    )
    .await;
    assert_eq!(
        r,
        json!({"first_version": 2, "last_version": 3, "first_position": 2, "last_position": 3})
    );

    // no_stream
    let r = append_ok(
        &server,
        &t,
        "acme",
        "s-new",
        json!({"expected_version": "no_stream", "events": [ev("A")]}),
    )
    .await;
    assert_eq!(r["first_version"], 1);
    assert_eq!(r["first_position"], 4);
    let e = assert_error(
        server
            .append(
                &t,
                "acme",
                "s-new",
                json!({"expected_version": "no_stream", "events": [ev("A")]}),
            )
            .await,
        StatusCode::CONFLICT,
        "wrong_expected_version",
    )
    .await;
    assert_eq!(e["current_version"], 1);

    // stream_exists
    let e = assert_error(
        server
            .append(
                &t,
                "acme",
                "s-exists",
                json!({"expected_version": "stream_exists", "events": [ev("A")]}),
            )
            .await,
        StatusCode::CONFLICT,
        "wrong_expected_version",
    )
    .await;
    assert_eq!(e["current_version"], 0);
    let r = append_ok(
        &server,
        &t,
        "acme",
        "s-new",
        json!({"expected_version": "stream_exists", "events": [ev("B")]}),
    )
    .await;
    assert_eq!(r["first_version"], 2);

    // exact
    let r = append_ok(
        &server,
        &t,
        "acme",
        "s-new",
        json!({"expected_version": 2, "events": [ev("C")]}),
    )
    .await;
    assert_eq!(
        (r["first_version"].as_u64(), r["last_version"].as_u64()),
        (Some(3), Some(3))
    );
    for stale in [2, 1, 7] {
        let e = assert_error(
            server
                .append(
                    &t,
                    "acme",
                    "s-new",
                    json!({"expected_version": stale, "events": [ev("D")]}),
                )
                .await,
            StatusCode::CONFLICT,
            "wrong_expected_version",
        )
        .await;
        assert_eq!(e["current_version"], 3, "stale {stale}");
    }
    let e = assert_error(
        server
            .append(
                &t,
                "acme",
                "s-empty",
                json!({"expected_version": 1, "events": [ev("D")]}),
            )
            .await,
        StatusCode::CONFLICT,
        "wrong_expected_version",
    )
    .await;
    assert_eq!(e["current_version"], 0);

    // Refused appends took no positions: the log is 1..=6 without gaps.
    let r = append_ok(
        &server,
        &t,
        "acme",
        "s-any",
        json!({"expected_version": 3, "events": [ev("Z")]}),
    )
    .await;
    assert_eq!(r["first_position"], 7);
    let log = expect(server.get("/t/acme/events", &t).await, StatusCode::OK).await;
    assert_eq!(
        field(&log["events"], "position"),
        (1..=7).collect::<Vec<_>>()
    );
    assert_eq!(log["head"], 7);

    // Malformed expected versions are 400s.
    for bad in [json!("sometimes"), json!(-1), json!(1.5), json!([1])] {
        assert_error(
            server
                .append(
                    &t,
                    "acme",
                    "s-any",
                    json!({"expected_version": bad, "events": [ev("A")]}),
                )
                .await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    }
    assert_eq!(head(&server, &t, "acme").await, 7);
}

#[tokio::test]
async fn idempotent_retries_answer_the_original_positions() {
    let server = Server::start().await;
    let t = server.create_tenant("acme").await;
    append_ok(&server, &t, "acme", "before", json!({"events": [ev("X")]})).await;
    let request = json!({"expected_version": "no_stream", "events": [
        {"event_id": "e-a", "type": "A", "data": {"i": 1}},
        {"event_id": "e-b", "type": "B", "data": {"i": 2}},
    ]});
    let first = append_ok(&server, &t, "acme", "s", request.clone()).await;
    assert_eq!(
        first,
        json!({"first_version": 1, "last_version": 2, "first_position": 2, "last_position": 3})
    );

    let retry = append_ok(&server, &t, "acme", "s", request.clone()).await;
    assert_eq!(retry, first, "a retry answers the original positions");
    assert_eq!(head(&server, &t, "acme").await, 3, "a retry writes nothing");

    // Some ids match, some do not: a conflict, nothing written.
    assert_error(
        server
            .append(
                &t,
                "acme",
                "s",
                json!({"expected_version": "any", "events": [
                    {"event_id": "e-b", "type": "B", "data": {"i": 2}},
                    {"event_id": "e-z", "type": "Z", "data": {}},
                ]}),
            )
            .await,
        StatusCode::CONFLICT,
        "idempotency_conflict",
    )
    .await;
    // The same ids on another stream are not a retry either.
    let other = server.append(&t, "acme", "elsewhere", request).await;
    assert_eq!(other.status(), StatusCode::CONFLICT);
    assert_eq!(head(&server, &t, "acme").await, 3);
    let read = expect(server.get("/t/acme/streams/s", &t).await, StatusCode::OK).await;
    let ids: Vec<&str> = read["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["e-a", "e-b"]);
    let missing = server.get("/t/acme/streams/elsewhere", &t).await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn stream_reads_page_forward_and_backward() {
    let server = Server::start().await;
    let t = server.create_tenant("acme").await;
    append_ok(&server, &t, "acme", "noise", json!({"events": [ev("N")]})).await;
    let events: Vec<Value> = (1..=5)
        .map(|i| json!({"type": format!("E{i}"), "data": {"i": i}}))
        .collect();
    append_ok(&server, &t, "acme", "s", json!({"events": events})).await;

    let page = |q: &'static str| {
        let server = &server;
        let t = &t;
        async move {
            expect(
                server.get(&format!("/t/acme/streams/s{q}"), t).await,
                StatusCode::OK,
            )
            .await
        }
    };
    let p = page("?limit=2").await;
    assert_eq!(field(&p["events"], "version"), [1, 2]);
    assert_eq!(field(&p["events"], "position"), [2, 3]);
    assert_eq!(p["next"], 3);
    let p = page("?from=3&limit=2&direction=forward").await;
    assert_eq!(field(&p["events"], "version"), [3, 4]);
    assert_eq!(p["next"], 5);
    let p = page("?from=5&limit=2").await;
    assert_eq!(field(&p["events"], "version"), [5]);
    assert_eq!(p["next"], Value::Null);
    assert_eq!(p["events"][0]["type"], "E5");
    assert_eq!(p["events"][0]["data"], json!({"i": 5}));
    let p = page("").await;
    assert_eq!(field(&p["events"], "version"), [1, 2, 3, 4, 5]);
    assert_eq!(p["next"], Value::Null);

    let p = page("?direction=backward&limit=2").await;
    assert_eq!(field(&p["events"], "version"), [5, 4]);
    assert_eq!(p["next"], 3);
    let p = page("?direction=backward&from=3&limit=2").await;
    assert_eq!(field(&p["events"], "version"), [3, 2]);
    assert_eq!(p["next"], 1);
    let p = page("?direction=backward&from=1&limit=2").await;
    assert_eq!(field(&p["events"], "version"), [1]);
    assert_eq!(p["next"], Value::Null);
    let p = page("?direction=backward").await;
    assert_eq!(field(&p["events"], "version"), [5, 4, 3, 2, 1]);

    let missing = server.get("/t/acme/streams/never-written", &t).await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn the_tenant_log_filters_and_pages_in_position_order() {
    let server = Server::start().await;
    let t = server.create_tenant("acme").await;
    append_ok(&server, &t, "acme", "a", json!({"events": [ev("A")]})).await;
    append_ok(&server, &t, "acme", "b", json!({"events": [ev("B")]})).await;
    append_ok(
        &server,
        &t,
        "acme",
        "a",
        json!({"events": [ev("A"), ev("B")]}),
    )
    .await;
    append_ok(&server, &t, "acme", "b", json!({"events": [ev("A")]})).await;

    let log = |q: &'static str| {
        let server = &server;
        let t = &t;
        async move {
            expect(
                server.get(&format!("/t/acme/events{q}"), t).await,
                StatusCode::OK,
            )
            .await
        }
    };
    let all = log("").await;
    assert_eq!(field(&all["events"], "position"), [1, 2, 3, 4, 5]);
    assert_eq!(all["head"], 5);
    let streams: Vec<&str> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["stream_id"].as_str().unwrap())
        .collect();
    assert_eq!(streams, ["a", "b", "a", "a", "b"]);
    assert_eq!(field(&all["events"], "version"), [1, 1, 2, 3, 2]);

    let p = log("?after=2&limit=2").await;
    assert_eq!(field(&p["events"], "position"), [3, 4]);
    assert_eq!(p["head"], 5);
    // A full page names the cursor of the next; a short one reached the head.
    assert_eq!(p["next"], 4);
    let rest = log("?after=4&limit=2").await;
    assert_eq!(field(&rest["events"], "position"), [5]);
    assert_eq!(rest["next"], Value::Null);
    assert_eq!(all["next"], Value::Null);
    let p = log("?types=A").await;
    assert_eq!(field(&p["events"], "position"), [1, 3, 5]);
    assert_eq!(p["head"], 5);
    let p = log("?types=A,B&after=3").await;
    assert_eq!(field(&p["events"], "position"), [4, 5]);
    let p = log("?types=B&after=1&limit=1").await;
    assert_eq!(field(&p["events"], "position"), [2]);
    let p = log("?types=Nothing").await;
    assert_eq!(p["events"], json!([]));
    assert_eq!(p["head"], 5);
    let p = log("?after=5").await;
    assert_eq!(p["events"], json!([]));
    assert_eq!(p["head"], 5);
}

#[tokio::test]
async fn positions_belong_to_each_tenant() {
    let server = Server::start().await;
    let a = server.create_tenant("alpha").await;
    let b = server.create_tenant("beta").await;
    for i in 1..=3u64 {
        let ra = append_ok(&server, &a, "alpha", "s", json!({"events": [ev("A")]})).await;
        let rb = append_ok(&server, &b, "beta", "s", json!({"events": [ev("B")]})).await;
        assert_eq!(ra["first_position"], i);
        assert_eq!(rb["first_position"], i);
    }
    for (tenant, token, ty) in [("alpha", &a, "A"), ("beta", &b, "B")] {
        let log = expect(
            server.get(&format!("/t/{tenant}/events"), token).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(field(&log["events"], "position"), [1, 2, 3]);
        assert_eq!(log["head"], 3);
        assert!(
            log["events"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["type"] == ty),
            "{log}"
        );
    }
}

#[tokio::test]
async fn a_repeated_command_id_answers_the_first_answer_and_writes_nothing() {
    let server = Server::start().await;
    let t = server.tenant_with_account("acme").await;
    let send = |id: &'static str, body: Value| server.command(&t, "acme", "account", id, body);

    let open = json!({"type": "Open", "payload": {"owner": "ann"}, "command_id": "open-1"});
    let first = expect(send("42", open.clone()).await, StatusCode::OK).await;
    let again = expect(send("42", open.clone()).await, StatusCode::OK).await;
    assert_eq!(again, first, "the first answer, event ids and all");

    let dep = expect(
        send(
            "42",
            json!({"type": "Deposit", "payload": {"amount": 10}, "command_id": "dep-1"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(dep["version"], 2);
    // The same id with another payload is another request: 409, nothing written.
    let conflict = send(
        "42",
        json!({"type": "Deposit", "payload": {"amount": 999}, "command_id": "dep-1"}),
    )
    .await;
    let body = assert_error(conflict, StatusCode::CONFLICT, "idempotency_conflict").await;
    assert_eq!(body["stream_id"], "account-42", "{body}");
    // Payload key order does not make another request.
    let dep_again = expect(
        send(
            "42",
            json!({"command_id": "dep-1", "payload": {"amount": 10}, "type": "Deposit"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(dep_again, dep);
    assert_eq!(head(&server, &t, "acme").await, 2, "repeats wrote nothing");
    let s = state(&server, &t, "").await;
    assert_eq!(
        (s["version"].as_u64(), s["state"]["balance"].as_i64()),
        (Some(2), Some(10))
    );

    // Ids are the tenant's: the same id on another account is a conflict too.
    let elsewhere = send("43", open).await;
    assert_error(elsewhere, StatusCode::CONFLICT, "idempotency_conflict").await;
    assert_eq!(head(&server, &t, "acme").await, 2);

    // A domain rejection is remembered: its repeat is refused the same way even once
    // the command would succeed.
    let withdraw = json!({"type": "Withdraw", "payload": {"amount": 50}, "command_id": "wd-1"});
    let refused = send("42", withdraw.clone()).await;
    let first = assert_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "rejected").await;
    assert_eq!(first["domain_code"], "insufficient_funds", "{first}");
    expect(
        send(
            "42",
            json!({"type": "Deposit", "payload": {"amount": 100}, "command_id": "dep-2"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let repeat = send("42", withdraw).await;
    let again = assert_error(repeat, StatusCode::UNPROCESSABLE_ENTITY, "rejected").await;
    assert_eq!(again["domain_code"], "insufficient_funds", "{again}");
    assert_eq!(again["replayed"], true, "{again}");
    let s = state(&server, &t, "").await;
    assert_eq!(
        s["state"]["balance"], 110,
        "the repeat did not withdraw: {s}"
    );
}

#[tokio::test]
async fn command_metadata_is_kept_with_correlation_and_causation() {
    let server = Server::start().await;
    let t = server.tenant_with_account("acme").await;
    let answer = expect(
        server
            .command(
                &t,
                "acme",
                "account",
                "42",
                json!({
                    "type": "Open", "payload": {"owner": "ann"}, "command_id": "cmd-1",
                    "metadata": {"user": "ann", "correlation_id": "corr-9"},
                }),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    let meta = &answer["events"][0]["metadata"];
    assert_eq!(meta["user"], "ann", "{meta}");
    assert_eq!(meta["correlation_id"], "corr-9", "{meta}");
    assert_eq!(meta["causation_id"], "cmd-1", "{meta}");

    expect(
        server
            .command(
                &t,
                "acme",
                "account",
                "42",
                json!({
                    "type": "Deposit", "payload": {"amount": 3}, "command_id": "cmd-2",
                    "metadata": {"user": "bob"},
                }),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    // Stored, not only answered.
    let read = expect(
        server.get("/t/acme/streams/account-42", &t).await,
        StatusCode::OK,
    )
    .await;
    let m1 = &read["events"][0]["metadata"];
    assert_eq!(
        (&m1["user"], &m1["correlation_id"], &m1["causation_id"]),
        (&json!("ann"), &json!("corr-9"), &json!("cmd-1"))
    );
    let m2 = &read["events"][1]["metadata"];
    assert_eq!(m2["user"], "bob", "{m2}");
    assert_eq!(m2["causation_id"], "cmd-2", "{m2}");
}

#[tokio::test]
async fn a_stale_expected_version_on_a_command_is_409() {
    let server = Server::start().await;
    let t = server.tenant_with_account("acme").await;
    open(&server, &t, "42").await;
    let ok = server
        .command(
            &t,
            "acme",
            "account",
            "42",
            json!({"type": "Deposit", "payload": {"amount": 5}, "expected_version": 1}),
        )
        .await;
    assert_eq!(expect(ok, StatusCode::OK).await["version"], 2);
    let stale = server
        .command(
            &t,
            "acme",
            "account",
            "42",
            json!({"type": "Deposit", "payload": {"amount": 5}, "expected_version": 1}),
        )
        .await;
    let e = assert_error(stale, StatusCode::CONFLICT, "wrong_expected_version").await;
    assert_eq!(e["current_version"], 2);
    let ahead = server
        .command(
            &t,
            "acme",
            "account",
            "42",
            json!({"type": "Deposit", "payload": {"amount": 5}, "expected_version": 9}),
        )
        .await;
    let e = assert_error(ahead, StatusCode::CONFLICT, "wrong_expected_version").await;
    assert_eq!(e["current_version"], 2);
    let s = state(&server, &t, "").await;
    assert_eq!(
        (s["version"].as_u64(), s["state"]["balance"].as_i64()),
        (Some(2), Some(5))
    );
}

#[tokio::test]
async fn temporal_state_reads_by_version_and_time() {
    let server = Server::start().await;
    let t = server.tenant_with_account("acme").await;
    open(&server, &t, "42").await;
    let mut recorded = Vec::new();
    for amount in [10, 20] {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let r = expect(server.deposit(&t, "42", amount).await, StatusCode::OK).await;
        recorded.push(r["events"][0]["recorded_at"].as_str().unwrap().to_owned());
    }
    let s = state(&server, &t, "?version=1").await;
    assert_eq!(
        (s["version"].as_u64(), s["state"]["balance"].as_i64()),
        (Some(1), Some(0))
    );
    assert_eq!(s["state"]["owner"], "ann");
    let s = state(&server, &t, "?version=2").await;
    assert_eq!(
        (s["version"].as_u64(), s["state"]["balance"].as_i64()),
        (Some(2), Some(10))
    );
    let s = state(&server, &t, "").await;
    assert_eq!(
        (s["version"].as_u64(), s["state"]["balance"].as_i64()),
        (Some(3), Some(30))
    );

    // At the instant version 2 was recorded, and a little after (before version 3).
    let v2 = chrono::DateTime::parse_from_rfc3339(&recorded[0]).unwrap();
    let fmt = |t: chrono::DateTime<chrono::FixedOffset>| {
        t.with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    for at in [fmt(v2), fmt(v2 + chrono::Duration::milliseconds(20))] {
        let s = state(&server, &t, &format!("?at={at}")).await;
        assert_eq!(
            (s["version"].as_u64(), s["state"]["balance"].as_i64()),
            (Some(2), Some(10)),
            "at {at}"
        );
    }
    let later = fmt(chrono::Utc::now().fixed_offset() + chrono::Duration::seconds(5));
    let s = state(&server, &t, &format!("?at={later}")).await;
    assert_eq!(s["version"], 3);
    let bad = server
        .get("/t/acme/aggregates/account/42?at=yesterday", &t)
        .await;
    assert_error(bad, StatusCode::BAD_REQUEST, "bad_request").await;
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .map(|l| l.split_whitespace().last().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test]
async fn three_hundred_deposits_with_snapshots_stay_exact() {
    let mut server = Server::start_with(&["--snapshot-every", "100"]).await;
    let t = server.tenant_with_account("acme").await;
    open(&server, &t, "42").await;
    for amount in 1..=300 {
        let r = expect(server.deposit(&t, "42", amount).await, StatusCode::OK).await;
        assert_eq!(r["version"], amount + 1);
    }
    let sum = |n: i64| n * (n + 1) / 2;
    let s = state(&server, &t, "?version=11").await;
    assert_eq!(
        (s["version"].as_u64(), s["state"]["balance"].as_i64()),
        (Some(11), Some(sum(10)))
    );
    let s = state(&server, &t, "?version=150").await;
    assert_eq!(s["state"]["balance"], sum(149));
    let s = state(&server, &t, "").await;
    assert_eq!(
        (s["version"].as_u64(), s["state"]["balance"].as_i64()),
        (Some(301), Some(sum(300)))
    );

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
    let written = metric(&text, "cairn_snapshots_written_total");
    assert!(
        written > 0.0,
        "no snapshots written after 300 events:\n{text}"
    );

    // From snapshots after a restart, still exact.
    server.restart().await;
    let s = state(&server, &t, "").await;
    assert_eq!(
        (s["version"].as_u64(), s["state"]["balance"].as_i64()),
        (Some(301), Some(sum(300)))
    );
    let s = state(&server, &t, "?version=250").await;
    assert_eq!(s["state"]["balance"], sum(249));
    let r = expect(server.deposit(&t, "42", 1000).await, StatusCode::OK).await;
    assert_eq!(r["version"], 302);
    let s = state(&server, &t, "").await;
    assert_eq!(s["state"]["balance"], sum(300) + 1000);
}

#[tokio::test]
async fn concurrent_commands_on_one_stream_all_land_contiguously() {
    let server = Arc::new(Server::start().await);
    let t = server.tenant_with_account("acme").await;
    open(&server, &t, "42").await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (server, t) = (server.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            for _ in 0..25 {
                // With two hosts writing (CAIRN_TEST_HOSTS=2) a command can lose the
                // stream to the other host on every attempt: 503 `contention`, nothing
                // written, to be retried like a client would.
                let r = loop {
                    let (code, body) = body_of(server.deposit(&t, "42", 1).await).await;
                    if code == StatusCode::SERVICE_UNAVAILABLE
                        && body["error"]["code"] == "contention"
                    {
                        continue;
                    }
                    assert_eq!(code, StatusCode::OK, "{body}");
                    break body;
                };
                versions.push(r["version"].as_u64().unwrap());
            }
            versions
        }));
    }
    let mut versions = BTreeSet::new();
    for task in tasks {
        for v in task.await.unwrap() {
            assert!(versions.insert(v), "version {v} answered twice");
        }
    }
    assert_eq!(versions, (2..=201).collect::<BTreeSet<_>>());
    let read = expect(
        server
            .get("/t/acme/streams/account-42?limit=1000", &t)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        field(&read["events"], "version"),
        (1..=201).collect::<Vec<_>>()
    );
    assert_eq!(
        field(&read["events"], "position"),
        (1..=201).collect::<Vec<_>>()
    );
    let s = state(&server, &t, "").await;
    assert_eq!(
        (s["version"].as_u64(), s["state"]["balance"].as_i64()),
        (Some(201), Some(200))
    );
}

/// 8 writers append 1 to 3 events at a time to their own streams while a follower
/// pages the log with `after`. The follower asserts it sees every position exactly
/// once, in order, without gaps; it returns the (position, head) pairs where an event
/// was listed above the `head` reported with it.
async fn follow_while_writing() -> Vec<(u64, u64)> {
    let server = Arc::new(Server::start().await);
    let t = server.create_tenant("acme").await;
    const WRITERS: u64 = 8;
    const APPENDS: u64 = 25;
    let per_writer: u64 = (0..APPENDS).map(|i| i % 3 + 1).sum();
    let total = WRITERS * per_writer;
    let follower = {
        let (server, t) = (server.clone(), t.clone());
        tokio::spawn(async move {
            let mut last = 0u64;
            let mut above_head = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while last < total {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the follower stalled at {last}"
                );
                let page = expect(
                    server
                        .get(&format!("/t/acme/events?after={last}&limit=7"), &t)
                        .await,
                    StatusCode::OK,
                )
                .await;
                let head = page["head"].as_u64().unwrap();
                for p in field(&page["events"], "position") {
                    assert_eq!(p, last + 1, "the follower skipped or repeated a position");
                    if p > head {
                        above_head.push((p, head));
                    }
                    last = p;
                }
                if page["events"].as_array().unwrap().is_empty() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            (last, above_head)
        })
    };
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (server, t) = (server.clone(), t.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..APPENDS {
                let events: Vec<Value> = (0..i % 3 + 1).map(|_| ev("W")).collect();
                let r = append_ok(
                    &server,
                    &t,
                    "acme",
                    &format!("w-{w}"),
                    json!({"expected_version": "any", "events": events}),
                )
                .await;
                let (f, l) = (
                    r["first_position"].as_u64().unwrap(),
                    r["last_position"].as_u64().unwrap(),
                );
                assert_eq!(l - f, i % 3, "one append's positions are contiguous");
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let (last, above_head) = follower.await.unwrap();
    assert_eq!(last, total);
    assert_eq!(head(&server, &t, "acme").await, total);
    for w in 0..WRITERS {
        let read = expect(
            server
                .get(&format!("/t/acme/streams/w-{w}?limit=1000"), &t)
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(
            field(&read["events"], "version"),
            (1..=per_writer).collect::<Vec<_>>()
        );
    }
    above_head
}

#[tokio::test]
async fn a_follower_sees_every_position_once_while_streams_are_written() {
    follow_while_writing().await;
}

#[tokio::test]
async fn the_log_head_is_never_below_the_events_listed_with_it() {
    let above_head = follow_while_writing().await;
    assert!(
        above_head.is_empty(),
        "events listed above the `head` of the same answer, (position, head): {above_head:?}"
    );
}

// ---- Server-Sent Events -------------------------------------------------------

#[tokio::test]
async fn live_events_deliver_the_backlog_then_new_events_and_resume() {
    let server = Server::start().await;
    let t = server.create_tenant("acme").await;
    append_ok(
        &server,
        &t,
        "acme",
        "s",
        json!({"events": [ev("A"), ev("B"), ev("C")]}),
    )
    .await;

    let mut live = Sse::connect(&server, &t, "/t/acme/events/live", None).await;
    live.expect_event(1, "A").await;
    live.expect_event(2, "B").await;
    let third = live.expect_event(3, "C").await;
    assert_eq!(third["stream_id"], "s");
    assert_eq!(third["version"], 3);
    live.expect_caught_up().await;

    append_ok(
        &server,
        &t,
        "acme",
        "other",
        json!({"events": [{"type": "D", "data": {"fresh": true}}]}),
    )
    .await;
    let fresh = live.expect_event(4, "D").await;
    assert_eq!(fresh["stream_id"], "other");
    assert_eq!(fresh["data"], json!({"fresh": true}));

    // Resume after position 2 with Last-Event-ID.
    let mut resumed = Sse::connect(&server, &t, "/t/acme/events/live", Some("2")).await;
    resumed.expect_event(3, "C").await;
    resumed.expect_event(4, "D").await;
    resumed.expect_caught_up().await;

    // Or with ?after=.
    let mut after = Sse::connect(&server, &t, "/t/acme/events/live?after=3", None).await;
    after.expect_event(4, "D").await;
    after.expect_caught_up().await;

    // Everyone sees the next one.
    append_ok(&server, &t, "acme", "s", json!({"events": [ev("E")]})).await;
    live.expect_event(5, "E").await;
    resumed.expect_event(5, "E").await;
    after.expect_event(5, "E").await;

    // An empty backlog is caught up at once; another tenant's token is refused.
    let mut at_head = Sse::connect(&server, &t, "/t/acme/events/live", Some("5")).await;
    at_head.expect_caught_up().await;
    let other = server.create_tenant("other").await;
    let refused = server.get("/t/acme/events/live", &other).await;
    assert_error(refused, StatusCode::FORBIDDEN, "forbidden").await;
}

/// Waits until `version` of the `account` plugin serves.
async fn wait_active(server: &Server, token: &str, version: u64) {
    let started = std::time::Instant::now();
    loop {
        let listing = expect(
            server.get("/t/acme/plugins/account", token).await,
            StatusCode::OK,
        )
        .await;
        if listing["active_version"] == version {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "version {version} never became active: {listing}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_new_aggregate_version_mid_stream_keeps_state_exact() {
    let server = Server::start_with(&["--snapshot-every", "10"]).await;
    let token = server.tenant_with_account("acme").await;
    open(&server, &token, "42").await;
    for _ in 0..25 {
        expect(server.deposit(&token, "42", 2).await, StatusCode::OK).await;
    }
    let upload = server
        .upload(
            &token,
            "acme",
            "account",
            // The same component with a custom section appended: other bytes (so another
            // version and digest), the same behaviour.
            with_custom_section(&common::plugin_bytes("account"), "cairn-test-version", b"2"),
        )
        .await;
    // The stream has history, so version 2 is verified by replay before it serves.
    let v2 = expect(upload, StatusCode::ACCEPTED).await;
    assert_eq!(v2["version"], 2);
    wait_active(&server, &token, 2).await;
    // The next command runs on version 2: it ignores version 1's snapshots and cache,
    // folds the stream itself, and the state is exact.
    let answer = expect(server.deposit(&token, "42", 2).await, StatusCode::OK).await;
    assert_eq!(answer["version"], 27);
    let now = state(&server, &token, "").await;
    assert_eq!(now["state"]["balance"], 52);
    let listing = expect(
        server.get("/t/acme/plugins/account", &token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(listing["active_version"], 2);
}

#[tokio::test]
async fn a_version_uploaded_through_another_host_serves_the_next_command() {
    // Two hosts on one PostgreSQL database, as in a fleet.
    let (url, name) = common::postgres_database().await;
    {
        let a = Server::start_with(&["--database", &url]).await;
        let b = Server::start_with(&["--database", &url]).await;
        let token = a.tenant_with_account("acme").await;
        open(&a, &token, "42").await;
        // Through host B, the same name now holds a component that loops on "Loop".
        let upload = b
            .upload(
                &token,
                "acme",
                "account",
                common::hostile_bytes("aggregate"),
            )
            .await;
        // Verified by replaying account-42 (the hostile aggregate folds anything),
        // then activated through the shared database.
        assert_eq!(expect(upload, StatusCode::ACCEPTED).await["version"], 2);
        wait_active(&b, &token, 2).await;
        let answer = a
            .command(&token, "acme", "account", "7", json!({"type": "Loop"}))
            .await;
        let error = assert_error(answer, StatusCode::UNPROCESSABLE_ENTITY, "plugin_failed").await;
        assert_eq!(error["reason"], "deadline", "host A ran version 2: {error}");
    }
    common::drop_database(name);
}

#[tokio::test]
async fn commands_take_the_same_expected_version_forms_as_raw_appends() {
    let server = Server::start().await;
    let t = server.tenant_with_account("acme").await;
    let command = |id: &'static str, expected: Value| {
        let (server, t) = (&server, &t);
        async move {
            server
                .command_answer(
                    t,
                    "acme",
                    "account",
                    id,
                    json!({"type": "Open", "payload": {"owner": "o"}, "expected_version": expected}),
                )
                .await
        }
    };
    // "stream_exists" on a new stream is refused; "no_stream" opens it.
    let (code, body) = command("n", json!("stream_exists")).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "wrong_expected_version", "{body}");
    assert_eq!(body["error"]["current_version"], 0, "{body}");
    let (code, body) = command("n", json!("no_stream")).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 1, "{body}");
    // Now it exists: "no_stream" is refused; a deposit under "stream_exists", "any"
    // and the exact version goes through.
    let (code, body) = command("n", json!("no_stream")).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    for (expected, version) in [
        (json!("stream_exists"), 2),
        (json!("any"), 3),
        (json!(3), 4),
    ] {
        let (code, body) = server
            .command_answer(
                &t,
                "acme",
                "account",
                "n",
                json!({"type": "Deposit", "payload": {"amount": 1}, "expected_version": expected}),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{expected}: {body}");
        assert_eq!(body["version"], version, "{body}");
    }
    // A stale number and an unknown form.
    let (code, body) = command("n", json!(1)).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["current_version"], 4, "{body}");
    let (code, body) = command("n", json!("sometimes")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn a_multi_stream_append_is_all_or_nothing() {
    let server = Server::start().await;
    let t = server.create_tenant("acme").await;
    append_ok(
        &server,
        &t,
        "acme",
        "order-1",
        json!({"events": [ev("Placed")]}),
    )
    .await;
    let both = |expected_order: Value, ids: [&str; 2]| {
        json!({"appends": [
            {"stream": "payment-1", "expected_version": "no_stream",
             "events": [{"event_id": ids[0], "type": "Paid", "data": {}}]},
            {"stream": "order-1", "expected_version": expected_order,
             "events": [{"event_id": ids[1], "type": "Settled", "data": {}}]},
        ]})
    };
    // One stale expectation: 409 naming it, and neither stream is written.
    let refused = server
        .post("/t/acme/streams", &t, both(json!(0), ["p1", "o1"]))
        .await;
    let body = assert_error(refused, StatusCode::CONFLICT, "wrong_expected_version").await;
    assert_eq!(body["append"], 1, "{body}");
    assert_eq!(body["stream"], "order-1", "{body}");
    assert_eq!(head(&server, &t, "acme").await, 1, "nothing was written");
    let missing = server.get("/t/acme/streams/payment-1", &t).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Both expectations hold: both are written, in one transaction, in order.
    let done = expect(
        server
            .post("/t/acme/streams", &t, both(json!(1), ["p2", "o2"]))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(done["appends"][0]["stream"], "payment-1", "{done}");
    assert_eq!(done["appends"][0]["last_version"], 1, "{done}");
    assert_eq!(done["appends"][0]["first_position"], 2, "{done}");
    assert_eq!(done["appends"][1]["last_version"], 2, "{done}");
    assert_eq!(done["appends"][1]["first_position"], 3, "{done}");
    // The same request again (a client's retry) answers the same positions.
    let again = expect(
        server
            .post("/t/acme/streams", &t, both(json!(1), ["p2", "o2"]))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["appends"], done["appends"], "{again}");
    assert_eq!(head(&server, &t, "acme").await, 3);
}
