//! `cargo xtask fuzz-api [--postgres | --database URL] [--examples N] [--seconds S]`:
//! schemathesis against the server's own `/openapi.json`. A debug server on a fresh
//! data directory gets a tenant `fuzz` with the `account` aggregate and the `balances`
//! projection; path parameters are pinned to them so generated requests reach the
//! handlers instead of stopping at 404. First the document itself is checked with
//! `openapi-spec-validator`; then schemathesis checks: no 5xx (`not_a_server_error`),
//! and every error answer in the contract's shape (`xtask/fuzz/cairn_checks.py`).
//!
//! schemathesis and openapi-spec-validator are installed from PyPI into
//! `target/fuzz-venv` on first use.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::blocking::Client;

const OPERATOR: &str = "fuzz-operator";

/// `cargo xtask fuzz-api`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// On a fresh database of the local PostgreSQL.
    #[arg(long, conflicts_with = "database")]
    pub postgres: bool,
    /// The database to run on (else SQLite in a fresh data directory).
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Examples schemathesis generates per operation.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub examples: u64,
    /// A time budget in seconds (0: none).
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seconds: u64,
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let (examples, seconds) = (args.examples, args.seconds);
    let database = if args.postgres {
        Some(crate::chaos::fresh_postgres_database("fuzz")?)
    } else {
        args.database.clone()
    };
    let st = install_schemathesis(root)?;
    crate::build_plugins::run(root)?;
    let binary = crate::chaos::build_server(root, false)?;
    let data_dir = root
        .join("target")
        .join(format!("fuzz-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut server =
        crate::chaos::Server::new(binary, data_dir.clone(), database.clone(), OPERATOR)?;
    server.start()?;
    let base = server.base.clone();
    let http = Client::builder().timeout(Duration::from_secs(30)).build()?;
    let token = crate::chaos::setup(root, &http, &base, OPERATOR, "fuzz")?;
    let document = data_dir.join("openapi.json");
    std::fs::write(
        &document,
        http.get(format!("{base}/openapi.json"))
            .send()?
            .error_for_status()?
            .bytes()?,
    )?;
    println!("==> openapi-spec-validator {}", document.display());
    let status = Command::new(st.with_file_name("openapi-spec-validator"))
        .arg(&document)
        .status()
        .context("running openapi-spec-validator")?;
    if !status.success() {
        bail!("/openapi.json is not a valid OpenAPI document (see above)");
    }
    // Path parameters pinned to what exists, so requests get past routing. A document
    // read past the log's head (`min_position`) answers 503 `not_caught_up` by contract.
    let config = data_dir.join("schemathesis.toml");
    std::fs::write(
        &config,
        "[parameters]\n\"path.tenant\" = \"fuzz\"\n\"path.name\" = \"account\"\n\
         \"path.id\" = \"7\"\n\"path.stream\" = \"account-7\"\n\"path.version\" = 1\n\n\
         [[operations]]\ninclude-path-regex = \"/projections/\"\n\
         parameters = { \"path.name\" = \"balances\", \"path.key\" = \"account-7\" }\n\n\
         [[operations]]\ninclude-path-regex = \"/projections/[^/]+/docs\"\n\
         checks.not_a_server_error.expected-statuses = [\"2xx\", \"3xx\", \"4xx\", \"503\"]\n",
    )?;
    let backend = if database.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    println!(
        "==> schemathesis against {base}/openapi.json ({backend}), {examples} examples per operation"
    );
    let mut command = Command::new(&st);
    command
        .current_dir(root)
        .env("SCHEMATHESIS_HOOKS", "cairn_checks")
        .env("PYTHONPATH", root.join("xtask/fuzz"))
        .args(["--config-file"])
        .arg(&config)
        .args(["run", &format!("{base}/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "not_a_server_error,error_shape"])
        .args(["--max-examples", &examples.to_string()])
        .args(["--generation-database", "none", "--no-color"])
        .args(["--request-timeout", "30"]);
    if seconds > 0 {
        command.args(["--max-time", &seconds.to_string()]);
    }
    let status = command.status().context("running schemathesis")?;
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
    if !status.success() {
        bail!("schemathesis found failures on {backend} (see above)");
    }
    println!("==> fuzz-api passed on {backend}");
    Ok(())
}

/// `target/fuzz-venv/bin/st` (and `openapi-spec-validator` beside it), installed the
/// first time.
fn install_schemathesis(root: &Path) -> anyhow::Result<std::path::PathBuf> {
    let venv = root.join("target/fuzz-venv");
    let st = venv.join("bin/st");
    if st.exists() && venv.join("bin/openapi-spec-validator").exists() {
        return Ok(st);
    }
    if !venv.join("bin/pip").exists() {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .context("python3 -m venv")?;
        if !status.success() {
            bail!("could not create {}", venv.display());
        }
    }
    println!(
        "==> installing schemathesis and openapi-spec-validator into {}",
        venv.display()
    );
    let status = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            "schemathesis>=4,<5",
            "openapi-spec-validator>=0.7,<1",
        ])
        .status()
        .context("pip install schemathesis openapi-spec-validator")?;
    if !status.success() {
        bail!("pip could not install schemathesis and openapi-spec-validator");
    }
    Ok(st)
}
