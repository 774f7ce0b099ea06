//! What one plugin call runs inside: a fresh `Store` with its own memory limit, time
//! budget and WASI context that grants nothing, and the classification of failures.
//!
//! A `Store` is poisoned by a trap, and a fresh one from an `InstancePre` costs
//! microseconds, so every call (or every command, for an evolve-then-decide pair)
//! gets its own and throws it away.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::EPOCH_TICK;

/// The limits one call runs under.
#[derive(Clone, Debug)]
pub struct CallLimits {
    /// Most bytes of linear memory an instance may hold, all its memories together.
    pub memory_bytes: usize,
    /// Time the guest may run, counted in epoch ticks while it is on a CPU.
    pub time: Duration,
    /// Wall time one call may take whatever it does, blocked in a WASI call (a sleep)
    /// included: the epoch budget does not tick while the guest waits on the host.
    pub wall: Duration,
    /// The tenant's CPU turns (see `TenantGate`); `None` runs without taking turns.
    pub turns: Option<Arc<tokio::sync::Semaphore>>,
}

impl CallLimits {
    /// Limits with the default wall-time bound for a CPU budget of `time`.
    pub fn new(memory_bytes: usize, time: Duration) -> CallLimits {
        CallLimits {
            memory_bytes,
            time,
            wall: wall_bound(time),
            turns: None,
        }
    }
}

/// The wall-time bound of a call with CPU budget `time`: ten times the budget (a busy
/// host runs a call slower than its CPU budget says) and at least a second.
pub fn wall_bound(time: Duration) -> Duration {
    (time * 10).max(Duration::from_secs(1))
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits::new(64 << 20, Duration::from_millis(100))
    }
}

/// Why a plugin call failed. These are the tenant's errors, never the host's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// The guest trapped (a panic, `unreachable`, an out-of-bounds access...).
    Trap,
    /// The guest ran past its time budget (CPU, epoch-counted).
    Deadline,
    /// The call ran past its wall-time bound (blocked in a WASI call, or starved of
    /// CPU turns). Shown to clients as `deadline` too; kept apart because only a CPU
    /// deadline says that a smaller batch would fit.
    WallTime,
    /// The guest asked for more memory than its limit.
    Memory,
    /// The guest returned something the host cannot use (e.g. a payload that is not JSON).
    InvalidOutput,
    /// The component could not be instantiated.
    Instantiate,
}

impl FailureReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            FailureReason::Trap => "trap",
            FailureReason::Deadline | FailureReason::WallTime => "deadline",
            FailureReason::Memory => "memory",
            FailureReason::InvalidOutput => "invalid_output",
            FailureReason::Instantiate => "instantiate",
        }
    }
}

#[derive(Clone, Debug, thiserror::Error)]
#[error("plugin failed ({}): {message}", reason.as_str())]
pub struct PluginFailure {
    pub reason: FailureReason,
    pub message: String,
}

impl PluginFailure {
    pub fn invalid_output(message: impl Into<String>) -> PluginFailure {
        PluginFailure {
            reason: FailureReason::InvalidOutput,
            message: message.into(),
        }
    }
}

/// Most bytes of stdout+stderr kept per call; older bytes are dropped, never an
/// error for the guest (a chatty plugin must not fail because of its logging).
const OUTPUT_CAPACITY: usize = 16 << 10;

/// The store data of one call.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Copied from the call's limits so the limiter can refuse growth past it.
    memory_limit: usize,
    /// Bytes of all the instance's linear memories together: the limit is per
    /// instance, so a component with eight memories gets no more than one with one.
    memory_used: usize,
    /// The wall-time bound of each call (see [`CallLimits::wall`]).
    pub wall_limit: Duration,
    /// Set when a growth was refused, so that the trap that follows is reported as
    /// `memory` rather than as a generic trap.
    memory_refused: bool,
    /// Epoch ticks the guest may still run before it is interrupted.
    ticks_left: u64,
    /// The full budget in ticks, restored by [`CallState::refill_budget`].
    budget_ticks: u64,
    /// The tenant's CPU turns, and the one this call holds until its next tick.
    turns: Option<Arc<tokio::sync::Semaphore>>,
    turn: Turn,
    /// What WASI's clocks and random answer (see `determinism.rs`); the caller sets
    /// them before each call.
    pub sources: super::determinism::Sources,
    /// The guest's stdout and stderr, kept for the logs and for error messages.
    pub output: CapturedOutput,
    /// The document session of a projection call; `None` for aggregates.
    pub documents: Option<super::documents::DocumentSession>,
}

