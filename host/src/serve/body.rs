//! How long a request body may keep the server waiting. Every request's body is
//! wrapped here before any handler sees it, so no route can wait on a client forever:
//! a client that stops mid-body, or drips a byte every few seconds, is cut off, while
//! a large upload on a slow link is not.
//!
//! The bound counts only the time the server spends waiting for the client's bytes
//! (an import busy writing what it read is not waiting), and ends the body with
//! [`BodyTimeout`] when either
//! - one wait for the next bytes lasts `timeout`, or
//! - the waits add up to more than `timeout` plus one second per [`CREDIT_BYTES`]
//!   received (a body arriving at less than about 64 KiB/s past its first `timeout`).
//!
//! The API answers that error 408 `body_timeout` and closes the connection.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

/// Bytes received that earn a body one more second of waiting.
pub const CREDIT_BYTES: u64 = 64 * 1024;

/// The error a body read ends with when the client kept the server waiting too long.
#[derive(Debug)]
pub struct BodyTimeout {
    /// The bound that was passed: `timeout` for one wait, or the whole allowance.
    pub waited: Duration,
    /// Bytes of the body received before it was cut off.
    pub received: u64,
}

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body kept the server waiting {:.1} s ({} bytes received)",
            self.waited.as_secs_f64(),
            self.received
        )
    }
}

impl std::error::Error for BodyTimeout {}

/// A request body whose reader waits for the client only within the bound above.
pub struct Bounded {
    inner: Incoming,
    timeout: Duration,
    /// Time spent waiting for bytes, waits that ended only.
    waited: Duration,
    received: u64,
    /// When the current wait began (the inner body last answered `Pending`).
    waiting_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    expired: bool,
}

impl Bounded {
    pub fn new(inner: Incoming, timeout: Duration) -> Bounded {
        Bounded {
            inner,
            timeout,
            waited: Duration::ZERO,
            received: 0,
            waiting_since: None,
            timer: None,
            expired: false,
        }
    }

    /// When the current wait, begun at `since`, must end.
    fn deadline(&self, since: Instant) -> (Instant, Duration) {
        let allowance = self.timeout + Duration::from_secs(self.received / CREDIT_BYTES);
        let left = allowance.saturating_sub(self.waited);
        if left < self.timeout {
            (since + left, allowance)
        } else {
            (since + self.timeout, self.timeout)
        }
    }

    fn expire(&mut self, waited: Duration) -> BodyTimeout {
        self.expired = true;
        self.timer = None;
        BodyTimeout {
            waited,
            received: self.received,
        }
    }
}

impl Body for Bounded {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(since) = this.waiting_since.take() {
                    this.waited += since.elapsed();
                }
                if let Some(Ok(frame)) = &frame
                    && let Some(data) = frame.data_ref()
                {
                    this.received += data.len() as u64;
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let now = Instant::now();
                let since = *this.waiting_since.get_or_insert(now);
                let (deadline, bound) = this.deadline(since);
                if now >= deadline {
                    return Poll::Ready(Some(Err(this.expire(bound).into())));
                }
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(this.expire(bound).into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
