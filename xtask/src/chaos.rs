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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::bench::arg;

const TENANT: &str = "chaos";
const OPERATOR: &str = "chaos-operator";
/// Accounts each writer owns (a writer's commands to one account never race its own).
const ACCOUNTS_PER_WRITER: usize = 8;

pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let release = args.iter().any(|a| a == "--release");
    let seconds = arg(args, "--seconds", if quick { 25 } else { 120 })?;
    let writers = arg(args, "--writers", 4)? as usize;
    let database = if args.iter().any(|a| a == "--postgres") {
        Some(fresh_postgres_database("chaos")?)
    } else {
        crate::bench::database_arg(args)
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
            let (base, token) = (base.clone(), token.clone());
            std::thread::spawn(move || write_loop(w, &base, &token, &ledger, &stop))
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
    let report = verify(&http, &base, &token, &ledger)?;
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
    if report.lost + report.duplicates + report.gaps + report.mismatches > 0 {
        bail!("the campaign found violations: {:?}", report.problems);
    }
    println!("==> chaos passed on {backend}");
    Ok(())
}

pub fn build_server(root: &Path, release: bool) -> anyhow::Result<PathBuf> {
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
pub fn fresh_postgres_database(prefix: &str) -> anyhow::Result<String> {
    let url = format!(
        "postgres://postgres@127.0.0.1:5432/{prefix}_{}",
        std::process::id()
    );
    recreate_postgres_database(&url)?;
    Ok(url)
}

/// Drops (closing its connections) and creates again the database of `url`, on the
/// local PostgreSQL.
pub fn recreate_postgres_database(url: &str) -> anyhow::Result<()> {
    let name = url.rsplit('/').next().context("database name")?;
    for statement in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
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
            .arg(&statement)
            .status()
            .context("running psql (PostgreSQL must be reachable at 127.0.0.1:5432)")?;
        if !status.success() {
            bail!("`{statement}` failed on PostgreSQL at 127.0.0.1:5432");
        }
    }
    Ok(())
}

/// The server process, restarted on the same port and data.
pub struct Server {
    /// The operator token it starts with.
    operator: &'static str,
    binary: PathBuf,
    data_dir: PathBuf,
    database: Option<String>,
    port: u16,
    pub base: String,
    child: Option<Child>,
}

