//! `cargo xtask bench [--quick] [--full]`: the command path against its storage limit,
//! and what the rest of the host costs, every figure measured in the same run so the
//! ratios hold on a noisy machine. One table of HTTP rows, one of measures, a chart:
//!
//! - For SQLite and for PostgreSQL (a fresh database on 127.0.0.1:5432): the storage
//!   limit (the same one-event appends straight into the store through the
//!   group-commit appender, no HTTP, no WebAssembly: `host/benches/storage_limit.rs`),
//!   then deposits over HTTP at 1, 16 and 64 clients on 1,000 streams (and on 100,000
//!   with `--full`), each row with its ratio to the limit and the cores the server and
//!   the load generator used (`load.rs`); the share of the server's CPU samples in
//!   wasmtime during a 64-client run (`profile.rs`, with `perf`).
//! - What a plugin costs: native against WebAssembly, instantiation, compiles and
//!   artifact loads (`plugins.rs`, `host/benches/plugin_costs.rs`).
//! - Projection catch-up against the raw read rate of the same log (`catch_up.rs`).
//! - Cold loads of a long stream with and without a snapshot (`cold.rs`).
//! - 1,000 tenants with a distinct plugin each: RSS, and start to ready (`tenants.rs`).
//! - The chart, `target/bench/bench.png` (`chart.rs`).
//!
//! `--quick` runs smaller versions (the keys say how large) in about three minutes;
//! `--only rows,plugins,catch-up,cold,tenants` runs only the parts named, and
//! `--backend sqlite|postgres` the HTTP rows of one backend.
//!
//! `cargo xtask bench --clients N [--commands M] [--streams S] [--database URL]`: one
//! load run, as before: deposits from N client threads over HTTP.
//!
//! `cargo xtask bench --flame NAME [--database URL]`: a flame graph of the command path
//! at 64 clients, `docs/flame/NAME.svg` (`flame.rs`).
//!
//! `CAIRN_BENCH_SERVER=PATH` runs that server binary instead of building one: to compare
//! two builds, run each in turn, alternating, on the same machine.

mod catch_up;
mod chart;
mod cold;
pub(crate) mod flame;
pub(crate) mod load;
mod plugins;
mod profile;
pub(crate) mod server;
mod tenants;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use load::{Load, drive, prepare};
pub(crate) use server::ReleaseServer;

/// `cargo xtask bench`'s arguments: the whole run (`--quick`, `--full`, `--only`,
/// `--backend`), one load run (`--clients`), or a flame graph (`--flame`).
#[derive(clap::Args, Debug, Default)]
pub(crate) struct Args {
    /// Fewer rows and shorter runs.
    #[arg(long)]
    pub quick: bool,
    /// Every row (more stream counts and clients).
    #[arg(long)]
    pub full: bool,
    /// Just these parts, comma-separated: rows, plugins, catch-up, cold, tenants.
    #[arg(long, value_name = "PARTS", value_delimiter = ',')]
    pub only: Option<Vec<String>>,
    /// The HTTP rows of one backend only (sqlite or postgres).
    #[arg(long)]
    pub backend: Option<String>,
    /// One load run at N clients instead of the whole bench.
    #[arg(long, value_name = "N")]
    pub clients: Option<u64>,
    /// Commands in a load run or a flame graph's run.
    #[arg(long, value_name = "M", default_value_t = 20_000)]
    pub commands: u64,
    /// Streams in a load run.
    #[arg(long, value_name = "S", default_value_t = 1000)]
    pub streams: u64,
    /// The database of a load run or a flame graph (else SQLite in a data directory).
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// A flame graph of the command path into docs/flame/NAME.svg.
    #[arg(long, value_name = "NAME")]
    pub flame: Option<String>,
}

/// One HTTP row of the table.
pub(crate) struct Row {
    pub backend: &'static str,
    pub streams: u64,
    pub clients: u64,
    pub load: Load,
    /// The storage limit's appends/s measured in the same run.
    pub limit: f64,
}

/// Every measure besides the HTTP rows, in the order measured, and the ratios the
/// chart shows.
#[derive(Default)]
pub(crate) struct Report {
    pub measures: Vec<(String, String)>,
    /// (label, measured, target): the ratios the issue sets targets for.
    pub ratios: Vec<(String, f64, f64)>,
}

