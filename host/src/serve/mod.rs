//! The accept loop: every TCP connection the server takes, how long it may dawdle, and
//! how many there may be at once.
//!
//! `axum::serve` offers none of these bounds. hyper's own `header_read_timeout` starts
//! as soon as a connection waits for a request head, so on a kept-alive connection it
//! would also be the idle timeout; the two are different promises here, so each
//! connection has a watchdog instead:
//! - header read: once the first byte of a request arrives, its head must be complete
//!   within `header_read_timeout`, or the connection is dropped (a slowloris holds
//!   nothing for long);
//! - idle: a connection with no request in flight for `idle_timeout` is closed
//!   gracefully. A request is in flight until its response body ends, so a
//!   Server-Sent Events stream (which has its own heartbeat) is never idle;
//! - cap: past `max_connections` open connections, a new one is answered
//!   `503 too_many_connections` with `Retry-After` and closed;
//! - body: a request body may keep the server waiting only so long (`body.rs`);
//! - a head that cannot be parsed is answered in the contract's error shape, not with
//!   hyper's bare status (`malformed.rs`).
//!
//! SIGTERM stops accepting, closes idle connections, lets requests in flight finish,
//! and gives up on those still open (live streams) after [`DRAIN`].

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, header};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tower::Service;

use crate::error::{ApiError, new_request_id, with_request_id};

mod body;
mod malformed;

pub use body::{BodyTimeout, CREDIT_BYTES};
pub use malformed::{MAX_HEAD_BYTES, MAX_HEADERS, MAX_URI_BYTES};

/// How connections are bounded; `cairn serve` flags set them.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// From a request's first byte to the end of its head.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// Open connections at most; more are answered 503.
    pub max_connections: usize,
    /// The longest one wait for a request body's next bytes, and the waits' total
    /// before the body has earned more (see `body.rs`).
    pub body_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

/// How long SIGTERM waits for open connections (live streams never end by themselves).
const DRAIN: Duration = Duration::from_secs(10);
/// Connections being refused at once past the cap; beyond it they are dropped unanswered,
/// so a flood costs a bounded number of tasks.
const MAX_REFUSING: usize = 256;
/// How long a refused connection has to send its request head before it is dropped.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `router` on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors (EMFILE) or a connection reset before
                    // it was taken: never a reason to stop serving the others.
                    tracing::warn!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let (router, stop) = (router.clone(), stop_rx.clone());
                tokio::spawn(async move {
                    serve_connection(stream, router, limits, stop).await;
                    drop(slot);
                });
            }
            Err(_) => {
                if let Ok(turn) = refusing.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(REFUSAL_TIMEOUT * 2, refuse(stream)).await;
                        drop(turn);
                    });
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it ends: having them all back means drained.
    let all = limits.max_connections as u32;
    if tokio::time::timeout(DRAIN, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open {DRAIN:?} after shutdown began; closing them");
    }
    Ok(())
}

/// Why a connection's watchdog fired.
enum Expired {
    /// A request head took too long: drop the connection at once.
    Header,
    /// Nothing in flight for the idle timeout: close it gracefully.
    Idle,
}

/// One connection, from accept to close.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    let watch = Arc::new(Watch::new());
    let io = TokioIo::new(Watched::new(stream, watch.clone()));
    let service = {
        let watch = watch.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let guard = watch.request_started();
            let mut router = router.clone();
            async move {
                let bounded = |incoming| body::Bounded::new(incoming, limits.body_read_timeout);
                let response = router.call(request.map(bounded).map(Body::new)).await?;
                // The request stays in flight until hyper drops the body it was sending.
                Ok::<_, Infallible>(response.map(|body| Body::new(InFlight { body, guard })))
            }
        })
    };
    // HTTP/1.1 only: the auto-detecting builder (HTTP/2 by prior knowledge, which no
    // client of this API needs) costs every connection a version-sniffing buffer.
    // The watchdog times request heads; hyper's own timer would also cut idle
    // keep-alive connections at the header timeout.
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let expired = tokio::select! {
        _ = connection.as_mut() => return,
        expired = watch.expiry(limits) => Some(expired),
        _ = stop.wait_for(|stop| *stop) => None,
    };
    match expired {
        Some(Expired::Header) => {
            tracing::debug!("closing a connection whose request head was not sent in time");
            return;
        }
        Some(Expired::Idle) | None => connection.as_mut().graceful_shutdown(),
    }
    let _ = connection.await;
}

