//! The WebAssembly runtime: one wasmtime `Engine` for the process, components
//! compiled once per digest (artifacts cached on disk and mmapped after a restart),
//! one `InstancePre` per component, and a fresh limited `Store` per call.
//!
//! The runtime knows nothing of SQL or HTTP: it turns bytes into callable plugins.

pub mod aggregate;
mod artifacts;
pub mod determinism;
mod documents;
pub mod projection;
pub mod sandbox;
pub mod shape;
pub mod upcaster;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use aggregate::AggregateInstance;
pub use projection::ProjectionInstance;
pub use sandbox::{CallLimits, FailureReason, PluginFailure};
pub use upcaster::UpcasterInstance;

use crate::store::PluginKind;
use sandbox::CallState;

/// How often the epoch advances: the granularity of time limits and of yielding.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The largest linear memory any instance may have; tenant limits sit below it.
pub const MAX_MEMORY_BYTES: usize = 1 << 30;

/// Component instances in the pooling allocator.
const POOL_INSTANCES: u32 = 512;

/// Instances the host admits at once (`Runtime::call_slots`). Each admitted instance
/// may have one upcaster instance nested inside it at a time (upcasters take no slot
/// of their own), and projection batches run their upcasters under a batch slot; the
/// rest of the pool is that headroom. With the pool sized for the per-component
/// maxima below, the pool can never run out: a call waits for a slot instead.
const CALL_SLOTS: u32 = 240;

/// Most core module instances one component may create. A Rust component has 3;
/// componentize-py's Python interpreter links 14 shared libraries, StarlingMonkey 4.
/// In the pool a core instance is only counted (its context is allocated on the heap
/// when it is instantiated, like any instance's): unlike memories and tables, whose
/// pool slots reserve address space, raising this reserves nothing.
pub const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 32;
/// Most linear memories one component may define (their bytes together are limited
/// per tenant by `memory_bytes`).
pub const MAX_MEMORIES_PER_COMPONENT: u32 = 4;
/// Most tables one component may define.
pub const MAX_TABLES_PER_COMPONENT: u32 = 12;
/// Most elements a table may start with (wasmtime's default, set here so that
/// `shape.rs` refuses before compiling what the pool would refuse at link).
pub const MAX_TABLE_ELEMENTS: usize = 20_000;
/// Most bytes of one core instance's state (its `VMContext`, which grows with its
/// imported and escaping functions and its globals): wasmtime's default, named for
/// `shape.rs` like the table's.
pub const MAX_CORE_INSTANCE_BYTES: usize = 1 << 20;

/// The compile limit for a component accepted before (its artifact was lost).
const RECOMPILE_TIME_LIMIT: Duration = Duration::from_secs(600);

/// Compiles that may run at once; others queue.
const CONCURRENT_COMPILES: usize = 2;

/// Where cranelift runs.
#[derive(Clone, Debug)]
pub enum Compiler {
    /// In a child process (`<exe> compile-component IN OUT`): a compile that runs past
    /// its time limit is killed, and whatever memory it took goes back to the system
    /// when the child exits. What the server does.
    Subprocess(std::path::PathBuf),
    /// On a blocking thread of this process, without a time limit: for embedding the
    /// library where no `cairn` binary is at hand.
    InProcess,
}

/// A compiled, linked component ready to instantiate.
pub enum Prepared {
    Aggregate(aggregate::AggregatePre),
    Projection(projection::bindings::ProjectionPre<CallState>),
    Upcaster(upcaster::bindings::UpcasterPre<CallState>),
}

/// A component as the runtime holds it, shared by every tenant that uploaded it.
pub struct LoadedComponent {
    pub digest: String,
    pub prepared: Prepared,
    /// The compiled artifact's size on disk: it counts in the uploading tenant's
    /// storage (about three times the upload for cranelift's output).
    pub artifact_bytes: u64,
}

impl LoadedComponent {
    pub fn kind(&self) -> PluginKind {
        match self.prepared {
            Prepared::Aggregate(_) => PluginKind::Aggregate,
            Prepared::Projection(_) => PluginKind::Projection,
            Prepared::Upcaster(_) => PluginKind::Upcaster,
        }
    }
}