impl Report {
    pub(crate) fn add(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let (key, value) = (key.into(), value.into());
        println!("==> {key}: {value}");
        self.measures.push((key, value));
    }
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    if let Some(name) = &args.flame {
        return flame::run(root, name, args.commands, args.database.as_deref());
    }
    if let Some(clients) = args.clients {
        let (commands, streams) = (args.commands, args.streams);
        let server = ReleaseServer::start(root, "bench-data", args.database.as_deref())?;
        let token = prepare(root, &server.base, streams)?;
        let load = drive(
            &server.base,
            server.pid(),
            &token,
            clients,
            commands,
            streams,
        )?;
        println!(
            "{} commands: {:.0} commands/s; p50 {:.2} ms, p99 {:.2} ms; server {:.2} cores \
             ({:.0} µs of CPU per command), load generator {:.2} cores",
            commands,
            load.per_second,
            load.p50,
            load.p99,
            load.server_cores,
            load.server_cores / load.per_second * 1e6,
            load.client_cores
        );
        let metrics = reqwest::blocking::Client::new()
            .get(format!("{}/metrics", server.base))
            .bearer_auth("bench")
            .send()?
            .text()?;
        let value = |name: &str| {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let transactions = value("cairn_append_transactions_total ").max(1.0);
        println!(
            "group commit: {:.1} appends per transaction, {:.2} ms per transaction",
            value("cairn_append_requests_total ") / transactions,
            value("cairn_append_transaction_seconds_total ") * 1e3 / transactions
        );
        return Ok(());
    }
    let (quick, full) = (args.quick, args.full);
    let started = std::time::Instant::now();
    server::build(root)?;
    // `--only a,b`: just those parts (`rows`, `plugins`, `catch-up`, `cold`, `tenants`),
    // to measure one change quickly; the chart is drawn only for a whole run.
    let only = &args.only;
    let wanted = |part: &str| only.as_ref().is_none_or(|o| o.iter().any(|p| p == part));
    let mut report = Report::default();
    let rows = if wanted("rows") {
        http_rows(root, quick, full, args.backend.as_deref(), &mut report)?
    } else {
        Vec::new()
    };
    if wanted("plugins") {
        plugins::run(root, quick, &mut report)?;
    }
    if wanted("catch-up") {
        catch_up::run(root, quick, &mut report)?;
    }
    if wanted("cold") {
        cold::run(root, &mut report)?;
    }
    if wanted("tenants") {
        tenants::run(root, quick, &mut report)?;
    }
    report.add(
        "bench run, wall time",
        format!("{:.0} s", started.elapsed().as_secs_f64()),
    );
    for backend in ["sqlite", "postgres"] {
        if let Some(row) = rows
            .iter()
            .find(|r| r.backend == backend && r.clients == 64 && r.streams == 1000)
        {
            report.ratios.push((
                format!("{backend}: Cairn / storage limit, 64 clients, 1,000 streams (≥ 0.3)"),
                row.load.per_second / row.limit,
                0.3,
            ));
        }
    }

    println!();
    println!(
        "| backend | streams | clients | commands/s | p50 ms | p99 ms | storage limit appends/s | Cairn / limit | server CPU µs / command | server cores | load generator cores |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.0} | {:.2} | {:.2} |",
            row.backend,
            row.streams,
            row.clients,
            row.load.per_second,
            row.load.p50,
            row.load.p99,
            row.limit,
            row.load.per_second / row.limit,
            row.load.server_cores / row.load.per_second * 1e6,
            row.load.server_cores,
            row.load.client_cores,
        );
    }
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    for (key, value) in &report.measures {
        println!("| {key} | {value} |");
    }
    if only.is_some() {
        return Ok(());
    }
    chart::draw(root, &rows, &report)
}

/// The HTTP rows on both backends, with the storage limit of each; the wasmtime share
/// of a 64-client SQLite run.
fn http_rows(
    root: &Path,
    quick: bool,
    full: bool,
    only_backend: Option<&str>,
    report: &mut Report,
) -> anyhow::Result<Vec<Row>> {
    let commands = if quick { 3_000 } else { 20_000 };
    let mut stream_counts = vec![1000];
    if full {
        stream_counts.push(100_000);
    }
    let mut rows = Vec::new();
    for backend in ["sqlite", "postgres"] {
        if only_backend.is_some_and(|b| b != backend) {
            continue;
        }
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
                let load = drive(&server.base, server.pid(), &token, clients, count, streams)?;
                println!(
                    "==> {backend}, {streams} streams, {clients} clients: {:.0} commands/s",
                    load.per_second
                );
                rows.push(Row {
                    backend,
                    streams,
                    clients,
                    load,
                    limit,
                });
            }
            if streams == 1000 {
                profile::wasm_share(root, &server, &token, backend, commands, report)?;
            }
            drop(server);
            // The next run on this database starts from an empty tenant list.
            if let Some(url) = &database {
                crate::chaos::recreate_postgres_database(url)?;
            }
        }
    }
    Ok(rows)
}

/// Appends/s of the storage limit benchmark (built and run in release).
fn storage_limit(
    root: &Path,
    database: Option<&str>,
    appends: u64,
    streams: u64,
) -> anyhow::Result<f64> {
    if let Some(url) = database {
        crate::chaos::recreate_postgres_database(url)?;
    }
    let mut args = vec![
        "--clients".to_owned(),
        "64".into(),
        "--appends".into(),
        appends.to_string(),
        "--streams".into(),
        streams.to_string(),
    ];
    if let Some(url) = database {
        args.extend(["--database".to_owned(), url.to_owned()]);
    }
    let line = cargo_bench(root, "storage_limit", &args)?;
    line.get("appends_per_second")
        .copied()
        .context("no appends_per_second")
}

/// Runs `host/benches/NAME.rs` in release with `args`; the `key=value` fields of the
/// line it prints that starts with its name.
pub(crate) fn cargo_bench(
    root: &Path,
    name: &str,
    args: &[String],
) -> anyhow::Result<HashMap<String, f64>> {
    let output = Command::new(env!("CARGO"))
        .current_dir(root)
        .args([
            "bench",
            "--quiet",
            "-p",
            "cairn-host",
            "--bench",
            name,
            "--",
        ])
        .args(args)
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        bail!("the {name} benchmark failed");
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .with_context(|| format!("no {name} line"))?;
    println!("==> {line}");
    line.split_whitespace()
        .skip(1)
        .map(|field| {
            let (key, value) = field.split_once('=').context("key=value")?;
            Ok((
                key.to_owned(),
                value.parse().with_context(|| field.to_owned())?,
            ))
        })
        .collect()
}

/// The `p` quantile of sorted latencies, in milliseconds.
pub(crate) fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// The head of a results table: the columns and the backend row.
pub(crate) fn print_table_head(on_postgres: bool) {
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    let backend = if on_postgres { "postgres" } else { "sqlite" };
    println!("| backend | {backend} |");
}

/// A neighbour's latencies (each sorted) idle, during some load and idle again, and
/// its p99 during the load over the larger idle p99 (the idle figure itself varies).
pub(crate) fn print_neighbour(idle: &[Duration], during: &[Duration], again: &[Duration]) {
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
