//! Per-tenant request admission: how many requests a tenant may send per second and
//! keep in flight at once, and how many bulk imports it may run at once. Every request
//! made with a tenant's token passes here before routing (`api/tenant_rate.rs`), so an
//! unknown route, a 404 or an error costs the tenant's share like any other request.
//!
//! A refusal is at once (never a queue): a request waiting for a place would itself
//! hold a connection, which is what the limit protects.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::tenancy::limits::Limits;

/// What a request is, as far as admission cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// A live subscription: counted in the rate, but bounded in number by
    /// `max_subscribers`, not by the in-flight limit (it is meant to stay open).
    Live,
    /// `POST …/import`: also holds one of the tenant's import places.
    Import,
    Other,
}

/// Why a request was refused; `api/tenant_rate.rs` answers it as `429 over_limit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Past `requests_per_second`; a place frees within `retry_after_secs`.
    Rate {
        per_second: u32,
        retry_after_secs: u32,
    },
    /// Past `max_concurrent_requests` in flight at once.
    InFlight { max: u32 },
    /// Past `max_concurrent_imports` in flight at once.
    Imports { max: u32 },
}

impl Refused {
    /// The limit's name, as the tenant's limits spell it.
    pub fn limit(&self) -> &'static str {
        match self {
            Refused::Rate { .. } => "requests_per_second",
            Refused::InFlight { .. } => "max_concurrent_requests",
            Refused::Imports { .. } => "max_concurrent_imports",
        }
    }
}

/// One tenant's request admission. It lives in the tenant's `Usage`, which outlives
/// the gate (a gate is made again when the limits change, or when another host's
/// change is followed), so requests in flight stay counted across it; the limits are
/// the gate's of the moment.
#[derive(Default)]
pub struct Admission {
    bucket: Mutex<Option<Bucket>>,
    in_flight: Arc<AtomicU32>,
    imports: Arc<AtomicU32>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// Held while an admitted request runs; its places come back when it is dropped.
pub struct Admitted {
    places: Vec<Arc<AtomicU32>>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        for place in &self.places {
            place.fetch_sub(1, Relaxed);
        }
    }
}

/// Takes one of `max` places, or none.
fn take_place(count: &Arc<AtomicU32>, max: u32) -> Option<Arc<AtomicU32>> {
    count
        .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
        .ok()
        .map(|_| count.clone())
}

/// The counters a request's admission bumps. They live in the tenant's `Usage`
/// (`gate.rs`), which holds the `Admission` too: handed in, so this file does not
/// import the gate.
pub struct RequestCounters<'a> {
    /// Every request made with the tenant's token.
    pub requests: &'a AtomicU64,
    /// Requests refused past the tenant's rate.
    pub requests_rate_limited: &'a AtomicU64,
    /// Requests refused past its concurrent requests or imports.
    pub requests_busy: &'a AtomicU64,
}

impl Admission {
    /// Admits one request of the tenant under `limits`, or says why not; every
    /// request is counted in `usage`, and every refusal too.
    pub fn admit(
        &self,
        kind: RequestKind,
        limits: &Limits,
        usage: RequestCounters<'_>,
    ) -> Result<Admitted, Refused> {
        usage.requests.fetch_add(1, Relaxed);
        let admitted = self.take(kind, limits);
        if let Err(refused) = &admitted {
            let counter = match refused {
                Refused::Rate { .. } => usage.requests_rate_limited,
                Refused::InFlight { .. } | Refused::Imports { .. } => usage.requests_busy,
            };
            counter.fetch_add(1, Relaxed);
        }
        admitted
    }

    fn take(&self, kind: RequestKind, limits: &Limits) -> Result<Admitted, Refused> {
        // Places first, given back on refusal (by dropping `admitted`): a request
        // refused for being one too many does not spend a token of the rate as well.
        let mut admitted = Admitted { places: Vec::new() };
        if kind != RequestKind::Live {
            let max = limits.max_concurrent_requests;
            let place = take_place(&self.in_flight, max).ok_or(Refused::InFlight { max })?;
            admitted.places.push(place);
        }
        if kind == RequestKind::Import {
            let max = limits.max_concurrent_imports;
            let place = take_place(&self.imports, max).ok_or(Refused::Imports { max })?;
            admitted.places.push(place);
        }
        let per_second = limits.requests_per_second;
        let rate = per_second as f64;
        let mut bucket = self.bucket.lock().expect("request rate lock");
        let now = Instant::now();
        // A second's worth of burst: a client may send its allowance at once.
        let bucket = bucket.get_or_insert(Bucket {
            tokens: rate,
            refilled: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.refilled).as_secs_f64() * rate).min(rate);
        bucket.refilled = now;
        if bucket.tokens < 1.0 {
            let wait = (1.0 - bucket.tokens) / rate;
            return Err(Refused::Rate {
                per_second,
                retry_after_secs: (wait.ceil() as u32).max(1),
            });
        }
        bucket.tokens -= 1.0;
        Ok(admitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::gate::Usage;

    #[test]
    fn past_the_rate_a_request_is_refused_with_when_to_retry() {
        let (a, usage) = (Admission::default(), Usage::default());
        let limits = Limits {
            requests_per_second: 3,
            ..Limits::default()
        };
        let held: Vec<_> = (0..3)
            .map(|_| {
                a.admit(RequestKind::Other, &limits, usage.request_counters())
                    .unwrap()
            })
            .collect();
        drop(held);
        let refused = a
            .admit(RequestKind::Other, &limits, usage.request_counters())
            .err();
        assert!(matches!(
            refused,
            Some(Refused::Rate {
                per_second: 3,
                retry_after_secs: 1
            })
        ));
        assert_eq!(usage.requests.load(Relaxed), 4);
        assert_eq!(usage.requests_rate_limited.load(Relaxed), 1);
    }

    #[test]
    fn past_its_places_a_request_is_refused_and_a_finished_one_gives_its_place_back() {
        let (a, usage) = (Admission::default(), Usage::default());
        let limits = Limits {
            max_concurrent_requests: 2,
            max_concurrent_imports: 1,
            ..Limits::default()
        };
        let admit = |kind| a.admit(kind, &limits, usage.request_counters());
        let import = admit(RequestKind::Import).unwrap();
        assert_eq!(
            admit(RequestKind::Import).err(),
            Some(Refused::Imports { max: 1 })
        );
        let other = admit(RequestKind::Other).unwrap();
        assert_eq!(
            admit(RequestKind::Other).err(),
            Some(Refused::InFlight { max: 2 })
        );
        // Live subscriptions have a cap of their own.
        let _live = admit(RequestKind::Live).unwrap();
        drop(import);
        drop(other);
        let _again = admit(RequestKind::Import).unwrap();
        assert_eq!(usage.requests_busy.load(Relaxed), 2);
        // Lower limits apply at once to what is in flight.
        let lower = Limits {
            max_concurrent_requests: 1,
            ..limits
        };
        assert_eq!(
            a.admit(RequestKind::Other, &lower, usage.request_counters())
                .err(),
            Some(Refused::InFlight { max: 1 })
        );
    }
}
