//! Requests broken on the wire, sent as raw bytes: a head hyper cannot parse (bad
//! bytes in the request line, a bad `Content-Length`, too many headers, a huge URI) is
//! answered in the contract's error shape like any other refusal, never with a bare
//! status line; a body with broken chunked framing is a 400, and only a real oversize
//! is a 413.

mod common;

use common::Server;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `request` on a fresh connection and returns what came back until the server
/// closed it (or 30 s passed).
async fn raw_exchange(server: &Server, request: String) -> String {
    let address = server.base.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), read).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_broken_chunked_body_is_400_and_only_a_real_oversize_is_413() {
    let server = Server::start().await;
    let token = server
        .create_tenant_with("acme", json!({"max_body_bytes": 1024}))
        .await;
    let head_as = |path: &str, token: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
    };
    let head = |path: &str| head_as(path, &token);
    let broken = "zz\r\n{}\r\n0\r\n\r\n";
    for (path, token) in [
        ("/t/acme/streams/s-1", &token),
        ("/admin/tenants", &server.admin().to_owned()),
    ] {
        let answer = raw_exchange(&server, format!("{}{broken}", head_as(path, token))).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("\"invalid_body\""), "{path}: {answer}");
    }
    let upload = head("/t/acme/plugins/account").replace("application/json", "application/wasm");
    let answer = raw_exchange(
        &server,
        format!("{}{broken}", upload.replace("POST", "PUT")),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "upload: {answer}");
    // 2000 bytes in well-formed chunks, over the tenant's 1024.
    let chunk = "x".repeat(1000);
    let big = format!(
        "{}3e8\r\n{chunk}\r\n3e8\r\n{chunk}\r\n0\r\n\r\n",
        head("/t/acme/streams/s-1")
    );
    let answer = raw_exchange(&server, big).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"too_large\""), "{answer}");
}

/// A request head that cannot be parsed never reaches a route; it is still answered in
/// the error shape (hyper's own answer is a bare status line), and the connection is
/// closed. Also after a good request on the same connection.
#[tokio::test]
async fn a_head_that_cannot_be_parsed_is_answered_in_the_error_shape() {
    let server = Server::start().await;
    let headers: String = (0..101).map(|i| format!("X-{i}: y\r\n")).collect();
    let path = "a".repeat(100_000);
    let cases: Vec<(String, u16, &str)> = vec![
        (
            "GET /he\x01lthz HTTP/1.1\r\nHost: t\r\n\r\n".into(),
            400,
            "malformed_request",
        ),
        (
            "GET /healthz HTTP/9.9\r\nHost: t\r\n\r\n".into(),
            400,
            "malformed_request",
        ),
        (
            "G(T /healthz HTTP/1.1\r\nHost: t\r\n\r\n".into(),
            400,
            "malformed_request",
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n".into(),
            400,
            "malformed_request",
        ),
        (
            "POST /admin/tenants HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n{}".into(),
            400,
            "malformed_request",
        ),
        (
            "POST /admin/tenants HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\
             Content-Length: 3\r\n\r\n{}"
                .into(),
            400,
            "malformed_request",
        ),
        (
            format!("GET /{path} HTTP/1.1\r\nHost: t\r\n\r\n"),
            414,
            "uri_too_long",
        ),
        (
            format!("GET /healthz HTTP/1.1\r\nHost: t\r\n{headers}\r\n"),
            431,
            "headers_too_large",
        ),
    ];
    for (request, status, code) in cases {
        let what = format!("{code}: {:.60?}", request);
        let answer = raw_exchange(&server, request).await;
        assert_json_error(&answer, status, code, &what);
    }
    // A good request, then a bad one on the same connection: the first is answered as
    // ever, the second in the error shape.
    let both = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /\x7f HTTP/1.1\r\n\r\n".to_owned();
    let answer = raw_exchange(&server, both).await;
    let (first, second) = answer
        .split_once("{\"status\":\"ok\"}")
        .unwrap_or_else(|| panic!("{answer}"));
    assert!(first.starts_with("HTTP/1.1 200"), "{answer}");
    assert_json_error(second, 400, "malformed_request", "after a good request");
}

/// `answer` (one response, then the connection closed) is `status` in the error shape
/// with `code`, its request id also in `x-request-id`, and `connection: close`.
fn assert_json_error(answer: &str, status: u16, code: &str, what: &str) {
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{what}: no answer: {answer:?}"));
    assert!(
        head.starts_with(&format!("HTTP/1.1 {status} ")),
        "{what}: {answer}"
    );
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/json"),
        "{what}: {answer}"
    );
    assert!(head.contains("connection: close"), "{what}: {answer}");
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert!(body["error"]["message"].is_string(), "{what}: {body}");
    let id = body["error"]["request_id"].as_str().unwrap();
    assert!(
        head.contains(&format!("x-request-id: {id}")),
        "{what}: {answer}"
    );
}
