//! What a plugin costs: the `account` aggregate's `decide` and `evolve` compiled
//! natively (the plugin crate linked in as an rlib, through the same SDK glue the
//! component runs: JSON state in, JSON state out) and as a component through the host's
//! runtime (`cairn_host::runtime`, the path a command takes: a limited `Store`, the
//! epoch budget, the wall-time bound); instantiation; compiling a component; loading
//! its cached artifact in a fresh runtime (an mmap, no compile).
//!
//! `cargo bench -p cairn-host --bench plugin_costs -- --wasm PATH [--calls N]
//! [--compiles C] [--cairn PATH]`: with `--cairn`, compiles run as the server runs
//! them (a `cairn compile-component` child process), else on a thread of this one.
//! N calls in all per measure, in five rounds with native and component in turn; each
//! figure is its fastest round. Prints one line, `plugin_costs key=value …`, times in
//! µs unless the key says ms.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_guest::__private::aggregate as glue;
use cairn_guest::aggregate_bindings::cairn::plugin::types as wit;
use cairn_host::runtime::aggregate::Command;
use cairn_host::runtime::{CallLimits, Compiler, Runtime};
use cairn_host::store::RecordedEvent;
use wasm_variant::with_custom_section;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let wasm = std::fs::read(arg(&args, "--wasm").unwrap_or("target/plugins/account.wasm".into()))?;
    let calls: u32 = arg(&args, "--calls").map_or(Ok(20_000), |v| v.parse())?;
    let compiles: u32 = arg(&args, "--compiles").map_or(Ok(3), |v| v.parse())?;
    let compiler = arg(&args, "--cairn").map_or(Compiler::InProcess, |exe| {
        Compiler::Subprocess(PathBuf::from(exe))
    });
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(wasm, calls, compiles, compiler))
}

