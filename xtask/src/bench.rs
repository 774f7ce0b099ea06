//! `cargo xtask bench [--clients N] [--commands M] [--streams S] [--database URL]`:
//! a load generator. Starts a release server on a fresh data directory, uploads the
//! account plugin, and drives deposits from N client threads over HTTP, each command
//! on one of S streams. Prints throughput and latency percentiles.

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
    let clients = arg(args, "--clients", 64)?;
    let commands = arg(args, "--commands", 20_000)?;
    let streams = arg(args, "--streams", 1000)?;
    let database = database_arg(args);
    let server = ReleaseServer::start(root, "bench-data", database.as_deref())?;
    drive(root, &server.base, clients, commands, streams)
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

fn drive(root: &Path, base: &str, clients: u64, commands: u64, streams: u64) -> anyhow::Result<()> {
    let http = Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(clients as usize)
        .build()?;
    let created: serde_json::Value = http
        .post(format!("{base}/admin/tenants"))
        .bearer_auth("bench")
        .json(&json!({"id": "bench", "limits": {"max_concurrent_calls": 48}}))
        .send()?
        .json()?;
    let token = created["token"].as_str().context("token")?.to_owned();
    let wasm = std::fs::read(root.join("target/plugins/account.wasm"))?;
    http.put(format!("{base}/t/bench/plugins/account"))
        .bearer_auth(&token)
        .body(wasm)
        .send()?
        .error_for_status()?;
    for s in 0..streams {
        http.post(format!("{base}/t/bench/aggregates/account/{s}/commands"))
            .bearer_auth(&token)
            .json(&json!({"type": "Open", "payload": {"owner": "bench"}}))
            .send()?
            .error_for_status()?;
    }
    println!("==> {clients} clients, {commands} deposits over {streams} streams");
    let token = Arc::new(token);
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
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{} commands in {:.2}s: {:.0} commands/s; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    );
    Ok(())
}
