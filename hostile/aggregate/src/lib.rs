//! A hostile aggregate: each command type is one attack on the host (see ../README.md).
#![allow(clippy::too_many_arguments)] // generated bindings

wit_bindgen::generate!({ path: "../../wit", world: "aggregate" });

use crate::cairn::plugin::types::Rejection;

struct Hostile;

fn event(event_type: &str) -> NewEvent {
    NewEvent {
        event_type: event_type.to_owned(),
        payload: b"{}".to_vec(),
    }
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = [depth; 64];
    recurse(depth + 1) + std::hint::black_box(frame)[0]
}

/// Initialised data, from the component's memory image.
static mut MARK: [u8; 16] = *b"pristine-memory!";
/// Zero-initialised data past the image, sixteen pages of it.
static mut SCRATCH: [u8; 1 << 16] = [0; 1 << 16];

/// Whether this instance's memory is as instantiation left it, then dirties it: a
/// host that handed one instance's memory to the next (a pool slot reused without
/// being reset) shows `Leaked` on the next call.
fn snoop() -> &'static str {
    let mark = &raw mut MARK;
    let scratch = &raw mut SCRATCH;
    // SAFETY: a component instance runs one call at a time on one thread; volatile so
    // that the compiler neither folds the reads into the initial values nor drops the
    // writes as dead.
    unsafe {
        let pristine = std::ptr::read_volatile(mark) == *b"pristine-memory!"
            && (0..(1 << 16)).all(|i| std::ptr::read_volatile(&(*scratch)[i]) == 0);
        std::ptr::write_volatile(mark, *b"dirtied-by-snoop");
        for i in (0..(1 << 16)).step_by(512) {
            std::ptr::write_volatile(&mut (*scratch)[i], 0xAA);
        }
        if pristine { "Pristine" } else { "Leaked" }
    }
}

impl Guest for Hostile {
    fn initial_state() -> Vec<u8> {
        b"{}".to_vec()
    }

    fn decide(_state: Vec<u8>, command: Command) -> Result<Vec<NewEvent>, DecideError> {
        match command.command_type.as_str() {
            "Loop" => loop {
                std::hint::black_box(());
            },
            "Bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "Recurse" => Ok(vec![event(&recurse(0).to_string())]),
            "Panic" => panic!("the hostile aggregate panicked on purpose"),
            // Blocked in a WASI clock pollable, where the epoch budget does not tick.
            "Sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(5));
                Ok(vec![event("Slept")])
            }
            "Flood" => Ok((0..1_000_000).map(|_| event("Flooded")).collect()),
            "OpenFile" => match std::fs::read("/etc/passwd") {
                Ok(_) => Ok(vec![event("FileWasRead")]),
                Err(error) => Err(DecideError::Rejected(Rejection {
                    code: "sandboxed".into(),
                    message: format!("could not open a file: {error}"),
                })),
            },
            "Connect" => match std::net::TcpStream::connect("127.0.0.1:5432") {
                Ok(_) => Ok(vec![event("Connected")]),
                Err(error) => Err(DecideError::Rejected(Rejection {
                    code: "sandboxed".into(),
                    message: format!("could not connect: {error}"),
                })),
            },
            "Poison" => Ok(vec![event("Poison")]),
            "Snoop" => Ok(vec![event(snoop())]),
            // One event larger than any request body may be (2 MiB of payload).
            "Huge" => Ok(vec![NewEvent {
                event_type: "Huge".to_owned(),
                payload: format!("{{\"x\":\"{}\"}}", "a".repeat(2 << 20)).into_bytes(),
            }]),
            // An event type no client could write: a line break in it.
            "BadType" => Ok(vec![event("Bad\nType")]),
            _ => Ok(vec![event("Behaved")]),
        }
    }

    fn evolve(state: Vec<u8>, events: Vec<RecordedEvent>) -> Vec<u8> {
        if events.iter().any(|e| e.event_type == "Poison") {
            loop {
                std::hint::black_box(());
            }
        }
        // A slow component (another language, heavy logic): about a millisecond of CPU
        // per `Heavy` event, so a batch of hundreds runs past a 100 ms budget.
        for event in &events {
            if event.event_type == "Heavy" {
                let mut spin = 0u64;
                for i in 0..1_000_000u64 {
                    spin = std::hint::black_box(spin.wrapping_add(i));
                }
            }
        }
        state
    }
}

export!(Hostile);

#[cfg(test)]
mod tests {
    /// What the sandbox test relies on: a second look at the same memory sees the
    /// first one's writes.
    #[test]
    fn snoop_sees_its_own_earlier_writes() {
        assert_eq!(super::snoop(), "Pristine");
        assert_eq!(super::snoop(), "Leaked");
    }
}