/// The mean time of `f` over `n` runs, in µs.
fn mean_us(n: u32, mut f: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..n {
        f();
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

/// Rounds of every call measure (see `run`).
const ROUNDS: u32 = 5;

/// µs per call of `n` calls made since `started`.
fn per_call_us(started: Instant, n: u32) -> f64 {
    started.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

async fn run(wasm: Vec<u8>, calls: u32, compiles: u32, compiler: Compiler) -> anyhow::Result<()> {
    let mut line = vec![];
    let mut put = |key: &str, value: f64| line.push(format!("{key}={value:.3}"));

    // The state and inputs of a command on an open account, and 1,000 deposits.
    let state = br#"{"open":true,"owner":"bench","balance":1000}"#.to_vec();
    let events: Vec<RecordedEvent> = (1..=1000).map(deposited).collect();
    let wit_events: Vec<wit::RecordedEvent> = events.iter().map(to_wit).collect();
    let command = Command {
        stream_id: "account-1".into(),
        command_type: "Deposit".into(),
        payload: br#"{"amount":1}"#.to_vec(),
        issued_at: 1_700_000_000_000,
    };
    let wit_command = || wit::Command {
        stream_id: command.stream_id.clone(),
        command_type: command.command_type.clone(),
        payload: command.payload.clone(),
        issued_at: command.issued_at,
    };

    // Compiling: distinct bytes each time (a custom section), so nothing is cached.
    let artifacts = tempfile::tempdir()?;
    let runtime = Runtime::new(artifacts.path(), compiler.clone())?;
    let started = Instant::now();
    let mut component = None;
    for i in 0..compiles.max(1) {
        let variant = with_custom_section(&wasm, "cairn-bench", format!("bench-{i}").as_bytes());
        component = Some(
            runtime
                .inspect(variant, Duration::from_secs(600))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
    }
    put(
        "compile_ms",
        started.elapsed().as_secs_f64() * 1e3 / f64::from(compiles.max(1)),
    );
    let component = component.expect("compiled at least once");

    // Loading the cached artifacts in a fresh runtime: what a restart does per plugin.
    let fresh = Runtime::new(artifacts.path(), compiler)?;
    let started = Instant::now();
    for i in 0..compiles.max(1) {
        let digest = cairn_host::runtime::digest_of(&with_custom_section(
            &wasm,
            "cairn-bench",
            format!("bench-{i}").as_bytes(),
        ));
        fresh
            .load(&digest, || async {
                anyhow::bail!("the artifact was not used")
            })
            .await?;
    }
    put(
        "artifact_load_ms",
        started.elapsed().as_secs_f64() * 1e3 / f64::from(compiles.max(1)),
    );

    let limits = CallLimits::default();
    // Each call measure in ROUNDS rounds, native and component in turn, the fastest
    // round kept: on a shared machine the slowest rounds measure the neighbours.
    let mut fastest: std::collections::BTreeMap<String, f64> = Default::default();
    let calls = (calls / ROUNDS).max(100);
    for _ in 0..ROUNDS {
        let mut best = |key: &str, value: f64| {
            let entry = fastest.entry(key.to_owned()).or_insert(f64::INFINITY);
            *entry = entry.min(value);
        };
        // Native: the plugin crate's own code through the SDK glue, inputs copied as
        // the component boundary copies them.
        best(
            "native_decide_us",
            mean_us(calls, || {
                let events = glue::decide::<account::Account>(state.clone(), wit_command());
                assert!(events.is_ok());
            }),
        );
        best(
            "native_evolve_1_us",
            mean_us(calls, || {
                glue::evolve::<account::Account>(state.clone(), wit_events[..1].to_vec());
            }),
        );
        best(
            "native_evolve_1000_us",
            mean_us(calls / 100, || {
                glue::evolve::<account::Account>(state.clone(), wit_events.clone());
            }),
        );
        // Instantiation: a fresh limited Store and instance, as every command gets.
        let started = Instant::now();
        for _ in 0..calls / 4 {
            let (instance, _permit) = runtime.aggregate(&component, limits.clone()).await?;
            drop(instance);
        }
        best("instantiate_us", per_call_us(started, calls / 4));
        // A command's plugin work on a cached state: instantiate, then decide.
        let started = Instant::now();
        for _ in 0..calls / 4 {
            let (mut instance, _permit) = runtime.aggregate(&component, limits.clone()).await?;
            let decided = instance.decide(&state, &command, "seed").await?;
            assert!(decided.is_ok());
        }
        best("wasm_command_us", per_call_us(started, calls / 4));
        // Calls on one instance: the boundary and the guest's work, no instantiation.
        let (mut instance, _permit) = runtime.aggregate(&component, limits.clone()).await?;
        let started = Instant::now();
        for _ in 0..calls {
            let decided = instance.decide(&state, &command, "seed").await?;
            assert!(decided.is_ok());
        }
        best("wasm_decide_us", per_call_us(started, calls));
        let (mut instance, _permit) = runtime.aggregate(&component, limits.clone()).await?;
        let started = Instant::now();
        for _ in 0..calls {
            instance.evolve(state.clone(), &events[..1]).await?;
        }
        best("wasm_evolve_1_us", per_call_us(started, calls));
        let (mut instance, _permit) = runtime.aggregate(&component, limits.clone()).await?;
        let started = Instant::now();
        for _ in 0..calls / 100 {
            instance.evolve(state.clone(), &events).await?;
        }
        best("wasm_evolve_1000_us", per_call_us(started, calls / 100));
    }
    for (key, value) in fastest {
        put(&key, value);
    }
    println!("plugin_costs {}", line.join(" "));
    Ok(())
}

/// A stored `Deposited` as a command writes it.
fn deposited(version: u64) -> RecordedEvent {
    RecordedEvent {
        position: version,
        event_id: format!("0000000{version}-aaaa-bbbb-cccc-dddddddddddd"),
        stream_id: "account-1".into(),
        version,
        event_type: "Deposited".into(),
        payload: r#"{"amount":1}"#.into(),
        metadata: r#"{"correlation_id":"c","causation_id":"c"}"#.into(),
        recorded_at: 1_700_000_000_000,
    }
}

fn to_wit(e: &RecordedEvent) -> wit::RecordedEvent {
    wit::RecordedEvent {
        event_id: e.event_id.clone(),
        stream_id: e.stream_id.clone(),
        version: e.version,
        position: e.position,
        event_type: e.event_type.clone(),
        payload: e.payload.as_bytes().to_vec(),
        metadata: e.metadata.as_bytes().to_vec(),
        recorded_at: e.recorded_at as u64,
    }
}
