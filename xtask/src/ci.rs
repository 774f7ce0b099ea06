//! `cargo xtask ci`: everything CI checks, in the order a failure is cheapest to see:
//! plugins build, formatting, lints, every test (SQLite and PostgreSQL), the demo.

use std::path::Path;
use std::process::Command;

use anyhow::bail;

fn cargo(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    println!("==> cargo {}", args.join(" "));
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(args)
        .status()?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

pub fn run(root: &Path) -> anyhow::Result<()> {
    crate::build_plugins::run(root)?;
    cargo(root, &["fmt", "--all", "--check"])?;
    cargo(
        root,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    cargo(root, &["test", "--workspace"])?;
    // The README's first command must keep working: run it end to end.
    crate::demo::run(root, &["--no-wait".to_owned()])?;
    println!("==> ci passed");
    Ok(())
}
