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
use crate::metrics::{BuildSample, TenantCounters, TenantSample};
use crate::projection::ProjectionView;
use crate::store::TenantId;
use crate::tenancy::gate::TenantGate;

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
        // The services' state is read here and handed to the renderer: metrics is a
        // sink and reads nobody.
        let gates = app.tenants.gates();
        let mut samples = Vec::new();
        let mut builds = Vec::new();
        for (tenant, gate) in &gates {
            let stored = gate.stored_bytes(&app.store, tenant).await.unwrap_or(0);
            if let Ok(views) = app.projections.status(tenant, None).await {
                builds.extend(build_samples(tenant, views));
            }
            samples.push(tenant_sample(tenant, gate, stored));
        }
        text.push_str(&crate::metrics::render_usage(&samples));
        text.push_str(&crate::metrics::render_projections(&builds));
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

/// A tenant's series as its gate counts them, for the metrics renderer.
fn tenant_sample<'a>(tenant: &TenantId, gate: &'a TenantGate, stored: u64) -> TenantSample<'a> {
    use std::sync::atomic::Ordering::Relaxed;
    let u = &gate.usage;
    TenantSample {
        tenant: tenant.to_string(),
        stored_bytes: stored,
        max_stored_bytes: gate.limits.max_stored_bytes,
        counters: TenantCounters {
            commands: u.commands.load(Relaxed),
            plugin_calls: u.plugin_calls.load(Relaxed),
            plugin_micros: u.plugin_micros.load(Relaxed),
            traps: u.traps.load(Relaxed),
            limit_hits: u.deadline_hits.load(Relaxed) + u.memory_hits.load(Relaxed),
            rate_limited: u.rate_limited.load(Relaxed),
            quota_refused: u.quota_refused.load(Relaxed),
            uploads_refused: u.uploads_refused.load(Relaxed),
            compile_cpu_ms: u.compile.cpu_ms.load(Relaxed),
            compiles_refused: u.compile.refused.load(Relaxed),
            requests: u.requests.load(Relaxed),
            requests_rate_limited: u.requests_rate_limited.load(Relaxed),
            requests_busy: u.requests_busy.load(Relaxed),
        },
        command_latency: &u.command_latency,
        plugin_latencies: u.plugin_latencies(),
    }
}

/// A tenant's projection builds as the metrics renderer takes them, in the status'
/// order (projections, then builds).
fn build_samples(tenant: &TenantId, views: Vec<ProjectionView>) -> Vec<BuildSample> {
    let mut builds = Vec::new();
    for view in views {
        for build in view.versions {
            builds.push(BuildSample {
                tenant: tenant.to_string(),
                projection: view.name.clone(),
                version: build.version,
                build: build.build,
                position: build.position,
                lag: build.lag,
                events_per_second: build.events_per_second,
                status: build.status.as_str(),
            });
        }
    }
    builds
}
