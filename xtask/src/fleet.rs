//! `cargo xtask fleet [--events N] [--debug]`: three `cairn` hosts on one fresh
//! PostgreSQL database, measured the way an operator would look at a fleet:
//!
//! - the account and balances plugins uploaded through host 0, commands through hosts
//!   1 and 2;
//! - which host runs the projection build (each on exactly one host);
//! - a live subscriber on host 2 while host 0 appends: the delay from a command's answer
//!   to its event arriving on the other host (p50, p99, max);
//! - `kill -9` of the host holding the `balances` lease, and the time until another
//!   host runs it and serves a document that includes a new append;
//! - finally every `balances` document against a fold of the log.
//!
//! Release builds by default (`--debug` uses the debug binary, quicker to build).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::bench::percentile_ms;

const TENANT: &str = "fleet";
const OPERATOR: &str = "fleet-operator";

/// One host of the fleet, killed when dropped.
struct Host {
    id: String,
    child: Child,
    base: String,
}

impl Host {
    fn start(exe: &Path, root: &Path, id: &str, database: &str) -> anyhow::Result<Host> {
        let data = root.join("target/fleet").join(id);
        let _ = std::fs::remove_dir_all(&data);
        let mut child = Command::new(exe)
            .args(["serve", "--listen", "127.0.0.1:0", "--host-id", id])
            .arg("--data-dir")
            .arg(&data)
            .args(["--database", database])
            .env("CAIRN_ADMIN_TOKEN", OPERATOR)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let base = line
            .trim()
            .strip_prefix("cairn listening on ")
            .with_context(|| format!("{id} printed {line:?}"))?
            .to_owned();
        Ok(Host {
            id: id.to_owned(),
            child,
            base,
        })
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cargo xtask fleet`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Live events timed across hosts.
    #[arg(long, value_name = "N", default_value_t = 300)]
    pub events: usize,
    /// Debug servers (else release).
    #[arg(long)]
    pub debug: bool,
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let events = args.events;
    let release = !args.debug;
    crate::build_plugins::run(root)?;
    let exe = crate::chaos::build_server(root, release)?;
    let database = crate::chaos::fresh_postgres_database("fleet")?;
    let mut hosts = Vec::new();
    for i in 0..3 {
        hosts.push(Host::start(&exe, root, &format!("host-{i}"), &database)?);
    }
    let http = Client::builder().timeout(Duration::from_secs(30)).build()?;
    for host in &hosts {
        wait_ready(&http, &host.base)?;
    }
    let token = crate::chaos::setup(root, &http, &hosts[0].base, OPERATOR, TENANT)?;

    // Accounts opened through hosts 1 and 2.
    let accounts: Vec<String> = (0..20).map(|n| n.to_string()).collect();
    for (n, account) in accounts.iter().enumerate() {
        let host = &hosts[1 + n % 2];
        command(
            &http,
            &host.base,
            &token,
            account,
            json!({"type": "Open", "payload": {"owner": account}}),
        )?;
    }

    // Live latency across hosts: subscribe on host 2, append through host 0.
    let (sender, received) = mpsc::channel::<(u64, Instant)>();
    let live_url = format!("{}/t/{TENANT}/events/live", hosts[2].base);
    let live_token = token.clone();
    let reader = std::thread::spawn(move || -> anyhow::Result<()> {
        let resp = Client::builder()
            .timeout(None)
            .build()?
            .get(&live_url)
            .bearer_auth(&live_token)
            .send()?
            .error_for_status()?;
        for line in BufReader::new(resp).lines() {
            let line = line?;
            if let Some(id) = line.strip_prefix("id: ")
                && let Ok(position) = id.trim().parse::<u64>()
                && sender.send((position, Instant::now())).is_err()
            {
                return Ok(());
            }
        }
        Ok(())
    });
    // The backlog first: wait until the subscriber has the last opened account.
    let head = log_head(&http, &hosts[0].base, &token)?;
    wait_for_position(&received, head)?;
    let mut delays = Vec::with_capacity(events);
    for n in 0..events {
        let account = &accounts[n % accounts.len()];
        let answer = command(
            &http,
            &hosts[0].base,
            &token,
            account,
            json!({"type": "Deposit", "payload": {"amount": 1 + n % 7}}),
        )?;
        let answered = Instant::now();
        let position = answer["position"].as_u64().context("position")?;
        let arrived = wait_for_position(&received, position)?;
        delays.push(arrived.saturating_duration_since(answered));
    }
    drop(received);
    drop(reader);
    delays.sort();

    // Who runs balances, then kill that host.
    let runner = wait_runner(&http, &hosts[0].base, &token, None)?;
    let victim = hosts
        .iter()
        .position(|h| h.id == runner)
        .context("the runner is not one of the hosts")?;
    let survivor = (victim + 1) % hosts.len();
    let killed = Instant::now();
    drop(hosts.remove(victim));
    let survivor = if survivor > victim {
        survivor - 1
    } else {
        survivor
    };
    let new_runner = wait_runner(&http, &hosts[survivor].base, &token, Some(&runner))?;
    let moved = killed.elapsed();
    let answer = command(
        &http,
        &hosts[survivor].base,
        &token,
        "0",
        json!({"type": "Deposit", "payload": {"amount": 5}}),
    )?;
    let position = answer["position"].as_u64().context("position")?;
    http.get(format!(
        "{}/t/{TENANT}/projections/balances/docs/account-0?min_position={position}&timeout_ms=30000",
        hosts[survivor].base
    ))
    .bearer_auth(&token)
    .send()?
    .error_for_status()?;
    let serving = killed.elapsed();

    let mismatches = verify(&http, &hosts[survivor].base, &token)?;

    println!();
    println!(
        "| fleet (3 hosts, one PostgreSQL, {}) | value |",
        if release { "release" } else { "debug" }
    );
    println!("|---|---|");
    println!(
        "| live event on another host after the command's answer, p50 / p99 / max ({} events) | {:.2} / {:.2} / {:.2} ms |",
        delays.len(),
        percentile_ms(&delays, 0.5),
        percentile_ms(&delays, 0.99),
        delays.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
    println!("| balances ran on | {runner} (killed with SIGKILL) |");
    println!(
        "| taken over by | {new_runner} after {:.2} s |",
        moved.as_secs_f64()
    );
    println!(
        "| a new append in its documents | {:.2} s after the kill |",
        serving.as_secs_f64()
    );
    println!("| balances documents unlike a fold of the log | {mismatches} |");
    drop(hosts);
    if mismatches > 0 {
        bail!("{mismatches} balances documents differ from a fold of the log");
    }
    Ok(())
}

fn wait_ready(http: &Client, base: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{base} never became ready")
}

fn command(
    http: &Client,
    base: &str,
    token: &str,
    account: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let resp = http
        .post(format!(
            "{base}/t/{TENANT}/aggregates/account/{account}/commands"
        ))
        .bearer_auth(token)
        .json(&body)
        .send()?;
    let status = resp.status();
    let body: Value = resp.json()?;
    if !status.is_success() {
        bail!("a command answered {status}: {body}");
    }
    Ok(body)
}

fn log_head(http: &Client, base: &str, token: &str) -> anyhow::Result<u64> {
    let page: Value = http
        .get(format!("{base}/t/{TENANT}/events?after=0&limit=1"))
        .bearer_auth(token)
        .send()?
        .error_for_status()?
        .json()?;
    page["head"].as_u64().context("head")
}

/// When the subscriber received `position` (it delivers in order).
fn wait_for_position(
    received: &mpsc::Receiver<(u64, Instant)>,
    position: u64,
) -> anyhow::Result<Instant> {
    loop {
        let (at, when) = received
            .recv_timeout(Duration::from_secs(30))
            .with_context(|| format!("position {position} never reached the subscriber"))?;
        if at >= position {
            return Ok(when);
        }
    }
}

/// The host running `balances`' active build, once it is not `not` (and some host runs it).
fn wait_runner(
    http: &Client,
    base: &str,
    token: &str,
    not: Option<&str>,
) -> anyhow::Result<String> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let status: Value = http
            .get(format!("{base}/t/{TENANT}/projections/balances"))
            .bearer_auth(token)
            .send()?
            .error_for_status()?
            .json()?;
        let active = status["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["status"] == "active");
        if let Some(host) = active.and_then(|b| b["host"].as_str())
            && Some(host) != not
        {
            return Ok(host.to_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("no host took the balances build over within 60 s")
}

/// `balances` documents that differ from a fold of the log (deposits per account).
fn verify(http: &Client, base: &str, token: &str) -> anyhow::Result<u64> {
    let mut folded: BTreeMap<String, i64> = BTreeMap::new();
    let mut after = 0;
    loop {
        let page: Value = http
            .get(format!("{base}/t/{TENANT}/events?after={after}&limit=1000"))
            .bearer_auth(token)
            .send()?
            .error_for_status()?
            .json()?;
        let events = page["events"].as_array().context("events")?;
        if events.is_empty() {
            break;
        }
        for e in events {
            after = e["position"].as_u64().context("position")?;
            let stream = e["stream_id"].as_str().context("stream")?.to_owned();
            let balance = folded.entry(stream).or_insert(0);
            if e["type"] == "Deposited" {
                *balance += e["data"]["amount"].as_i64().unwrap_or(0);
            }
        }
    }
    let mut mismatches = 0;
    for (stream, balance) in &folded {
        let doc: Value = http
            .get(format!(
                "{base}/t/{TENANT}/projections/balances/docs/{stream}?min_position={after}&timeout_ms=30000"
            ))
            .bearer_auth(token)
            .send()?
            .error_for_status()?
            .json()?;
        if doc["balance"].as_i64() != Some(*balance) {
            println!("==> {stream}: document {doc}, fold {balance}");
            mismatches += 1;
        }
    }
    Ok(mismatches)
}
