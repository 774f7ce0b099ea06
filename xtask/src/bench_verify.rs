//! `cargo xtask bench-verify [--streams S] [--events E] [--database URL]`: how fast a
//! new aggregate version is verified, and what it costs a neighbour meanwhile.
//!
//! A release server; tenant `big` with E events of `account` across S streams (raw
//! appends, so loading is quick); tenant `neighbour` with one account. It measures a
//! neighbour's command latency idle, then uploads a new version of `big`'s account
//! (same logic, new digest) and keeps the neighbour's commands going while the
//! verification replays every stream, printing its progress. The table at the end has
//! the verification time and rate, and the neighbour's p50/p99 idle and during.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::bench::{ReleaseServer, print_neighbour, print_table_head};

/// `cargo xtask bench-verify`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Streams of history to verify.
    #[arg(long, value_name = "S", default_value_t = 1000)]
    pub streams: u64,
    /// Events in all.
    #[arg(long, value_name = "E", default_value_t = 100_000)]
    pub events: u64,
    /// The database to run on (else SQLite in a fresh data directory).
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let (streams, events, database) = (args.streams, args.events, args.database.clone());
    if streams == 0 || events < streams {
        bail!("--events must be at least --streams, and --streams at least 1");
    }
    let server = ReleaseServer::start(root, "bench-verify-data", database.as_deref())?;
    let base = server.base.clone();
    let http = Client::builder()
        .timeout(Duration::from_secs(120))
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
    let account = std::fs::read(root.join("target/plugins/account.wasm"))?;
    let upload = |tenant: &str, token: &str, wasm: Vec<u8>| -> anyhow::Result<Value> {
        Ok(http
            .put(format!("{base}/t/{tenant}/plugins/account"))
            .bearer_auth(token)
            .body(wasm)
            .send()?
            .error_for_status()?
            .json()?)
    };
    let big = tenant("big")?;
    let neighbour = tenant("neighbour")?;
    upload("big", &big, account.clone())?;
    upload("neighbour", &neighbour, account.clone())?;

    println!("==> loading {events} events across {streams} streams of tenant big");
    let per_stream = events / streams;
    let loading = Instant::now();
    for s in 0..streams {
        let mut batch = vec![json!({"type": "Opened", "data": {"owner": format!("o{s}")}})];
        for _ in 1..per_stream {
            batch.push(json!({"type": "Deposited", "data": {"amount": 1}}));
        }
        for chunk in batch.chunks(500) {
            http.post(format!("{base}/t/big/streams/account-{s}"))
                .bearer_auth(&big)
                .json(&json!({"events": chunk}))
                .send()?
                .error_for_status()?;
        }
    }
    println!("    loaded in {:.1}s", loading.elapsed().as_secs_f64());
    let neighbour = crate::neighbour::Neighbour::open(&http, &base, "neighbour", &neighbour)?;
    let neighbour_command = |http: &Client| neighbour.deposit(http);
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(neighbour_command(&http)?);
    }

    // Same logic, new digest: a trailing custom section.
    let v2 = wasm_variant::with_custom_section(&account, "bench-version", b"2");

    let done = Arc::new(AtomicBool::new(false));
    let during = std::thread::scope(
        |scope| -> anyhow::Result<(Vec<Duration>, Duration, Value, Duration)> {
            // The upload compiles the component (cranelift, on every core) before it
            // answers; that is the compile budget's concern, not verification's, so
            // the neighbour's load starts when the upload has answered.
            let started = Instant::now();
            let accepted = upload("big", &big, v2)?;
            let answered = started.elapsed();
            let load = {
                let (done, http) = (done.clone(), http.clone());
                scope.spawn(move || -> anyhow::Result<Vec<Duration>> {
                    let mut latencies = Vec::new();
                    while !done.load(Ordering::Relaxed) {
                        latencies.push(neighbour_command(&http)?);
                    }
                    Ok(latencies)
                })
            };

            let url = accepted["status_url"].as_str().context("a status URL")?;
            println!("==> verifying version {} ({url})", accepted["version"]);
            let mut shown = Instant::now();
            let view = loop {
                let view: Value = http
                    .get(format!("{base}{url}"))
                    .bearer_auth(&big)
                    .send()?
                    .error_for_status()?
                    .json()?;
                if view["status"] != "verifying" {
                    break view;
                }
                if shown.elapsed() >= Duration::from_millis(500) {
                    let r = &view["verification"];
                    println!(
                        "    {} / {} streams, {} events folded",
                        r["streams_checked"], r["streams_total"], r["events_folded"]
                    );
                    shown = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            let took = started.elapsed();
            done.store(true, Ordering::Relaxed);
            let latencies = load.join().expect("neighbour thread panicked")?;
            Ok((latencies, took, view, answered))
        },
    )?;
    let (mut during, took, view, answered) = during;
    // Idle again, to show how much the idle figure itself varies on this machine.
    let mut idle_after = Vec::new();
    for _ in 0..1000 {
        idle_after.push(neighbour_command(&http)?);
    }
    idle_after.sort();
    let report = &view["verification"];
    if view["status"] != "active" {
        bail!("verification ended {}: {report}", view["status"]);
    }
    idle.sort();
    during.sort();
    let folded = report["events_folded"].as_u64().unwrap_or(0);
    print_table_head(database.is_some());
    println!(
        "| history | {} events, {} streams |",
        report["events_total"], report["streams_total"]
    );
    println!(
        "| upload answered (validation, compile) | {:.0} ms |",
        answered.as_secs_f64() * 1000.0
    );
    println!(
        "| verification (upload to active) | {:.2} s |",
        took.as_secs_f64()
    );
    println!(
        "| verification rate | {:.0} events/s |",
        folded as f64 / took.as_secs_f64()
    );
    print_neighbour(&idle, &during, &idle_after);
    drop(server);
    Ok(())
}
