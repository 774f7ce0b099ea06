//! Connection hygiene (`cairn serve --header-read-timeout --idle-timeout
//! --max-connections --body-read-timeout`): a half-sent head and an idle connection are
//! closed, a live stream is not, a connection past the cap is answered 503 in the error
//! shape, and a body that stops or drips is answered 408 and closed (an import keeps
//! the lines it had).
//! Timeouts here are short flags; the assertions only wait, with generous bounds, for
//! what must happen, never time it.

mod common;

use std::time::{Duration, Instant};

use common::{Server, expect};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far longer than any timeout flag used here: a connection still open after this
/// was never going to be closed.
const PATIENCE: Duration = Duration::from_secs(30);

async fn connect(server: &Server) -> TcpStream {
    TcpStream::connect(server.base.strip_prefix("http://").unwrap())
        .await
        .unwrap()
}

/// Reads until the server closes the connection; panics if it stays open past PATIENCE.
async fn closed_by_server(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut seen = Vec::new();
    match tokio::time::timeout(PATIENCE, stream.read_to_end(&mut seen)).await {
        Ok(_) => seen, // EOF, or a reset: closed either way
        Err(_) => panic!("{what}: the server kept the connection open for {PATIENCE:?}"),
    }
}

/// One keep-alive `GET` on `stream`; returns the response head and body.
async fn get_on(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|l| l.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        if n == 0 {
            return text;
        }
    }
}

#[tokio::test]
async fn a_half_sent_head_is_closed_and_a_whole_one_still_served() {
    let server = Server::start_with(&["--header-read-timeout", "1"]).await;
    let mut slow = connect(&server).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    let answer = closed_by_server(&mut slow, "half a head").await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    // A head that arrives whole on a fresh connection is served as ever.
    let mut quick = connect(&server).await;
    let answer = get_on(&mut quick, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn an_idle_connection_is_closed_but_a_live_stream_is_not() {
    let server = Server::start_with(&["--idle-timeout", "1"]).await;
    let token = server.create_tenant("acme").await;
    // An SSE subscriber, then longer than the idle timeout with nothing to send.
    let live = server.get("/t/acme/events/live", &token).await;
    assert_eq!(live.status(), StatusCode::OK);
    let mut live = live.bytes_stream();
    let mut idle = connect(&server).await;
    let answer = get_on(&mut idle, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    closed_by_server(&mut idle, "an idle keep-alive connection").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let event = json!({"type": "Late", "data": {"n": 1}});
    let append = server.append(&token, "acme", "s-1", json!({"events": [event]}));
    expect(append.await, StatusCode::OK).await;
    let started = Instant::now();
    let mut seen = String::new();
    while !seen.contains("event: Late") {
        let chunk = tokio::time::timeout(PATIENCE, live.next())
            .await
            .expect("the live stream went silent")
            .expect("the live stream was closed")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
        assert!(started.elapsed() < PATIENCE, "{seen}");
    }
}

#[tokio::test]
async fn past_the_cap_a_connection_is_answered_503_in_the_error_shape() {
    let server = Server::start_with(&["--max-connections", "2"]).await;
    // The harness's own client may hold a pooled connection: open ours until refused.
    let mut held = Vec::new();
    let refusal = loop {
        assert!(held.len() <= 2, "more connections than the cap were served");
        let mut stream = connect(&server).await;
        let answer = get_on(&mut stream, "/healthz").await;
        if answer.starts_with("HTTP/1.1 503") {
            break answer;
        }
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        held.push(stream);
    };
    let (head, body) = refusal.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.contains("retry-after: 1"), "{refusal}");
    assert!(head.contains("content-type: application/json"), "{refusal}");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["error"]["code"], "too_many_connections", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["request_id"].is_string(), "{body}");
    // Once ours are closed, their slots come back.
    drop(held);
    let started = Instant::now();
    loop {
        let mut stream = connect(&server).await;
        if get_on(&mut stream, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
        {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "the slots never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Splits what the server sent into its status code and JSON body.
fn status_and_body(answer: &[u8]) -> (u16, serde_json::Value) {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer: {text:?}"));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{text}"
    );
    let status = head[9..12].parse().unwrap();
    (status, serde_json::from_str(body).unwrap())
}

#[tokio::test]
async fn a_body_that_stops_or_drips_is_answered_408_and_closed() {
    let server = Server::start_with(&["--body-read-timeout", "2"]).await;
    let head = |length: usize| {
        format!(
            "POST /admin/tenants HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
            server.admin()
        )
    };
    // Pieces a second apart (each wait under the bound, all of them too) are served.
    let mut steady = connect(&server).await;
    let body = r#"{"id": "steady"}"#;
    steady.write_all(head(body.len()).as_bytes()).await.unwrap();
    for piece in [&body[..5], &body[5..10], &body[10..]] {
        tokio::time::sleep(Duration::from_millis(500)).await;
        steady.write_all(piece.as_bytes()).await.unwrap();
    }
    let answer = get_on(&mut steady, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");

    // Half a body, then nothing.
    let mut stopped = connect(&server).await;
    let request = format!("{}{{\"id\": ", head(100));
    stopped.write_all(request.as_bytes()).await.unwrap();
    let answer = closed_by_server(&mut stopped, "a body that stopped").await;
    let (status, body) = status_and_body(&answer);
    assert_eq!(
        (status, &body["error"]["code"]),
        (408, &json!("body_timeout")),
        "{body}"
    );

    // A byte every half second: never a long wait, but it would take minutes.
    let dripping = connect(&server).await;
    let (mut from_server, mut to_server) = dripping.into_split();
    to_server.write_all(head(1000).as_bytes()).await.unwrap();
    let drip = tokio::spawn(async move {
        for _ in 0..1000 {
            if to_server.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let mut answer = Vec::new();
    let read = from_server.read_to_end(&mut answer);
    let _ = tokio::time::timeout(PATIENCE, read)
        .await
        .expect("a dripping body kept its connection open");
    drip.abort();
    let (status, body) = status_and_body(&answer);
    assert_eq!(
        (status, &body["error"]["code"]),
        (408, &json!("body_timeout")),
        "{body}"
    );
    let tenant = server.get("/admin/tenants/steady", server.admin()).await;
    assert_eq!(tenant.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_import_that_stops_arriving_keeps_its_lines_and_is_answered_408() {
    let server = Server::start_with(&["--body-read-timeout", "2"]).await;
    let token = server.create_tenant("acme").await;
    let mut stream = connect(&server).await;
    let lines: String = (0..3)
        .map(|i| format!("{{\"stream\": \"s-1\", \"type\": \"A\", \"data\": {{\"i\": {i}}}}}\n"))
        .collect();
    let request = format!(
        "POST /t/acme/import HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{lines}\r\n",
        lines.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = closed_by_server(&mut stream, "an import that stopped").await;
    let (status, body) = status_and_body(&answer);
    assert_eq!(
        (status, &body["error"]["code"]),
        (408, &json!("body_timeout")),
        "{body}"
    );
    assert_eq!(body["error"]["imported_lines"], 3, "{body}");
    let log = server.get("/t/acme/events", &token).await;
    assert_eq!(expect(log, StatusCode::OK).await["head"], 3);
}
