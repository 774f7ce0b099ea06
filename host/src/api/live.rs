//! `GET /t/{tenant}/events/live`: the tenant's log as Server-Sent Events. The
//! subscription itself (fan-out, catching up, dropping laggards) is [`crate::log::live`];
//! this file only writes its deliveries as SSE frames.
//!
//! Frames are written by hand rather than with axum's `Sse`: an event's frame is
//! rendered once and the same bytes go to every subscriber.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use super::auth::TenantAccess;
use super::extract::{Query, stored_query_text};
use super::schemas::TenantParams;
use super::streams::parse_types;
use super::views;
use crate::app::AppState;
use crate::error::ApiResult;
use crate::log::live::{Delivery, Subscription};
use crate::store::TenantId;
use crate::store::{RecordedEvent, name_problem};
use crate::tenancy::tenant::Caller;

/// A comment sent when nothing else was for this long, so proxies and clients see
/// the connection alive.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Frames already waiting are sent together up to this many bytes: a subscriber woken
/// once for a burst makes one write, not one per event.
const MAX_WRITE: usize = 256 << 10;
/// A subscriber writes at most once per interval while events keep coming: the first
/// event after a quiet spell goes out at once, later ones wait for the rest of the
/// interval and leave together. Under load most of a delivery's cost is per write (a
/// syscall and a wake-up on each side of the socket), not per byte, so the host's
/// writes per second to subscribers are bounded, not each subscriber's: the interval
/// is `WRITE_INTERVAL_PER_100` per hundred subscribers on the host, between
/// `MIN_WRITE_INTERVAL` and `MAX_WRITE_INTERVAL`. 100 subscribers write at most 50
/// times a second each (20 ms added latency at most); 1,000 five times (200 ms);
/// 10,000 four times (250 ms). Writers pay for the events, not for the audience.
const MIN_WRITE_INTERVAL: Duration = Duration::from_millis(20);
const WRITE_INTERVAL_PER_100: Duration = Duration::from_millis(20);
const MAX_WRITE_INTERVAL: Duration = Duration::from_millis(250);

fn write_interval(subscribers_on_host: usize) -> Duration {
    (WRITE_INTERVAL_PER_100 * (subscribers_on_host / 100) as u32)
        .clamp(MIN_WRITE_INTERVAL, MAX_WRITE_INTERVAL)
}

/// Where a live subscription starts, and what it delivers.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LiveQuery {
    /// Deliver the events after this position (default 0); a `Last-Event-ID` header
    /// wins over it.
    after: Option<u64>,
    /// Filters on the stored types: comma-separated, e.g. `A,B`.
    types: Option<String>,
}

/// Follow the tenant's log live, as Server-Sent Events.
///
/// `id:` the position, `event:` the type, `data:` the recorded event (the `Event`
/// schema); a comment heartbeat every 15 s; one `caught-up` event (`data:
/// {"position"}`) when the backlog is delivered. Every event after the starting
/// position arrives once, in position order. A subscriber too far behind, or one whose
/// read from the database failed, gets `event: dropped` (`data: {"reason":
/// "too_far_behind" | "store_unavailable", "position", "message"}`) and the stream
/// ends: resume with `Last-Event-ID: <position>`.
#[utoipa::path(get, path = "/t/{tenant}/events/live", tag = "log", operation_id = "follow_log",
    params(TenantParams, LiveQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this position (the `id:` of the last event received)")),
    responses(
        (status = 200, description = "The event stream", body = String, content_type = "text/event-stream"),
        (status = 429, description = "`over_limit` (with `max_subscribers`): the tenant has `max_subscribers` live subscribers already"),
    ))]
pub async fn live(
    access: TenantAccess,
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<LiveQuery>,
) -> ApiResult<Response> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let after = resume.or(query.after).unwrap_or(0);
    // The filter is only compared in memory, but a live stream and a page of the log
    // take the same `types`, so they refuse the same ones.
    stored_query_text("types", query.types.as_deref())?;
    let subscription = app.live.subscribe(
        &access.tenant,
        access.gate.limits.max_subscribers,
        after,
        parse_types(query.types.as_deref()),
    )?;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
        .unwrap_or_default();
    let writer = Writer {
        subscription,
        last_write: None,
        credentials: Credentials {
            revocations: app.tenants.revocations(),
            app: app.clone(),
            token,
            tenant: access.tenant.clone(),
        },
        ended: false,
        delivered: after,
    };
    let frames = futures::stream::unfold(writer, |mut w| async move {
        let frame = w.next_frame().await?;
        Some((Ok::<_, Infallible>(frame), w))
    });
    let mut response = Body::from_stream(frames).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// One subscriber's side of the connection: what it follows and when it last wrote.