/// A connection's activity, shared by its socket, its requests and its watchdog.
struct Watch {
    state: Mutex<Activity>,
    changed: Notify,
}

struct Activity {
    /// Requests whose response body has not ended.
    in_flight: usize,
    /// When the first byte of a request head arrived, until the head is complete.
    head_started: Option<Instant>,
    /// Bytes arrived since the last head was complete (the start of the next one,
    /// pipelined or not).
    read_since_head: bool,
    /// When the connection last had nothing in flight.
    idle_since: Instant,
}

impl Watch {
    fn new() -> Watch {
        Watch {
            state: Mutex::new(Activity {
                in_flight: 0,
                head_started: None,
                read_since_head: false,
                idle_since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    fn bytes_read(&self) {
        let mut state = self.state.lock().unwrap();
        state.read_since_head = true;
        if state.in_flight == 0 && state.head_started.is_none() {
            state.head_started = Some(Instant::now());
            self.changed.notify_one();
        }
    }

    fn request_started(self: &Arc<Self>) -> RequestGuard {
        let mut state = self.state.lock().unwrap();
        state.in_flight += 1;
        state.head_started = None;
        state.read_since_head = false;
        self.changed.notify_one();
        RequestGuard(self.clone())
    }

    /// Resolves when the connection has overstayed one of its timeouts.
    async fn expiry(&self, limits: ConnectionLimits) -> Expired {
        loop {
            let changed = self.changed.notified();
            let deadline = {
                let state = self.state.lock().unwrap();
                if let Some(started) = state.head_started {
                    Some((started + limits.header_read_timeout, Expired::Header))
                } else if state.in_flight == 0 {
                    Some((state.idle_since + limits.idle_timeout, Expired::Idle))
                } else {
                    None
                }
            };
            match deadline {
                Some((at, why)) => tokio::select! {
                    _ = changed => {}
                    _ = tokio::time::sleep_until(at) => return why,
                },
                None => changed.await,
            }
        }
    }
}

/// Held by a request from its head until its response body ends.
struct RequestGuard(Arc<Watch>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap();
        state.in_flight -= 1;
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
            // Part of the next head already arrived: its clock starts now.
            if state.read_since_head {
                state.head_started = Some(Instant::now());
            }
        }
        self.0.changed.notify_one();
    }
}

/// A response body that keeps its request in flight until it is dropped.
struct InFlight {
    body: Body,
    #[allow(dead_code)] // held for its Drop
    guard: RequestGuard,
}

impl http_body::Body for InFlight {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The socket, telling the watchdog when bytes arrive, and writing the contract's
/// answer in place of hyper's to a head it cannot parse.
struct Watched {
    inner: TcpStream,
    watch: Arc<Watch>,
    rewrite: malformed::Rewrite,
}

impl Watched {
    fn new(inner: TcpStream, watch: Arc<Watch>) -> Watched {
        Watched {
            inner,
            watch,
            rewrite: malformed::Rewrite::default(),
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let bufs = [io::IoSlice::new(buf)];
        this.rewrite
            .poll_write(Pin::new(&mut this.inner), cx, &bufs)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.rewrite.poll_write(Pin::new(&mut this.inner), cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Answers one request on a connection past the cap with 503 and closes it. Reading
/// the request first (rather than writing at once and closing) lets the client see
/// the answer instead of a reset.
async fn refuse(stream: TcpStream) {
    let service = hyper::service::service_fn(|_: Request<Incoming>| async {
        let id = new_request_id();
        let header_id = HeaderValue::from_str(&id).expect("request ids are visible ASCII");
        let refusal = async {
            ApiError::unavailable(
                "too_many_connections",
                "the server has as many connections open as it allows; retry shortly",
            )
            .into_response()
        };
        let mut response = with_request_id(id, refusal).await;
        let headers = response.headers_mut();
        headers.insert("x-request-id", header_id);
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        Ok::<_, Infallible>(response)
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(REFUSAL_TIMEOUT)
        .keep_alive(false)
        .serve_connection(
            TokioIo::new(Watched::new(stream, Arc::new(Watch::new()))),
            service,
        )
        .await;
}
