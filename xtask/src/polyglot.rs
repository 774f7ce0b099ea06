//! Plugins in Python and JavaScript: the toolchains and the builds.
//!
//! - The toolchains come from their registries at the versions pinned in
//!   `xtask/polyglot/` (`requirements.txt` for PyPI, `package.json` and
//!   `package-lock.json` for npm), installed into `target/polyglot-tools/{py,js}` (a
//!   venv and a `node_modules`; nothing global) and reused while the pins are unchanged.
//! - `cargo xtask build-plugins --polyglot` builds the examples into
//!   `target/plugins/python-account.wasm` and `target/plugins/js-balances.wasm`.
//! - `cargo xtask build-python DIR [--world W] [--out FILE]` and
//!   `cargo xtask build-js ENTRY.js [--world W] [--out FILE]` build a tenant's own
//!   plugin the same way (docs/python.md, docs/javascript.md).
//! - `cargo xtask test-polyglot` runs the examples' native tests (pytest, node --test).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The Python helper package `cairn_sdk` lives here; it is put on componentize-py's path.
const PYTHON_SDK_DIR: &str = "examples/python";

fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    println!("==> {what}");
    let status = command
        .status()
        .with_context(|| format!("starting {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn tools_dir(root: &Path) -> PathBuf {
    root.join("target").join("polyglot-tools")
}

/// Installs the pinned toolchain into `dir` unless the pins copied there (`stamp`)
/// match the ones in `xtask/polyglot/`.
fn up_to_date(dir: &Path, pins: &[(&Path, &str)]) -> bool {
    pins.iter().all(
        |(source, name)| match (std::fs::read(source), std::fs::read(dir.join(name))) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        },
    )
}

