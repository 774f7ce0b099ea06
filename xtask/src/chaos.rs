//! `cargo xtask chaos [--database URL | --postgres] [--seconds S] [--writers N] [--quick]
//! [--release]`: the fault campaign. A server is killed with SIGKILL every 2–5 s
//! (1–3 s with `--quick`) while writer threads send commands, each with its own
//! `command_id`, and projection rebuilds and promotions are requested; then, after a
//! clean restart, the whole log is checked:
//!
//! - 0 lost: every command that was answered 200 has its event in the log;
//! - 0 duplicates: no command id caused more than one event (a command whose answer
//!   was lost to a kill is retried with the same id until answered, as a client would);
//! - versions of every stream are 1, 2, 3, … and positions of the log 1, 2, 3, …;
//! - the `balances` projection, once caught up, equals a fold of the log.
//!
//! `--postgres` makes a fresh database on the local PostgreSQL
//! (postgres://postgres@127.0.0.1:5432) and fails if it cannot. CI runs `--quick` on
//! both backends; the full campaign runs for `--seconds` (default 120).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::campaign::{Ledger, Random, Target, verify, write_loop};

const TENANT: &str = "chaos";
const OPERATOR: &str = "chaos-operator";

/// `cargo xtask chaos`'s arguments.
#[derive(clap::Args, Debug, Default)]
pub(crate) struct Args {
    /// On a fresh database of the local PostgreSQL.
    #[arg(long, conflicts_with = "database")]
    pub postgres: bool,
    /// The database to run on (else SQLite in a fresh data directory).
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Seconds of kills (default 120, or 25 with --quick).
    #[arg(long, value_name = "S")]
    pub seconds: Option<u64>,
    /// Writer threads (default 4).
    #[arg(long, value_name = "N")]
    pub writers: Option<usize>,
    /// The reduced form CI runs.
    #[arg(long)]
    pub quick: bool,
    /// A release server (else debug).
    #[arg(long)]
    pub release: bool,
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let (quick, release) = (args.quick, args.release);
    let writers = args.writers.unwrap_or(4);
    let seconds = args.seconds.unwrap_or(if quick { 25 } else { 120 });
    let database = if args.postgres {
        Some(fresh_postgres_database("chaos")?)
    } else {
        args.database.clone()
    };
    crate::build_plugins::run(root)?;
    let binary = build_server(root, release)?;
    let data_dir = root
        .join("target")
        .join(format!("chaos-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut server = Server::new(binary, data_dir.clone(), database.clone(), OPERATOR)?;
    server.start()?;
    let http = Client::builder().timeout(Duration::from_secs(10)).build()?;
    let base = server.base.clone();
    let token = setup(root, &http, &base, OPERATOR, TENANT)?;
    let backend = if database.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    println!(
        "==> chaos on {backend}: {writers} writers, kill -9 every {} s, {seconds} s",
        if quick { "1–3" } else { "2–5" }
    );

    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (ledger, stop) = (ledger.clone(), stop.clone());
            let target = Target {
                base: base.clone(),
                tenant: TENANT.to_owned(),
                token: token.clone(),
                host: 0,
                pad: 0,
            };
            std::thread::spawn(move || write_loop(&w.to_string(), &target, &ledger, &stop))
        })
        .collect();

