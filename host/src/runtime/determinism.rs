//! The clocks and random numbers a plugin sees: answered by the host, never by the OS.
//!
//! Verification replays history through a new aggregate version and temporal reads
//! fold it again; both mean something only if a plugin call is a function of its
//! inputs. So every call is given a wall-clock instant and a seed before it runs
//! ([`Sources::set`]), and WASI's `wall-clock`, `monotonic-clock`, `random` and
//! `insecure` all read from here:
//! - the wall clock answers that instant (the command's `issued-at` in `decide`, the
//!   batch's first `recorded-at` in `evolve` and `upcast`, its last in `handle`);
//! - the monotonic clock starts at zero and advances one microsecond per reading, so a
//!   guest measuring elapsed time sees time pass, the same way every run;
//! - random bytes are SHA-256 in counter mode over the seed: reproducible forever, not
//!   tied to any crate's generator, which could change between host releases.
//!
//! The sources sit behind an `Arc` shared by the store's WASI context (which owns its
//! clock and generator objects for the store's life) and the caller, which re-seeds
//! them between calls of the same instance (an evolve then a decide). A std `Mutex`:
//! held for one hash at a time, never across an await.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// Nanoseconds the monotonic clock advances per reading.
const MONOTONIC_STEP_NS: u64 = 1_000;

#[derive(Default)]
struct State {
    wall_ms: u64,
    monotonic_ns: u64,
    seed: [u8; 32],
    /// Blocks of the SHA-256 stream taken so far, and the unread rest of the last one.
    counter: u64,
    pending: Vec<u8>,
}

/// What one store's WASI clocks and generators read. Cheap to clone.
#[derive(Clone, Default)]
pub struct Sources(Arc<Mutex<State>>);

impl Sources {
    /// Sets what the next call sees: the wall-clock instant and the seed (any bytes
    /// that identify the call: kind, stream, version or command id). Resets the
    /// monotonic clock to zero and the random stream to its start.
    pub fn set(&self, wall_ms: u64, seed: &[&[u8]]) {
        let mut hasher = Sha256::new();
        for part in seed {
            // Length-prefixed so that ("ab", "c") and ("a", "bc") differ.
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        let mut state = self.0.lock().expect("determinism lock");
        *state = State {
            wall_ms,
            monotonic_ns: 0,
            seed: hasher.finalize().into(),
            counter: 0,
            pending: Vec::new(),
        };
    }

    /// Wires these sources into a WASI context under construction.
    pub fn install(&self, builder: &mut WasiCtxBuilder) {
        builder
            .wall_clock(WallClock(self.clone()))
            .monotonic_clock(MonotonicClock(self.clone()))
            .secure_random(Generator(self.clone()))
            .insecure_random(Generator(self.clone()))
            // Fixed: the seed a guest asks for to start its own generator. Its
            // generator then depends only on what it does with it.
            .insecure_random_seed(0x6361_6972_6e00_0000_0000_0000_0000_0001);
    }

    fn fill(&self, out: &mut [u8]) {
        let mut state = self.0.lock().expect("determinism lock");
        let mut written = 0;
        while written < out.len() {
            if state.pending.is_empty() {
                let mut hasher = Sha256::new();
                hasher.update(state.seed);
                hasher.update(state.counter.to_le_bytes());
                state.counter += 1;
                state.pending = hasher.finalize().to_vec();
            }
            let take = state.pending.len().min(out.len() - written);
            out[written..written + take].copy_from_slice(&state.pending[..take]);
            state.pending.drain(..take);
            written += take;
        }
    }
}

struct WallClock(Sources);

impl HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        Duration::from_millis(self.0.0.lock().expect("determinism lock").wall_ms)
    }
}

struct MonotonicClock(Sources);

impl HostMonotonicClock for MonotonicClock {
    fn resolution(&self) -> u64 {
        MONOTONIC_STEP_NS
    }

    fn now(&self) -> u64 {
        let mut state = self.0.0.lock().expect("determinism lock");
        let now = state.monotonic_ns;
        state.monotonic_ns += MONOTONIC_STEP_NS;
        now
    }
}

struct Generator(Sources);

impl rand_core::TryRng for Generator {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0; 4];
        self.0.fill(&mut bytes);
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0; 8];
        self.0.fill(&mut bytes);
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(sources: &Sources, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        sources.fill(&mut out);
        out
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes_however_they_are_read() {
        let a = Sources::default();
        a.set(5, &[b"decide", b"cmd-1"]);
        let whole = bytes(&a, 80);
        a.set(5, &[b"decide", b"cmd-1"]);
        let mut pieces = bytes(&a, 7);
        pieces.extend(bytes(&a, 41));
        pieces.extend(bytes(&a, 32));
        assert_eq!(whole, pieces);
        a.set(5, &[b"decide", b"cmd-2"]);
        assert_ne!(bytes(&a, 80), whole);
        a.set(5, &[b"decidec", b"md-1"]);
        assert_ne!(bytes(&a, 80), whole);
    }

    #[test]
    fn clocks_answer_the_call_instant_and_count_from_zero() {
        let sources = Sources::default();
        sources.set(1_700_000_000_123, &[]);
        assert_eq!(
            WallClock(sources.clone()).now(),
            Duration::from_millis(1_700_000_000_123)
        );
        let mono = MonotonicClock(sources.clone());
        assert_eq!((mono.now(), mono.now()), (0, MONOTONIC_STEP_NS));
        sources.set(0, &[]);
        assert_eq!(mono.now(), 0);
    }
}
