//! Cold loads of one long stream (SQLite): `account-cold` gets its events by raw
//! appends (which warm no snapshot), then the first command folds it from event 1
//! (writing snapshots as it goes); the server restarts (the state cache is empty), the
//! tenant's first command goes to a new stream (it pays what the tenant's first command
//! pays whatever the stream), then the long stream's first command loads from its
//! nearest snapshot. The helpers are `bench-long`'s.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;

use super::{ReleaseServer, Report};
use crate::bench_long::{append_raw, command_retrying, counter, create_tenant, upload};

pub(super) fn run(root: &Path, report: &mut Report) -> anyhow::Result<()> {
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
    // Snapshots are written in the background after the fold: wait until they are all
    // in (the counter holds still) before the restart.
    let mut written = (u64::MAX, 0);
    while written.1 < 5 {
        std::thread::sleep(Duration::from_millis(100));
        let now = counter(&http, &server.base, "cairn_snapshots_written_total")?;
        written = if now == written.0 && now > 0 {
            (now, written.1 + 1)
        } else {
            (now, 0)
        };
    }
    drop(server);
    let (server, _) = ReleaseServer::open(root, data, None, &[])?;
    // The tenant's first command after the restart, on a new stream: what it pays
    // whatever the stream (its gate; its stored bytes counted from the log before the
    // first append; the component loaded from its artifact), kept out of the next.
    let opening = Instant::now();
    http.post(format!(
        "{}/t/cold/aggregates/account/first/commands",
        server.base
    ))
    .bearer_auth(&token)
    .json(&serde_json::json!({"type": "Open", "payload": {"owner": "b"}}))
    .send()?
    .error_for_status()?;
    let first = opening.elapsed();
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
        format!(
            "a tenant's first command after a restart, on a new stream ({events} events in its log)"
        ),
        format!("{:.1} ms", first.as_secs_f64() * 1e3),
    );
    report.add(
        "then the cold load of the long stream from its snapshot (its first command)",
        format!("{:.1} ms", snapshotted.as_secs_f64() * 1e3),
    );
    report.add(
        "the next command (state cached)",
        format!("{:.2} ms", cached.as_secs_f64() * 1e3),
    );
    Ok(())
}
