//! Uploading a plugin version: the tenant's quotas on versions and stored bytes, the
//! compile, the checks a new version must pass, and recording it (active at once, or
//! staged for verification).

use std::sync::Arc;

use axum::http::StatusCode;

use super::report::{self, Activation, VerifyOptions};
use super::{Plugins, Uploaded};
use crate::error::{ApiError, ApiResult};
use crate::runtime::InspectError;
use crate::store::{NewPluginVersion, PluginKind, PluginVersion, TenantId, Verification};
use crate::tenancy::gate::{Stored, TenantGate};

impl Plugins {
    /// Validates, compiles and records a new version; starts its verification when it
    /// has history to check. The tenant's quotas are checked before anything compiles:
    /// its number of versions, and its stored bytes with the upload counted; the
    /// compiled artifact is counted once its size is known.
    pub async fn upload(
        self: &Arc<Self>,
        tenant: &TenantId,
        gate: Arc<TenantGate>,
        name: &str,
        wasm: Vec<u8>,
        options: VerifyOptions,
    ) -> ApiResult<Uploaded> {
        let versions = self.refresh(tenant).await?.len() as u64;
        let max = gate.limits.max_plugin_versions;
        if versions >= max {
            gate.usage
                .quota_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "quota_exceeded",
                format!("this tenant has {versions} plugin versions, its max_plugin_versions"),
            )
            .with("max_plugin_versions", max));
        }
        let upload = Stored::Plugin(wasm.len() as u64);
        gate.reserve_storage(&self.store, tenant, upload).await?;
        let mut reserved = vec![upload];
        let result = self
            .upload_within_quota(tenant, gate.clone(), name, wasm, options, &mut reserved)
            .await;
        if let Err(refused) = &result
            && refused.code == "invalid_plugin"
        {
            gate.usage
                .uploads_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if !matches!(result, Ok(Uploaded::Ready(_) | Uploaded::Verifying(_))) {
            for bytes in reserved {
                gate.release_storage(bytes).await;
            }
        }
        result
    }

    async fn upload_within_quota(
        self: &Arc<Self>,
        tenant: &TenantId,
        gate: Arc<TenantGate>,
        name: &str,
        wasm: Vec<u8>,
        options: VerifyOptions,
        reserved: &mut Vec<Stored>,
    ) -> ApiResult<Uploaded> {
        // Behind this tenant's own earlier uploads, not its neighbours'.
        let compile_turn = gate.compile_turn().await;
        // Taken with the turn, so the tenant's compile before this one is charged.
        gate.usage
            .compile
            .admit(gate.limits.compile_cpu_ms_per_hour)?;
        let compile_cpu = std::sync::atomic::AtomicU64::new(0);
        let inspected = self
            .runtime
            .inspect_charged(
                wasm.clone(),
                std::time::Duration::from_millis(gate.limits.compile_timeout_ms),
                &compile_cpu,
            )
            .await;
        let micros = compile_cpu.load(std::sync::atomic::Ordering::Relaxed);
        if micros > 0 {
            gate.usage
                .compile
                .charge(std::time::Duration::from_micros(micros));
        }
        let loaded = inspected.map_err(|e| match e {
            InspectError::Invalid(invalid) => ApiError::invalid_plugin(invalid.0),
            InspectError::HostDiskFull(message) => ApiError::storage_full(message),
        })?;
        drop(compile_turn);
        let artifact = Stored::Plugin(loaded.artifact_bytes);
        gate.reserve_storage(&self.store, tenant, artifact).await?;
        reserved.push(artifact);
        let kind = loaded.kind();
        let versions: Vec<PluginVersion> = self
            .refresh(tenant)
            .await?
            .iter()
            .filter(|v| v.name == name)
            .cloned()
            .collect();
        if let Some(existing) = versions.last()
            && existing.kind != kind
        {
            return Err(ApiError::invalid_plugin(format!(
                "plugin {name} is a {} and this component is a {}: upload it under another name",
                existing.kind.as_str(),
                kind.as_str()
            )));
        }
        // Aggregates and projections read history through the upcasters active now,
        // pinned to the version so that a later upcaster never changes what it reads.
        let upcasters = match kind {
            PluginKind::Aggregate | PluginKind::Projection => {
                self.current_upcasters(tenant).await?
            }
            PluginKind::Upcaster => Vec::new(),
        };
        // The same bytes again answer with the version already there, unless that one
        // was rejected or read history through other upcasters: then it is checked anew.
        if let Some(newest) = versions.last()
            && newest.digest == loaded.digest
            && newest.verification != Verification::Rejected
            && newest.upcasters == upcasters
        {
            return Ok(Uploaded::Existing(newest.clone()));
        }
        if kind == PluginKind::Upcaster {
            let types = self.upcaster_types(&loaded, &gate).await?;
            if types.is_empty() {
                return Err(ApiError::invalid_plugin(
                    "the upcaster's event-types is empty: name the event types it rewrites",
                ));
            }
        }
        let needs_check = match kind {
            PluginKind::Projection => false,
            PluginKind::Aggregate => !self.streams_of(tenant, name).await?.is_empty(),
            PluginKind::Upcaster => {
                let types: Vec<String> = self
                    .upcaster_types(&loaded, &gate)
                    .await?
                    .iter()
                    .cloned()
                    .collect();
                !self.store.read_log(tenant, 0, 1, &types).await?.is_empty()
            }
        };
        let activate = kind != PluginKind::Projection
            && !needs_check
            && options.activation == Activation::Auto;
        let report = if needs_check {
            report::initial_report(&options, &upcasters)
        } else {
            report::nothing_to_check(&options, &upcasters, kind)
        };
        let version = self
            .store
            .add_plugin_version(
                tenant,
                NewPluginVersion {
                    name,
                    kind,
                    digest: &loaded.digest,
                    wasm: &wasm,
                    artifact_bytes: loaded.artifact_bytes,
                    verification: if needs_check {
                        Verification::Verifying
                    } else {
                        Verification::Verified
                    },
                    report: (kind != PluginKind::Projection).then_some(&report),
                    upcasters: &upcasters,
                    activate,
                },
            )
            .await?;
        self.changed(tenant).await?;
        if needs_check {
            self.clone()
                .start_verification(tenant.clone(), gate, version.clone());
            Ok(Uploaded::Verifying(version))
        } else {
            Ok(Uploaded::Ready(version))
        }
    }
}
