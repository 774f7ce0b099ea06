//! Which builds this host runs when hosts share a database: only those whose lease it
//! holds (`fleet/leases.rs` takes, renews and hands back leases). Other hosts' builds
//! are tracked here too, without a worker: their checkpoints arrive as notices, so
//! reads with `min_position` and status work on every host.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{ProjectionKey, Projections};
use crate::error::ApiResult;
use crate::store::TenantId;

impl Projections {
    /// Whether this host may run the build's worker.
    pub(super) fn may_run(&self, key: &ProjectionKey, build: u64) -> bool {
        !self.leased
            || self.owned.lock().expect("owned lock").contains(&(
                key.0.clone(),
                key.1.clone(),
                build,
            ))
    }

    /// The builds whose leases this host now holds: workers start for the new ones and
    /// stop for those handed back or lost.
    pub async fn set_owned(
        self: &Arc<Self>,
        owned: HashSet<(TenantId, String, u64)>,
    ) -> ApiResult<()> {
        let changed: HashSet<(TenantId, String)> = {
            let mut current = self.owned.lock().expect("owned lock");
            let changed = current
                .symmetric_difference(&owned)
                .map(|(t, n, _)| (t.clone(), n.clone()))
                .collect();
            *current = owned;
            changed
        };
        for (tenant, name) in changed {
            self.follow_store(&tenant, Some(&name)).await?;
        }
        Ok(())
    }

    /// Another host's worker moved a build's checkpoint.
    pub fn progressed(&self, tenant: &TenantId, name: &str, build: u64, position: u64) {
        let key = (tenant.clone(), name.to_owned());
        self.build_mut(&key, build, |b| {
            b.position.send_if_modified(|at| {
                let moved = position > *at;
                if moved {
                    *at = position;
                }
                moved
            });
        });
    }

    /// Which host runs each of the tenant's builds, by (projection, build): the
    /// unexpired leases on a fleet, nothing otherwise.
    pub(super) async fn lease_holders(
        &self,
        tenant: &TenantId,
    ) -> ApiResult<HashMap<(String, u64), String>> {
        if !self.leased {
            return Ok(HashMap::new());
        }
        let now = crate::store::now_ms();
        Ok(self
            .store
            .leases()
            .await?
            .into_iter()
            .filter(|l| &l.tenant == tenant && l.expires_at > now)
            .map(|l| ((l.name, l.build), l.owner))
            .collect())
    }
}
