//! Live subscribers fanned out from memory (`/t/{tenant}/events/live`): every event
//! exactly once and in order across bursts larger than the fan-out's buffer, type
//! filters on that path, the per-tenant subscriber cap, and a subscriber that never
//! reads being dropped (told so in its stream) without holding writers up.

mod common;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::sse::{Sse, SseEvent, SseParser};
use common::{Server, assert_error, expect};

/// Appends `requests` requests of `per_request` events from `writers` concurrent
/// writers; event types alternate `Even`/`Odd` by the writer's running count, and each
/// carries `pad` bytes of data. Every append must succeed.
async fn burst(
    server: &Server,
    token: &str,
    writers: usize,
    requests: usize,
    per_request: usize,
    pad: usize,
) {
    let filler = "x".repeat(pad);
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (http, url, token, filler) = (
                server.http.clone(),
                server.url(&format!("/t/acme/streams/writer-{w}")),
                token.to_owned(),
                filler.clone(),
            );
            tokio::spawn(async move {
                for r in 0..requests {
                    let events: Vec<Value> = (0..per_request)
                        .map(|i| {
                            let n = r * per_request + i;
                            let ty = if n.is_multiple_of(2) { "Even" } else { "Odd" };
                            json!({"type": ty, "data": {"n": n, "pad": filler}})
                        })
                        .collect();
                    let resp = http
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"events": events}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(
                        resp.status(),
                        StatusCode::OK,
                        "{}",
                        resp.text().await.unwrap()
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// The type of the event at each position, from the paged log.
async fn log_types(server: &Server, token: &str) -> Vec<String> {
    let mut types = Vec::new();
    loop {
        let page = expect(
            server
                .get(
                    &format!("/t/acme/events?after={}&limit=1000", types.len()),
                    token,
                )
                .await,
            StatusCode::OK,
        )
        .await;
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            return types;
        }
        for e in events {
            assert_eq!(e["position"], types.len() as u64 + 1);
            types.push(e["type"].as_str().unwrap().to_owned());
        }
    }
}

#[tokio::test]
async fn every_event_arrives_once_in_order_across_a_burst_larger_than_the_buffer() {
    // A fan-out of four commits: readers that keep up follow it from memory, one
    // that does not read during the burst lags and catches up from the store.
    let server = Server::start_with(&["--live-buffer", "4"]).await;
    let token = server.create_tenant("acme").await;
    let mut all = Sse::connect(&server, &token, "/t/acme/events/live", None).await;
    let mut odds = Sse::connect(&server, &token, "/t/acme/events/live?types=Odd", None).await;
    for s in [&mut all, &mut odds] {
        assert_eq!(s.next().await.event.as_deref(), Some("caught-up"));
    }
    // One that reads only after the burst (16 MB, 8 MB of it for this one): more than
    // the socket buffers hold, so it lags and catches up from the store.
    let mut evens = stalled_subscriber(&server, &token, "/t/acme/events/live?types=Even").await;
    // Read while the writers write, so both the live path and the catch-up path run.
    let reader = |mut s: Sse, count: usize| {
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while seen.len() < count {
                let e = s.next().await;
                let data: Value = serde_json::from_str(&e.data).unwrap();
                assert_eq!(e.id.as_deref(), Some(data["position"].to_string().as_str()));
                assert_eq!(e.event.as_deref(), data["type"].as_str());
                seen.push((data["position"].as_u64().unwrap(), e.event.unwrap()));
            }
            seen
        })
    };
    let (writers, requests, per_request) = (4, 50, 20);
    let total = writers * requests * per_request;
    let all = reader(all, total);
    let odds = reader(odds, total / 2);
    burst(&server, &token, writers, requests, per_request, 4096).await;
    let all = all.await.unwrap();
    let odds = odds.await.unwrap();
    let mut raw = Vec::new();
    // Ids seen so far, counted as bytes arrive; frames are parsed once all may be in.
    let mut ids = 0;
    let evens: Vec<(u64, String)> = loop {
        if ids >= total / 2 {
            let got = frames(&raw);
            let events: Vec<&SseEvent> = got.iter().filter(|f| f.id.is_some()).collect();
            if events.len() >= total / 2 {
                break events
                    .iter()
                    .map(|f| {
                        (
                            f.id.as_deref().unwrap().parse().unwrap(),
                            f.event.clone().unwrap(),
                        )
                    })
                    .collect();
            }
        }
        let mut chunk = vec![0u8; 64 << 10];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), evens.read(&mut chunk))
            .await
            .expect("the lagging subscriber got nothing for 10 s")
            .unwrap();
        assert!(n > 0, "the lagging subscriber's stream ended");
        let from = raw.len().saturating_sub(4);
        raw.extend_from_slice(&chunk[..n]);
        ids += raw[from..].windows(5).filter(|w| w == b"\nid: ").count();
    };

    let types = log_types(&server, &token).await;
    assert_eq!(types.len(), total);
    let expected: Vec<(u64, String)> = types
        .iter()
        .enumerate()
        .map(|(i, t)| (i as u64 + 1, t.clone()))
        .collect();
    assert_eq!(all, expected, "every event exactly once, in position order");
    let only = |ty: &str| -> Vec<(u64, String)> {
        expected.iter().filter(|(_, t)| t == ty).cloned().collect()
    };
    assert_eq!(odds, only("Odd"), "the filter applies on the live path");
    assert_eq!(evens, only("Even"), "and on the catch-up path");
}