/// The CPU turn a call holds between two epoch ticks, if any.
pub type Turn = Arc<Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>;

/// What bounds one guest call beyond its CPU budget (see [`within_wall`]).
pub struct CallBounds {
    wall: Duration,
    turns: Option<Arc<tokio::sync::Semaphore>>,
    turn: Turn,
}

impl CallState {
    /// What bounds a call beyond its CPU budget: its wall time, the tenant's CPU turns
    /// and the turn it must give back when it returns.
    pub fn call_bounds(&self) -> CallBounds {
        CallBounds {
            wall: self.wall_limit,
            turns: self.turns.clone(),
            turn: self.turn.clone(),
        }
    }

    /// Gives the next call a whole time budget of its own, for callers that make many
    /// calls on one instance and mean the limit per call (verification).
    pub fn refill_budget(&mut self) {
        self.ticks_left = self.budget_ticks;
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for CallState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A new memory arrives as a growth from 0 to its initial size.
        let total = self.memory_used - current.min(self.memory_used) + desired;
        if total > self.memory_limit {
            self.memory_refused = true;
            return Ok(false);
        }
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Makes the store for one call: WASI without directories, sockets, environment or
/// arguments; clocks and random answered by the host; output captured; limits armed.
pub fn new_store(engine: &wasmtime::Engine, limits: CallLimits) -> Store<CallState> {
    let output = CapturedOutput::default();
    let sources = super::determinism::Sources::default();
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(output.clone())
        .stderr(output.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    sources.install(&mut wasi);
    let wasi = wasi.build();
    let ticks = (limits.time.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
    let mut store = Store::new(
        engine,
        CallState {
            wasi,
            table: ResourceTable::new(),
            memory_limit: limits.memory_bytes,
            memory_used: 0,
            wall_limit: limits.wall,
            memory_refused: false,
            ticks_left: ticks,
            budget_ticks: ticks,
            turns: limits.turns,
            turn: Arc::new(Mutex::new(None)),
            sources,
            output,
            documents: None,
        },
    );
    store.limiter(|state| state);
    // Wake every tick: yield to tokio so a long call never holds a worker thread for
    // its whole budget, and count the ticks so the budget is CPU time, not time spent
    // waiting behind other tasks. With the tenant's CPU turns, the call also gives its
    // turn back and queues for the next one (FIFO): a tenant with many busy calls runs
    // only as many at once as it has turns, whatever its neighbours do.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| {
        let state = ctx.data_mut();
        if state.ticks_left == 0 {
            return Ok(UpdateDeadline::Interrupt);
        }
        state.ticks_left -= 1;
        let Some(turns) = state.turns.clone() else {
            return Ok(UpdateDeadline::Yield(1));
        };
        let held = state.turn.clone();
        held.lock().expect("turn lock").take();
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                let turn = turns.acquire_owned().await.expect("never closed");
                *held.lock().expect("turn lock") = Some(turn);
            }),
        ))
    });
    store
}

/// Runs one guest call (or an instantiation) under its wall-time bound. On timeout the
/// call's future is dropped mid-call, which wasmtime allows; the store is then
/// unusable, and every caller throws an instance away after a failure.
///
/// The call takes one of its tenant's CPU turns before it starts, not only at its
/// first epoch tick: work the epoch cannot interrupt (a `memory.fill` of the whole
/// memory, the page faults of first touching it) must also run inside the tenant's
/// share of the CPUs. The turn is given back when the call returns: a finished call
/// must not hold one while its caller does other work (an upcaster nested in a
/// command's load would otherwise wait for a turn its own command holds).
pub async fn within_wall<T>(
    bounds: CallBounds,
    call: impl std::future::Future<Output = wasmtime::Result<T>>,
) -> Result<wasmtime::Result<T>, PluginFailure> {
    let CallBounds { wall, turns, turn } = bounds;
    let started = async {
        if let Some(turns) = turns {
            let permit = turns.acquire_owned().await.expect("never closed");
            *turn.lock().expect("turn lock") = Some(permit);
        }
        call.await
    };
    let finished = tokio::time::timeout(wall, started).await;
    turn.lock().expect("turn lock").take();
    finished.map_err(|_| PluginFailure {
        reason: FailureReason::WallTime,
        message: format!(
            "the call ran past its wall-time limit of {} ms (time blocked in a WASI call, \
                 such as a sleep, counts)",
            wall.as_millis()
        ),
    })
}

