//! Which build of a projection is active, and the builds' lifecycle: rebuilds,
//! promotion and rollback (by plugin version or build id), the promotion of a build
//! that caught up, and deletion of builds no longer wanted.
//!
//! The store decides every promotion in one transaction (the rule is in
//! `store/shared_projections.rs`); this file asks it, then makes this host follow:
//! workers of retired builds stop, a promoted build's worker starts again, and builds
//! retired past the kept ones are deleted once their workers have ended.

use std::sync::Arc;

use super::{Build, MAX_BUILDING_PER_TENANT, Projections};
use crate::error::{ApiError, ApiResult};
use crate::store::{ProjectionStatus, PromoteRule, TenantId};

/// Which build a promote names: a plugin version (its newest kept build), a build id,
/// or both (the build, which must run that version).
#[derive(Clone, Copy, Debug)]
pub struct BuildChoice {
    pub version: Option<u64>,
    pub build: Option<u64>,
}

impl Projections {
    /// Builds the active code again beside itself; promoted when caught up. Answers the
    /// plugin version and the new build's id.
    pub async fn rebuild(self: &Arc<Self>, tenant: &TenantId, name: &str) -> ApiResult<(u64, u64)> {
        let active = self.active_record(tenant, name)?;
        let building = {
            let builds = self.builds.lock().expect("builds lock");
            builds
                .iter()
                .filter(|((t, _), _)| t == tenant)
                .flat_map(|(_, versions)| versions.values())
                // Wherever its worker runs: on a fleet a new build's worker may start on
                // another host, or here a moment later, once its lease is taken.
                .filter(|b| {
                    b.record.status == ProjectionStatus::Building && b.record.error.is_none()
                })
                .count()
        };
        if building >= MAX_BUILDING_PER_TENANT {
            return Err(ApiError::over_limit(format!(
                "{building} builds of this tenant are catching up; at most \
                 {MAX_BUILDING_PER_TENANT} may at once: wait for them to finish"
            )));
        }
        let record = self
            .store
            .add_projection_version(
                tenant,
                name,
                active.plugin_version,
                &active.digest,
                ProjectionStatus::Building,
            )
            .await?;
        let built = (record.plugin_version, record.version);
        self.track(record);
        self.changed(tenant, name).await?;
        Ok(built)
    }

