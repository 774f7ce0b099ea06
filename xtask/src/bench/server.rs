//! A release server for the benchmarks, and what `/proc` says about a process.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A release server on a data directory under `target/`, killed when dropped.
pub(crate) struct ReleaseServer {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl ReleaseServer {
    /// Builds the plugins and the server in release, then starts it with the operator
    /// token `bench` (on `database`, else on SQLite in the data directory).
    pub(crate) fn start(
        root: &Path,
        data: &str,
        database: Option<&str>,
    ) -> anyhow::Result<ReleaseServer> {
        ReleaseServer::start_with(root, data, database, &[])
    }

    /// The same, with extra `cairn serve` arguments, on a fresh data directory.
    pub(crate) fn start_with(
        root: &Path,
        data: &str,
        database: Option<&str>,
        extra: &[&str],
    ) -> anyhow::Result<ReleaseServer> {
        build(root)?;
        let _ = std::fs::remove_dir_all(root.join("target").join(data));
        Ok(ReleaseServer::open(root, data, database, extra)?.0)
    }

    /// Starts the release server already built on the data directory as it is (a
    /// restart), with the time from the start of the process to its first `/readyz`
    /// answered 200.
    pub(crate) fn open(
        root: &Path,
        data: &str,
        database: Option<&str>,
        extra: &[&str],
    ) -> anyhow::Result<(ReleaseServer, Duration)> {
        let data_dir = root.join("target").join(data);
        let mut command = Command::new(binary(root));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .env("CAIRN_ADMIN_TOKEN", "bench")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped());
        if let Some(url) = database {
            command.args(["--database", url]);
        }
        command.args(extra);
        let started = Instant::now();
        let mut child = command.spawn()?;
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().context("stdout")?),
            &mut line,
        )?;
        let base = line
            .trim()
            .trim_start_matches("cairn listening on ")
            .to_owned();
        let server = ReleaseServer { child, base };
        let http = reqwest::blocking::Client::new();
        loop {
            let ready = http.get(format!("{}/readyz", server.base)).send();
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("the server was not ready after 120 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok((server, started.elapsed()))
    }

    /// The server's process id (for its RSS and CPU in `/proc`).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ReleaseServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server binary: `CAIRN_BENCH_SERVER` if set (to compare two builds of the
/// server, each run against its own), else the release build.
pub(crate) fn binary(root: &Path) -> std::path::PathBuf {
    std::env::var_os("CAIRN_BENCH_SERVER")
        .map_or_else(|| root.join("target/release/cairn"), Into::into)
}

/// Builds the plugins and the server in release (the server unless
/// `CAIRN_BENCH_SERVER` names one; neither when `CAIRN_BENCH_NO_BUILD` is set, to
/// compare two builds of a plugin placed in `target/plugins` by hand).
pub(crate) fn build(root: &Path) -> anyhow::Result<()> {
    if std::env::var_os("CAIRN_BENCH_NO_BUILD").is_some() {
        println!("==> CAIRN_BENCH_NO_BUILD: the plugins and the server as they are");
        return Ok(());
    }
    crate::build_plugins::run(root)?;
    if std::env::var_os("CAIRN_BENCH_SERVER").is_some() {
        return Ok(());
    }
    println!("==> building the server in release");
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "cairn-host",
            "--bin",
            "cairn",
        ])
        .status()?;
    if !status.success() {
        bail!("building the server failed");
    }
    Ok(())
}

/// Resident memory of a process, in KiB.
pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS:")
}

/// A line of `/proc/<pid>/status` in KiB (`VmRSS:`, `VmHWM:`, the peak).
pub(crate) fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("no {field}"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .with_context(|| format!("{field} value"))?
        .parse()?)
}

/// User and system CPU of a process so far, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').context("stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

/// CPU seconds a process has used so far.
pub(crate) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    Ok(cpu_ticks(pid)? as f64 / ticks_per_second())
}

pub(crate) fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}