/// Why uploaded bytes are not a usable plugin; the message is for the uploader.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPlugin(pub String);

/// Why an upload could not be turned into a plugin: the bytes' fault, or the host's.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Invalid(#[from] InvalidPlugin),
    /// The host had no room to write the upload or its compiled artifact: not the
    /// plugin's fault, and the same upload succeeds once space returns.
    #[error("the host's disk is full: {0}")]
    HostDiskFull(String),
}

pub struct Runtime {
    engine: Engine,
    /// WASI only: what an aggregate may import.
    aggregate_linker: Linker<CallState>,
    /// WASI plus `cairn:plugin/documents`: what a projection may import.
    projection_linker: Linker<CallState>,
    /// WASI only, like aggregates: what an upcaster may import.
    upcaster_linker: Linker<CallState>,
    artifacts: artifacts::ArtifactCache,
    /// The artifact directory as a path, for compile subprocesses' files.
    artifact_dir: std::path::PathBuf,
    /// Compiles waiting beyond these queue here (tokio's semaphore is FIFO): cranelift
    /// uses every core, and two at once already saturate this host.
    compile_slots: tokio::sync::Semaphore,
    /// Where compiles run.
    compiler: Compiler,
    /// Components in memory by digest. A std `Mutex`: held only for a map access.
    loaded: Mutex<HashMap<String, Arc<LoadedComponent>>>,
    /// Bounds concurrent instances so the pool is never exhausted (see `CALL_SLOTS`).
    /// A tenant's share is bounded by its call slots: every holder of one of these
    /// also holds one of its tenant's `max_concurrent_calls`, and holds at most two.
    call_slots: Arc<tokio::sync::Semaphore>,
    /// Compiles begun (past the shape check, a compile slot taken), components
    /// compiled by cranelift, and loaded from the artifact cache instead.
    pub compiles_started: std::sync::atomic::AtomicU64,
    pub compiled: std::sync::atomic::AtomicU64,
    pub loaded_from_cache: std::sync::atomic::AtomicU64,
}

/// `sha256:<hex>` of the bytes: the identity of a component.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Runtime {
    /// Makes the engine and starts its epoch ticker. `artifact_dir` is where compiled
    /// components are cached.
    pub fn new(artifact_dir: &Path, compiler: Compiler) -> anyhow::Result<Runtime> {
        let engine = Engine::new(&engine_config())
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;

        let mut aggregate_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut aggregate_linker)?;
        let mut projection_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut projection_linker)?;
        projection::add_imports(&mut projection_linker)?;
        let mut upcaster_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut upcaster_linker)?;

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("cairn-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;

        Ok(Runtime {
            artifacts: artifacts::ArtifactCache::open(artifact_dir, &engine)?,
            artifact_dir: artifact_dir.to_owned(),
            engine,
            aggregate_linker,
            projection_linker,
            upcaster_linker,
            loaded: Mutex::new(HashMap::new()),
            call_slots: Arc::new(tokio::sync::Semaphore::new(CALL_SLOTS as usize)),
            compile_slots: tokio::sync::Semaphore::new(CONCURRENT_COMPILES),
            compiler,
            compiles_started: Default::default(),
            compiled: Default::default(),
            loaded_from_cache: Default::default(),
        })
    }
}

/// Bytes of a linear memory's dirty pages kept mapped when its slot is freed (see
/// `engine_config`): a command of a Rust component dirties a few dozen pages (its
/// stack, allocator state, the state it decodes), and 1,000 warm slots at most this
/// much is 256 MiB.
const KEEP_RESIDENT: usize = 256 << 10;