    /// Makes a kept build the active one (a rollback when it is older); cancels any
    /// build waiting to take over. Answers the plugin version and build now active.
    pub async fn promote(
        self: &Arc<Self>,
        tenant: &TenantId,
        name: &str,
        choice: BuildChoice,
    ) -> ApiResult<(u64, u64)> {
        let (version, build, status) = self.choose(tenant, name, choice)?;
        let failed = || {
            ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "failed_version",
                format!(
                    "{name} version {version} (build {build}) is parked as failed; upload a \
                     fixed version"
                ),
            )
        };
        if status == ProjectionStatus::Failed {
            return Err(failed());
        }
        if !self
            .switch(tenant, name, build, PromoteRule::Explicit)
            .await?
        {
            // Deleted or parked by another host meanwhile.
            return Err(failed());
        }
        Ok((version, build))
    }

    /// The build a promote names: the build id when given (it must run `version`, if
    /// that is given too); else the active build of `version`, else its newest kept
    /// build that is not parked as failed, else its newest.
    fn choose(
        &self,
        tenant: &TenantId,
        name: &str,
        choice: BuildChoice,
    ) -> ApiResult<(u64, u64, ProjectionStatus)> {
        let builds = self.builds.lock().expect("builds lock");
        let kept = builds
            .get(&(tenant.clone(), name.to_owned()))
            .ok_or_else(|| ApiError::not_found(format!("no projection named {name}")))?;
        let effective = |b: &Build| {
            if b.record.error.is_some() && b.record.status != ProjectionStatus::Active {
                ProjectionStatus::Failed
            } else {
                b.record.status
            }
        };
        let found = match (choice.version, choice.build) {
            (_, Some(id)) => {
                let b = kept
                    .get(&id)
                    .ok_or_else(|| ApiError::not_found(format!("{name} has no build {id}")))?;
                if let Some(version) = choice.version
                    && version != b.record.plugin_version
                {
                    return Err(ApiError::bad_request(format!(
                        "build {id} of {name} runs version {}, not {version}",
                        b.record.plugin_version
                    )));
                }
                b
            }
            (Some(version), None) => kept
                .values()
                .filter(|b| b.record.plugin_version == version)
                .max_by_key(|b| {
                    let status = effective(b);
                    (
                        status == ProjectionStatus::Active,
                        status != ProjectionStatus::Failed,
                        b.record.version,
                    )
                })
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "{name} has no kept build of version {version} (see its status for \
                         the versions kept)"
                    ))
                })?,
            (None, None) => {
                // A body that names nothing is malformed, like one missing a field.
                return Err(ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "the body must name the plugin `version` to promote, or a `build`",
                ));
            }
        };
        Ok((
            found.record.plugin_version,
            found.record.version,
            effective(found),
        ))
    }

    /// Deletes a build that is not active, with its documents: a kept build no longer
    /// wanted, or a build still catching up (cancelled).
    pub async fn delete_build(
        self: &Arc<Self>,
        tenant: &TenantId,
        name: &str,
        build: u64,
    ) -> ApiResult<()> {
        let key = (tenant.clone(), name.to_owned());
        let status = {
            let builds = self.builds.lock().expect("builds lock");
            let kept = builds
                .get(&key)
                .ok_or_else(|| ApiError::not_found(format!("no projection named {name}")))?;
            kept.get(&build)
                .map(|b| b.record.status)
                .ok_or_else(|| ApiError::not_found(format!("{name} has no build {build}")))?
        };
        let active = || {
            ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "active_build",
                format!(
                    "build {build} is {name}'s active build: promote another build before \
                     deleting it"
                ),
            )
        };
        if status == ProjectionStatus::Active {
            return Err(active());
        }
        let worker = self.build_mut(&key, build, |b| b.worker.take()).flatten();
        if let Some(worker) = worker {
            let _ = worker.stop.send(true);
            let _ = worker.task.await;
        }
        if !self
            .store
            .delete_projection_version(tenant, name, build)
            .await?
        {
            // Promoted meanwhile (here or by another host): it runs again.
            self.changed(tenant, name).await?;
            return Err(active());
        }
        if let Some(versions) = self.builds.lock().expect("builds lock").get_mut(&key) {
            versions.remove(&build);
        }
        tracing::info!(%tenant, projection = name, build, "projection build deleted");
        Ok(())
    }

    /// A build that reached the head takes over, if it is still the newest requested.
    pub(crate) async fn caught_up(self: &Arc<Self>, tenant: &TenantId, name: &str, version: u64) {
        // Retried on the store's passing failures: a build that caught up with no
        // appends after it would otherwise wait for the next one to try again.
        let switched = crate::store::retry::retry("promoting a caught-up build", || {
            self.switch(tenant, name, version, PromoteRule::CaughtUp)
        })
        .await;
        if let Err(error) = switched {
            tracing::warn!(%tenant, projection = name, version, "promotion failed: {}", error.message);
        }
    }

    /// Asks the store to make `version` active under `rule`; then follows the store,
    /// and stops and deletes the builds it retired for good. False when refused.
    async fn switch(
        self: &Arc<Self>,
        tenant: &TenantId,
        name: &str,
        version: u64,
        rule: PromoteRule,
    ) -> ApiResult<bool> {
        let promotion = self
            .store
            .promote_projection(tenant, name, version, rule, self.keep_retired)
            .await?;
        self.changed(tenant, name).await?;
        if !promotion.promoted {
            tracing::info!(%tenant, projection = name, version, ?rule, "projection promotion refused: a newer choice stands");
            return Ok(false);
        }
        tracing::info!(%tenant, projection = name, version, ?rule, "projection version promoted");
        let key = (tenant.clone(), name.to_owned());
        for old in promotion.doomed {
            let worker = {
                let mut builds = self.builds.lock().expect("builds lock");
                builds
                    .get_mut(&key)
                    .and_then(|versions| versions.remove(&old))
                    .and_then(|build| build.worker)
            };
            if let Some(worker) = worker {
                let _ = worker.stop.send(true);
                // A worker ends at its next batch boundary; one that panicked is over too.
                let _ = worker.task.await;
            }
            self.store
                .delete_projection_version(tenant, name, old)
                .await?;
        }
        Ok(true)
    }
}