#[tokio::test]
async fn the_subscriber_cap_answers_429() {
    let server = Server::start().await;
    let token = server
        .create_tenant_with("acme", json!({"max_subscribers": 2}))
        .await;
    let mut first = Sse::connect(&server, &token, "/t/acme/events/live", None).await;
    assert_eq!(first.next().await.event.as_deref(), Some("caught-up"));
    let _second = Sse::connect(&server, &token, "/t/acme/events/live?types=A", None).await;
    let refused = server.get("/t/acme/events/live", &token).await;
    let error = assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "over_limit").await;
    assert_eq!(error["max_subscribers"], 2);
    // Another tenant has its own count.
    let other = server.create_tenant("other").await;
    Sse::connect(&server, &other, "/t/other/events/live", None).await;
    // The admitted ones still work.
    expect(
        server
            .append(
                &token,
                "acme",
                "s",
                json!({"events": [{"type": "A", "data": {}}]}),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(first.next().await.event.as_deref(), Some("A"));
    // The limit is validated like the others.
    let resp = server
        .send(
            reqwest::Method::PATCH,
            "/admin/tenants/acme",
            server.admin(),
            Some(json!({"limits": {"max_subscribers": 0}})),
        )
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "bad_request").await;
}

/// The body of a chunked HTTP/1.1 response (`raw` is everything after the headers),
/// as far as it has arrived.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return body;
        };
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).unwrap().trim(), 16)
            .unwrap();
        if size == 0 {
            return body;
        }
        let start = line_end + 2;
        if raw.len() < start + size + 2 {
            return body; // the rest has not arrived yet
        }
        body.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
}

/// A subscription on a socket with a tiny receive window: until it reads, the server
/// cannot write to it, so its subscription falls behind the fan-out's buffer.
async fn stalled_subscriber(server: &Server, token: &str, path: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address: std::net::SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let mut stream = socket.connect(address).await.unwrap();
    stream
        .write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {address}\r\n\
                 Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    stream
}

/// The complete SSE events (comments skipped) of a raw response read so far.
fn frames(raw: &[u8]) -> Vec<SseEvent> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Vec::new();
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    SseParser::events_in(&dechunk(&raw[split + 4..]))
}

#[tokio::test]
async fn a_subscriber_that_never_reads_is_dropped_without_stalling_writers() {
    let server = Server::start_with(&["--live-buffer", "8", "--live-max-behind", "100"]).await;
    let token = server.create_tenant("acme").await;
    // A client that never reads, with a tiny receive window, so the server's writes
    // back up at once and its SSE body is no longer polled.
    let mut stalled = stalled_subscriber(&server, &token, "/t/acme/events/live").await;
    // 16 MB of events while it does not read: every append completes.
    burst(&server, &token, 4, 25, 40, 4096).await;
    let head = expect(
        server.get("/t/acme/events?after=0&limit=1", &token).await,
        StatusCode::OK,
    )
    .await["head"]
        .as_u64()
        .unwrap();
    assert_eq!(head, 4000);

    // Now it reads: what it gets ends with the notice, then the connection closes.
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        stalled.read_to_end(&mut raw),
    )
    .await
    .expect("the server never ended the dropped subscriber's stream")
    .unwrap();
    let frames = frames(&raw);
    let last = frames.last().expect("some frames");
    assert_eq!(last.event.as_deref(), Some("dropped"), "{last:?}");
    let notice: Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(notice["reason"], "too_far_behind");
    // Before the notice: events from 1, without gaps, up to the position it names.
    let ids: Vec<u64> = frames
        .iter()
        .filter_map(|f| f.id.as_deref())
        .map(|id| id.parse().unwrap())
        .collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    assert_eq!(notice["position"], ids.len() as u64);
    assert!(
        (ids.len() as u64) < head,
        "it was dropped, not served to the end"
    );
}

