//! `cargo xtask bench-long [--events E] [--database URL]`: one very long stream.
//!
//! A release server; `account-big` gets E events (one `Opened`, then `Deposited`)
//! through raw appends of 1,000. Then: the first command (a cold fold of the whole
//! stream, within the tenant's load budget: a `503 load_incomplete` is retried, as a
//! client would, and counted), a second command (state cached), a read at the middle
//! version (from the nearest snapshot), and the first command after an upgrade
//! (`account-upcaster`, then `account-v2`, verified by replaying the stream, which
//! leaves the new version a snapshot). The table has each time and the snapshots
//! written.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::bench::{ReleaseServer, arg, database_arg, print_table_head};

pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let events = arg(args, "--events", 1_000_000)?;
    let database = database_arg(args);
    if events < 2 {
        bail!("--events must be at least 2");
    }
    let server = ReleaseServer::start(root, "bench-long-data", database.as_deref())?;
    let base = server.base.clone();
    let http = Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let created: Value = http
        .post(format!("{base}/admin/tenants"))
        .bearer_auth("bench")
        .json(&json!({"id": "long"}))
        .send()?
        .error_for_status()?
        .json()?;
    let token = created["token"].as_str().context("token")?.to_owned();
    let upload = |name: &str, plugin: &str| -> anyhow::Result<Value> {
        let wasm = std::fs::read(root.join(format!("target/plugins/{plugin}.wasm")))?;
        Ok(http
            .put(format!("{base}/t/long/plugins/{name}"))
            .bearer_auth(&token)
            .body(wasm)
            .send()?
            .error_for_status()?
            .json()?)
    };
    upload("account", "account")?;

    println!("==> appending {events} events to account-big");
    let appending = Instant::now();
    let mut written = 0;
    while written < events {
        let batch: Vec<Value> = (written..events.min(written + 1000))
            .map(|i| match i {
                0 => json!({"type": "Opened", "data": {"owner": "bench"}}),
                _ => json!({"type": "Deposited", "data": {"amount": 1}}),
            })
            .collect();
        written += batch.len() as u64;
        http.post(format!("{base}/t/long/streams/account-big"))
            .bearer_auth(&token)
            .json(&json!({"events": batch}))
            .send()?
            .error_for_status()?;
    }
    let appended = appending.elapsed();

    // A command, retried on `load_incomplete` as a client would; its time and tries.
    let command = || -> anyhow::Result<(Duration, u32)> {
        let started = Instant::now();
        for tries in 1.. {
            let answer = http
                .post(format!("{base}/t/long/aggregates/account/big/commands"))
                .bearer_auth(&token)
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
    };
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
        let accepted = upload(name, plugin)?;
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
    println!("| snapshots written by commands | {snapshots} |");
    Ok(())
}
