//! Cold loads of one long stream (SQLite): `account-cold` gets its events by raw
//! appends (which warm no snapshot), then the first command folds it from event 1
//! (writing snapshots as it goes); the server restarts (the state cache is empty) and
//! the first command loads from the nearest snapshot. The helpers are `bench-long`'s.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;

use super::{ReleaseServer, Report};
use crate::bench_long::{append_raw, command_retrying, create_tenant, upload};

pub fn run(root: &Path, report: &mut Report) -> anyhow::Result<()> {
    let events: u64 = 100_000;
    let data = "bench-cold";
    let server = ReleaseServer::start(root, data, None)?;
    let http = Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let token = create_tenant(&http, &server.base, "cold")?;
    upload(
        &http,
        root,
        &server.base,
        "cold",
        &token,
        "account",
        "account",
    )?;
    println!("==> appending {events} events to account-cold");
    let appending = Instant::now();
    append_raw(&http, &server.base, "cold", &token, "account-cold", events)?;
    let appended = appending.elapsed().as_secs_f64();
    let (unsnapshotted, tries) = command_retrying(&http, &server.base, "cold", &token, "cold")?;
    drop(server);
    let (server, _) = ReleaseServer::open(root, data, None, &[])?;
    let (snapshotted, _) = command_retrying(&http, &server.base, "cold", &token, "cold")?;
    let (cached, _) = command_retrying(&http, &server.base, "cold", &token, "cold")?;
    report.add(
        format!("raw appends of 1,000 events (sqlite, {events} events)"),
        format!("{:.0} events/s", events as f64 / appended),
    );
    report.add(
        format!("cold load of a {events}-event stream, no snapshot (first command, sqlite)"),
        format!(
            "{:.0} ms in {tries} request(s)",
            unsnapshotted.as_secs_f64() * 1e3
        ),
    );
    report.add(
        "cold load of the same stream from its snapshot (first command after a restart)",
        format!("{:.1} ms", snapshotted.as_secs_f64() * 1e3),
    );
    report.add(
        "the next command (state cached)",
        format!("{:.2} ms", cached.as_secs_f64() * 1e3),
    );
    Ok(())
}