/// The engine's configuration, the same in the server and in a compile subprocess (an
/// artifact is usable only by an engine configured alike).
fn engine_config() -> Config {
    {
        let mut pool = PoolingAllocationConfig::default();
        // Every total is the per-component maximum times the instances, so however
        // the components admitted are made (a component with hundreds of core
        // instances is refused at upload, see `shape.rs`), the instances the host
        // admits always fit: one tenant's odd components cannot exhaust a pool that
        // every tenant shares. Only address space is reserved up front (2,048 memory
        // slots of 4 GiB: 8 TiB of the 128 TiB a process may map); memory is committed
        // as instances touch it. A Rust component built with the SDK has 3 core
        // instances, 1 memory and 3 tables.
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * MAX_CORE_INSTANCES_PER_COMPONENT)
            .total_memories(POOL_INSTANCES * MAX_MEMORIES_PER_COMPONENT)
            .total_tables(POOL_INSTANCES * MAX_TABLES_PER_COMPONENT)
            .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
            .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
            .total_stacks(POOL_INSTANCES)
            .max_memory_size(MAX_MEMORY_BYTES)
            .table_elements(MAX_TABLE_ELEMENTS)
            .max_core_instance_size(MAX_CORE_INSTANCE_BYTES)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(128 << 10)
            // Release decommitted memory in batches, not one madvise per instance.
            .decommit_batch_size(32);
        // Where the kernel can list a memory's dirty pages (`PAGEMAP_SCAN`, Linux 6.7+),
        // a slot's dirty pages are put back to their first contents in place and stay
        // mapped, instead of being dropped and faulted in again (copy-on-write) by the
        // slot's next instance: those faults were 13% of the server's CPU at 64
        // clients. Without the scan, keeping pages resident means a `memset` of the
        // whole kept range on every reuse, which was measured slower than the faults,
        // so it is only turned on with the scan. Up to `KEEP_RESIDENT` stays per slot.
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(wasmtime::Enabled::Yes)
                .linear_memory_keep_resident(KEEP_RESIDENT);
        }
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // `CAIRN_PROFILE_WASM=1`: name compiled guest functions in `/tmp/perf-PID.map`
        // so that `perf report` shows them instead of bare addresses.
        if std::env::var_os("CAIRN_PROFILE_WASM").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        config
    }
}

/// The child side of [`Compiler::Subprocess`] (`cairn compile-component IN OUT`):
/// compiles the component in `input` with the server's engine configuration and
/// writes the artifact to `output`.
pub fn compile_to_file(input: &Path, output: &Path) -> anyhow::Result<()> {
    let engine = Engine::new(&engine_config()).map_err(anyhow::Error::from)?;
    let wasm = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let artifact = engine
        .precompile_component(&wasm)
        .map_err(anyhow::Error::from)?;
    std::fs::write(output, artifact).with_context(|| format!("writing {}", output.display()))?;
    Ok(())
}

impl Runtime {
    /// The component for `digest`, from memory, else from the on-disk artifact, else
    /// compiled from `wasm` (fetched only then).
    pub async fn load<F, Fut>(&self, digest: &str, wasm: F) -> anyhow::Result<Arc<LoadedComponent>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Vec<u8>>>,
    {
        if let Some(found) = self.loaded.lock().expect("loaded lock").get(digest) {
            return Ok(found.clone());
        }
        let component = match self.artifacts.load(&self.engine, digest) {
            Some(component) => {
                self.loaded_from_cache
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                component
            }
            None => {
                let bytes = wasm().await?;
                // Already accepted once, so the generous limit: a slow machine must
                // not lose a tenant's plugin after a restart.
                // Not a tenant's upload: nobody is charged.
                let cpu = std::sync::atomic::AtomicU64::new(0);
                self.compile(bytes, RECOMPILE_TIME_LIMIT, &cpu).await?.1
            }
        };
        let loaded = Arc::new(self.link(digest, &component)?);
        self.loaded
            .lock()
            .expect("loaded lock")
            .insert(digest.to_owned(), loaded.clone());
        Ok(loaded)
    }

    /// Drops a component from memory and from the artifact cache (its last user is gone).
    pub fn forget(&self, digest: &str) {
        self.loaded.lock().expect("loaded lock").remove(digest);
        if let Err(error) = self.artifacts.remove(digest) {
            tracing::warn!(%digest, "could not delete an artifact: {error:#}");
        }
    }

