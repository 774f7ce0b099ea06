//! The HTTP API (see docs/api.md): routing only. Handlers translate HTTP to calls on
//! the services in [`crate::app::App`] and back; they hold no logic of their own. Each
//! is documented where it is written, and `/openapi.json` is generated from that
//! (`openapi.rs`).

mod admin;
mod aggregates;
mod answers;
mod auth;
mod console;
mod extract;
mod import;
mod json;
mod live;
mod openapi;
mod ops;
mod outage;
mod plugins;
mod projections;
mod schemas;
mod streams;
mod tenant_rate;
mod views;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::ApiError;

/// Largest JSON body any route accepts before tenant limits are known; a tenant's own
/// `max_body_bytes` is checked by the JSON extractor below this ceiling.
const BODY_CEILING: usize = 64 << 20;

pub fn router(app: AppState) -> Router {
    let (routes, _) = routes().split_for_parts();
    routes
        .fallback(no_route)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_CEILING))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            tenant_rate::admit_tenant_request,
        ))
        .layer(axum::middleware::from_fn(close_after_refused_body))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            outage::answer_within_outage,
        ))
        .layer(axum::middleware::from_fn(request_id))
        .with_state(app)
}

/// Every route. Each handler carries its documentation (`#[utoipa::path]`: path, method,
/// parameters, body, answers), and `routes!` both routes it and adds it to the
/// document, so `/openapi.json` lists exactly what is served. Routes are added here
/// with `routes!` only, never with axum's `route`, which would serve a route undocumented
/// (`tests/openapi.rs` checks this file for it).
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi))
        .routes(routes!(admin::create, admin::list))
        .routes(routes!(admin::show, admin::delete, admin::update))
        .routes(routes!(admin::rotate_token))
        .routes(routes!(admin::hosts))
        .routes(routes!(plugins::list))
        .routes(
            routes!(plugins::show, plugins::upload)
                // Uploads are bounded by the tenant's plugin size limit instead.
                .layer(DefaultBodyLimit::disable()),
        )
        .routes(routes!(plugins::logs))
        .routes(routes!(plugins::version))
        .routes(routes!(plugins::activate))
        .routes(routes!(aggregates::command))
        .routes(routes!(aggregates::state))
        .routes(routes!(streams::append_many))
        .routes(routes!(streams::append, streams::read))
        .routes(routes!(projections::list))
        .routes(routes!(projections::show))
        .routes(routes!(projections::promote))
        .routes(routes!(projections::rebuild))
        .routes(routes!(projections::delete_build))
        .routes(routes!(projections::documents))
        .routes(routes!(projections::document))
        .routes(
            // An import is bounded line by line (max_body_bytes) and by the storage
            // quota, not by one body size.
            routes!(import::import).layer(DefaultBodyLimit::disable()),
        )
        .routes(routes!(streams::log))
        .routes(routes!(live::live))
        .routes(routes!(console::index))
        .routes(routes!(console::asset))
}

/// No route matched. A path with an empty segment (`/t/acme/streams/`,
/// `/t/acme/aggregates/account/`) names a route with a parameter left out: 400
/// `bad_request`, as where an empty segment matches a route (`extract::Path`).
async fn no_route(uri: axum::http::Uri) -> ApiError {
    let path = uri.path();
    if path.len() > 1 && path[1..].split('/').any(str::is_empty) {
        return ApiError::bad_request("the path has an empty segment");
    }
    ApiError::not_found("no such route")
}

/// Gives every request an id: the caller's `x-request-id` when it is a short token
/// (so a proxy's id carries through), a fresh one otherwise. It is on every log line
/// of the request (a tracing span), in every error body, and in the `x-request-id`
/// response header, so a client quoting it finds the server's side of the story.
async fn request_id(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::HeaderValue;
    use tracing::Instrument;
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_owned)
        .unwrap_or_else(crate::error::new_request_id);
    let span = tracing::info_span!("request", request_id = %id);
    let header = HeaderValue::from_str(&id).expect("request ids are visible ASCII");
    let method = request.method().clone();
    // The route's pattern, not the path: ids stay out of the route field, and a log
    // search by route finds every call of it.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("(no route)", |p| p.as_str())
        .to_owned();
    let tenant = request
        .uri()
        .path()
        .strip_prefix("/t/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("")
        .to_owned();
    let started = std::time::Instant::now();
    let mut response =
        crate::error::with_request_id(id.clone(), next.run(request).instrument(span)).await;
    // One line per request, when its head is answered (a live stream goes on after).
    tracing::info!(
        request_id = %id,
        %method,
        route,
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        tenant,
        "request"
    );
    response.headers_mut().insert(REQUEST_ID, header);
    response
}

const REQUEST_ID: &str = "x-request-id";

/// An error answered to a request that carried a body may leave that body unread (a
/// 401 before an upload is read, a 413 on its declared length). Such a connection
/// cannot carry another request, so say so: a client must not reuse it.
async fn close_after_refused_body(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let had_body = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|length| length != "0")
        || request.headers().contains_key(header::TRANSFER_ENCODING);
    let mut response = next.run(request).await;
    if had_body && (response.status().is_client_error() || response.status().is_server_error()) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
