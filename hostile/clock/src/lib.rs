//! A hostile aggregate that reads the clocks and random numbers WASI offers, in
//! `decide` and in `evolve`, which a plugin must never base its answers on. The host
//! answers them deterministically in aggregate calls (see "Determinism" in
//! `wit/cairn.wit`); the sandbox tests use this component to check that it does.
//!
//! Any command of type `Stamp` (payload `{}`) emits `Stamped { wall_ms, random,
//! mono_delta_ns }`: the wall clock in Unix milliseconds, eight random bytes as a
//! `u64`, and the difference of two monotonic readings. `evolve` counts the stamps,
//! keeps the last one's readings, and reads the wall clock and random itself.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cairn_guest::{Aggregate, CommandContext, Rejection};
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Clock {
    stamps: u64,
    last_wall_ms: u64,
    last_random: u64,
    /// Read inside `evolve`: exactly what an aggregate must never do.
    evolve_wall_ms: u64,
    evolve_random: u64,
}

#[derive(Deserialize)]
pub enum ClockCommand {
    Stamp,
}

#[derive(Serialize, Deserialize)]
pub enum ClockEvent {
    Stamped {
        wall_ms: u64,
        random: u64,
        mono_delta_ns: u64,
    },
}

/// The WASI wall clock, in Unix milliseconds.
fn wall_ms() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the wall clock is after 1970");
    u64::try_from(since_epoch.as_millis()).expect("milliseconds fit in a u64")
}

/// Eight bytes from WASI random.
fn random() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("WASI random answers");
    u64::from_le_bytes(bytes)
}

/// The difference of two readings of the WASI monotonic clock, in nanoseconds.
fn mono_delta_ns() -> u64 {
    let first = Instant::now();
    let second = Instant::now();
    u64::try_from(second.duration_since(first).as_nanos()).expect("nanoseconds fit in a u64")
}

impl Aggregate for Clock {
    type Command = ClockCommand;
    type Event = ClockEvent;

    fn decide(
        &self,
        command: ClockCommand,
        _: &CommandContext,
    ) -> Result<Vec<ClockEvent>, Rejection> {
        match command {
            ClockCommand::Stamp => Ok(vec![ClockEvent::Stamped {
                wall_ms: wall_ms(),
                random: random(),
                mono_delta_ns: mono_delta_ns(),
            }]),
        }
    }

    fn evolve(&mut self, event: ClockEvent) {
        match event {
            ClockEvent::Stamped {
                wall_ms: stamped_wall_ms,
                random: stamped_random,
                mono_delta_ns: _,
            } => {
                self.stamps += 1;
                self.last_wall_ms = stamped_wall_ms;
                self.last_random = stamped_random;
                self.evolve_wall_ms = wall_ms();
                self.evolve_random = random();
            }
        }
    }
}

cairn_guest::export_aggregate!(Clock);
