//! Liveness, readiness, metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::Value;

use super::auth::Operator;
use super::views::{self, StatusView};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};

/// Alive: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", operation_id = "healthz",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = StatusView)))]
pub async fn healthz() -> Json<Value> {
    views::body(StatusView { status: "ok" })
}

/// Ready: the store is reachable and migrated.
#[utoipa::path(get, path = "/readyz", tag = "operations", operation_id = "readyz",
    responses(
        (status = 200, description = "`{\"status\": \"ready\"}`", body = StatusView),
        (status = 503, description = "`not_ready`: the store is not reachable, or its disk is full (answered within about a second)"),
    ))]
pub async fn readyz(State(app): State<AppState>) -> ApiResult<Json<Value>> {
    if app.reachability.is_reachable() && app.store.ready().await {
        Ok(views::body(StatusView { status: "ready" }))
    } else {
        Err(ApiError::unavailable(
            "not_ready",
            "the store is not reachable or has no room to write",
        ))
    }
}

/// Prometheus metrics.
///
/// The per-tenant series name every tenant, so they are shown only to the operator
/// (`Authorization: Bearer <operator token>`); without it, the host-wide counters
/// alone.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text exposition (0.0.4): host-wide \
        counters, and with the operator token the per-tenant series too",
        body = String, content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(operator: Option<Operator>, State(app): State<AppState>) -> impl IntoResponse {
    let mut text = app.metrics.render();
    if operator.is_some() {
        let mut gates = Vec::new();
        let mut projections = Vec::new();
        for (tenant, gate) in app.tenants.gates() {
            let stored = gate.stored_bytes(&app.store, &tenant).await.unwrap_or(0);
            if let Ok(views) = app.projections.status(&tenant, None).await {
                projections.push((tenant.clone(), views));
            }
            gates.push((tenant, gate, stored));
        }
        text.push_str(&crate::metrics::render_usage(&gates));
        text.push_str(&crate::metrics::render_projections(&projections));
    }
    use std::sync::atomic::Ordering::Relaxed;
    text.push_str(&format!(
        "# HELP cairn_components_compiles_started_total Compiles begun (uploads past the shape check, not found in the artifact cache).\n\
         # TYPE cairn_components_compiles_started_total counter\n\
         cairn_components_compiles_started_total {}\n\
         # HELP cairn_components_compiled_total Components compiled by cranelift.\n\
         # TYPE cairn_components_compiled_total counter\n\
         cairn_components_compiled_total {}\n\
         # HELP cairn_components_loaded_from_cache_total Components loaded from the artifact cache.\n\
         # TYPE cairn_components_loaded_from_cache_total counter\n\
         cairn_components_loaded_from_cache_total {}\n",
        app.runtime.compiles_started.load(Relaxed),
        app.runtime.compiled.load(Relaxed),
        app.runtime.loaded_from_cache.load(Relaxed)
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// This document: the API as OpenAPI 3.1, generated from the handlers and their types.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Value)))]
pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi::document_json(),
    )
}
