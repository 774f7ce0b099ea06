//! An upcaster chain: the upcasters a reader sees history through, applied in name
//! order, each to the output of the one before. The stored events never change; a
//! chain only rewrites what a reader is given.

use std::collections::HashSet;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::runtime::{CallLimits, LoadedComponent, PluginFailure, Runtime};
use crate::store::{PinnedPlugin, RecordedEvent};

/// One upcaster of a chain, ready to call.
pub struct ChainLink {
    pub pinned: PinnedPlugin,
    pub component: Arc<LoadedComponent>,
    /// The event types it rewrites (asked once per component, never empty).
    pub types: HashSet<String>,
}

/// A resolved chain; empty for readers that see events as written.
#[derive(Default)]
pub struct UpcastChain {
    pub links: Vec<ChainLink>,
}

/// The most bytes (types, payloads and metadata) one page of upcast events may hold.
const MAX_PAGE_BYTES: usize = 16 << 20;

/// Why a chain could not rewrite a batch: which upcaster, and the guest's failure.
pub struct UpcastFailure {
    pub upcaster: String,
    pub failure: PluginFailure,
}

impl UpcastChain {
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    pub fn pinned(&self) -> Vec<PinnedPlugin> {
        self.links.iter().map(|l| l.pinned.clone()).collect()
    }

    /// The key state folded through this chain is cached and snapshotted under: the
    /// aggregate's digest alone without upcasters (so existing snapshots stay valid),
    /// else a digest of it and every upcaster's, since they change what is folded.
    pub fn state_key(&self, aggregate_digest: &str) -> String {
        if self.links.is_empty() {
            return aggregate_digest.to_owned();
        }
        let mut hasher = Sha256::new();
        hasher.update(aggregate_digest);
        for link in &self.links {
            hasher.update(b"\n");
            hasher.update(&link.pinned.digest);
        }
        format!("chain:{}", hex::encode(hasher.finalize()))
    }

    /// The events as the chain's readers see them, in the same order.
    pub async fn apply(
        &self,
        runtime: &Runtime,
        limits: CallLimits,
        mut events: Vec<RecordedEvent>,
    ) -> Result<Vec<RecordedEvent>, UpcastFailure> {
        for link in &self.links {
            if !events.iter().any(|e| link.types.contains(&e.event_type)) {
                continue;
            }
            let failed = |failure| UpcastFailure {
                upcaster: link.pinned.name.clone(),
                failure,
            };
            let mut instance = runtime
                .upcaster(&link.component, limits.clone())
                .await
                .map_err(failed)?;
            let theirs: Vec<RecordedEvent> = events
                .iter()
                .filter(|e| link.types.contains(&e.event_type))
                .cloned()
                .collect();
            let mut mapped = instance.upcast(&theirs).await.map_err(failed)?.into_iter();
            let mut out = Vec::with_capacity(events.len());
            let mut bytes = 0;
            for event in events {
                let these = if link.types.contains(&event.event_type) {
                    mapped.next().unwrap_or_default()
                } else {
                    vec![event]
                };
                bytes += these
                    .iter()
                    .map(|e| e.event_type.len() + e.payload.len() + e.metadata.len())
                    .sum::<usize>();
                // The whole page as the reader will get it (every link's output
                // counted, a chain of upcasters multiplying each other included).
                if bytes > MAX_PAGE_BYTES {
                    return Err(failed(PluginFailure::invalid_output(format!(
                        "the upcasters made more than {MAX_PAGE_BYTES} bytes from a page of \
                         the log, the most served per page: read smaller pages (a lower \
                         limit) or make the upcasters' output smaller"
                    ))));
                }
                out.extend(these);
            }
            events = out;
        }
        Ok(events)
    }
}
