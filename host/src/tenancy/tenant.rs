//! Tenants and tokens: creating and deleting tenants, and telling who a bearer token
//! belongs to.
//!
//! Tokens are 256 random bits shown once; only their SHA-256 is stored. Looking a
//! tenant up by that hash leaks nothing useful through timing (an attacker would need
//! a preimage), and the operator token is compared in constant time.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use cap_std::fs::Dir;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::store::{EventStore, TenantId, TenantRecord};
use crate::tenancy::gate::{PluginLogs, TenantGate, Usage};
use crate::tenancy::limits::Limits;

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    Operator,
    Tenant(TenantId),
}

pub struct Tenants {
    store: Arc<dyn EventStore>,
    /// SHA-256 of the operator token.
    operator_hash: [u8; 32],
    /// Token hash → tenant, so authenticating does not query the database every time.
    /// Emptied whenever a tenant is deleted or a token changes. A std `Mutex`: held only
    /// for a map access, never across an await.
    by_token: Mutex<HashMap<String, TenantId>>,
    /// The gate (limits, call slots, rate, usage) per tenant, built on first use.
    gates: Mutex<HashMap<TenantId, Arc<TenantGate>>>,
    /// Moves whenever a tenant's token may have stopped working (a rotation or a
    /// deletion, here or announced by another host): long-lived requests (live
    /// streams) check their token again when it does.
    revocations: tokio::sync::watch::Sender<u64>,
}

/// A fresh 256-bit token, hex-encoded, with a prefix that makes leaks easy to grep.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("cairn_{}", hex::encode(bytes))
}

fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The operator token: `CAIRN_ADMIN_TOKEN` if set, else the one stored in
/// `<data-dir>/admin-token`, else a new one written there with mode 0600.
pub fn operator_token(
    from_env: Option<String>,
    data_dir: &Dir,
    shown_as: &Path,
) -> anyhow::Result<String> {
    if let Some(token) = from_env.filter(|t| !t.trim().is_empty()) {
        tracing::info!("the operator token is CAIRN_ADMIN_TOKEN's");
        return Ok(token.trim().to_owned());
    }
    const FILE: &str = "admin-token";
    if let Ok(token) = data_dir.read_to_string(FILE) {
        tracing::info!(
            "the operator token is the one in {}",
            shown_as.join(FILE).display()
        );
        return Ok(token.trim().to_owned());
    }
    let token = new_token();
    write_private(data_dir, FILE, &token)
        .with_context(|| format!("writing {}", shown_as.join(FILE).display()))?;
    tracing::info!(
        "generated the operator token; it is in {} (this is the only time it is logged): {token}",
        shown_as.join(FILE).display()
    );
    Ok(token)
}

