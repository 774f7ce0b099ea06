//! `cargo xtask build-plugins`: builds every crate under `plugins/`, `hostile/` and
//! `compat/` for `wasm32-wasip2` in release (adding the target with rustup when it is
//! missing) and copies the components to `target/<folder>/<name>.wasm`. With
//! `--polyglot`, also the Python and JavaScript examples (`polyglot.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

const TARGET: &str = "wasm32-wasip2";

/// Plugin crates found under `dir`: (directory name, package name).
fn crates_in(
    root: &Path,
    dir: &str,
    package_prefix: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root.join(dir)).with_context(|| format!("reading {dir}/"))? {
        let path = entry?.path();
        if path.join("Cargo.toml").is_file() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            found.push((name.clone(), format!("{package_prefix}{name}")));
        }
    }
    found.sort();
    Ok(found)
}

fn ensure_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        return Ok(());
    }
    println!("==> rustup target add {TARGET}");
    if !Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()?
        .success()
    {
        bail!("could not install the {TARGET} target");
    }
    Ok(())
}

/// `cargo xtask build-plugins`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Also the Python and JavaScript examples (toolchains into target/polyglot-tools/).
    #[arg(long)]
    pub polyglot: bool,
}

/// `cargo xtask build-plugins [--polyglot]`.
pub(crate) fn run_with(root: &Path, args: &Args) -> anyhow::Result<()> {
    run(root)?;
    if args.polyglot {
        crate::polyglot::build_examples(root)?;
    }
    Ok(())
}

pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    ensure_target()?;
    let groups = [
        ("plugins", crates_in(root, "plugins", "")?),
        ("hostile", crates_in(root, "hostile", "hostile-")?),
        ("compat", crates_in(root, "compat", "compat-")?),
    ];
    let mut build = Command::new(env!("CARGO"));
    build
        .current_dir(root)
        .args(["build", "--release", "--target", TARGET]);
    for (_, crates) in &groups {
        for (_, package) in crates {
            build.args(["-p", package]);
        }
    }
    println!("==> building plugins for {TARGET}");
    if !build.status()?.success() {
        bail!("building the plugins failed");
    }
    let out = root.join("target").join(TARGET).join("release");
    for (dir, crates) in &groups {
        let dest_dir = root.join("target").join(dir);
        std::fs::create_dir_all(&dest_dir)?;
        for (name, package) in crates {
            let built: PathBuf = out.join(format!("{}.wasm", package.replace('-', "_")));
            let dest = dest_dir.join(format!("{name}.wasm"));
            std::fs::copy(&built, &dest).with_context(|| format!("copying {}", built.display()))?;
            let size = std::fs::metadata(&dest)?.len();
            println!(
                "    {} ({} KiB)",
                dest.strip_prefix(root)?.display(),
                size / 1024
            );
        }
    }
    Ok(())
}
