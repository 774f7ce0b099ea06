//! Scenario 2's faults, each run by `Fleet::scenario` (writers on every host, the
//! fault, recovery, the log's check): SIGSTOP of a host without a lease and of the
//! lease holder, the proxied host's path frozen then cut, `pg_terminate_backend`,
//! kill -9, a PostgreSQL restart.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use super::fleet::{Fault, Fleet, LEASE, PROXIED};
use super::proxy::Mode;
use super::{Outcome, TENANT, Timing, seconds};

fn fault(host: Option<usize>, from: Instant, to: Instant) -> Fault {
    Fault {
        host,
        from,
        to,
        measures: Vec::new(),
        failures: Vec::new(),
    }
}

pub(super) fn run(root: &Path, binary: &Path, timing: Timing) -> anyhow::Result<Vec<Outcome>> {
    let mut fleet = Fleet::start(root, binary, timing)?;
    println!(
        "==> three hosts on {} (host-{PROXIED} through a proxy)",
        fleet.database
    );
    let mut outcomes = Vec::new();
    let pause = LEASE
        + timing
            .window
            .min(Duration::from_secs(5))
            .max(Duration::from_secs(2));

    outcomes.push(fleet.scenario(
        "SIGSTOP of a host without a lease",
        "a",
        Some(0.5),
        &[],
        |fleet| {
            let h = fleet.idle_host()?;
            fleet.hosts[h].signal(libc::SIGSTOP)?;
            let from = Instant::now();
            std::thread::sleep(pause);
            fleet.hosts[h].signal(libc::SIGCONT)?;
            let mut f = fault(Some(h), from, Instant::now());
            f.measures
                .push(("paused:".into(), format!("host-{h} for {}", seconds(pause))));
            Ok(f)
        },
    )?);

    if !timing.quick {
        outcomes.push(fleet.scenario(
            "SIGSTOP of the lease holder",
            "b",
            Some(0.5),
            &[],
            |fleet| {
                let h = fleet.lease_holder(0)?.context("no lease holder")?;
                let other = (h + 1) % fleet.hosts.len();
                let long = LEASE + timing.window.max(Duration::from_secs(7));
                fleet.hosts[h].signal(libc::SIGSTOP)?;
                let from = Instant::now();
                let mut taken = None;
                let mut caught_up = None;
                while from.elapsed() < long {
                    if taken.is_none() {
                        if let Some(now) = fleet.lease_holder(other)?
                            && now != h
                        {
                            taken = Some((now, from.elapsed()));
                        }
                    } else if caught_up.is_none() {
                        // The projection keeps up: it serves the head of the log.
                        let head = log_head(fleet, other)?;
                        let reached = wait_docs(fleet, other, head, from + long)?;
                        caught_up = reached.map(|at| at - from);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                fleet.hosts[h].signal(libc::SIGCONT)?;
                let mut f = fault(Some(h), from, Instant::now());
                f.measures
                    .push(("paused:".into(), format!("host-{h} for {}", seconds(long))));
                match taken {
                    Some((by, after)) => f.measures.push((
                        "taken over:".into(),
                        format!("by host-{by} after {}", seconds(after)),
                    )),
                    None => f.failures.push(format!(
                        "no host took balances over during a {} pause",
                        seconds(long)
                    )),
                }
                match caught_up {
                    Some(at) => f.measures.push((
                        "projection at the head:".into(),
                        format!("{} after the stop", seconds(at)),
                    )),
                    None => f.failures.push(
                        "the projection did not reach the log's head during the pause".into(),
                    ),
                }
                Ok(f)
            },
        )?);
    }

    outcomes.push(fleet.scenario(
        "proxy frozen, then cut",
        "c",
        Some(0.5),
        &[200, 503],
        |fleet| {
            let frozen = pause;
            let cut = timing.window.min(Duration::from_secs(5));
            fleet.proxy.set(Mode::Frozen);
            let from = Instant::now();
            std::thread::sleep(frozen);
            fleet.proxy.set(Mode::Cut);
            std::thread::sleep(cut);
            fleet.proxy.set(Mode::Forward);
            let mut f = fault(Some(PROXIED), from, Instant::now());
            f.measures.push((
                "host-2's path:".into(),
                format!("frozen {}, then cut {}", seconds(frozen), seconds(cut)),
            ));
            Ok(f)
        },
    )?);

    outcomes.push(fleet.scenario(
        "pg_terminate_backend of the lease holder",
        "d",
        None,
        &[],
        |fleet| {
            let h = fleet.lease_holder(0)?.context("no lease holder")?;
            let rounds = if timing.quick { 3 } else { 6 };
            let from = Instant::now();
            let mut ended = 0;
            for round in 0..rounds {
                if round > 0 {
                    std::thread::sleep(Duration::from_millis(1500));
                }
                ended += fleet.terminate(h)?;
            }
            let mut f = fault(Some(h), from, Instant::now());
            f.measures.push((
                "terminated:".into(),
                format!("{ended} backends of host-{h} in {rounds} rounds"),
            ));
            if ended == 0 {
                f.failures
                    .push(format!("no backend of host-{h} found by application_name"));
            }
            Ok(f)
        },
    )?);

    outcomes.push(
        fleet.scenario("kill -9 and restart", "e", None, &[], |fleet| {
            let h = fleet.lease_holder(0)?.context("no lease holder")?;
            fleet.hosts[h].kill9();
            let from = Instant::now();
            std::thread::sleep(Duration::from_secs(2));
            fleet.hosts[h].start()?;
            let mut f = fault(Some(h), from, Instant::now());
            f.measures.push((
                "killed:".into(),
                format!("host-{h} (the lease holder), restarted after 2 s"),
            ));
            Ok(f)
        })?,
    );

    if !timing.quick {
        outcomes.push(
            fleet.scenario("PostgreSQL restarted", "f", None, &[200, 503], |_| {
                let from = Instant::now();
                let status = Command::new("pg_ctlcluster")
                    .args(["15", "main", "restart"])
                    .status()
                    .context("running pg_ctlcluster")?;
                if !status.success() {
                    bail!("pg_ctlcluster 15 main restart failed");
                }
                let mut f = fault(None, from, Instant::now());
                f.measures
                    .push(("restart took:".into(), seconds(f.to - f.from)));
                Ok(f)
            })?,
        );
    }

    let failed = outcomes.iter().any(|o| !o.failures.is_empty());
    let dir = fleet.dir.clone();
    drop(fleet);
    if failed {
        println!("==> the hosts' logs are kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(outcomes)
}

fn log_head(fleet: &Fleet, via: usize) -> anyhow::Result<u64> {
    let page: Value = fleet
        .http
        .get(format!(
            "{}/t/{TENANT}/events?after=0&limit=1",
            fleet.hosts[via].base
        ))
        .bearer_auth(&fleet.token)
        .send()?
        .error_for_status()?
        .json()?;
    page["head"].as_u64().context("head")
}

/// When balances' documents include position `head` (asked through `via`), if before
/// `deadline`.
fn wait_docs(
    fleet: &Fleet,
    via: usize,
    head: u64,
    deadline: Instant,
) -> anyhow::Result<Option<Instant>> {
    while Instant::now() < deadline {
        let answer = fleet
            .http
            .get(format!(
                "{}/t/{TENANT}/projections/balances/docs?limit=1&min_position={head}",
                fleet.hosts[via].base
            ))
            .bearer_auth(&fleet.token)
            .send();
        if answer.is_ok_and(|a| a.status().is_success()) {
            return Ok(Some(Instant::now()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(None)
}
