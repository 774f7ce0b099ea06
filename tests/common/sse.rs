//! A Server-Sent Events reader for the live tests: connects, checks the content type,
//! and yields events with comments and heartbeats skipped.

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

pub struct Sse {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
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
            buffer: String::new(),
        }
    }

    /// The next event (comments and heartbeats skipped), within 10 s.
    pub async fn next(&mut self) -> SseEvent {
        self.next_or_end().await.expect("the SSE stream ended")
    }

    /// The next event, or `None` when the stream ended; within 10 s.
    pub async fn next_or_end(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
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
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.body.next())
                .await
                .expect("no SSE event within 10 s")?
                .unwrap();
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
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