    let started = Instant::now();
    let mut random = Random::seeded();
    let mut kills = 0u64;
    let mut projection_requests = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let pause = if quick {
            1000 + random.below(2000)
        } else {
            2000 + random.below(3000)
        };
        std::thread::sleep(Duration::from_millis(pause));
        // Half of the time, a kill lands while a rebuild or a promotion is in flight.
        if random.below(2) == 0 && projection_poke(&http, &base, &token, &mut random) {
            projection_requests += 1;
            std::thread::sleep(Duration::from_millis(random.below(300)));
        }
        server.kill9();
        kills += 1;
        server.start()?;
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().expect("a writer panicked")?;
    }
    // A clean restart before checking: what is read is what survived.
    server.kill9();
    server.start()?;
    let report = verify(
        &http,
        &base,
        TENANT,
        &token,
        &ledger,
        Duration::from_secs(300),
    )?;
    let answered = ledger.answered.lock().expect("ledger").len();
    println!();
    println!("| chaos ({backend}) | value |");
    println!("|---|---|");
    println!("| run | {seconds} s, {writers} writers |");
    println!("| kill -9 | {kills} |");
    println!("| projection rebuilds and promotions requested | {projection_requests} |");
    println!("| commands answered 200 | {answered} |");
    println!(
        "| retries after a lost answer | {} |",
        ledger.retries.load(Ordering::Relaxed)
    );
    println!("| events in the log | {} |", report.events);
    println!("| lost acknowledged commands | {} |", report.lost);
    println!("| duplicated command effects | {} |", report.duplicates);
    println!("| version or position gaps | {} |", report.gaps);
    println!(
        "| projection documents unlike the fold | {} |",
        report.mismatches
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
    if answered == 0 || kills == 0 {
        bail!("the campaign did nothing: {answered} commands, {kills} kills");
    }
    if report.violations() > 0 {
        bail!("the campaign found violations: {:?}", report.problems);
    }
    println!("==> chaos passed on {backend}");
    Ok(())
}

pub(crate) fn build_server(root: &Path, release: bool) -> anyhow::Result<PathBuf> {
    let mut args = vec!["build", "--quiet", "-p", "cairn-host", "--bin", "cairn"];
    if release {
        args.push("--release");
    }
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(&args)
        .status()?;
    if !status.success() {
        bail!("building the server failed");
    }
    let profile = if release { "release" } else { "debug" };
    Ok(root.join("target").join(profile).join("cairn"))
}

/// A new database on the local PostgreSQL (which must be reachable: no skipping).
pub(crate) fn fresh_postgres_database(prefix: &str) -> anyhow::Result<String> {
    let url = format!(
        "postgres://postgres@127.0.0.1:5432/{prefix}_{}",
        std::process::id()
    );
    recreate_postgres_database(&url)?;
    Ok(url)
}

/// Drops (closing its connections) and creates again the database of `url`, on the
/// local PostgreSQL.
pub(crate) fn recreate_postgres_database(url: &str) -> anyhow::Result<()> {
    let name = url.rsplit('/').next().context("database name")?;
    postgres_statements(&[
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ])
}

/// Drops the database of `url` (closing its connections), on the local PostgreSQL.
pub(crate) fn drop_postgres_database(url: &str) -> anyhow::Result<()> {
    let name = url.rsplit('/').next().context("database name")?;
    postgres_statements(&[format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")])
}

/// Runs each of `statements` with psql on the local PostgreSQL.
fn postgres_statements(statements: &[String]) -> anyhow::Result<()> {
    for statement in statements {
        let status = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "test",
                "-q",
                "-c",
            ])
            .arg(statement)
            .status()
            .context("running psql (PostgreSQL must be reachable at 127.0.0.1:5432)")?;
        if !status.success() {
            bail!("`{statement}` failed on PostgreSQL at 127.0.0.1:5432");
        }
    }
    Ok(())
}

/// The server process, restarted on the same port and data.
pub(crate) struct Server {
    /// The operator token it starts with.
    operator: &'static str,
    binary: PathBuf,
    data_dir: PathBuf,
    database: Option<String>,
    port: u16,
    pub base: String,
    child: Option<Child>,
    /// `--host-id`, for a host of a fleet.
    host_id: Option<String>,
    /// Where its stderr goes (`RUST_LOG=warn`); discarded when unset.
    log: Option<PathBuf>,
}

