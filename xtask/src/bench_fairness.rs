//! `cargo xtask bench-fairness [--clients N] [--seconds S] [--database URL]`: what one
//! tenant's busy plugins cost another tenant.
//!
//! A release server; tenant `noisy` runs the hostile aggregate's `Loop` command (a
//! guest that spins until its CPU budget runs out) from N clients at once; tenant
//! `neighbour` sends deposits one after another. The neighbour's p50/p99 are measured
//! idle, during the noise, and idle again; the table ends with the ratio.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::bench::{ReleaseServer, print_neighbour, print_table_head};

/// `cargo xtask bench-fairness`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The noisy tenant's clients.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub clients: u64,
    /// Seconds per phase.
    #[arg(long, value_name = "S", default_value_t = 10)]
    pub seconds: u64,
    /// The database to run on (else SQLite in a fresh data directory).
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let (clients, seconds, database) = (args.clients, args.seconds, args.database.clone());
    let server = ReleaseServer::start(root, "bench-fairness-data", database.as_deref())?;
    let base = server.base.clone();
    let http = Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(clients as usize + 4)
        .build()?;
    let tenant = |id: &str, plugin: &str, wasm: &str| -> anyhow::Result<String> {
        let created: Value = http
            .post(format!("{base}/admin/tenants"))
            .bearer_auth("bench")
            .json(&json!({"id": id}))
            .send()?
            .error_for_status()?
            .json()?;
        let token = created["token"].as_str().context("token")?.to_owned();
        http.put(format!("{base}/t/{id}/plugins/{plugin}"))
            .bearer_auth(&token)
            .body(std::fs::read(root.join(wasm))?)
            .send()?
            .error_for_status()?;
        Ok(token)
    };
    let noisy = tenant("noisy", "h", "target/hostile/aggregate.wasm")?;
    let neighbour = tenant("neighbour", "account", "target/plugins/account.wasm")?;
    let neighbour = crate::neighbour::Neighbour::open(&http, &base, "neighbour", &neighbour)?;
    let deposit = |http: &Client| neighbour.deposit(http);
    let measure = |http: &Client, count: usize| -> anyhow::Result<Vec<Duration>> {
        let mut latencies = (0..count)
            .map(|_| deposit(http))
            .collect::<Result<Vec<_>, _>>()?;
        latencies.sort();
        Ok(latencies)
    };
    let idle = measure(&http, 1000)?;

    println!("==> {clients} clients looping in tenant noisy for {seconds} s");
    let stop = Arc::new(AtomicBool::new(false));
    let loops = Arc::new(AtomicU64::new(0));
    let mut during = std::thread::scope(|scope| -> anyhow::Result<Vec<Duration>> {
        for _ in 0..clients {
            let (stop, loops, http, base, noisy) = (
                stop.clone(),
                loops.clone(),
                http.clone(),
                base.clone(),
                noisy.clone(),
            );
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // 422 plugin_failed (deadline) is the expected answer.
                    let _ = http
                        .post(format!("{base}/t/noisy/aggregates/h/1/commands"))
                        .bearer_auth(&noisy)
                        .json(&json!({"type": "Loop"}))
                        .send();
                    loops.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_millis(500));
        let started = Instant::now();
        let mut latencies = Vec::new();
        while started.elapsed() < Duration::from_secs(seconds) {
            latencies.push(deposit(&http)?);
        }
        stop.store(true, Ordering::Relaxed);
        Ok(latencies)
    })?;
    during.sort();
    let again = measure(&http, 1000)?;
    print_table_head(database.is_some());
    println!(
        "| noisy loops answered | {} |",
        loops.load(Ordering::Relaxed)
    );
    print_neighbour(&idle, &during, &again);
    drop(server);
    Ok(())
}
