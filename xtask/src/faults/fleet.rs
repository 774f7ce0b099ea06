//! Scenario 2's harness: three hosts on one fresh PostgreSQL database (dropped
//! after), host 2's every connection through a proxy the campaign controls, each host
//! named to PostgreSQL by `application_name` (so its backends can be found and
//! terminated); `Fleet::scenario` runs one fault under writers and checks the log.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::blocking::Client;
use serde_json::Value;

use super::proxy::{Mode, Proxy};
use super::{OPERATOR, Outcome, TENANT, Timing, Writers, statuses};
use crate::campaign::{Ledger, Target, statuses_line, verify};
use crate::chaos::Server;

/// Leases last this long (`host/src/fleet/leases.rs`, `LEASE_FOR`).
pub(super) const LEASE: Duration = Duration::from_secs(5);
/// The host whose database path goes through the proxy.
pub(super) const PROXIED: usize = 2;
const WRITERS_PER_HOST: usize = 2;

pub(super) struct Fleet {
    pub hosts: Vec<Server>,
    pub proxy: Proxy,
    pub database: String,
    pub http: Client,
    pub token: String,
    pub ledger: Arc<Ledger>,
    /// Data directories and logs.
    pub dir: PathBuf,
    pub timing: Timing,
}

/// What a fault reports to the scenario around it.
pub(super) struct Fault {
    /// The host it hit (its rate is left out of the others'), or every host.
    pub host: Option<usize>,
    /// When it began and ended (the others' rate is measured in between).
    pub from: Instant,
    pub to: Instant,
    pub measures: Vec<(String, String)>,
    pub failures: Vec<String>,
}

fn app_name(host: usize) -> String {
    format!("cairn_faults_{}_host_{host}", std::process::id())
}