impl Server {
    pub(crate) fn new(
        binary: PathBuf,
        data_dir: PathBuf,
        database: Option<String>,
        operator: &'static str,
    ) -> anyhow::Result<Server> {
        // A free port, kept across restarts so clients find the server again.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        Ok(Server {
            operator,
            binary,
            data_dir,
            database,
            port,
            base: format!("http://127.0.0.1:{port}"),
            child: None,
            host_id: None,
            log: None,
        })
    }

    /// Runs as `--host-id id` of a fleet, its warnings appended to `log`.
    pub(crate) fn in_fleet(mut self, host_id: &str, log: PathBuf) -> Server {
        self.host_id = Some(host_id.to_owned());
        self.with_log(log)
    }

    /// Appends its warnings (`RUST_LOG=warn`) to `log`.
    pub(crate) fn with_log(mut self, log: PathBuf) -> Server {
        self.log = Some(log);
        self
    }

    /// The running process's id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (`libc::SIGSTOP`, `libc::SIGCONT`…) to the running process.
    pub(crate) fn signal(&self, signal: i32) -> anyhow::Result<()> {
        let pid = self.pid().context("the server is not running")?;
        // SAFETY: kill(2) on a child this process started and has not reaped.
        if unsafe { libc::kill(pid as i32, signal) } != 0 {
            bail!("kill({pid}, {signal}) failed");
        }
        Ok(())
    }

    pub(crate) fn start(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let mut command = Command::new(&self.binary);
            command
                .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
                .arg("--data-dir")
                .arg(&self.data_dir)
                .env("CAIRN_ADMIN_TOKEN", self.operator)
                .env("RUST_LOG", "error")
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            if let Some(url) = &self.database {
                command.args(["--database", url]);
            }
            if let Some(id) = &self.host_id {
                command.args(["--host-id", id]);
            }
            if let Some(log) = &self.log {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)?;
                command.env("RUST_LOG", "warn").stderr(file);
            }
            let mut child = command.spawn().context("starting cairn")?;
            let mut line = String::new();
            BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
            if line.starts_with("cairn listening on") {
                self.child = Some(child);
                return Ok(());
            }
            // The port may still be held by the killed process for a moment.
            let _ = child.kill();
            let _ = child.wait();
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the server did not restart within 60 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// How the process ended, if it has (a crash, for a campaign that never kills it).
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Creates `tenant` with the operator token, uploads `account` and `balances`; the
/// tenant's token. Shared with `fuzz-api`.
pub(crate) fn setup(
    root: &Path,
    http: &Client,
    base: &str,
    operator: &str,
    tenant: &str,
) -> anyhow::Result<String> {
    let created: Value = http
        .post(format!("{base}/admin/tenants"))
        .bearer_auth(operator)
        .json(&json!({"id": tenant}))
        .send()?
        .error_for_status()?
        .json()?;
    let token = created["token"].as_str().context("token")?.to_owned();
    for name in ["account", "balances"] {
        let wasm = std::fs::read(root.join(format!("target/plugins/{name}.wasm")))?;
        http.put(format!("{base}/t/{tenant}/plugins/{name}"))
            .bearer_auth(&token)
            .body(wasm)
            .send()?
            .error_for_status()?;
    }
    Ok(token)
}

/// Asks for a rebuild of `balances`, or promotes one of its kept builds back.
fn projection_poke(http: &Client, base: &str, token: &str, random: &mut Random) -> bool {
    let url = format!("{base}/t/{TENANT}/projections/balances");
    let sent = if random.below(3) == 0 {
        let Ok(view) = http.get(&url).bearer_auth(token).send() else {
            return false;
        };
        let Ok(view) = view.json::<Value>() else {
            return false;
        };
        let kept: Vec<u64> = view["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["status"] != "failed")
            .filter_map(|v| v["build"].as_u64())
            .collect();
        if kept.is_empty() {
            return false;
        }
        let build = kept[random.below(kept.len() as u64) as usize];
        http.post(format!("{url}/promote"))
            .bearer_auth(token)
            .json(&json!({"build": build}))
            .send()
    } else {
        http.post(format!("{url}/rebuild"))
            .bearer_auth(token)
            .send()
    };
    sent.is_ok()
}
