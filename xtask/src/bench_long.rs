//! `cargo xtask bench-long [--events E] [--database URL]`: one very long stream.
//!
//! A release server; `account-big` gets E events (one `Opened`, then `Deposited`)
//! through raw appends of 1,000. Then: the first command (a cold fold of the whole
//! stream, within the tenant's load budget: a `503 load_incomplete` is retried, as a
//! client would, and counted), a second command (state cached), a read at the middle
//! version (from the nearest snapshot), and the first command after an upgrade
//! (`account-upcaster`, then `account-v2`, verified by replaying the stream, which
//! leaves the new version a snapshot). The same history is also written through the
//! bulk import (`account-imported`), timed with the background warming of its
//! snapshot and the command after it. The table has each time and the snapshots
//! written.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::bench::{ReleaseServer, print_table_head};

/// `cargo xtask bench-long`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Events in the one stream.
    #[arg(long, value_name = "E", default_value_t = 1_000_000)]
    pub events: u64,
    /// The database to run on (else SQLite in a fresh data directory).
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let (events, database) = (args.events, args.database.clone());
    if events < 2 {
        bail!("--events must be at least 2");
    }
    let server = ReleaseServer::start(root, "bench-long-data", database.as_deref())?;
    let base = server.base.clone();
    let http = Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let token = create_tenant(&http, &base, "long")?;
    let upload_as =
        |name: &str, plugin: &str| upload(&http, root, &base, "long", &token, name, plugin);
    upload_as("account", "account")?;

    println!("==> appending {events} events to account-big");
    let appending = Instant::now();
    append_raw(&http, &base, "long", &token, "account-big", events)?;
    let appended = appending.elapsed();

    // The same history again through the bulk import, then the background warming
    // of its snapshot, then a command on it.
    println!("==> importing {events} events to account-imported (NDJSON)");
    let mut ndjson = String::with_capacity(events as usize * 64);
    for i in 0..events {
        ndjson.push_str(&match i {
            0 => json!({"stream": "account-imported", "type": "Opened", "data": {"owner": "bench"}}),
            _ => json!({"stream": "account-imported", "type": "Deposited", "data": {"amount": 1}}),
        }
        .to_string());
        ndjson.push('\n');
    }
    let warmed_before = counter(&http, &base, "cairn_streams_warmed_total")?;
    let importing = Instant::now();
    http.post(format!("{base}/t/long/import"))
        .bearer_auth(&token)
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()?
        .error_for_status()?;
    let imported = importing.elapsed();
    while counter(&http, &base, "cairn_streams_warmed_total")? <= warmed_before {
        if importing.elapsed() > Duration::from_secs(1800) {
            bail!("the imported stream was never warmed");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let warmed = importing.elapsed() - imported;
    let command_on = |id: &str| -> anyhow::Result<Duration> {
        let started = Instant::now();
        http.post(format!("{base}/t/long/aggregates/account/{id}/commands"))
            .bearer_auth(&token)
            .json(&json!({"type": "Deposit", "payload": {"amount": 1}}))
            .send()?
            .error_for_status()?;
        Ok(started.elapsed())
    };
    let after_import = command_on("imported")?;

    let command = || command_retrying(&http, &base, "long", &token, "big");
    println!("==> first command (cold fold of {events} events)");
    let (cold, cold_tries) = command()?;
    let (warm, _) = command()?;
    let reading = Instant::now();
    let middle: Value = http
        .get(format!(
            "{base}/t/long/aggregates/account/big?version={}",
            events / 2
        ))
        .bearer_auth(&token)
        .send()?
        .error_for_status()?
        .json()?;
    let read_middle = reading.elapsed();
    if middle["state"]["balance"] != json!(events / 2 - 1) {
        bail!("the middle state is wrong: {middle}");
    }

    println!("==> upgrade: account-upcaster, then account-v2 (verified by replay)");
    let upgrading = Instant::now();
    for (name, plugin) in [
        ("account-upcaster", "account-upcaster"),
        ("account", "account-v2"),
    ] {
        let accepted = upload_as(name, plugin)?;
        let Some(url) = accepted["status_url"].as_str() else {
            continue;
        };
        loop {
            let view: Value = http
                .get(format!("{base}{url}"))
                .bearer_auth(&token)
                .send()?
                .error_for_status()?
                .json()?;
            match view["status"].as_str() {
                Some("verifying") => std::thread::sleep(Duration::from_millis(200)),
                Some("active") => break,
                _ => bail!("{name} was not activated: {view}"),
            }
        }
    }
    let upgrade = upgrading.elapsed();
    let (after_upgrade, after_tries) = command()?;

    let metrics = http.get(format!("{base}/metrics")).send()?.text()?;
    let snapshots = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cairn_snapshots_written_total "))
        .unwrap_or("?")
        .to_owned();

    print_table_head(database.is_some());
    println!("| events in the stream | {events} |");
    println!(
        "| raw appends | {:.1} s ({:.0} events/s) |",
        appended.as_secs_f64(),
        events as f64 / appended.as_secs_f64()
    );
    println!(
        "| bulk import (NDJSON) | {:.1} s ({:.0} events/s) |",
        imported.as_secs_f64(),
        events as f64 / imported.as_secs_f64()
    );
    println!(
        "| its snapshot warmed in the background | {:.1} s after the import |",
        warmed.as_secs_f64()
    );
    println!(
        "| first command on the imported stream, warmed | {:.0} ms |",
        after_import.as_secs_f64() * 1e3
    );
    println!(
        "| first command (cold fold) | {:.2} s in {cold_tries} request(s) |",
        cold.as_secs_f64()
    );
    println!(
        "| second command (cached) | {:.2} ms |",
        warm.as_secs_f64() * 1e3
    );
    println!(
        "| state at version {} | {:.0} ms |",
        events / 2,
        read_middle.as_secs_f64() * 1e3
    );
    println!(
        "| upgrade verified and active | {:.1} s |",
        upgrade.as_secs_f64()
    );
    println!(
        "| first command after the upgrade | {:.0} ms in {after_tries} request(s) |",
        after_upgrade.as_secs_f64() * 1e3
    );
    println!("| snapshots written (commands and warming) | {snapshots} |");
    Ok(())
}

/// A counter from `/metrics`.
pub(crate) fn counter(http: &Client, base: &str, name: &str) -> anyhow::Result<u64> {
    let text = http.get(format!("{base}/metrics")).send()?.text()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .context("no such counter")?
        .trim()
        .parse()
        .context("not a number")
}

/// Creates tenant `id` (as the operator `bench`); its token.
pub(crate) fn create_tenant(http: &Client, base: &str, id: &str) -> anyhow::Result<String> {
    create_tenant_as(http, base, "bench", id)
}

/// Creates tenant `id` with the operator token `operator`; its token.
pub(crate) fn create_tenant_as(
    http: &Client,
    base: &str,
    operator: &str,
    id: &str,
) -> anyhow::Result<String> {
    let created: Value = http
        .post(format!("{base}/admin/tenants"))
        .bearer_auth(operator)
        .json(&json!({"id": id}))
        .send()?
        .error_for_status()?
        .json()?;
    Ok(created["token"].as_str().context("token")?.to_owned())
}

/// Uploads `target/plugins/{plugin}.wasm` as plugin `name` of `tenant`; the answer.
pub(crate) fn upload(
    http: &Client,
    root: &Path,
    base: &str,
    tenant: &str,
    token: &str,
    name: &str,
    plugin: &str,
) -> anyhow::Result<Value> {
    let wasm = std::fs::read(root.join(format!("target/plugins/{plugin}.wasm")))?;
    Ok(http
        .put(format!("{base}/t/{tenant}/plugins/{name}"))
        .bearer_auth(token)
        .body(wasm)
        .send()?
        .error_for_status()?
        .json()?)
}

/// Appends `events` events to `stream` by raw appends of 1,000: one `Opened`, then
/// `Deposited`.
pub(crate) fn append_raw(
    http: &Client,
    base: &str,
    tenant: &str,
    token: &str,
    stream: &str,
    events: u64,
) -> anyhow::Result<()> {
    let mut written = 0;
    while written < events {
        let batch: Vec<Value> = (written..events.min(written + 1000))
            .map(|i| match i {
                0 => json!({"type": "Opened", "data": {"owner": "bench"}}),
                _ => json!({"type": "Deposited", "data": {"amount": 1}}),
            })
            .collect();
        written += batch.len() as u64;
        http.post(format!("{base}/t/{tenant}/streams/{stream}"))
            .bearer_auth(token)
            .json(&json!({"events": batch}))
            .send()?
            .error_for_status()?;
    }
    Ok(())
}

/// A deposit on `account/{id}`, retried on `load_incomplete` as a client would; its
/// time and tries.
pub(crate) fn command_retrying(
    http: &Client,
    base: &str,
    tenant: &str,
    token: &str,
    id: &str,
) -> anyhow::Result<(Duration, u32)> {
    let started = Instant::now();
    for tries in 1.. {
        let answer = http
            .post(format!(
                "{base}/t/{tenant}/aggregates/account/{id}/commands"
            ))
            .bearer_auth(token)
            .json(&json!({"type": "Deposit", "payload": {"amount": 1}}))
            .send()?;
        if answer.status().is_success() {
            return Ok((started.elapsed(), tries));
        }
        let body: Value = answer.json()?;
        if body["error"]["code"] != "load_incomplete" || tries > 100 {
            bail!("the command failed: {body}");
        }
    }
    unreachable!()
}
