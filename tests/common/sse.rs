//! Server-Sent Events for the tests: `SseParser`, the one parser (bytes in, events out,
//! comments and heartbeats skipped, a UTF-8 character split across chunks kept whole),
//! and `Sse`, a reader that connects, checks the content type and parses with it.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use reqwest::StatusCode;
use serde_json::Value;

use super::Server;

#[derive(Debug, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Bytes of an event stream in, events out. It keeps bytes until an event is complete
/// (a blank line) and only then decodes it, so a multibyte character whose bytes arrive
/// in two chunks is decoded whole; decoding each chunk apart would turn it into U+FFFD.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes received, line ends written `\n`, not yet part of a returned event.
    buffer: Vec<u8>,
    /// The last byte received was `\r`: a line end, unless `\n` follows (CRLF).
    after_cr: bool,
}

impl SseParser {
    /// Takes bytes as they arrive (any split).
    pub fn push(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue; // the \n of a CRLF already written
            }
            if byte == b'\r' {
                self.after_cr = true;
                self.buffer.push(b'\n');
            } else {
                self.buffer.push(byte);
            }
        }
    }

    /// The next complete event, if one has arrived (comment-only blocks skipped).
    pub fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            let end = self.buffer.windows(2).position(|w| w == b"\n\n")?;
            let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
            let block = String::from_utf8(block).expect("an SSE event is UTF-8");
            let mut event = SseEvent::default();
            let mut data = Vec::new();
            for line in block.lines() {
                let (key, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match key {
                    "id" => event.id = Some(value.to_owned()),
                    "event" => event.event = Some(value.to_owned()),
                    "data" => data.push(value.to_owned()),
                    _ => {} // "" is a comment
                }
            }
            event.data = data.join("\n");
            if event.id.is_some() || event.event.is_some() || !event.data.is_empty() {
                return Some(event);
            }
        }
    }

    /// Every complete event in `bytes` (a whole body, or as much as has arrived).
    pub fn events_in(bytes: &[u8]) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        parser.push(bytes);
        std::iter::from_fn(|| parser.next_event()).collect()
    }
}

pub struct Sse {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    parser: SseParser,
}

impl Sse {
    pub async fn connect(
        server: &Server,
        token: &str,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Sse {
        // A client without an overall timeout: the stream never ends by itself.
        let mut request = reqwest::Client::new()
            .get(server.url(path))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Sse {
            body: Box::pin(resp.bytes_stream()),
            parser: SseParser::default(),
        }
    }

    /// The next event (comments and heartbeats skipped), within 10 s.
    pub async fn next(&mut self) -> SseEvent {
        self.next_or_end().await.expect("the SSE stream ended")
    }

    /// The next event, or `None` when the stream ended; within 10 s.
    pub async fn next_or_end(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(event) = self.parser.next_event() {
                return Some(event);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.body.next())
                .await
                .expect("no SSE event within 10 s")?
                .unwrap();
            self.parser.push(&chunk);
        }
    }

    /// Asserts the next event is the log event at `position` of type `ty`.
    pub async fn expect_event(&mut self, position: u64, ty: &str) -> Value {
        let e = self.next().await;
        assert_eq!(
            e.id.as_deref(),
            Some(position.to_string().as_str()),
            "{e:?}"
        );
        assert_eq!(e.event.as_deref(), Some(ty), "{e:?}");
        let data: Value = serde_json::from_str(&e.data).expect("data is a recorded event");
        assert_eq!(data["position"], position, "{e:?}");
        assert_eq!(data["type"], ty, "{e:?}");
        data
    }

    pub async fn expect_caught_up(&mut self) {
        let e = self.next().await;
        assert_eq!(e.event.as_deref(), Some("caught-up"), "{e:?}");
    }
}
