//! Projection catch-up against the raw read rate of the same log (SQLite). A tenant's
//! log gets E events over 1,000 account streams by the bulk import; the raw read rate
//! is `host/benches/read_log.rs` reading it page by page straight from the store (the
//! server idle); then `balances` is uploaded (compiled beforehand on another tenant,
//! so no compile is timed) and timed from the upload's answer until its build's lag
//! is 0.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use super::{ReleaseServer, Report, cargo_bench};
use crate::bench_long::{create_tenant, upload};

pub(super) fn run(root: &Path, quick: bool, report: &mut Report) -> anyhow::Result<()> {
    let events: u64 = if quick { 100_000 } else { 1_000_000 };
    let data = "bench-catch-up";
    let server = ReleaseServer::start(root, data, None)?;
    let base = server.base.clone();
    let http = Client::builder()
        .timeout(Duration::from_secs(1800))
        .build()?;
    let token = create_tenant(&http, &base, "log")?;
    let other = create_tenant(&http, &base, "compiled")?;
    upload(
        &http, root, &base, "compiled", &other, "balances", "balances",
    )?;

    println!("==> importing {events} events over 1,000 account streams");
    let mut ndjson = String::with_capacity(events as usize * 72);
    for i in 0..events {
        let stream = format!("account-{}", i % 1000);
        let line = if i < 1000 {
            json!({"stream": stream, "type": "Opened", "data": {"owner": "bench"}})
        } else {
            json!({"stream": stream, "type": "Deposited", "data": {"amount": 1}})
        };
        ndjson.push_str(&line.to_string());
        ndjson.push('\n');
    }
    let importing = Instant::now();
    http.post(format!("{base}/t/log/import"))
        .bearer_auth(&token)
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()?
        .error_for_status()?;
    let imported = importing.elapsed().as_secs_f64();

    let database = format!(
        "sqlite://{}",
        root.join("target").join(data).join("cairn.db").display()
    );
    let read = cargo_bench(
        root,
        "read_log",
        &[
            "--database".into(),
            database,
            "--tenant".into(),
            "log".into(),
        ],
    )?;
    let raw = read.get("events_per_second").copied().unwrap_or(f64::NAN);
    if read.get("events").copied() != Some(events as f64) {
        bail!(
            "read_log read {:?} events, not {events}",
            read.get("events")
        );
    }

    // `CAIRN_BENCH_FLAME=NAME`: a flame graph of the server while it catches up,
    // `docs/flame/NAME.svg`.
    let flame = std::env::var("CAIRN_BENCH_FLAME").ok();
    let recorder = match &flame {
        Some(_) => Some(super::flame::Recorder::start(root, server.pid())?),
        None => None,
    };
    upload(&http, root, &base, "log", &token, "balances", "balances")?;
    let building = Instant::now();
    loop {
        let view: Value = http
            .get(format!("{base}/t/log/projections/balances"))
            .bearer_auth(&token)
            .send()?
            .error_for_status()?
            .json()?;
        let builds = view["versions"].as_array().cloned().unwrap_or_default();
        if builds.iter().any(|b| b["error"].is_string()) {
            bail!("the balances build failed: {view}");
        }
        if builds
            .iter()
            .any(|b| b["lag"] == json!(0) && b["position"].as_u64() >= Some(events))
        {
            break;
        }
        if building.elapsed() > Duration::from_secs(1800) {
            bail!("balances did not catch up in 30 minutes: {view}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let caught_up = events as f64 / building.elapsed().as_secs_f64();
    if let (Some(name), Some(recorder)) = (&flame, recorder) {
        let data = recorder.stop()?;
        let title = format!(
            "{name}: balances catching up on {events} events ({caught_up:.0} events/s; raw read {raw:.0})"
        );
        super::flame::render(root, &data, name, &title)?;
    }
    let balance: Value = http
        .get(format!("{base}/t/log/projections/balances/docs/account-7"))
        .bearer_auth(&token)
        .send()?
        .error_for_status()?
        .json()?;
    let expected = events / 1000 - 1 + u64::from(events % 1000 > 7);
    let text = balance.to_string();
    if [",", "}"]
        .iter()
        .any(|end| text.contains(&format!("\"balance\":{expected}{end}")))
    {
        println!("==> balances of account-7: {expected}, as folded");
    } else {
        bail!("account-7's balance is not {expected}: {balance}");
    }
    report.add(
        format!("bulk import (NDJSON, one request, sqlite, {events} events)"),
        format!("{:.0} events/s", events as f64 / imported),
    );
    report.add(
        format!("raw read of that log, pages of 5,000 from the store ({events} events)"),
        format!("{raw:.0} events/s"),
    );
    report.add(
        format!("projection catch-up, balances ({events} events)"),
        format!(
            "{caught_up:.0} events/s ({:.2} of the raw read)",
            caught_up / raw
        ),
    );
    report.ratios.push((
        "projection catch-up / raw read (≥ 0.5)".into(),
        caught_up / raw,
        0.5,
    ));
    Ok(())
}