/// Turns an error from a guest call into the tenant-facing failure.
pub fn classify(error: wasmtime::Error, store: &Store<CallState>) -> PluginFailure {
    let state = store.data();
    let output = state.output.tail(600);
    let reason = match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => FailureReason::Deadline,
        _ if state.memory_refused => FailureReason::Memory,
        _ => FailureReason::Trap,
    };
    let mut message = match (&reason, error.downcast_ref::<Trap>()) {
        (FailureReason::Deadline, _) => "the call ran past its time limit".to_owned(),
        (FailureReason::Memory, _) => format!(
            "the call asked for more than its memory limit of {} bytes",
            state.memory_limit
        ),
        // The trap's own words ("call stack exhausted", "unreachable"...); the full
        // backtrace goes to the host log only.
        // (wasmtime's own text already starts with "wasm trap: ".)
        (_, Some(trap)) => match trap.to_string() {
            text if text.starts_with("wasm trap") => text,
            text => format!("wasm trap: {text}"),
        },
        (_, None) => error.to_string(),
    };
    tracing::debug!("plugin call failed: {error:?}");
    let output = one_line(&output);
    if !output.is_empty() {
        message.push_str("; guest output: ");
        message.push_str(&output);
    }
    PluginFailure { reason, message }
}

/// The guest's output as one line: its lines joined, without the advice Rust's panic
/// handler prints for a terminal (`note: run with RUST_BACKTRACE=1 …`), which means
/// nothing to a tenant whose code runs in the host.
fn one_line(output: &str) -> String {
    output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// A bounded sink for the guest's stdout/stderr.
#[derive(Clone, Default)]
pub struct CapturedOutput {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl CapturedOutput {
    /// The last `max` bytes written, as text.
    pub fn tail(&self, max: usize) -> String {
        let buffer = self.buffer.lock().expect("output lock");
        let start = buffer.len().saturating_sub(max);
        String::from_utf8_lossy(&buffer[start..]).into_owned()
    }

    pub fn is_empty(&self) -> bool {
        self.buffer.lock().expect("output lock").is_empty()
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut buffer = self.buffer.lock().expect("output lock");
        // Keep the newest bytes: the last lines are the ones that explain a failure.
        let keep = &bytes[bytes.len().saturating_sub(OUTPUT_CAPACITY)..];
        buffer.extend_from_slice(keep);
        if buffer.len() > OUTPUT_CAPACITY {
            let excess = buffer.len() - OUTPUT_CAPACITY;
            buffer.drain(..excess);
        }
        // Claim the whole write: the guest must not see an error for its logging.
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_limit_counts_every_memory_of_an_instance() {
        let engine = wasmtime::Engine::default();
        let mut store = new_store(
            &engine,
            CallLimits::new(10 << 20, Duration::from_millis(100)),
        );
        let state = store.data_mut();
        // Two memories of 4 MiB fit in 10 MiB; a third does not.
        assert!(state.memory_growing(0, 4 << 20, None).unwrap());
        assert!(state.memory_growing(0, 4 << 20, None).unwrap());
        assert!(!state.memory_growing(0, 4 << 20, None).unwrap());
        assert!(state.memory_refused);
        // Growing one of them by 2 MiB still fits, by 3 MiB more does not.
        assert!(state.memory_growing(4 << 20, 6 << 20, None).unwrap());
        assert!(!state.memory_growing(6 << 20, 9 << 20, None).unwrap());
    }

    #[test]
    fn a_guest_panic_reads_as_one_line_without_the_backtrace_advice() {
        let output = "thread '<unnamed>' panicked at src/lib.rs:9:5:\nboom\n\
                      note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            one_line(output),
            "thread '<unnamed>' panicked at src/lib.rs:9:5: | boom"
        );
    }

    #[test]
    fn the_wall_bound_is_ten_budgets_and_at_least_a_second() {
        assert_eq!(
            wall_bound(Duration::from_millis(100)),
            Duration::from_secs(1)
        );
        assert_eq!(wall_bound(Duration::from_secs(2)), Duration::from_secs(20));
    }
}
