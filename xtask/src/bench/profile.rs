//! The share of a command's CPU spent in wasmtime: `perf record` of the server during a
//! 64-client run, each sample counted where it landed (leaf frames, no call graphs:
//! a release build has no frame pointers, and DWARF unwinding would cost more than the
//! run). Counted as wasmtime: the guest's compiled code (samples in a `.cwasm`
//! artifact, which the host maps from disk) and every function of `wasmtime*` or
//! `cranelift*` (instantiation, the store, the boundary's lifting and lowering, WASI).
//! Kernel time spent on the pool's memory (page faults, madvise) is not attributed to
//! wasmtime, so the share is a floor.

use std::path::Path;
use std::process::{Command, Stdio};

use super::load::drive;
use super::{ReleaseServer, Report};

/// Profiles the server while `commands` deposits run at 64 clients and adds the share
/// to `report`; says so and carries on when `perf` cannot run here.
pub(super) fn wasm_share(
    root: &Path,
    server: &ReleaseServer,
    token: &str,
    backend: &str,
    commands: u64,
    report: &mut Report,
) -> anyhow::Result<()> {
    let key = format!("{backend}: share of the server's CPU samples in wasmtime (64 clients)");
    let data = root.join(format!("target/bench/perf-{backend}.data"));
    std::fs::create_dir_all(data.parent().expect("a parent"))?;
    let recorder = Command::new("perf")
        .args(["record", "-F", "999", "-o"])
        .arg(&data)
        .args(["-p", &server.pid().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut recorder) = recorder else {
        report.add(key, "not measured (perf is not available)");
        return Ok(());
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let load = drive(&server.base, server.pid(), token, 64, commands, 1000);
    // SAFETY: signals our own child, still running.
    unsafe { libc::kill(recorder.id() as i32, libc::SIGINT) };
    recorder.wait()?;
    load?;
    let output = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--sort",
            "dso,sym",
            "-q",
            "-i",
        ])
        .arg(&data)
        .stderr(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let (mut total, mut wasm) = (0.0, 0.0);
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(share) = fields
            .next()
            .and_then(|f| f.strip_suffix('%'))
            .and_then(|f| f.parse::<f64>().ok())
        else {
            continue;
        };
        let dso = fields.next().unwrap_or_default();
        let symbol: String = fields.skip(1).collect::<Vec<_>>().join(" ");
        total += share;
        if dso.ends_with(".cwasm")
            || symbol.contains("wasmtime")
            || symbol.contains("cranelift")
            || symbol.starts_with("wasm[")
        {
            wasm += share;
        }
    }
    if total < 50.0 {
        report.add(key, "not measured (perf recorded no samples)");
    } else {
        report.add(key, format!("{:.1}%", wasm * 100.0 / total));
        report.ratios.push((
            format!("{backend}: wasmtime share of server CPU (≤ 0.15)"),
            wasm / total,
            0.15,
        ));
    }
    Ok(())
}