/// The venv with componentize-py and pytest; its `bin/` directory.
pub(crate) fn python_tools(root: &Path) -> anyhow::Result<PathBuf> {
    let dir = tools_dir(root).join("py");
    let requirements = root.join("xtask/polyglot/requirements.txt");
    let bin = dir.join("bin");
    if up_to_date(&dir, &[(&requirements, "requirements.txt")])
        && bin.join("componentize-py").is_file()
    {
        return Ok(bin);
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    run(
        Command::new(&python)
            .args(["-m", "venv", "--clear"])
            .arg(&dir),
        &format!("{python} -m venv {}", dir.display()),
    )?;
    run(
        Command::new(bin.join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
        "pip install -r xtask/polyglot/requirements.txt (componentize-py, pytest)",
    )?;
    std::fs::copy(&requirements, dir.join("requirements.txt"))?;
    Ok(bin)
}

/// The `node_modules` with componentize-js; the path of its command-line entry.
pub(crate) fn js_tools(root: &Path) -> anyhow::Result<PathBuf> {
    let dir = tools_dir(root).join("js");
    let pins = root.join("xtask/polyglot");
    let cli = dir.join("node_modules/@bytecodealliance/componentize-js/src/cli.js");
    let (manifest, lock) = (pins.join("package.json"), pins.join("package-lock.json"));
    let stamp = [(&*manifest, "package.json"), (&*lock, "package-lock.json")];
    if up_to_date(&dir, &stamp) && cli.is_file() {
        return Ok(cli);
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(&manifest, dir.join("package.json"))?;
    std::fs::copy(&lock, dir.join("package-lock.json"))?;
    run(
        Command::new("npm").current_dir(&dir).args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ]),
        "npm ci (componentize-js, from xtask/polyglot/package-lock.json)",
    )?;
    Ok(cli)
}

fn report(root: &Path, out: &Path) -> anyhow::Result<()> {
    let size = std::fs::metadata(out)?.len();
    let shown = out.strip_prefix(root).unwrap_or(out);
    println!(
        "    {} ({:.1} MiB)",
        shown.display(),
        size as f64 / 1048576.0
    );
    Ok(())
}

/// componentize-py: the module `app` in `dir` (which sets `WitWorld`) as a component
/// of `world`, with the `cairn_sdk` helper on the path.
pub(crate) fn build_python(root: &Path, dir: &Path, world: &str, out: &Path) -> anyhow::Result<()> {
    let bin = python_tools(root)?;
    if !dir.join("app.py").is_file() {
        bail!(
            "{} has no app.py (the module that sets WitWorld)",
            dir.display()
        );
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    run(
        Command::new(bin.join("componentize-py"))
            .current_dir(root)
            .arg("--quiet")
            .arg("-d")
            .arg(root.join("wit/cairn.wit"))
            .args(["-w", world, "componentize", "-p"])
            .arg(root.join(PYTHON_SDK_DIR))
            .arg("-p")
            .arg(dir)
            .arg("app")
            .arg("-o")
            .arg(out)
            .env_remove("VIRTUAL_ENV"),
        &format!("componentize-py ({world}) {}", dir.display()),
    )?;
    report(root, out)
}

/// componentize-js: the module `entry` (whose exports are the world's functions) as a
/// component of `world`. It is run from the entry's parent folder, so that the entry's
/// relative imports (`../cairn-sdk/index.js`) resolve when the engine is initialised.
pub(crate) fn build_js(root: &Path, entry: &Path, world: &str, out: &Path) -> anyhow::Result<()> {
    let cli = js_tools(root)?;
    let entry = entry
        .canonicalize()
        .with_context(|| format!("{} does not exist", entry.display()))?;
    let base = entry
        .parent()
        .and_then(Path::parent)
        .context("the entry module must be in a folder")?;
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let out = std::path::absolute(out)?;
    run(
        Command::new("node")
            .current_dir(base)
            .arg(&cli)
            .arg(entry.strip_prefix(base)?)
            .arg("--wit")
            .arg(root.join("wit/cairn.wit"))
            .args(["--world-name", world])
            // The host links WASI 0.2 without wasi:http; the engine must not import it.
            .args(["--disable", "http", "fetch-event"])
            .arg("-o")
            .arg(&out),
        &format!("componentize-js ({world}) {}", entry.display()),
    )?;
    report(root, &out)
}

/// The examples: `target/plugins/python-account.wasm` and `js-balances.wasm`.
pub(crate) fn build_examples(root: &Path) -> anyhow::Result<()> {
    let plugins = root.join("target/plugins");
    build_python(
        root,
        &root.join("examples/python/account"),
        "aggregate",
        &plugins.join("python-account.wasm"),
    )?;
    build_js(
        root,
        &root.join("examples/js/balances/component.js"),
        "projection",
        &plugins.join("js-balances.wasm"),
    )
}

/// The examples' native tests: pytest and node's test runner.
pub(crate) fn test_examples(root: &Path) -> anyhow::Result<()> {
    let bin = python_tools(root)?;
    run(
        Command::new(bin.join("python"))
            .current_dir(root.join("examples/python/account"))
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        "pytest examples/python/account",
    )?;
    run(
        Command::new("node")
            .current_dir(root.join("examples/js/balances"))
            .arg("--test"),
        "node --test examples/js/balances",
    )
}

/// `cargo xtask build-python DIR` / `build-js ENTRY.js`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct BuildArgs {
    /// The Python package directory, or the JavaScript entry file.
    pub source: PathBuf,
    /// The world it implements: aggregate, projection or upcaster (default aggregate for
    /// Python, projection for JavaScript).
    #[arg(long, value_name = "W")]
    pub world: Option<String>,
    /// Where the component goes (default target/plugins/LANGUAGE-NAME.wasm).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `build-python DIR` / `build-js ENTRY` with `[--world W] [--out FILE]`.
pub(crate) fn build_one(root: &Path, language: &str, args: &BuildArgs) -> anyhow::Result<()> {
    let (source, out) = (args.source.clone(), args.out.clone());
    let world = args.world.clone().unwrap_or_else(|| {
        if language == "python" {
            "aggregate"
        } else {
            "projection"
        }
        .into()
    });
    if !["aggregate", "projection", "upcaster"].contains(&world.as_str()) {
        bail!("--world must be aggregate, projection or upcaster, not {world}");
    }
    // Relative paths are the caller's (`cargo run` keeps the working directory).
    let here = std::env::current_dir()?;
    let source = here.join(source);
    let stem = source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out = out.map_or_else(
        || {
            let name = if language == "python" {
                stem
            } else {
                source
                    .parent()
                    .and_then(Path::file_name)
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or(stem)
            };
            root.join("target/plugins")
                .join(format!("{language}-{name}.wasm"))
        },
        |out| here.join(out),
    );
    if language == "python" {
        build_python(root, &source, &world, &out)
    } else {
        build_js(root, &source, &world, &out)
    }
}
