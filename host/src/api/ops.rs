//! Liveness, readiness, metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::auth::Operator;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(app): State<AppState>) -> ApiResult<Json<Value>> {
    if app.store.ready().await {
        Ok(Json(json!({"status": "ready"})))
    } else {
        Err(ApiError::unavailable(
            "not_ready",
            "the store is not reachable",
        ))
    }
}

/// Prometheus text. The per-tenant series name every tenant, so they are shown only to
/// the operator (`Authorization: Bearer <operator token>`); without it, the host-wide
/// counters alone.
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
        "# HELP cairn_components_compiled_total Components compiled by cranelift.\n\
         # TYPE cairn_components_compiled_total counter\n\
         cairn_components_compiled_total {}\n\
         # HELP cairn_components_loaded_from_cache_total Components loaded from the artifact cache.\n\
         # TYPE cairn_components_loaded_from_cache_total counter\n\
         cairn_components_loaded_from_cache_total {}\n",
        app.runtime.compiled.load(Relaxed),
        app.runtime.loaded_from_cache.load(Relaxed)
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// The contract as OpenAPI 3.1, kept beside the router in `openapi.json`.
pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}