    /// Checks uploaded bytes: a component, of one of the two worlds, importing nothing
    /// the host does not provide. Compiles it and caches the artifact on success.
    pub async fn inspect(
        &self,
        wasm: Vec<u8>,
        compile_time_limit: Duration,
    ) -> Result<Arc<LoadedComponent>, InspectError> {
        let compile_cpu = std::sync::atomic::AtomicU64::new(0);
        self.inspect_charged(wasm, compile_time_limit, &compile_cpu)
            .await
    }

    /// [`Runtime::inspect`], leaving the compiler's CPU time, in microseconds, in
    /// `compile_cpu` (0 when nothing was compiled), also when the compile failed or was
    /// killed: what the tenant's compile budget is charged.
    pub async fn inspect_charged(
        &self,
        wasm: Vec<u8>,
        compile_time_limit: Duration,
        compile_cpu: &std::sync::atomic::AtomicU64,
    ) -> Result<Arc<LoadedComponent>, InspectError> {
        let digest = digest_of(&wasm);
        if let Some(found) = self.loaded.lock().expect("loaded lock").get(&digest) {
            return Ok(found.clone());
        }
        if !wasm.starts_with(b"\0asm") {
            return Err(InvalidPlugin(
                "not a WebAssembly binary (it does not start with \\0asm)".into(),
            )
            .into());
        }
        if wasm.get(4..8) != Some(&[0x0d, 0x00, 0x01, 0x00]) {
            return Err(InvalidPlugin(
                "a core WebAssembly module, not a component: build for wasm32-wasip2 \
                 (or wrap the module with `wasm-tools component new`)"
                    .into(),
            )
            .into());
        }
        shape::check(&wasm)?;
        // The same bytes compiled before (uploaded again after a restart, or by another
        // tenant): the artifact on disk is used, as `load` would.
        let cached = self.artifacts.load(&self.engine, &digest);
        if cached.is_some() {
            self.loaded_from_cache
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let (digest, component) = match cached {
            Some(component) => (digest, component),
            None => self
                .compile(wasm, compile_time_limit, compile_cpu)
                .await
                .map_err(|e| {
                    if host_disk_full(&e) {
                        InspectError::HostDiskFull(format!("{e:#}"))
                    } else {
                        InvalidPlugin(format!("the component does not compile: {e:#}")).into()
                    }
                })?,
        };
        let loaded = Arc::new(
            self.link(&digest, &component)
                .map_err(|e| InvalidPlugin(format!("{e:#}")))?,
        );
        self.loaded
            .lock()
            .expect("loaded lock")
            .insert(digest, loaded.clone());
        Ok(loaded)
    }

    /// Compiles off the request runtime (in a child process, or on a blocking thread),
    /// at most `CONCURRENT_COMPILES` at once, and writes the artifact to the cache.
    async fn compile(
        &self,
        wasm: Vec<u8>,
        time_limit: Duration,
        cpu_used: &std::sync::atomic::AtomicU64,
    ) -> anyhow::Result<(String, Component)> {
        let digest = digest_of(&wasm);
        let _turn = self.compile_slots.acquire().await.expect("never closed");
        self.compiles_started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let component = match &self.compiler {
            Compiler::InProcess => {
                let engine = self.engine.clone();
                // Wall time on a blocking thread: its CPU time is not told apart.
                let started = std::time::Instant::now();
                let compiled =
                    tokio::task::spawn_blocking(move || Component::new(&engine, &wasm)).await;
                cpu_used.store(
                    started.elapsed().as_micros() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                compiled?.map_err(anyhow::Error::from)?
            }
            Compiler::Subprocess(exe) => {
                self.compile_in_child(exe, &digest, &wasm, time_limit, cpu_used)
                    .await?
            }
        };
        self.compiled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(error) = self.artifacts.store(&digest, &component) {
            tracing::warn!(%digest, "could not cache a compiled component: {error:#}");
        }
        Ok((digest, component))
    }

    /// Compiles in `exe compile-component IN OUT`, killed past `time_limit`.
    async fn compile_in_child(
        &self,
        exe: &Path,
        digest: &str,
        wasm: &[u8],
        time_limit: Duration,
        cpu_used: &std::sync::atomic::AtomicU64,
    ) -> anyhow::Result<Component> {
        let stem = format!(
            "compile-{}-{}",
            digest.trim_start_matches("sha256:"),
            uuid::Uuid::new_v4().simple()
        );
        let input = self.artifact_dir.join(format!("{stem}.wasm"));
        let output = self.artifact_dir.join(format!("{stem}.cwasm"));
        let _cleanup = RemoveOnDrop(vec![input.clone(), output.clone()]);
        tokio::fs::write(&input, wasm).await?;
        let mut command = tokio::process::Command::new(exe);
        command
            .arg("compile-component")
            .arg(&input)
            .arg(&output)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        // SAFETY: the closure runs in the forked child before exec and only makes
        // scheduling system calls, which are async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                idle_priority();
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting the compiler {}", exe.display()))?;
        // The limit is the child's CPU time (it runs at idle priority, so its wall time
        // depends on the neighbours), within ten times as much wall time (at least a
        // second), like a plugin call's. Where its CPU time cannot be read, the limit is
        // wall time. Dropping `waiting` kills the child.
        let pid = child.id();
        let waiting = child.wait_with_output();
        tokio::pin!(waiting);
        let started = std::time::Instant::now();
        let wall_limit = time_limit.saturating_mul(10).max(Duration::from_secs(1));
        let finished = loop {
            tokio::select! {
                finished = &mut waiting => break finished?,
                _ = tokio::time::sleep(Duration::from_millis(20)) => {
                    let cpu = pid.and_then(cpu_time_of).unwrap_or_else(|| started.elapsed());
                    // The last reading before the child exits is what it is charged
                    // (to within one interval).
                    cpu_used.store(cpu.as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
                    if cpu > time_limit {
                        anyhow::bail!(
                            "compiling took longer than its limit of {} ms (the tenant's \
                             compile_timeout_ms); make the component smaller or simpler",
                            time_limit.as_millis()
                        );
                    }
                    if started.elapsed() > wall_limit {
                        anyhow::bail!(
                            "compiling waited more than {} ms (ten times the tenant's \
                             compile_timeout_ms, at least a second) for CPU on a busy \
                             host; try again",
                            wall_limit.as_millis()
                        );
                    }
                }
            }
        };
        if !finished.status.success() {
            let stderr = String::from_utf8_lossy(&finished.stderr);
            let last = stderr.trim().lines().last().unwrap_or("no message");
            anyhow::bail!("{}", last.trim_start_matches("Error: "));
        }
        // SAFETY: the artifact was just written by this same executable's
        // `compile_to_file` with the same engine configuration, into a directory only
        // this host writes; wasmtime checks its header before use.
        unsafe { Component::deserialize_file(&self.engine, &output) }.map_err(anyhow::Error::from)
    }

    /// Decides the world from the exports and links against what that world may import.
    fn link(&self, digest: &str, component: &Component) -> anyhow::Result<LoadedComponent> {
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let has = |name: &str| exports.iter().any(|e| e == name);
        let prepared = if has("decide") || has("evolve") || has("initial-state") {
            Prepared::Aggregate(
                aggregate::new_pre(&self.aggregate_linker, component)
                    .map_err(|e| anyhow::anyhow!("not a valid `aggregate` component: {e:#}"))?,
            )
        } else if has("upcast") {
            Prepared::Upcaster(
                upcaster::new_pre(&self.upcaster_linker, component)
                    .map_err(|e| anyhow::anyhow!("not a valid `upcaster` component: {e:#}"))?,
            )
        } else if has("handle") || has("event-types") {
            Prepared::Projection(
                projection::new_pre(&self.projection_linker, component)
                    .map_err(|e| anyhow::anyhow!("not a valid `projection` component: {e:#}"))?,
            )
        } else {
            anyhow::bail!(
                "the component implements no world of cairn:plugin@0.2.0 (or 0.1.0): an aggregate \
                 exports initial-state, decide and evolve; a projection exports event-types \
                 and handle; an upcaster exports event-types and upcast (it exports: [{}])",
                exports.join(", ")
            );
        };
        Ok(LoadedComponent {
            digest: digest.to_owned(),
            prepared,
            artifact_bytes: self.artifacts.size(digest),
        })
    }

    /// A fresh aggregate instance under `limits`. Waits for a free instance slot.
    pub async fn aggregate(
        &self,
        component: &LoadedComponent,
        limits: CallLimits,
    ) -> Result<(AggregateInstance, tokio::sync::OwnedSemaphorePermit), PluginFailure> {
        let Prepared::Aggregate(pre) = &component.prepared else {
            return Err(PluginFailure::invalid_output("not an aggregate component"));
        };
        let permit = self
            .call_slots
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        Ok((AggregateInstance::new(pre, limits).await?, permit))
    }

    /// A fresh upcaster instance under `limits`, taking no instance slot of its own:
    /// upcasters run nested inside a call that holds one (a command's load, a
    /// verification), one at a time, and `call_slots` leaves room in the pool for one
    /// nested instance per slot. Taking a second slot here could deadlock.
    pub async fn upcaster(
        &self,
        component: &LoadedComponent,
        limits: CallLimits,
    ) -> Result<UpcasterInstance, PluginFailure> {
        let Prepared::Upcaster(pre) = &component.prepared else {
            return Err(PluginFailure::invalid_output("not an upcaster component"));
        };
        UpcasterInstance::new(pre, limits).await
    }

    /// An instance slot for work that is not itself an instance (a verification that
    /// runs upcasters only).
    pub async fn slot(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.call_slots
            .clone()
            .acquire_owned()
            .await
            .expect("never closed")
    }

    /// A fresh projection instance under `limits`. Waits for a free instance slot.
    pub async fn projection(
        &self,
        component: &LoadedComponent,
        limits: CallLimits,
    ) -> Result<(ProjectionInstance, tokio::sync::OwnedSemaphorePermit), PluginFailure> {
        let Prepared::Projection(pre) = &component.prepared else {
            return Err(PluginFailure::invalid_output("not a projection component"));
        };
        let permit = self
            .call_slots
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        Ok((ProjectionInstance::new(pre, limits).await?, permit))
    }
}

/// A compile child runs at idle CPU priority (`SCHED_IDLE` on Linux, inherited by
/// cranelift's threads; else nice 19): it takes only the CPU that requests leave, so a
/// large component's compile (a Python interpreter: seconds of both cores) does not
/// delay a neighbour's commands. On a saturated host a compile waits, within its
/// `compile_timeout_ms`. (`cargo xtask bench-polyglot` measures the neighbour.)
#[cfg(unix)]
fn idle_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` lives across the call; pid 0 is the calling process.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
            return;
        }
    }
    // SAFETY: setpriority takes plain integers and touches no memory.
    unsafe { libc::setpriority(libc::PRIO_PROCESS as _, 0, 19) };
}

/// CPU time (user and system, every thread) a process has used so far, from
/// `/proc/PID/stat`; `None` where that cannot be read.
fn cpu_time_of(pid: u32) -> Option<Duration> {
    #[cfg(target_os = "linux")]
    {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the command name in parentheses: state is the first field, utime the
        // twelfth and stime the thirteenth.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // SAFETY: sysconf takes a plain integer.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if per_second <= 0 {
            return None;
        }
        Some(Duration::from_secs_f64(ticks as f64 / per_second as f64))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

/// Deletes files when dropped: a compile's temporary input and output, whatever happens.
struct RemoveOnDrop(Vec<std::path::PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Whether a compile failed for lack of room on the host's disk (writing its input or
/// artifact, here or in the compiler child, whose error arrives as text).
fn host_disk_full(error: &anyhow::Error) -> bool {
    crate::store::fault::classify(error) == crate::store::StoreFault::Full
        || format!("{error:#}").contains("No space left on device")
}