/// `POST /admin/tenants/acme/token`: the new token.
async fn rotate(server: &Server) -> String {
    let rotated = expect(
        server
            .http
            .post(server.url("/admin/tenants/acme/token"))
            .bearer_auth(server.admin())
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    rotated["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_rotated_token_ends_the_live_streams_it_opened() {
    let server = Server::start().await;
    let token = server.create_tenant("acme").await;
    let appended = server
        .append(
            &token,
            "acme",
            "s-1",
            json!({"events": [{"type": "A", "data": {}}]}),
        )
        .await;
    expect(appended, StatusCode::OK).await;
    let mut live = Sse::connect(&server, &token, "/t/acme/events/live?after=0", None).await;
    live.expect_event(1, "A").await;
    live.expect_caught_up().await;
    // The operator's stream stays: only the rotated token is revoked.
    let mut operator =
        Sse::connect(&server, server.admin(), "/t/acme/events/live?after=1", None).await;
    operator.expect_caught_up().await;

    let new_token = rotate(&server).await;
    let dropped = live.next().await;
    assert_eq!(dropped.event.as_deref(), Some("dropped"), "{dropped:?}");
    let data: Value = serde_json::from_str(&dropped.data).unwrap();
    assert_eq!(data["reason"], "token_revoked", "{data}");
    assert_eq!(data["position"], 1, "{data}");
    assert!(live.next_or_end().await.is_none(), "the stream goes on");

    let appended = server
        .append(
            &new_token,
            "acme",
            "s-1",
            json!({"events": [{"type": "B", "data": {}}]}),
        )
        .await;
    expect(appended, StatusCode::OK).await;
    operator.expect_event(2, "B").await;
}

#[tokio::test]
async fn a_stored_type_named_like_a_control_event_is_not_taken_for_one() {
    let server = Server::start().await;
    let token = server.create_tenant("acme").await;
    let appended = server
        .append(
            &token,
            "acme",
            "s-1",
            json!({"events": [{"type": "dropped", "data": {}}, {"type": "caught-up", "data": {}}]}),
        )
        .await;
    expect(appended, StatusCode::OK).await;
    let mut live = Sse::connect(&server, &token, "/t/acme/events/live?after=0", None).await;
    for (position, ty) in [(1, "dropped"), (2, "caught-up")] {
        let event = live.next().await;
        assert_eq!(event.event.as_deref(), Some("event"), "{event:?}");
        assert_eq!(event.id.as_deref(), Some(position.to_string().as_str()));
        let data: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(data["type"], ty, "{data}");
    }
    live.expect_caught_up().await;
}

// The one SSE parser of the tests (`common/sse.rs`), on its own.

/// "é" is two bytes (0xc3 0xa9); "€" three. Split inside each, the data still reads
/// whole: the parser decodes only complete events.
#[test]
fn a_character_split_across_chunks_is_decoded_whole() {
    let frame = "id: 7\nevent: Renamed\ndata: {\"owner\":\"Zoé €\"}\n\n".as_bytes();
    let e_acute = frame.iter().position(|&b| b == 0xc3).unwrap();
    let euro = frame.iter().position(|&b| b == 0xe2).unwrap();
    let mut parser = SseParser::default();
    parser.push(&frame[..e_acute + 1]);
    assert!(parser.next_event().is_none());
    parser.push(&frame[e_acute + 1..euro + 2]);
    assert!(parser.next_event().is_none());
    parser.push(&frame[euro + 2..]);
    let event = parser.next_event().expect("a complete event");
    assert_eq!(event.id.as_deref(), Some("7"));
    assert_eq!(event.event.as_deref(), Some("Renamed"));
    assert_eq!(event.data, "{\"owner\":\"Zoé €\"}");
    assert!(parser.next_event().is_none());
}

#[test]
fn byte_by_byte_with_crlf_comments_and_multiline_data() {
    let stream = ": heartbeat\r\n\r\nid: 1\r\ndata: a\r\ndata: ü\r\n\r\n:x\n\nevent: caught-up\n\n";
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    for byte in stream.as_bytes() {
        parser.push(std::slice::from_ref(byte));
        events.extend(std::iter::from_fn(|| parser.next_event()));
    }
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].id.as_deref(), Some("1"));
    assert_eq!(events[0].data, "a\nü");
    assert_eq!(events[1].event.as_deref(), Some("caught-up"));
    assert_eq!(SseParser::events_in(stream.as_bytes()).len(), 2);
}
