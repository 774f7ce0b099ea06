//! `cargo xtask faults [--quick] [--release] [--seconds S]`: storage and fleet faults
//! injected from outside, under writers that send every command with a command id (and
//! retry it with the same id until answered):
//!
//! 1. `disk`: a full disk under SQLite (a 64 MiB tmpfs as the data directory, filled,
//!    then freed, without a restart). Needs root to mount it.
//! 2. three hosts on one fresh PostgreSQL database (dropped after), every host with
//!    writers on one tenant (they contend on its row) and the `balances` projection
//!    (one host holds its lease):
//!    - `pause-idle`: SIGSTOP of a host holding no lease, longer than the lease;
//!    - `pause-holder`: SIGSTOP of the lease holder, longer than the lease (another
//!      host must take the projection over and keep it up to date);
//!    - `proxy`: one host's path to PostgreSQL frozen, then cut, then restored;
//!    - `terminate`: `pg_terminate_backend` of all the lease holder's connections,
//!      repeatedly;
//!    - `kill`: kill -9 of a host, restarted;
//!    - `pg-restart`: `pg_ctlcluster 15 main restart` (it disturbs every database of
//!      the machine: not with `--quick`).
//!
//! After each: every acknowledged command in the log exactly once, versions and
//! positions gap-free, `balances` equal to a fold of the log, no 500. The other hosts'
//! command rate during a fault against the same length of time before it (at least
//! 0.5 for the pauses and the proxy) and the recovery times are reported. `--quick`
//! (CI) runs `disk`, `pause-idle`, `proxy`, `terminate` and `kill`, shorter.

mod disk;
pub(crate) mod fleet;
mod proxy;
mod scenarios;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::campaign::{Ledger, Target, write_loop};

const OPERATOR: &str = "faults-operator";
const TENANT: &str = "faults";

/// How long the faults last.
#[derive(Clone, Copy)]
pub(crate) struct Timing {
    pub quick: bool,
    /// The steady writing measured before a fault, and the fault's usual length.
    pub window: Duration,
}

/// One scenario's line of the final table.
pub(crate) struct Outcome {
    pub name: &'static str,
    /// What was measured, as `(what, value)` pairs.
    pub measures: Vec<(String, String)>,
    /// The other hosts' rate during the fault over their rate before it.
    pub ratio: Option<f64>,
    pub recovery: Option<Duration>,
    /// Invariants that failed; empty when the scenario passed.
    pub failures: Vec<String>,
}

impl Outcome {
    fn new(name: &'static str) -> Outcome {
        Outcome {
            name,
            measures: Vec::new(),
            ratio: None,
            recovery: None,
            failures: Vec::new(),
        }
    }

    fn measure(&mut self, what: &str, value: impl ToString) {
        self.measures.push((what.to_owned(), value.to_string()));
    }

    fn fail(&mut self, what: String) {
        self.failures.push(what);
    }

    fn print(&self) {
        let status = if self.failures.is_empty() {
            "ok"
        } else {
            "FAILED"
        };
        let measures: Vec<String> = self
            .measures
            .iter()
            .map(|(what, value)| format!("{what} {value}"))
            .collect();
        println!("==> {}: {status}; {}", self.name, measures.join("; "));
        for failure in &self.failures {
            println!("    ✗ {failure}");
        }
    }
}

/// Writer threads, stopped and joined together.
pub(crate) struct Writers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Writers {
    /// `per_target` writers on each target, named after `label` (unique per start).
    pub(crate) fn start(
        label: &str,
        targets: &[Target],
        per_target: usize,
        ledger: &Arc<Ledger>,
    ) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for target in targets {
            for w in 0..per_target {
                let name = format!("{label}h{}w{w}", target.host);
                let (target, ledger, stop) = (target.clone(), ledger.clone(), stop.clone());
                threads.push(std::thread::spawn(move || {
                    write_loop(&name, &target, &ledger, &stop)
                }));
            }
        }
        Writers { stop, threads }
    }

    /// Stops them and waits; the first writer's error, if any.
    pub(crate) fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let mut first = Ok(());
        for thread in self.threads {
            let result = thread.join().expect("a writer panicked");
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// `cargo xtask faults`'s arguments.
#[derive(clap::Args, Debug, Default)]
pub(crate) struct Args {
    /// The reduced form CI runs (no PostgreSQL restart).
    #[arg(long)]
    pub quick: bool,
    /// Release servers (else debug).
    #[arg(long)]
    pub release: bool,
    /// Seconds each fault lasts (default 10, or 5 with --quick; at least 2).
    #[arg(long, value_name = "S")]
    pub seconds: Option<u64>,
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let (quick, release) = (args.quick, args.release);
    let window = args.seconds.unwrap_or(if quick { 5 } else { 10 });
    let timing = Timing {
        quick,
        window: Duration::from_secs(window.max(2)),
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "cargo xtask faults must run as root: the disk-full scenario mounts a tmpfs \
             (mount -t tmpfs), and the fleet scenarios restart PostgreSQL"
        );
    }
    let started = Instant::now();
    crate::build_plugins::run(root)?;
    let binary = crate::chaos::build_server(root, release)?;
    println!(
        "==> faults ({}, {} build): window {} s",
        if quick { "quick" } else { "full" },
        if release { "release" } else { "debug" },
        timing.window.as_secs()
    );
    let mut outcomes = vec![disk::run(root, &binary, timing)?];
    outcomes.extend(scenarios::run(root, &binary, timing)?);

    println!();
    println!(
        "| fault ({}, {}) | result | other hosts' rate during / before | recovery | measures |",
        if quick { "quick" } else { "full" },
        if release { "release" } else { "debug" }
    );
    println!("|---|---|---|---|---|");
    for o in &outcomes {
        let result = if o.failures.is_empty() {
            "ok".to_owned()
        } else {
            format!("FAILED: {}", o.failures.join("; "))
        };
        let measures: Vec<String> = o
            .measures
            .iter()
            .map(|(what, value)| format!("{what} {value}"))
            .collect();
        println!(
            "| {} | {result} | {} | {} | {} |",
            o.name,
            o.ratio.map_or("–".to_owned(), |r| format!("{r:.2}")),
            o.recovery.map_or("–".to_owned(), seconds),
            measures.join("; ")
        );
    }
    let worst = outcomes
        .iter()
        .filter_map(|o| o.ratio)
        .fold(f64::INFINITY, f64::min);
    if worst.is_finite() {
        println!("| worst ratio | {worst:.2} | | | |");
    }
    println!("wall time: {}", seconds(started.elapsed()));
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.failures.is_empty())
        .map(|o| o.name)
        .collect();
    if !failed.is_empty() {
        bail!("faults failed: {}", failed.join(", "));
    }
    println!("==> faults passed");
    Ok(())
}

/// The answers by status since `before`, for one host or all.
fn statuses(
    ledger: &Ledger,
    before: &BTreeMap<(usize, u16), u64>,
    host: Option<usize>,
) -> BTreeMap<u16, u64> {
    crate::campaign::statuses_since(ledger, before, host)
}
