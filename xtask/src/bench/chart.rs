//! The chart: `target/bench/bench.png`, drawn by matplotlib (`xtask/bench_chart.py`)
//! from `target/bench/results.json`. matplotlib is installed from PyPI into
//! `target/bench-venv` on first use; without Python or PyPI the bench still prints its
//! tables and says the chart was not drawn.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use super::{Report, Row};

pub(super) fn draw(root: &Path, rows: &[Row], report: &Report) -> anyhow::Result<()> {
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let results = json!({
        "rows": rows.iter().map(|r| json!({
            "backend": r.backend,
            "streams": r.streams,
            "clients": r.clients,
            "per_second": r.load.per_second,
            "p99_ms": r.load.p99,
            "limit": r.limit,
        })).collect::<Vec<_>>(),
        "ratios": report.ratios.iter().map(|(label, value, target)| json!({
            "label": label, "value": value, "target": target,
        })).collect::<Vec<_>>(),
    });
    let data = dir.join("results.json");
    std::fs::write(&data, serde_json::to_vec_pretty(&results)?)?;
    let png = dir.join("bench.png");
    match python(root) {
        Ok(python) => {
            let status = Command::new(python)
                .arg(root.join("xtask/bench_chart.py"))
                .arg(&data)
                .arg(&png)
                .status()?;
            if status.success() {
                println!("\n==> chart: {}", png.display());
            } else {
                println!("\n==> the chart was not drawn (bench_chart.py failed)");
            }
        }
        Err(error) => println!("\n==> the chart was not drawn: {error:#}"),
    }
    Ok(())
}

/// `target/bench-venv/bin/python` with matplotlib, installed the first time.
fn python(root: &Path) -> anyhow::Result<std::path::PathBuf> {
    let venv = root.join("target/bench-venv");
    let python = venv.join("bin/python");
    let ready = venv.join("matplotlib-installed");
    if ready.exists() {
        return Ok(python);
    }
    println!("==> installing matplotlib into {}", venv.display());
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()?;
    anyhow::ensure!(status.success(), "python3 -m venv failed");
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "matplotlib>=3.8,<4"])
        .status()?;
    anyhow::ensure!(status.success(), "pip could not install matplotlib");
    std::fs::write(ready, "")?;
    Ok(python)
}
