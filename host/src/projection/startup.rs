//! What a projection worker reads before its first batch: the build's checkpoint
//! again after a restart, the tenant's gate, the build's component. Each failure is
//! sorted as `restart.rs` says: the store's passing failures are retried, the rest
//! parks the build.

use std::sync::Arc;

use super::restart::Halt;
use super::{ProjectionKey, Projections};
use crate::runtime::LoadedComponent;
use crate::store::TenantId;
use crate::store::retry::Transient;
use crate::tenancy::gate::TenantGate;

/// The build's checkpoint as the store holds it now (a commit whose answer was lost
/// may have moved it), shown in its status; `None` when the build was deleted, or
/// parked by another host meanwhile: nothing to run.
pub(super) async fn reload_checkpoint(
    projections: &Projections,
    key: &ProjectionKey,
    version: u64,
) -> Result<Option<u64>, Halt> {
    let stored = projections
        .store
        .projections(Some(&key.0))
        .await
        .map_err(Halt::store)?
        .into_iter()
        .find(|r| r.name == key.1 && r.version == version);
    let Some(stored) = stored.filter(|r| r.error.is_none()) else {
        return Ok(None);
    };
    let position = stored.position;
    projections.build_mut(key, version, |build| {
        build.position.send_if_modified(|at| {
            let moved = position > *at;
            if moved {
                *at = position;
            }
            moved
        });
    });
    Ok(Some(position))
}

/// The tenant's gate; a failure to read it is the store's (retried) or the build's.
pub(super) async fn gate_of(
    projections: &Projections,
    tenant: &TenantId,
) -> Result<Arc<TenantGate>, Halt> {
    projections
        .tenants
        .gate(tenant)
        .await
        .map_err(|e| Halt::api("", e.into()))
}

/// The build's component, compiled or from the artifact cache; its bytes missing or
/// unusable park the build, the store failing for a passing reason is retried.
pub(super) async fn load_component(
    projections: &Projections,
    tenant: &TenantId,
    digest: &str,
) -> Result<Arc<LoadedComponent>, Halt> {
    let (store, tenant, wanted) = (projections.store.clone(), tenant.clone(), digest.to_owned());
    projections
        .runtime
        .load(digest, || async move {
            store
                .plugin_wasm(&tenant, &wanted)
                .await?
                .ok_or_else(|| anyhow::anyhow!("the bytes of {wanted} are missing"))
        })
        .await
        .map_err(|e| {
            if e.is_transient() {
                Halt::store(e)
            } else {
                Halt::Build(format!("cannot load the component: {e:#}"))
            }
        })
}
