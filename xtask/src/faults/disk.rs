//! Scenario 1: a full disk under SQLite. A 64 MiB tmpfs is the data directory; writers
//! run, a file fills the disk, writers keep going, the file is removed; no restart.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::blocking::Client;

use super::{OPERATOR, Outcome, TENANT, Timing, Writers, seconds, statuses};
use crate::campaign::{Ledger, Target, statuses_line, verify};
use crate::chaos::Server;

/// A tmpfs mounted on `path`, unmounted (lazily) and removed when dropped.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: PathBuf, megabytes: u32) -> anyhow::Result<SmallDisk> {
        if path.exists() {
            // Left mounted by an interrupted run.
            let _ = Command::new("umount").arg("-l").arg(&path).status();
            let _ = std::fs::remove_dir_all(&path);
        }
        std::fs::create_dir_all(&path)?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&path)
            .status()
            .context("running mount")?;
        if !status.success() {
            bail!(
                "mounting a {megabytes} MiB tmpfs on {} failed (the disk scenario needs root)",
                path.display()
            );
        }
        Ok(SmallDisk { path })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Writes a file in `dir` until the filesystem refuses (ENOSPC); its path.
fn fill(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path)?;
    let chunk = vec![0xa5_u8; 64 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => return Err(e).context("filling the disk"),
        }
    }
    let _ = file.flush();
    Ok(path)
}

fn ready(http: &Client, base: &str) -> bool {
    http.get(format!("{base}/readyz"))
        .send()
        .is_ok_and(|r| r.status().is_success())
}

pub(super) fn run(root: &Path, binary: &Path, timing: Timing) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::new("disk full (sqlite)");
    let disk = SmallDisk::mount(
        root.join("target")
            .join(format!("faults-disk-{}", std::process::id())),
        64,
    )?;
    // Its warnings go beside the fleet's logs (the tmpfs is unmounted after).
    let log = root.join("target").join("faults-disk.log");
    let _ = std::fs::remove_file(&log);
    let mut server =
        Server::new(binary.to_owned(), disk.path.clone(), None, OPERATOR)?.with_log(log.clone());
    server.start()?;
    let http = Client::builder().timeout(Duration::from_secs(10)).build()?;
    let base = server.base.clone();
    let token = crate::chaos::setup(root, &http, &base, OPERATOR, TENANT)?;
    let ledger = Arc::new(Ledger::default());
    let target = Target {
        base: base.clone(),
        tenant: TENANT.to_owned(),
        token: token.clone(),
        host: 0,
        // Big events: what is written meets the full disk at once.
        pad: 4000,
    };
    let writers = Writers::start("disk", &[target], 3, &ledger);
    std::thread::sleep(timing.window / 2);
    let before = ledger.statuses();
    let filler = fill(&disk.path)?;
    let filled = Instant::now();
    let mut ready_while_full = false;
    let mut not_ready_seen = false;
    while filled.elapsed() < timing.window {
        std::thread::sleep(Duration::from_millis(250));
        if ready(&http, &base) {
            // Ready until a write has met the full disk; never ready after.
            if not_ready_seen {
                ready_while_full = true;
            }
        } else {
            not_ready_seen = true;
        }
    }
    let while_full = statuses(&ledger, &before, None);
    std::fs::remove_file(&filler)?;
    let freed = Instant::now();
    let mut ready_after = None;
    while freed.elapsed() < Duration::from_secs(60) {
        if ready(&http, &base) {
            ready_after = Some(freed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(timing.window / 2);
    let result = writers.stop();
    let first_success = ledger.first_ack_after(freed, None).map(|at| at - freed);
    let all = statuses(&ledger, &Default::default(), None);
    let report = verify(
        &http,
        &base,
        TENANT,
        &token,
        &ledger,
        Duration::from_secs(120),
    );
    drop(server);
    drop(disk);

    outcome.measure("answers while full:", statuses_line(&while_full));
    outcome.measure("all answers:", statuses_line(&all));
    outcome.measure(
        "first success after freeing:",
        first_success.map_or("never".to_owned(), seconds),
    );
    outcome.measure(
        "/readyz ready after freeing:",
        ready_after.map_or("never".to_owned(), seconds),
    );
    outcome.recovery = first_success.max(ready_after);
    if let Err(error) = result {
        outcome.fail(format!("a writer failed: {error:#}"));
    }
    match report {
        Ok(report) => {
            outcome.measure("acknowledged but missing:", report.lost);
            outcome.measure("events:", report.events);
            if report.violations() > 0 {
                outcome.fail(format!(
                    "{} lost, {} duplicated, {} gaps, {} documents unlike the fold: {:?}",
                    report.lost, report.duplicates, report.gaps, report.mismatches, report.problems
                ));
            }
        }
        Err(error) => outcome.fail(format!("checking the log: {error:#}")),
    }
    if while_full.get(&507).copied().unwrap_or(0) == 0 {
        outcome.fail("no write met the full disk (no 507 while full)".to_owned());
    }
    if !not_ready_seen || ready_while_full {
        outcome.fail("/readyz said ready while the disk was full".to_owned());
    }
    if let Some(n) = all.get(&500) {
        outcome.fail(format!(
            "{n} answers 500: {:?}",
            ledger.internal_errors.lock().expect("ledger")
        ));
    }
    if first_success.is_none() || ready_after.is_none() {
        outcome.fail("no recovery within 60 s of freeing the disk".to_owned());
    }
    if !outcome.failures.is_empty() {
        println!("==> the server's log is kept in {}", log.display());
    }
    outcome.print();
    Ok(outcome)
}
