//! `cargo xtask deny [--advisories]`: cargo-deny over the whole dependency graph, by the
//! rules of `deny.toml` (licenses, bans, sources, advisories).
//!
//! cargo-deny is installed at a pinned version into `target/cargo-deny/` on first use
//! (CI machines start clean; a person's own cargo-deny, of whatever version, is left
//! alone). Licenses, bans and sources need nothing from the network and always run.
//! Advisories need the RustSec database, a git repository on github.com, which a CI
//! machine may not reach: they run when github.com answers within a few seconds and are
//! skipped with a notice when it does not (`--advisories` makes that an error), so a
//! closed network never fails CI while a license or ban violation always does.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The cargo-deny CI installs; `deny.toml` is written for this version's format.
const VERSION: &str = "0.20.2";
/// Where the RustSec advisory database lives (cargo-deny's default source).
const ADVISORY_DB: &str = "https://github.com/rustsec/advisory-db";

/// `cargo xtask deny`'s arguments.
#[derive(clap::Args, Debug, Default)]
pub(crate) struct Args {
    /// Fail when the advisory database cannot be fetched, instead of skipping advisories.
    #[arg(long)]
    pub advisories: bool,
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let deny = ensure_installed(root)?;
    let started = Instant::now();
    check(root, &deny, &["licenses", "bans", "sources"])?;
    println!(
        "==> licenses, bans, sources: ok in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if advisory_db_reachable() {
        let started = Instant::now();
        check(root, &deny, &["advisories"])?;
        println!(
            "==> advisories: ok in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    } else if args.advisories {
        bail!("the advisory database ({ADVISORY_DB}) cannot be reached from here");
    } else {
        println!(
            "==> advisories NOT checked: {ADVISORY_DB} cannot be reached from this machine \
             (run `cargo xtask deny --advisories` where it can)"
        );
    }
    Ok(())
}

fn check(root: &Path, deny: &Path, checks: &[&str]) -> anyhow::Result<()> {
    println!("==> cargo deny check {}", checks.join(" "));
    let status = Command::new(deny)
        .current_dir(root)
        .args(["--log-level", "error", "check", "--hide-inclusion-graph"])
        .args(checks)
        .status()
        .context("running cargo-deny")?;
    if !status.success() {
        bail!("cargo deny check {} failed", checks.join(" "));
    }
    Ok(())
}

/// Whether `git ls-remote` reaches the advisory database within 10 s.
fn advisory_db_reachable() -> bool {
    let Ok(mut child) = Command::new("git")
        .args(["ls-remote", "--heads", ADVISORY_DB])
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// `target/cargo-deny/bin/cargo-deny` at `VERSION`, installed (compiled from crates.io)
/// when missing or another version.
fn ensure_installed(root: &Path) -> anyhow::Result<PathBuf> {
    let prefix = root.join("target/cargo-deny");
    let binary = prefix.join("bin/cargo-deny");
    let installed = Command::new(&binary)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(VERSION));
    if installed {
        return Ok(binary);
    }
    println!(
        "==> installing cargo-deny {VERSION} into {}",
        prefix.display()
    );
    let started = Instant::now();
    let status = Command::new(env!("CARGO"))
        .args([
            "install",
            "cargo-deny",
            "--locked",
            "--version",
            VERSION,
            "--root",
        ])
        .arg(&prefix)
        // cargo-deny's own release profile (fat LTO, one codegen unit) makes the
        // install several minutes longer on a small machine for a tool that runs for
        // seconds; these make a slower but still quick cargo-deny.
        .env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "1")
        .status()
        .context("running cargo install cargo-deny")?;
    if !status.success() {
        bail!("cargo install cargo-deny {VERSION} failed");
    }
    println!(
        "==> cargo-deny installed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(binary)
}
