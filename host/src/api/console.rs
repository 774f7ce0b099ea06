//! `/console`: the web console (docs/console.md), plain HTML, CSS and JavaScript
//! compiled into the binary from `host/src/console/`. It is a client of the public HTTP
//! API like any other (the browser calls `/admin/…` and `/t/{tenant}/…` with the token
//! the person signs in with); these handlers only hand out its files, each with a
//! Content-Security-Policy that lets the page load and call nothing but this server.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::IntoParams;

use super::extract::Path;
use crate::error::{ApiError, ApiResult};

/// Only this server: scripts, styles, images and API calls from the same origin, no
/// inline script or style, no frames, no plugins.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// The console's files: (name, content type, bytes).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/app.js"),
    ),
    (
        "events.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/events.js"),
    ),
    (
        "projections.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/projections.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../console/style.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_str!("../console/icon.svg"),
    ),
];

/// `/console/{asset}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AssetParams {
    /// One of the console's files: `app.js`, `events.js`, `projections.js`,
    /// `style.css`, `icon.svg`.
    #[allow(dead_code)]
    asset: String,
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The web console: sign in with a tenant's or the operator's token.
///
/// A page for a person (HTML); it uses only the public API, with the token given at
/// sign-in, so it needs no token to be served.
#[utoipa::path(get, path = "/console", tag = "console", operation_id = "console",
    responses((status = 200, description = "The console's page", body = String,
        content_type = "text/html; charset=utf-8")))]
pub async fn index() -> Response {
    page(
        "text/html; charset=utf-8",
        include_str!("../console/index.html"),
    )
}

/// One of the console's static files (scripts, style sheet, icon).
#[utoipa::path(get, path = "/console/{asset}", tag = "console", operation_id = "console_asset",
    params(AssetParams),
    responses(
        (status = 200, description = "The file: JavaScript, CSS or SVG", body = String,
            content_type = "text/javascript; charset=utf-8"),
        (status = 404, description = "`not_found`: no such file of the console"),
    ))]
pub async fn asset(Path(name): Path<String>) -> ApiResult<Response> {
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, content_type, body)| page(content_type, body))
        .ok_or_else(|| ApiError::not_found("no such file of the console"))
}