/// Runs `sql` with psql on the local PostgreSQL's `test` database; its output.
fn psql(sql: &str) -> anyhow::Result<String> {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-tAq",
            "-c",
        ])
        .arg(sql)
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!("`{sql}`: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl Fleet {
    pub(super) fn start(root: &Path, binary: &Path, timing: Timing) -> anyhow::Result<Fleet> {
        let url = crate::chaos::fresh_postgres_database("faults")?;
        let database = url.rsplit('/').next().context("database")?.to_owned();
        let proxy = Proxy::start("127.0.0.1:5432")?;
        let dir = root
            .join("target")
            .join(format!("faults-fleet-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut hosts = Vec::new();
        for i in 0..3 {
            let url = if i == PROXIED {
                format!("postgres://postgres@127.0.0.1:{}/{database}", proxy.port)
            } else {
                url.clone()
            };
            let url = format!("{url}?application_name={}", app_name(i));
            let mut host = Server::new(
                binary.to_owned(),
                dir.join(format!("host-{i}")),
                Some(url),
                OPERATOR,
            )?
            .in_fleet(&format!("host-{i}"), dir.join(format!("host-{i}.log")));
            host.start()?;
            hosts.push(host);
        }
        let http = Client::builder().timeout(Duration::from_secs(10)).build()?;
        for host in &hosts {
            wait_ready(&http, &host.base)?;
        }
        let token = crate::chaos::setup(root, &http, &hosts[0].base, OPERATOR, TENANT)?;
        let fleet = Fleet {
            hosts,
            proxy,
            database,
            http,
            token,
            ledger: Arc::default(),
            dir,
            timing,
        };
        let started = Instant::now();
        while fleet.lease_holder(0)?.is_none() {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("no host took the balances lease within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(fleet)
    }

    fn targets(&self) -> Vec<Target> {
        self.hosts
            .iter()
            .enumerate()
            .map(|(i, h)| Target {
                base: h.base.clone(),
                tenant: TENANT.to_owned(),
                token: self.token.clone(),
                host: i,
                pad: 0,
            })
            .collect()
    }

    fn projection(&self, via: usize) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!(
                "{}/t/{TENANT}/projections/balances",
                self.hosts[via].base
            ))
            .bearer_auth(&self.token)
            .send()?
            .error_for_status()?
            .json()?)
    }

    /// The host running balances' active build, asked through host `via`.
    pub(super) fn lease_holder(&self, via: usize) -> anyhow::Result<Option<usize>> {
        let view = self.projection(via)?;
        let host = view["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["status"] == "active")
            .and_then(|b| b["host"].as_str())
            .and_then(|h| h.strip_prefix("host-"))
            .and_then(|n| n.parse().ok());
        Ok(host)
    }

    /// A host holding no lease (`GET /admin/hosts`), preferably not the proxied one.
    pub(super) fn idle_host(&self) -> anyhow::Result<usize> {
        let view: Value = self
            .http
            .get(format!("{}/admin/hosts", self.hosts[0].base))
            .bearer_auth(OPERATOR)
            .send()?
            .error_for_status()?
            .json()?;
        let mut idle: Vec<usize> = view["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|h| h["leases"].as_u64() == Some(0) && h["alive"] == true)
            .filter_map(|h| h["host_id"].as_str()?.strip_prefix("host-")?.parse().ok())
            .collect();
        idle.sort_by_key(|&h| h == PROXIED);
        idle.first()
            .copied()
            .context("every host holds a lease: none to pause")
    }

    /// Builds of balances parked by a failure, with their error.
    fn parked(&self, via: usize) -> anyhow::Result<Vec<String>> {
        Ok(crate::campaign::parked_builds(&self.projection(via)?))
    }

    /// `pg_terminate_backend` of every backend of `host`; how many.
    pub(super) fn terminate(&self, host: usize) -> anyhow::Result<u64> {
        let ended = psql(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = '{}'",
            app_name(host)
        ))?;
        Ok(ended.parse().unwrap_or(0))
    }

    /// Writers on every host; `fault` injected after a steady window; then the
    /// faulted hosts' recovery, the log's check and the verdict.
    pub(super) fn scenario(
        &mut self,
        name: &'static str,
        label: &str,
        min_ratio: Option<f64>,
        only: &[u16],
        fault: impl FnOnce(&mut Fleet) -> anyhow::Result<Fault>,
    ) -> anyhow::Result<Outcome> {
        let mut outcome = Outcome::new(name);
        let before = self.ledger.statuses();
        let writers = Writers::start(label, &self.targets(), WRITERS_PER_HOST, &self.ledger);
        // Warm up, then the steady window the fault is measured against.
        std::thread::sleep(Duration::from_secs(2) + self.timing.window);
        let fault = match fault(self) {
            Ok(fault) => fault,
            Err(error) => {
                // A fault that could not be injected (no lease holder: the projection
                // was parked by an earlier one) fails this scenario, not the campaign.
                let _ = writers.stop();
                outcome.fail(format!("injecting the fault: {error:#}"));
                outcome.print();
                return Ok(outcome);
            }
        };
        outcome.measures.extend(fault.measures);
        outcome.failures.extend(fault.failures);
        let all: Vec<usize> = (0..self.hosts.len()).collect();
        let hit: Vec<usize> = match fault.host {
            Some(h) => vec![h],
            None => all.clone(),
        };
        if let Some(h) = fault.host {
            let others: Vec<usize> = all.iter().copied().filter(|&o| o != h).collect();
            // Against the steady window just before the fault.
            let steady = self.timing.window;
            let then = self.ledger.rate(&others, fault.from - steady, fault.from);
            let now = self.ledger.rate(&others, fault.from, fault.to);
            let slowest = self.ledger.slowest_second(&others, fault.from, fault.to);
            let ratio = if then > 0.0 { now / then } else { 0.0 };
            outcome.ratio = Some(ratio);
            outcome.measure(
                "others' commands/s before → during (slowest second):",
                format!("{then:.1} → {now:.1} ({slowest})"),
            );
            if let Some(min) = min_ratio
                && ratio < min
            {
                outcome.fail(format!(
                    "the other hosts' rate fell to {ratio:.2} (< {min})"
                ));
            }
        }
        // Recovery: every faulted host acknowledges a command again.
        let mut recovery = Duration::ZERO;
        for &h in &hit {
            let waited = Instant::now();
            let first = loop {
                if let Some(at) = self.ledger.first_ack_after(fault.to, Some(&[h])) {
                    break Some(at - fault.to);
                }
                if waited.elapsed() > Duration::from_secs(60) {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            match first {
                Some(first) => recovery = recovery.max(first),
                None => outcome.fail(format!("host-{h} acknowledged nothing within 60 s")),
            }
        }
        outcome.recovery = Some(recovery);
        std::thread::sleep(Duration::from_secs(1));
        if let Err(error) = writers.stop() {
            outcome.fail(format!("a writer failed: {error:#}"));
        }
        let answers = statuses(&self.ledger, &before, None);
        outcome.measure("answers:", statuses_line(&answers));
        if fault.host == Some(PROXIED) && name.contains("proxy") {
            let proxied = statuses(&self.ledger, &before, Some(PROXIED));
            outcome.measure("proxied host's answers:", statuses_line(&proxied));
        }
        if let Some(n) = answers.get(&500) {
            outcome.fail(format!(
                "{n} answers 500: {:?}",
                self.ledger.internal_errors.lock().expect("ledger")
            ));
        }
        if !only.is_empty() {
            let others: Vec<String> = answers
                .iter()
                .filter(|(s, _)| !only.contains(s))
                .map(|(s, n)| format!("{n} × {s}"))
                .collect();
            if !others.is_empty() {
                outcome.fail(format!(
                    "answers other than {only:?}: {} (0 = no answer)",
                    others.join(", ")
                ));
            }
        }
        let via = (0..self.hosts.len())
            .find(|h| !hit.contains(h))
            .unwrap_or(0);
        match verify(
            &self.http,
            &self.hosts[via].base,
            TENANT,
            &self.token,
            &self.ledger,
            Duration::from_secs(60),
        ) {
            Ok(report) => {
                outcome.measure("events:", report.events);
                if report.violations() > 0 {
                    outcome.fail(format!(
                        "{} lost, {} duplicated, {} gaps, {} documents unlike the fold: {:?}",
                        report.lost,
                        report.duplicates,
                        report.gaps,
                        report.mismatches,
                        report.problems
                    ));
                }
            }
            Err(error) => outcome.fail(format!("checking the log: {error:#}")),
        }
        let parked = self.parked(via)?;
        if !parked.is_empty() {
            outcome.fail(format!("balances parked: {parked:?}"));
        }
        outcome.print();
        Ok(outcome)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.proxy.set(Mode::Forward);
        for host in &mut self.hosts {
            let _ = host.signal(libc::SIGCONT);
            host.kill9();
        }
        let _ = psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.database
        ));
    }
}

pub(crate) fn wait_ready(http: &Client, base: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
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