impl Server {
    pub fn new(
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
        })
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
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

    fn kill9(&mut self) {
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
pub fn setup(
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

/// What the writers were told: answered command ids, and retries.
#[derive(Default)]
struct Ledger {
    /// Command id → its stream, for every command answered 200.
    answered: Mutex<HashMap<String, String>>,
    retries: AtomicU64,
}

/// One writer: opens its accounts, then deposits into them until told to stop. A
/// command whose answer is lost (the server died) is sent again with the same id.
fn write_loop(
    writer: usize,
    base: &str,
    token: &str,
    ledger: &Ledger,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let http = Client::builder().timeout(Duration::from_secs(10)).build()?;
    let mut random = Random::seeded();
    let accounts: Vec<String> = (0..ACCOUNTS_PER_WRITER)
        .map(|a| format!("w{writer}a{a}"))
        .collect();
    let mut sequence = 0u64;
    let mut opened = HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        let account = &accounts[random.below(accounts.len() as u64) as usize];
        let body = if opened.contains(account) {
            json!({"type": "Deposit", "payload": {"amount": 1 + random.below(100)}})
        } else {
            json!({"type": "Open", "payload": {"owner": account}})
        };
        sequence += 1;
        let command_id = format!("{writer}-{sequence}");
        let mut body = body;
        body["command_id"] = json!(command_id);
        let url = format!("{base}/t/{TENANT}/aggregates/account/{account}/commands");
        let give_up = Instant::now() + Duration::from_secs(120);
        loop {
            match http.post(&url).bearer_auth(token).json(&body).send() {
                Ok(answer) if answer.status().is_success() => {
                    ledger
                        .answered
                        .lock()
                        .expect("ledger")
                        .insert(command_id.clone(), format!("account-{account}"));
                    opened.insert(account.clone());
                    break;
                }
                Ok(answer) if answer.status().is_server_error() => {
                    // 503 while the host starts (or a load it gave up on): retry.
                    ledger.retries.fetch_add(1, Ordering::Relaxed);
                }
                Ok(answer) => {
                    let status = answer.status();
                    let text = answer.text().unwrap_or_default();
                    // Open on an opened account is refused by the domain: it was
                    // opened by an earlier try of another command id whose answer
                    // was lost. Anything else is a bug the campaign reports.
                    if text.contains("already_open") || text.contains("already opened") {
                        opened.insert(account.clone());
                        break;
                    }
                    bail!("command {command_id} answered {status}: {text}");
                }
                Err(_) => {
                    ledger.retries.fetch_add(1, Ordering::Relaxed);
                }
            }
            if Instant::now() > give_up {
                bail!("command {command_id} was never answered in 120 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
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

#[derive(Default)]
struct Report {
    events: u64,
    lost: u64,
    duplicates: u64,
    gaps: u64,
    mismatches: u64,
    /// The first few violations, for the message.
    problems: Vec<String>,
}

impl Report {
    fn problem(&mut self, what: String) {
        if self.problems.len() < 10 {
            self.problems.push(what);
        }
    }
}

fn verify(http: &Client, base: &str, token: &str, ledger: &Ledger) -> anyhow::Result<Report> {
    let mut report = Report::default();
    // The whole log, page by page.
    let mut after = 0u64;
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut effects: HashMap<String, u64> = HashMap::new();
    let mut balances: BTreeMap<String, i64> = BTreeMap::new();
    let head;
    loop {
        let page: Value = http
            .get(format!("{base}/t/{TENANT}/events?after={after}&limit=1000"))
            .bearer_auth(token)
            .send()?
            .error_for_status()?
            .json()?;
        let events = page["events"].as_array().context("events")?;
        for e in events {
            let position = e["position"].as_u64().context("position")?;
            if position != after + 1 {
                report.gaps += 1;
                report.problem(format!("position {position} follows {after}"));
            }
            after = position;
            report.events += 1;
            let stream = e["stream_id"].as_str().context("stream")?.to_owned();
            let version = e["version"].as_u64().context("version")?;
            let last = versions.entry(stream.clone()).or_insert(0);
            if version != *last + 1 {
                report.gaps += 1;
                report.problem(format!("{stream} version {version} follows {last}"));
            }
            *last = version;
            if let Some(id) = e["metadata"]["causation_id"].as_str() {
                *effects.entry(id.to_owned()).or_insert(0) += 1;
            }
            let amount = e["data"]["amount"].as_i64().unwrap_or(0);
            let balance = balances.entry(stream).or_insert(0);
            if e["type"] == "Deposited" {
                *balance += amount;
            }
        }
        if events.is_empty() {
            head = page["head"].as_u64().context("head")?;
            break;
        }
    }
    if head != after {
        report.gaps += 1;
        report.problem(format!("the head is {head} but the log ends at {after}"));
    }
    for (id, count) in &effects {
        if *count > 1 {
            report.duplicates += 1;
            report.problem(format!("command {id} caused {count} events"));
        }
    }
    for (id, stream) in ledger.answered.lock().expect("ledger").iter() {
        if !effects.contains_key(id) {
            report.lost += 1;
            report.problem(format!(
                "command {id} on {stream} was answered but is not in the log"
            ));
        }
    }
    // The projection, once its active version has caught up with the log.
    let started = Instant::now();
    let docs = loop {
        let doc = http
            .get(format!(
                "{base}/t/{TENANT}/projections/balances/docs?limit=1&min_position={head}"
            ))
            .bearer_auth(token)
            .send()?;
        if doc.status().is_success() {
            break read_all_docs(http, base, token)?;
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!(
                "balances never caught up with position {head}: {}",
                doc.text()?
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for (stream, balance) in &balances {
        match docs.get(stream) {
            Some(doc) if doc["balance"].as_i64() == Some(*balance) => {}
            other => {
                report.mismatches += 1;
                report.problem(format!(
                    "{stream}: the log folds to {balance}, the projection holds {other:?}"
                ));
            }
        }
    }
    if docs.len() != balances.len() {
        report.mismatches += 1;
        report.problem(format!(
            "{} documents for {} streams",
            docs.len(),
            balances.len()
        ));
    }
    Ok(report)
}

fn read_all_docs(http: &Client, base: &str, token: &str) -> anyhow::Result<HashMap<String, Value>> {
    let mut docs = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{base}/t/{TENANT}/projections/balances/docs?limit=1000");
        if let Some(after) = &after {
            url.push_str(&format!("&after={after}"));
        }
        let page: Value = http
            .get(url)
            .bearer_auth(token)
            .send()?
            .error_for_status()?
            .json()?;
        for d in page["docs"].as_array().context("docs")? {
            docs.insert(
                d["key"].as_str().context("key")?.to_owned(),
                d["doc"].clone(),
            );
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return Ok(docs),
        }
    }
}

/// A small xorshift generator: the campaign needs no cryptography, only variety.
struct Random(u64);

impl Random {
    fn seeded() -> Random {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&(nanos, std::thread::current().id()), &mut hasher);
        Random(std::hash::Hasher::finish(&hasher) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
