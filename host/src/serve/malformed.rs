//! The answer to a request head that cannot be parsed, in the contract's error shape.
//!
//! hyper answers such a head itself, before any service is called: bad bytes in the
//! request line, a bad header or `Content-Length`, more than [`MAX_HEADERS`] header
//! fields or a head over [`MAX_HEAD_BYTES`] (431), a URI over [`MAX_URI_BYTES`] (414).
//! It offers no hook for that answer, which is a bare head with no body and no content
//! type (`HTTP/1.1 400 Bad Request`, `connection: close`, `content-length: 0`, `date`),
//! always the last bytes it writes on the connection. So the connection's writer
//! ([`Rewrite`]) recognises that head at the end of what hyper writes and sends the
//! JSON error in its place, keeping hyper's status line and date.
//!
//! Nothing the API answers can be taken for it: every error the API answers has a
//! body, and no body the API writes ends in a bare HTTP head (its bodies are JSON,
//! Server-Sent Events, metrics text, the console's files, or chunked framing).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::StatusCode;
use tokio::io::AsyncWrite;

use crate::error::{ApiError, new_request_id};

/// hyper's limits on a request head (its defaults, left alone: setting the header
/// count costs every request an allocation); named here for the answer's message.
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;
pub const MAX_URI_BYTES: usize = u16::MAX as usize - 1;

/// A connection's writer state: hyper's bytes pass through untouched, except its own
/// answer to an unparsable head.
#[derive(Default)]
pub struct Rewrite {
    replacing: Option<Replacement>,
}

/// The bytes written in place of hyper's, and how many of hyper's they stand for.
struct Replacement {
    bytes: Vec<u8>,
    written: usize,
    claimed: usize,
}

impl Rewrite {
    /// Writes `bufs`, hyper's next bytes, to `inner`, or the JSON answer in place of
    /// hyper's bare one. Reports hyper's bytes written only once all of the
    /// replacement is, so hyper's flush and shutdown come after it.
    pub fn poll_write<W: AsyncWrite + ?Sized>(
        &mut self,
        mut inner: Pin<&mut W>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.replacing.is_none() {
            let Some(replacement) = replace(bufs) else {
                return inner.poll_write_vectored(cx, bufs);
            };
            self.replacing = Some(replacement);
        }
        let replacing = self.replacing.as_mut().expect("set above");
        while replacing.written < replacing.bytes.len() {
            match inner
                .as_mut()
                .poll_write(cx, &replacing.bytes[replacing.written..])
            {
                Poll::Ready(Ok(0)) => {
                    self.replacing = None;
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => replacing.written += n,
                Poll::Ready(Err(error)) => {
                    self.replacing = None;
                    return Poll::Ready(Err(error));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        let claimed = replacing.claimed;
        self.replacing = None;
        Poll::Ready(Ok(claimed))
    }
}

/// When hyper's bytes end with its bare answer to an unparsable head: what to write
/// instead (any bytes before that answer, then the JSON answer).
fn replace(bufs: &[IoSlice<'_>]) -> Option<Replacement> {
    let last = bufs.iter().rposition(|b| !b.is_empty())?;
    let (start, status) = bare_answer(&bufs[last])?;
    let mut bytes: Vec<u8> = bufs[..last]
        .iter()
        .flat_map(|b| b.iter().copied())
        .collect();
    bytes.extend_from_slice(&bufs[last][..start]);
    bytes.extend_from_slice(&answer(&bufs[last][start..], status));
    Some(Replacement {
        bytes,
        written: 0,
        claimed: bufs.iter().map(|b| b.len()).sum(),
    })
}

/// Where hyper's bare answer starts in `bytes`, and its status: a head ending
/// `bytes`, with a 400, 414 or 431 status and no header but `connection: close`,
/// `content-length: 0` and `date`.
fn bare_answer(bytes: &[u8]) -> Option<(usize, u16)> {
    if !bytes.ends_with(b"\r\n\r\n") {
        return None;
    }
    // The head is short; a longer tail is never one.
    let from = bytes.len().saturating_sub(256);
    let start = (from..bytes.len())
        .rev()
        .find(|&i| bytes[i..].starts_with(b"HTTP/1."))?;
    let head = std::str::from_utf8(&bytes[start..bytes.len() - 4]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.get(9..12)?.parse().ok()?;
    if !matches!(status, 400 | 414 | 431) {
        return None;
    }
    let mut bodiless = false;
    for line in lines {
        match line.to_ascii_lowercase().as_str() {
            "content-length: 0" => bodiless = true,
            "connection: close" => {}
            other if other.starts_with("date: ") => {}
            _ => return None,
        }
    }
    bodiless.then_some((start, status))
}

/// The JSON answer standing for hyper's bare `head`: its status line and date, the
/// error in the contract's shape, a request id, and `connection: close`.
fn answer(head: &[u8], status: u16) -> Vec<u8> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("HTTP/1.1 400 Bad Request");
    let date = lines.find(|l| l.to_ascii_lowercase().starts_with("date: "));
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let error = ApiError::unparsable_head(status, MAX_HEADERS, MAX_HEAD_BYTES, MAX_URI_BYTES);
    let id = new_request_id();
    tracing::info!(
        request_id = %id,
        status = status.as_u16(),
        code = error.code,
        "request head refused before routing"
    );
    let body = error.to_json(Some(&id)).to_string();
    let mut out = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\nx-request-id: {id}\r\n",
        body.len()
    );
    if let Some(date) = date {
        out.push_str(date);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BARE: &[u8] =
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 21:00:05 GMT\r\n\r\n";

    #[test]
    fn hyper_bare_answers_are_recognised_alone_or_after_a_response() {
        assert_eq!(bare_answer(BARE), Some((0, 431)));
        let ours = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        let both = [&ours[..], BARE].concat();
        assert_eq!(bare_answer(&both), Some((ours.len(), 431)));
    }

    #[test]
    fn responses_of_the_api_are_left_alone() {
        for head in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"0\r\n\r\n",
        ] {
            assert_eq!(bare_answer(head), None, "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn the_answer_is_json_in_the_error_shape() {
        let answer = String::from_utf8(answer(BARE, 431)).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(head.contains("date: Mon, 07 Dec 2026"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "headers_too_large", "{body}");
    }
}
