//! `cargo xtask bench [--quick] [--full]`: the command path against its storage limit,
//! every figure measured in the same run so the ratios hold on a noisy machine. For
//! SQLite and for PostgreSQL (a fresh database on 127.0.0.1:5432): the storage limit
//! (the same one-event appends straight into the store through the group-commit
//! appender, no HTTP, no WebAssembly: `host/benches/storage_limit.rs`), then deposits
//! over HTTP at 1, 16 and 64 clients on 1,000 streams (and on 100,000 with `--full`),
//! each row with its ratio to the limit. `--quick` sends fewer commands.
//!
//! `cargo xtask bench --clients N [--commands M] [--streams S] [--database URL]`: one
//! load run, as before: deposits from N client threads over HTTP.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::blocking::Client;
use serde_json::json;

/// The number after `name` in `args`, else `default` (shared by the bench commands).
pub fn arg(args: &[String], name: &str, default: u64) -> anyhow::Result<u64> {
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args.get(i + 1).context("missing value")?.parse()?),
        None => Ok(default),
    }
}

/// The URL after `--database`, if given.
pub fn database_arg(args: &[String]) -> Option<String> {
    args.iter()
        .position(|a| a == "--database")
        .and_then(|i| args.get(i + 1).cloned())
}

pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    if args.iter().any(|a| a == "--clients") {
        let clients = arg(args, "--clients", 64)?;
        let commands = arg(args, "--commands", 20_000)?;
        let streams = arg(args, "--streams", 1000)?;
        let database = database_arg(args);
        let server = ReleaseServer::start(root, "bench-data", database.as_deref())?;
        let token = prepare(root, &server.base, streams)?;
        let load = drive(&server.base, &token, clients, commands, streams)?;
        println!(
            "{} commands: {:.0} commands/s; p50 {:.2} ms, p99 {:.2} ms",
            commands, load.per_second, load.p50, load.p99
        );
        return Ok(());
    }
    let quick = args.iter().any(|a| a == "--quick");
    let full = args.iter().any(|a| a == "--full");
    let commands = if quick { 3_000 } else { 20_000 };
    let mut stream_counts = vec![1000];
    if full {
        stream_counts.push(100_000);
    }
    let mut rows = Vec::new();
    for backend in ["sqlite", "postgres"] {
        let database = match backend {
            "postgres" => Some(crate::chaos::fresh_postgres_database("bench")?),
            _ => None,
        };
        for &streams in &stream_counts {
            let limit = storage_limit(root, database.as_deref(), commands * 2, streams)?;
            let data = format!("bench-data-{backend}-{streams}");
            let server = ReleaseServer::start(root, &data, database.as_deref())?;
            let token = prepare(root, &server.base, streams)?;
            for clients in [1u64, 16, 64] {
                // One client cannot send many commands in a sensible time.
                let count = if clients == 1 {
                    commands / 10
                } else {
                    commands
                };
                let load = drive(&server.base, &token, clients, count, streams)?;
                println!(
                    "==> {backend}, {streams} streams, {clients} clients: {:.0} commands/s",
                    load.per_second
                );
                rows.push((backend, streams, clients, load, limit));
            }
            drop(server);
            // The next run on this database starts from an empty tenant list.
            if let Some(url) = &database {
                crate::chaos::recreate_postgres_database(url)?;
            }
        }
    }
    println!();
    println!(
        "| backend | streams | clients | commands/s | p50 ms | p99 ms | storage limit appends/s (64 tasks) | Cairn / limit |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (backend, streams, clients, load, limit) in rows {
        println!(
            "| {backend} | {streams} | {clients} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} |",
            load.per_second,
            load.p50,
            load.p99,
            limit,
            load.per_second / limit
        );
    }
    Ok(())
}

/// Appends/s of the storage limit benchmark (built and run in release).
fn storage_limit(
    root: &Path,
    database: Option<&str>,
    appends: u64,
    streams: u64,
) -> anyhow::Result<f64> {
    let mut command = Command::new(env!("CARGO"));
    command.current_dir(root).args([
        "bench",
        "--quiet",
        "-p",
        "cairn-host",
        "--bench",
        "storage_limit",
        "--",
        "--clients",
        "64",
        "--appends",
        &appends.to_string(),
        "--streams",
        &streams.to_string(),
    ]);
    if let Some(url) = database {
        crate::chaos::recreate_postgres_database(url)?;
        command.args(["--database", url]);
    }
    let output = command.stderr(Stdio::inherit()).output()?;
    if !output.status.success() {
        bail!("the storage limit benchmark failed");
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("storage_limit "))
        .context("no storage_limit line")?;
    println!("==> {line}");
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("appends_per_second="))
        .context("no appends_per_second")?
        .parse()
        .context("appends_per_second")
}

/// The `p` quantile of sorted latencies, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// The head of a results table: the columns and the backend row.
pub fn print_table_head(on_postgres: bool) {
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    let backend = if on_postgres { "postgres" } else { "sqlite" };
    println!("| backend | {backend} |");
}

