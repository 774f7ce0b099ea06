//! The plugin registry: uploads, versions, and the component that serves a plugin now.
//!
//! The store holds every version's bytes (so a fleet of hosts shares them); the
//! runtime holds the compiled components. This module ties the two together and
//! keeps a per-tenant copy of the version list so a command does not query the
//! database to find its plugin.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{ApiError, ApiResult};
use crate::runtime::{LoadedComponent, Runtime};
use crate::store::{EventStore, PluginKind, PluginVersion, TenantId};

pub struct Plugins {
    store: Arc<dyn EventStore>,
    runtime: Arc<Runtime>,
    /// Every version of every plugin, per tenant, ordered by name then version.
    /// Replaced after each upload before the upload returns, which is what makes a new
    /// aggregate version serve every command that arrives after its upload. A std
    /// `Mutex`: held only to clone an `Arc`.
    versions: Mutex<HashMap<TenantId, Arc<Vec<PluginVersion>>>>,
}

/// The answer to an upload.
pub struct Uploaded {
    pub version: PluginVersion,
    /// False when the bytes equal the newest version's, which is returned instead.
    pub created: bool,
}

impl Plugins {
    pub fn new(store: Arc<dyn EventStore>, runtime: Arc<Runtime>) -> Plugins {
        Plugins {
            store,
            runtime,
            versions: Mutex::new(HashMap::new()),
        }
    }

    /// Validates, compiles and records a new version.
    pub async fn upload(
        &self,
        tenant: &TenantId,
        name: &str,
        wasm: Vec<u8>,
    ) -> ApiResult<Uploaded> {
        let loaded = self
            .runtime
            .inspect(wasm.clone())
            .await
            .map_err(|e| ApiError::invalid_plugin(e.0))?;
        let kind = loaded.kind();
        if let Some(existing) = self.versions_of(tenant, name).await?.last()
            && existing.kind != kind
        {
            return Err(ApiError::invalid_plugin(format!(
                "plugin {name} is a {} and this component is a {}: upload it under another name",
                existing.kind.as_str(),
                kind.as_str()
            )));
        }
        let (version, created) = self
            .store
            .add_plugin_version(tenant, name, kind, &loaded.digest, &wasm)
            .await?;
        self.refresh(tenant).await?;
        Ok(Uploaded { version, created })
    }

    /// All versions of all plugins of the tenant.
    pub async fn all(&self, tenant: &TenantId) -> ApiResult<Arc<Vec<PluginVersion>>> {
        if let Some(found) = self.versions.lock().expect("versions lock").get(tenant) {
            return Ok(found.clone());
        }
        self.refresh(tenant).await
    }

    /// The versions of one plugin, oldest first (empty when there is no such plugin).
    pub async fn versions_of(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> ApiResult<Vec<PluginVersion>> {
        Ok(self
            .all(tenant)
            .await?
            .iter()
            .filter(|v| v.name == name)
            .cloned()
            .collect())
    }

    /// The newest version of an aggregate plugin and its component.
    ///
    /// One indexed read per command checks the cached list against the store, so a
    /// version uploaded through another host (sharing the database) serves every
    /// command that arrives after its upload returned, here too.
    pub async fn aggregate(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> ApiResult<(PluginVersion, Arc<LoadedComponent>)> {
        let stored = self.store.newest_plugin_version(tenant, name).await?;
        let mut cached = self.versions_of(tenant, name).await?.pop();
        if cached.as_ref().map_or(0, |v| v.version) != stored {
            self.refresh(tenant).await?;
            cached = self.versions_of(tenant, name).await?.pop();
        }
        let newest =
            cached.ok_or_else(|| ApiError::not_found(format!("no plugin named {name}")))?;
        if newest.kind != PluginKind::Aggregate {
            return Err(ApiError::not_found(format!(
                "plugin {name} is not an aggregate"
            )));
        }
        let component = self.component(tenant, &newest).await?;
        Ok((newest, component))
    }

    /// The compiled component of a version, loading or compiling it when needed.
    pub async fn component(
        &self,
        tenant: &TenantId,
        version: &PluginVersion,
    ) -> ApiResult<Arc<LoadedComponent>> {
        let store = self.store.clone();
        let digest = version.digest.clone();
        Ok(self
            .runtime
            .load(&version.digest, || async move {
                store
                    .plugin_wasm(tenant, &digest)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("the bytes of {digest} are missing"))
            })
            .await?)
    }

    /// Forgets a deleted tenant's cached versions.
    pub fn forget(&self, tenant: &TenantId) {
        self.versions.lock().expect("versions lock").remove(tenant);
    }

    async fn refresh(&self, tenant: &TenantId) -> ApiResult<Arc<Vec<PluginVersion>>> {
        let versions = Arc::new(self.store.plugin_versions(tenant).await?);
        self.versions
            .lock()
            .expect("versions lock")
            .insert(tenant.clone(), versions.clone());
        Ok(versions)
    }
}
