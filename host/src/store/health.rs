//! What the store's last writes said about the storage under it, for `/readyz`: a
//! host whose disk is full is not ready (a load balancer sends writes elsewhere), and
//! becomes ready again by itself once a write succeeds.
//!
//! Set by the append path when a commit fails with [`StoreFault::Full`], cleared by
//! any commit that succeeds, or by `/readyz`'s probe write while nothing else writes.

use std::sync::atomic::{AtomicBool, Ordering};

use super::StoreFault;

#[derive(Default)]
pub struct StoreHealth {
    /// The last append commit failed for lack of space, and none has succeeded since.
    full: AtomicBool,
}

impl StoreHealth {
    /// Records what one append transaction met: `Some(fault)` when it failed.
    pub fn record(&self, failed_with: Option<StoreFault>) {
        match failed_with {
            None => self.full.store(false, Ordering::Relaxed),
            Some(StoreFault::Full) => {
                if !self.full.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        "the store is full: writes answer 507 storage_full and /readyz \
                         is not ready until a write succeeds again"
                    );
                }
            }
            // A lost connection or a timeout says nothing about space.
            Some(_) => {}
        }
    }

    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }
}