/// A neighbour's latencies (each sorted) idle, during some load and idle again, and
/// its p99 during the load over the larger idle p99 (the idle figure itself varies).
pub fn print_neighbour(idle: &[Duration], during: &[Duration], again: &[Duration]) {
    for (what, l) in [("idle", idle), ("during", during), ("idle again", again)] {
        println!(
            "| neighbour {what} p50 / p99 | {:.2} / {:.2} ms ({} commands) |",
            percentile_ms(l, 0.5),
            percentile_ms(l, 0.99),
            l.len()
        );
    }
    let idle_p99 = percentile_ms(idle, 0.99).max(percentile_ms(again, 0.99));
    println!(
        "| p99 during / idle (the larger idle p99) | {:.2} |",
        percentile_ms(during, 0.99) / idle_p99
    );
}

/// A release server on a fresh data directory under `target/`, killed when dropped.
pub struct ReleaseServer {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl ReleaseServer {
    /// Builds the plugins and the server in release, then starts it with the operator
    /// token `bench` (on `database`, else on SQLite in the data directory).
    pub fn start(root: &Path, data: &str, database: Option<&str>) -> anyhow::Result<ReleaseServer> {
        ReleaseServer::start_with(root, data, database, &[])
    }

    /// The same, with extra `cairn serve` arguments.
    pub fn start_with(
        root: &Path,
        data: &str,
        database: Option<&str>,
        extra: &[&str],
    ) -> anyhow::Result<ReleaseServer> {
        crate::build_plugins::run(root)?;
        println!("==> building the server in release");
        let status = Command::new(env!("CARGO"))
            .current_dir(root)
            .args([
                "build",
                "--release",
                "--quiet",
                "-p",
                "cairn-host",
                "--bin",
                "cairn",
            ])
            .status()?;
        if !status.success() {
            bail!("building the server failed");
        }
        let data_dir = root.join("target").join(data);
        let _ = std::fs::remove_dir_all(&data_dir);
        let mut command = Command::new(root.join("target/release/cairn"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .env("CAIRN_ADMIN_TOKEN", "bench")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped());
        if let Some(url) = database {
            command.args(["--database", url]);
        }
        command.args(extra);
        let mut child = command.spawn()?;
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().context("stdout")?),
            &mut line,
        )?;
        let base = line
            .trim()
            .trim_start_matches("cairn listening on ")
            .to_owned();
        std::thread::sleep(Duration::from_millis(300));
        Ok(ReleaseServer { child, base })
    }
}

impl ReleaseServer {
    /// The server's process id (for its RSS and CPU in `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ReleaseServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tenant `bench` with the account aggregate and `streams` opened accounts (written
/// by the bulk import: opening 100,000 accounts by command would take minutes); its
/// token.
fn prepare(root: &Path, base: &str, streams: u64) -> anyhow::Result<String> {
    let http = Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let created: serde_json::Value = http
        .post(format!("{base}/admin/tenants"))
        .bearer_auth("bench")
        .json(&json!({"id": "bench", "limits": {"max_concurrent_calls": 48}}))
        .send()?
        .error_for_status()?
        .json()?;
    let token = created["token"].as_str().context("token")?.to_owned();
    let wasm = std::fs::read(root.join("target/plugins/account.wasm"))?;
    http.put(format!("{base}/t/bench/plugins/account"))
        .bearer_auth(&token)
        .body(wasm)
        .send()?
        .error_for_status()?;
    let mut opened = String::new();
    for s in 0..streams {
        opened.push_str(
            &json!({"stream": format!("account-{s}"), "type": "Opened", "data": {"owner": "bench"}})
                .to_string(),
        );
        opened.push('\n');
    }
    http.post(format!("{base}/t/bench/import"))
        .bearer_auth(&token)
        .body(opened)
        .send()?
        .error_for_status()?;
    Ok(token)
}

/// Throughput and latency of one load run.
pub struct Load {
    pub per_second: f64,
    pub p50: f64,
    pub p99: f64,
}

/// `commands` deposits from `clients` threads over `streams` accounts.
fn drive(
    base: &str,
    token: &str,
    clients: u64,
    commands: u64,
    streams: u64,
) -> anyhow::Result<Load> {
    let http = Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(clients as usize)
        .build()?;
    let token = Arc::new(token.to_owned());
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let (http, token, base) = (http.clone(), token.clone(), base.to_owned());
            std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
                let mut latencies = Vec::new();
                let mut i = c;
                while i < commands {
                    let stream = (i * 7919) % streams;
                    let sent = Instant::now();
                    http.post(format!(
                        "{base}/t/bench/aggregates/account/{stream}/commands"
                    ))
                    .bearer_auth(token.as_str())
                    .json(&json!({"type": "Deposit", "payload": {"amount": 1}}))
                    .send()?
                    .error_for_status()?;
                    latencies.push(sent.elapsed());
                    i += clients;
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.join().expect("worker panicked")?);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(Load {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile_ms(&latencies, 0.5),
        p99: percentile_ms(&latencies, 0.99),
    })
}
