//! `cargo xtask bench-polyglot [--seconds S] [--calls N] [--database URL]`: what the
//! Python and JavaScript plugins cost beside the Rust ones, as a markdown table.
//!
//! 1. Per component (`host/benches/plugin_costs.rs` on each aggregate: the Rust
//!    `account` and the Python one): size, compile in a child process as the server
//!    does, cached artifact load, instantiate, `decide` and `evolve` per call. The JS
//!    projection's size and compile time are measured through the server (upload).
//! 2. Commands/s over HTTP, release server, 16 clients on 16 streams for S seconds,
//!    against the Rust `account` and the Python `account` in one tenant.
//! 3. A neighbour tenant's deposits, one after another, idle, while another tenant
//!    uploads Python components (distinct bytes, so each one compiles), and idle
//!    again: its p50/p99 in each phase.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use wasm_variant::with_custom_section;

use crate::bench::{ReleaseServer, cargo_bench, print_neighbour};

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

/// `cargo xtask bench-polyglot`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Seconds of each HTTP run.
    #[arg(long, value_name = "S", default_value_t = 10)]
    pub seconds: u64,
    /// Calls per plugin-cost measure.
    #[arg(long, value_name = "N", default_value_t = 2_000)]
    pub calls: u64,
    /// The database to run on (else SQLite in a fresh data directory).
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let (seconds, calls, database) = (args.seconds, args.calls, args.database.clone());
    crate::polyglot::build_examples(root)?;
    let server = ReleaseServer::start(root, "bench-polyglot-data", database.as_deref())?;
    let cairn = crate::bench::server::binary(root);
    let read = |name: &str| std::fs::read(root.join("target/plugins").join(name));
    let (rust_account, python_account) = (read("account.wasm")?, read("python-account.wasm")?);
    let (rust_balances, js_balances) = (read("balances.wasm")?, read("js-balances.wasm")?);

    let mut rows: Vec<(String, String)> = Vec::new();
    let mut costs = Vec::new();
    for (name, wasm) in [
        ("account.wasm", &rust_account),
        ("python-account.wasm", &python_account),
    ] {
        let found = cargo_bench(
            root,
            "plugin_costs",
            &[
                "--wasm".into(),
                root.join("target/plugins").join(name).display().to_string(),
                "--calls".into(),
                calls.to_string(),
                "--compiles".into(),
                "2".into(),
                "--cairn".into(),
                cairn.display().to_string(),
            ],
        )?;
        costs.push((wasm.len(), found));
    }
    let get = |i: usize, key: &str| costs[i].1.get(key).copied().unwrap_or(f64::NAN);
    let pair = |key: &str, unit: &str, digits: usize| {
        format!(
            "{:.*} / {:.*} {unit} ({:.0}×)",
            digits,
            get(0, key),
            digits,
            get(1, key),
            get(1, key) / get(0, key)
        )
    };
    rows.push((
        "aggregate size: Rust / Python".into(),
        format!("{} / {}", mib(costs[0].0), mib(costs[1].0)),
    ));
    for (what, key, unit, digits) in [
        ("compile (child process, mean of 2)", "compile_ms", "ms", 0),
        (
            "load a cached artifact (fresh runtime)",
            "artifact_load_ms",
            "ms",
            2,
        ),
        ("instantiate", "instantiate_us", "µs", 1),
        ("decide, per call", "wasm_decide_us", "µs", 1),
        ("evolve of 1 event, per call", "wasm_evolve_1_us", "µs", 1),
        (
            "evolve of 1,000 events, per call",
            "wasm_evolve_1000_us",
            "µs",
            0,
        ),
        (
            "a command's plugin work (instantiate + decide)",
            "wasm_command_us",
            "µs",
            1,
        ),
    ] {
        rows.push((
            format!("aggregate {what}: Rust / Python"),
            pair(key, unit, digits),
        ));
    }

    let base = server.base.clone();
    let http = Client::builder()
        .timeout(Duration::from_secs(600))
        .pool_max_idle_per_host(32)
        .build()?;
    let tenant = |id: &str| -> anyhow::Result<String> {
        let created: Value = http
            .post(format!("{base}/admin/tenants"))
            .bearer_auth("bench")
            .json(&json!({"id": id}))
            .send()?
            .error_for_status()?
            .json()?;
        Ok(created["token"].as_str().context("token")?.to_owned())
    };
    let upload = |token: &str, t: &str, name: &str, wasm: Vec<u8>| -> anyhow::Result<Duration> {
        let started = Instant::now();
        let resp = http
            .put(format!("{base}/t/{t}/plugins/{name}"))
            .bearer_auth(token)
            .body(wasm)
            .send()?;
        let status = resp.status();
        anyhow::ensure!(
            status.is_success(),
            "upload {name}: {status} {}",
            resp.text()?
        );
        Ok(started.elapsed())
    };

    // The projections' compile through the server: the upload's answer waits for it.
    let mixed = tenant("mixed")?;
    let rust_projection = upload(&mixed, "mixed", "balances-rs", rust_balances.clone())?;
    let js_projection = upload(&mixed, "mixed", "balances-js", js_balances.clone())?;
    rows.push((
        "projection size: Rust / JS".into(),
        format!("{} / {}", mib(rust_balances.len()), mib(js_balances.len())),
    ));
    rows.push((
        "projection upload answered (compile included): Rust / JS".into(),
        format!(
            "{:.0} / {:.0} ms",
            rust_projection.as_secs_f64() * 1e3,
            js_projection.as_secs_f64() * 1e3
        ),
    ));

    // Commands/s: the same load against each aggregate.
    upload(&mixed, "mixed", "account-rs", rust_account.clone())?;
    upload(&mixed, "mixed", "account-py", python_account.clone())?;
    for plugin in ["account-rs", "account-py"] {
        let clients = 16;
        for c in 0..clients {
            http.post(format!("{base}/t/mixed/aggregates/{plugin}/s{c}/commands"))
                .bearer_auth(&mixed)
                .json(&json!({"type": "Open", "payload": {"owner": "bench"}}))
                .send()?
                .error_for_status()?;
        }
        let done = AtomicU64::new(0);
        let started = Instant::now();
        std::thread::scope(|scope| {
            for c in 0..clients {
                let (http, base, mixed, done) = (&http, &base, &mixed, &done);
                scope.spawn(move || {
                    while started.elapsed() < Duration::from_secs(seconds) {
                        let ok = http
                            .post(format!("{base}/t/mixed/aggregates/{plugin}/s{c}/commands"))
                            .bearer_auth(mixed)
                            .json(&json!({"type": "Deposit", "payload": {"amount": 1}}))
                            .send()
                            .is_ok_and(|r| r.status().is_success());
                        if ok {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
        rows.push((
            format!("commands/s over HTTP, 16 clients, {plugin}"),
            format!("{rate:.0}"),
        ));
    }

    // A neighbour while Python components compile.
    let neighbour = tenant("neighbour")?;
    upload(&neighbour, "neighbour", "account", rust_account)?;
    let neighbour = crate::neighbour::Neighbour::open(&http, &base, "neighbour", &neighbour)?;
    let deposit = |http: &Client| neighbour.deposit(http);
    let measure = |count: usize| -> anyhow::Result<Vec<Duration>> {
        let mut latencies = (0..count)
            .map(|_| deposit(&http))
            .collect::<Result<Vec<_>, _>>()?;
        latencies.sort();
        Ok(latencies)
    };
    let idle = measure(1000)?;
    let compiler = tenant("compiler")?;
    let stop = AtomicBool::new(false);
    let compiles = Arc::new(AtomicU64::new(0));
    let compile_times = std::sync::Mutex::new(Vec::new());
    println!("==> a neighbour's deposits while tenant compiler uploads Python components");
    let mut during = std::thread::scope(|scope| -> anyhow::Result<Vec<Duration>> {
        // Two uploaders: the host compiles two at a time.
        let uploaders: Vec<_> = (0..2)
            .map(|u| {
                let (stop, compiles, compile_times) = (&stop, compiles.clone(), &compile_times);
                let (upload, compiler, python) = (&upload, &compiler, &python_account);
                scope.spawn(move || -> anyhow::Result<()> {
                    for i in 0..2 {
                        // Another digest, so the server compiles it again.
                        let wasm = with_custom_section(
                            python,
                            "cairn-bench",
                            format!("{u}-{i}").as_bytes(),
                        );
                        let took = upload(compiler, "compiler", &format!("py-{u}-{i}"), wasm)?;
                        compile_times.lock().unwrap().push(took);
                        compiles.fetch_add(1, Ordering::Relaxed);
                    }
                    stop.store(true, Ordering::Relaxed);
                    Ok(())
                })
            })
            .collect();
        let mut latencies = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            latencies.push(deposit(&http)?);
        }
        for uploader in uploaders {
            uploader.join().expect("uploader")?;
        }
        Ok(latencies)
    })?;
    during.sort();
    let again = measure(1000)?;
    let times = compile_times.into_inner().unwrap();
    let mean = times.iter().map(Duration::as_secs_f64).sum::<f64>() / times.len() as f64;

    println!();
    println!("| measure | value |");
    println!("|---|---|");
    let backend = if database.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    println!("| backend | {backend} |");
    for (what, value) in rows {
        println!("| {what} | {value} |");
    }
    println!(
        "| Python uploads compiled meanwhile (two at a time) | {} (mean answer {:.1} s) |",
        compiles.load(Ordering::Relaxed),
        mean
    );
    print_neighbour(&idle, &during, &again);
    drop(server);
    Ok(())
}