fn write_private(dir: &Dir, name: &str, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = cap_std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    cap_std::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = dir.open_with(name, &options)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// Why a tenant operation failed, in tenancy's own terms; the HTTP edge (`error.rs`)
/// answers each with its status and code.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// No tenant has this id (`404 not_found`).
    #[error("no tenant {0}")]
    NotFound(TenantId),
    /// A tenant with this id exists already (`409 already_exists`).
    #[error("tenant {0} already exists")]
    AlreadyExists(TenantId),
    /// The store failed; its kind (`store/fault.rs`) chooses the answer.
    #[error(transparent)]
    Store(#[from] anyhow::Error),
    /// Limits that do not convert to or from JSON: a bug (`500 internal`).
    #[error(transparent)]
    Limits(#[from] serde_json::Error),
}

pub type TenantResult<T> = Result<T, TenantError>;

/// A store failure may pass; a missing tenant or a bug will not.
impl crate::store::retry::Transient for TenantError {
    fn is_transient(&self) -> bool {
        match self {
            TenantError::Store(error) => error.is_transient(),
            _ => false,
        }
    }
}

/// A stored tenant's limits, as its gate applies them.
fn limits_of(record: TenantRecord) -> TenantResult<Limits> {
    let mut limits = serde_json::from_value::<Limits>(record.limits)?;
    // Tenants created before the cap keep working, inside it: a larger value would let
    // one tenant hold more than its share of the instance pool.
    limits.max_concurrent_calls = limits
        .max_concurrent_calls
        .min(crate::tenancy::limits::MAX_CONCURRENT_CALLS);
    Ok(limits)
}

impl Tenants {
    pub fn new(store: Arc<dyn EventStore>, operator_token: &str) -> Tenants {
        Tenants {
            store,
            operator_hash: hash_token(operator_token),
            by_token: Mutex::new(HashMap::new()),
            gates: Mutex::new(HashMap::new()),
            revocations: tokio::sync::watch::channel(0).0,
        }
    }

    /// Wakes whenever some token may have stopped working.
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    fn revoked(&self) {
        self.revocations.send_modify(|n| *n += 1);
    }

    /// Resolves a bearer token; `None` when it is unknown.
    pub async fn authenticate(&self, token: &str) -> TenantResult<Option<Caller>> {
        let hash = hash_token(token);
        if constant_time_eq(&hash, &self.operator_hash) {
            return Ok(Some(Caller::Operator));
        }
        let hex_hash = hex::encode(hash);
        if let Some(id) = self.by_token.lock().expect("token cache").get(&hex_hash) {
            return Ok(Some(Caller::Tenant(id.clone())));
        }
        let Some(id) = self.store.tenant_by_token_hash(&hex_hash).await? else {
            return Ok(None);
        };
        self.by_token
            .lock()
            .expect("token cache")
            .insert(hex_hash, id.clone());
        Ok(Some(Caller::Tenant(id)))
    }

    /// Creates a tenant and returns its token (shown only this once).
    pub async fn create(&self, id: &TenantId, limits: &Limits) -> TenantResult<String> {
        let token = new_token();
        let limits_json = serde_json::to_value(limits)?;
        let created = self
            .store
            .create_tenant(id, &hex::encode(hash_token(&token)), &limits_json)
            .await?;
        if !created {
            return Err(TenantError::AlreadyExists(id.clone()));
        }
        Ok(token)
    }

    pub async fn get(&self, id: &TenantId) -> TenantResult<TenantRecord> {
        self.store
            .tenant(id)
            .await?
            .ok_or_else(|| TenantError::NotFound(id.clone()))
    }

    pub async fn list(&self) -> TenantResult<Vec<TenantRecord>> {
        Ok(self.store.tenants().await?)
    }

    /// The tenant's gate (limits, call slots, usage); 404 when the tenant does not exist.
    pub async fn gate(&self, id: &TenantId) -> TenantResult<Arc<TenantGate>> {
        if let Some(gate) = self.gates.lock().expect("gates lock").get(id) {
            return Ok(gate.clone());
        }
        let record = self.get(id).await?;
        let limits = limits_of(record)?;
        let gate = Arc::new(TenantGate::new(
            limits,
            Arc::new(Usage::default()),
            Arc::new(PluginLogs::default()),
        ));
        Ok(self
            .gates
            .lock()
            .expect("gates lock")
            .entry(id.clone())
            .or_insert(gate)
            .clone())
    }

    /// The gate if it is already built (no I/O): lets a body extractor apply the
    /// tenant's body limit after `TenantAccess` has run.
    pub fn cached_gate(&self, id: &TenantId) -> Option<Arc<TenantGate>> {
        self.gates.lock().expect("gates lock").get(id).cloned()
    }

    /// Usage counters of every tenant this host has served since it started.
    pub fn gates(&self) -> Vec<(TenantId, Arc<TenantGate>)> {
        let gates = self.gates.lock().expect("gates lock");
        let mut all: Vec<_> = gates.iter().map(|(t, g)| (t.clone(), g.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Follows a change another host made to the tenant: its cached token goes, its
    /// limits are read again (usage and logs carry over). False when the tenant is
    /// gone, for the caller to forget it everywhere.
    pub async fn follow_store(&self, id: &TenantId) -> TenantResult<bool> {
        self.by_token
            .lock()
            .expect("token cache")
            .retain(|_, tenant| tenant != id);
        // Another host changed this tenant: its token may be among the changes.
        self.revoked();
        let Some(record) = self.store.tenant(id).await? else {
            self.gates.lock().expect("gates lock").remove(id);
            return Ok(false);
        };
        let mut gates = self.gates.lock().expect("gates lock");
        if let Some(old) = gates.get(id).cloned() {
            let limits = limits_of(record)?;
            let gate = TenantGate::new(limits, old.usage.clone(), old.logs.clone());
            gates.insert(id.clone(), Arc::new(gate));
        }
        Ok(true)
    }

    /// The tenants this host holds anything of (a gate), for a resynchronisation.
    pub fn known(&self) -> Vec<TenantId> {
        let mut known: Vec<TenantId> = self
            .gates
            .lock()
            .expect("gates lock")
            .keys()
            .cloned()
            .collect();
        known.extend(self.by_token.lock().expect("token cache").values().cloned());
        known.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        known.dedup();
        known
    }

    /// Tells the other hosts sharing the database that the tenant changed.
    async fn announce(&self, id: &TenantId) {
        let notice = crate::store::Notice::Tenant { tenant: id.clone() };
        if let Err(error) = self.store.announce(&notice).await {
            tracing::warn!(tenant = %id, "could not announce a tenant change: {error:#}");
        }
    }

    /// Replaces the tenant's limits; usage and logs carry over.
    pub async fn set_limits(&self, id: &TenantId, limits: Limits) -> TenantResult<()> {
        let old = self.gate(id).await?;
        let json = serde_json::to_value(&limits)?;
        if !self.store.set_tenant_limits(id, &json).await? {
            return Err(TenantError::NotFound(id.clone()));
        }
        let gate = Arc::new(TenantGate::new(limits, old.usage.clone(), old.logs.clone()));
        self.gates
            .lock()
            .expect("gates lock")
            .insert(id.clone(), gate);
        self.announce(id).await;
        Ok(())
    }

    /// Gives the tenant a new token; the old one stops working at once.
    pub async fn rotate_token(&self, id: &TenantId) -> TenantResult<String> {
        let token = new_token();
        if !self
            .store
            .set_tenant_token(id, &hex::encode(hash_token(&token)))
            .await?
        {
            return Err(TenantError::NotFound(id.clone()));
        }
        self.by_token.lock().expect("token cache").clear();
        self.revoked();
        self.announce(id).await;
        Ok(token)
    }

    pub async fn delete(&self, id: &TenantId) -> TenantResult<()> {
        let existed = self.store.delete_tenant(id).await?;
        self.by_token.lock().expect("token cache").clear();
        self.gates.lock().expect("gates lock").remove(id);
        self.revoked();
        if existed {
            self.announce(id).await;
            Ok(())
        } else {
            Err(TenantError::NotFound(id.clone()))
        }
    }
}