struct Writer {
    subscription: Subscription,
    /// When the last frames were handed to the connection, for `MIN_WRITE_INTERVAL`.
    last_write: Option<Instant>,
    /// The token the stream was opened with, checked again whenever a token may have
    /// been revoked: a rotated token or a deleted tenant ends the stream.
    credentials: Credentials,
    /// Set once `dropped` was written for a revoked token: nothing follows.
    ended: bool,
    /// The last event position handed to the connection (or where it started): what
    /// a stream ended here tells the client to resume from.
    delivered: u64,
}

struct Credentials {
    revocations: tokio::sync::watch::Receiver<u64>,
    app: AppState,
    token: String,
    tenant: TenantId,
}

impl Credentials {
    /// Whether the token still opens this tenant's log. A store that cannot answer
    /// keeps the stream (the store's trouble is not the client's).
    async fn still_valid(&self) -> bool {
        match self.app.tenants.authenticate(&self.token).await {
            Ok(Some(Caller::Operator)) => true,
            Ok(Some(Caller::Tenant(id))) => id == self.tenant,
            Ok(None) => false,
            Err(_) => true,
        }
    }
}

impl Writer {
    /// The next frames (one, or several waiting), or a heartbeat when the subscription
    /// has nothing for a while. `Subscription::next` may be abandoned at a heartbeat:
    /// it loses nothing.
    async fn next_frame(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        let s = &mut self.subscription;
        let revoked = self.credentials.revocations.changed();
        let first = tokio::select! {
            delivery = tokio::time::timeout(HEARTBEAT, s.next()) => match delivery {
                Ok(delivery) => render_noting(delivery?, &mut self.delivered),
                Err(_) => return Some(Bytes::from_static(b":heartbeat\n\n")),
            },
            _ = revoked => {
                if self.credentials.still_valid().await {
                    return Some(Bytes::from_static(b":heartbeat\n\n"));
                }
                self.ended = true;
                return Some(render(Delivery::Dropped {
                    reason: "token_revoked",
                    position: self.delivered,
                }));
            }
        };
        // Pages read from the store go out as fast as they come: pacing is for the feed.
        if let Some(last) = self.last_write
            && !s.is_catching_up()
        {
            let interval = write_interval(s.subscribers_on_host());
            tokio::time::sleep_until((last + interval).into()).await;
        }
        let mut joined: Option<Vec<u8>> = None;
        let mut size = first.len();
        while size < MAX_WRITE
            && let Some(more) = s.next_ready()
        {
            let more = render_noting(more, &mut self.delivered);
            size += more.len();
            joined
                .get_or_insert_with(|| first.to_vec())
                .extend_from_slice(&more);
        }
        self.last_write = Some(Instant::now());
        Some(joined.map_or(first, Bytes::from))
    }
}

/// `render`, noting the position of an event handed to the connection.
fn render_noting(delivery: Delivery, delivered: &mut u64) -> Bytes {
    if let Delivery::Event(event) = &delivery {
        *delivered = (*delivered).max(event.event.position);
    }
    render(delivery)
}

fn render(delivery: Delivery) -> Bytes {
    match delivery {
        Delivery::Event(event) => event.rendered(event_frame),
        Delivery::CaughtUp(position) => frame(
            None,
            "caught-up",
            &json!({"position": position}).to_string(),
        ),
        Delivery::Dropped { reason, position } => frame(
            None,
            "dropped",
            &json!({
                "reason": reason,
                "position": position,
                "message": match reason {
                    "store_unavailable" => "the database did not answer while this \
                        subscriber read from it; reconnect with Last-Event-ID to resume",
                    "token_revoked" => "the token this stream was opened with was \
                        rotated, or its tenant deleted; reconnect with a valid token",
                    _ => "this subscriber fell too far behind the live feed; reconnect \
                          with Last-Event-ID to resume from the store",
                },
            })
            .to_string(),
        ),
    }
}

fn event_frame(e: &RecordedEvent) -> Bytes {
    let data = serde_json::to_string(&views::event(e)).unwrap_or_default();
    // A type stored before types were checked may hold a line break, which an SSE
    // field cannot carry: such an event goes out as `event`, its type in the data.
    // The same for a stored type named like one of the feed's own events, which a
    // client could not tell apart from them.
    let control = matches!(e.event_type.as_str(), "caught-up" | "dropped");
    let name = if !control && name_problem("type", &e.event_type).is_none() {
        e.event_type.as_str()
    } else {
        "event"
    };
    frame(Some(e.position), name, &data)
}

/// One SSE frame. `data` is JSON text, which holds no line breaks.
fn frame(id: Option<u64>, event: &str, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + event.len() + 32);
    if let Some(id) = id {
        out.push_str(&format!("id: {id}\n"));
    }
    out.push_str(&format!("event: {event}\ndata: {data}\n\n"));
    Bytes::from(out)
}
