//! `cargo xtask hostile [--backend sqlite|postgres|both] [--quick] [--only NAME]
//! [--release]`: the containment campaign of issue 29. The real `cairn` binary is
//! started on SQLite (a temporary directory) or PostgreSQL (a fresh database, dropped
//! after); a neighbour tenant runs deposits with read-your-writes reads from several
//! clients the whole time, and each attack of the table (`attacks.rs`) is
//! played by a tenant of its own. Per attack: the neighbour's p99 and throughput in
//! the window just before it and during it, and their ratios; the neighbour's failed
//! requests; whether a neighbour projection is parked; the server's RSS peak; the
//! attacker's refusal counters from its usage and its answers by status.
//!
//! It reports timings and does not judge them (on a loaded machine they are noise);
//! it fails on what must hold whatever the load: a neighbour request answered 5xx or
//! not at all, a neighbour projection parked, the server gone, RSS above 2 GiB.

mod attacks;
mod component;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::blocking::Client;
use serde_json::Value;

use crate::bench::server::status_kib;
use crate::chaos::Server;
use crate::neighbour::Neighbour;

const OPERATOR: &str = "hostile-operator";
const NEIGHBOUR: &str = "neighbour";
/// The server's resident memory may never pass this, whatever the attack.
const RSS_LIMIT_KIB: u64 = 2 << 20;

/// `cargo xtask hostile`'s arguments.
#[derive(clap::Args, Debug, Default)]
pub(crate) struct Args {
    /// Which store the server runs on.
    #[arg(long, value_enum, default_value_t = Backend::Both)]
    pub(crate) backend: Backend,
    /// A CI-sized run: short windows, fewer clients, smaller attacks.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Only this attack (see `attacks::NAMES`).
    #[arg(long, value_name = "NAME")]
    pub(crate) only: Option<String>,
    /// Build and run a release server (the held-out check runs against one).
    #[arg(long)]
    pub(crate) release: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
    #[default]
    Both,
}

/// The campaign's sizes: windows, clients, how hard each attack pushes.
#[derive(Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) quick: bool,
    /// The neighbour measured idle just before an attack.
    pub(crate) baseline: Duration,
    /// The neighbour measured during an attack (after `WARM_UP`).
    pub(crate) attack: Duration,
    /// Neighbour clients.
    pub(crate) clients: usize,
    /// An attacker's requests may take this long (a compile, an import).
    pub(crate) attacker_timeout: Duration,
}

/// An attack runs this long before the window it is measured in opens.
const WARM_UP: Duration = Duration::from_millis(200);

impl Timing {
    fn new(quick: bool) -> Timing {
        if quick {
            Timing {
                quick,
                baseline: Duration::from_millis(600),
                attack: Duration::from_millis(1200),
                clients: 4,
                attacker_timeout: Duration::from_secs(15),
            }
        } else {
            Timing {
                quick,
                baseline: Duration::from_secs(4),
                attack: Duration::from_secs(12),
                clients: 16,
                attacker_timeout: Duration::from_secs(300),
            }
        }
    }

    /// `quick` in the quick form, else `full`.
    pub(crate) fn pick<T>(&self, quick: T, full: T) -> T {
        if self.quick { quick } else { full }
    }
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    if let Some(only) = &args.only
        && !attacks::NAMES.contains(&only.as_str())
    {
        bail!(
            "no attack {only:?}; the attacks are {}",
            attacks::NAMES.join(", ")
        );
    }
    crate::build_plugins::run(root)?;
    let binary = crate::chaos::build_server(root, args.release)?;
    let timing = Timing::new(args.quick);
    let backends: &[Backend] = match args.backend {
        Backend::Both => &[Backend::Sqlite, Backend::Postgres],
        Backend::Sqlite => &[Backend::Sqlite],
        Backend::Postgres => &[Backend::Postgres],
    };
    let mut tables = Vec::new();
    for &backend in backends {
        let backend_started = Instant::now();
        let rows = campaign(root, &binary, backend, timing, args.only.as_deref())?;
        tables.push((backend, rows, backend_started.elapsed()));
    }
    let build = if args.release { "release" } else { "debug" };
    let form = if args.quick { "quick" } else { "full" };
    let mut failed = Vec::new();
    for (backend, rows, took) in &tables {
        println!();
        println!(
            "hostile campaign: {backend:?}, {form}, {build} build, {} neighbour clients, \
             windows {:.1} s before / {:.1} s during, {:.0} s",
            timing.clients,
            timing.baseline.as_secs_f64(),
            timing.attack.as_secs_f64(),
            took.as_secs_f64()
        );
        print_table(rows);
        for row in rows {
            for failure in &row.failures {
                failed.push(format!("{backend:?} {}: {failure}", row.name));
            }
        }
    }
    println!("wall time: {:.1} s", started.elapsed().as_secs_f64());
    if !failed.is_empty() {
        for failure in &failed {
            println!("✗ {failure}");
        }
        bail!("the hostile campaign found {} failures", failed.len());
    }
    println!("==> hostile campaign passed (correctness; timings are reported, not judged)");
    Ok(())
}

/// One attack's line of the table.
pub(crate) struct Row {
    name: &'static str,
    before: Window,
    during: Window,
    parked: Vec<String>,
    rss_peak_kib: u64,
    refusals: Vec<String>,
    attacker: BTreeMap<u16, u64>,
    notes: Vec<String>,
    failures: Vec<String>,
}

fn print_table(rows: &[Row]) {
    println!(
        "| attack | neighbour p99 before → during | × | throughput before → during (/s) | × \
         | neighbour failures | parked | RSS peak | attacker refusals (usage) | attacker answers | notes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let p99 = ratio(r.during.p99_ms, r.before.p99_ms);
        let rate = ratio(r.during.rate, r.before.rate);
        println!(
            "| {} | {:.1} → {:.1} ms | {p99} | {:.0} → {:.0} | {rate} | {} | {} | {} MiB | {} | {} | {} |",
            r.name,
            r.before.p99_ms,
            r.during.p99_ms,
            r.before.rate,
            r.during.rate,
            crate::campaign::statuses_line(&merge(&r.before.failures, &r.during.failures)),
            if r.parked.is_empty() {
                "no".to_owned()
            } else {
                format!("YES: {}", r.parked.join("; "))
            },
            r.rss_peak_kib / 1024,
            if r.refusals.is_empty() {
                "none".to_owned()
            } else {
                r.refusals.join(", ")
            },
            crate::campaign::statuses_line(&r.attacker),
            r.notes.join("; "),
        );
    }
}

fn ratio(during: f64, before: f64) -> String {
    if before > 0.0 {
        format!("{:.2}", during / before)
    } else {
        "–".to_owned()
    }
}

fn merge(a: &BTreeMap<u16, u64>, b: &BTreeMap<u16, u64>) -> BTreeMap<u16, u64> {
    let mut all = a.clone();
    for (status, n) in b {
        *all.entry(*status).or_insert(0) += n;
    }
    all
}

/// A fresh PostgreSQL database, dropped when this is.
struct Database(String);

impl Drop for Database {
    fn drop(&mut self) {
        if let Err(error) = crate::chaos::drop_postgres_database(&self.0) {
            eprintln!("dropping {}: {error:#}", self.0);
        }
    }
}

/// One backend's run: a server, the neighbour, every attack in turn.
fn campaign(
    root: &Path,
    binary: &Path,
    backend: Backend,
    timing: Timing,
    only: Option<&str>,
) -> anyhow::Result<Vec<Row>> {
    let scratch =
        std::env::temp_dir().join(format!("cairn-hostile-{}-{backend:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let database = match backend {
        Backend::Postgres => Some(Database(crate::chaos::fresh_postgres_database("hostile")?)),
        _ => None,
    };
    let log = scratch.join("server.log");
    let mut server = Server::new(
        binary.to_owned(),
        scratch.join("data"),
        database.as_ref().map(|d| d.0.clone()),
        OPERATOR,
    )?
    .with_log(log.clone());
    server.start()?;
    let pid = server.pid().context("the server's pid")?;
    let base = server.base.clone();
    let http = Client::builder().timeout(Duration::from_secs(60)).build()?;
    crate::faults::fleet::wait_ready(&http, &base)?;
    let token = crate::chaos::setup(root, &http, &base, OPERATOR, NEIGHBOUR)?;
    println!(
        "==> hostile on {backend:?}: {} neighbour clients, {} attacks",
        timing.clients,
        only.map_or(attacks::NAMES.len(), |_| 1)
    );
    let ctx = Ctx {
        root: root.to_owned(),
        base: base.clone(),
        http,
        timing,
        neighbour_token: token.clone(),
    };
    let rss = RssSampler::start(pid);
    let load = Load::start(&base, &token, timing.clients);
    let mut rows = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        for mut attack in attacks::all(timing) {
            if only.is_some_and(|only| only != attack.name()) {
                continue;
            }
            let row = play(&ctx, &mut server, &load, &rss, attack.as_mut())?;
            let crashed = row
                .failures
                .iter()
                .any(|f| f.starts_with("the server exited"));
            rows.push(row);
            if crashed {
                break;
            }
        }
        Ok(())
    })();
    load.stop();
    rss.stop();
    if let Err(error) = result {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(20).collect();
        eprintln!(
            "server log (last lines, newest first):\n{}",
            tail.join("\n")
        );
        return Err(error);
    }
    let hwm = status_kib(pid, "VmHWM:").unwrap_or(0);
    println!("    server VmHWM over the run: {} MiB", hwm / 1024);
    drop(server);
    drop(database);
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(rows)
}

/// One attack: its preparation, the window before it, the attack and the window
/// during it, then what it left behind.
fn play(
    ctx: &Ctx,
    server: &mut Server,
    load: &Load,
    rss: &RssSampler,
    attack: &mut dyn attacks::Attack,
) -> anyhow::Result<Row> {
    let name = attack.name();
    println!("==> {name}: {}", attack.what());
    attack
        .prepare(ctx)
        .with_context(|| format!("preparing {name}"))?;
    let usage_before = ctx.usage(&attack.tenant())?;
    let before_from = Instant::now();
    std::thread::sleep(ctx.timing.baseline);
    let before_to = Instant::now();
    let crew = Crew::new(ctx.timing.attacker_timeout)?;
    attack.start(ctx, &crew)?;
    std::thread::sleep(WARM_UP);
    let during_from = Instant::now();
    let mut notes = Vec::new();
    attack.during(ctx, &mut notes)?;
    let planned = during_from + ctx.timing.attack;
    if let Some(left) = planned.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
    let during_to = Instant::now();
    let attacker = crew.stop(
        ctx.timing
            .pick(Duration::from_secs(2), Duration::from_secs(30)),
    );
    attack.finish(ctx, &mut notes)?;
    let mut failures = Vec::new();
    if let Some(status) = server.exited() {
        failures.push(format!("the server exited: {status}"));
    }
    let before = load.window(before_from, before_to);
    let during = load.window(during_from, during_to);
    let rss_peak_kib = rss.peak(before_from, Instant::now());
    if rss_peak_kib > RSS_LIMIT_KIB {
        failures.push(format!("server RSS {} MiB", rss_peak_kib / 1024));
    }
    let mut parked = Vec::new();
    let mut refusals = Vec::new();
    if failures.is_empty() {
        parked = ctx.parked()?;
        refusals = refusal_deltas(&usage_before, &ctx.usage(&attack.tenant())?);
    }
    if !parked.is_empty() {
        failures.push(format!(
            "neighbour projection parked: {}",
            parked.join("; ")
        ));
    }
    for (status, n) in merge(&before.failures, &during.failures) {
        if status == 0 || status >= 500 || status == 409 {
            failures.push(format!("{n} neighbour requests answered {status}"));
        }
    }
    let row = Row {
        name,
        before,
        during,
        parked,
        rss_peak_kib,
        refusals,
        attacker,
        notes,
        failures,
    };
    println!(
        "    neighbour p99 {:.1} → {:.1} ms, throughput {:.0} → {:.0}/s, RSS peak {} MiB; attacker {}; {}",
        row.before.p99_ms,
        row.during.p99_ms,
        row.before.rate,
        row.during.rate,
        row.rss_peak_kib / 1024,
        crate::campaign::statuses_line(&row.attacker),
        row.notes.join("; ")
    );
    for failure in &row.failures {
        println!("    ✗ {failure}");
    }
    // Let what the attack queued drain a little before the next baseline.
    std::thread::sleep(
        ctx.timing
            .pick(Duration::from_millis(200), Duration::from_secs(3)),
    );
    Ok(row)
}

/// The usage counters that are not consumption (refusals, limits hit, traps…) that
/// moved during the attack, as `name +n`. Whatever counters the server has: new
/// ones show up here without a change.
fn refusal_deltas(before: &Value, after: &Value) -> Vec<String> {
    const CONSUMPTION: [&str; 5] = [
        "events_stored",
        "bytes_stored",
        "commands",
        "plugin_calls",
        "plugin_time_ms",
    ];
    let Some(after) = after.as_object() else {
        return Vec::new();
    };
    after
        .iter()
        .filter(|(key, _)| !CONSUMPTION.contains(&key.as_str()))
        .filter_map(|(key, value)| {
            let delta = value.as_f64()? - before[key].as_f64().unwrap_or(0.0);
            (delta != 0.0).then(|| format!("{key} +{delta}"))
        })
        .collect()
}

/// What every attack needs of the running server (cloned into attack threads).
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) root: PathBuf,
    pub(crate) base: String,
    pub(crate) http: Client,
    pub(crate) timing: Timing,
    pub(crate) neighbour_token: String,
}

impl Ctx {
    /// Creates tenant `id` (default limits); its token.
    pub(crate) fn tenant(&self, id: &str) -> anyhow::Result<String> {
        crate::bench_long::create_tenant_as(&self.http, &self.base, OPERATOR, id)
    }

    /// Creates tenant `id` with `bytes` uploaded as its plugin `name`; its token.
    pub(crate) fn tenant_with(
        &self,
        id: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<String> {
        let token = self.tenant(id)?;
        let (status, _, body) = self.upload(&self.http, id, &token, name, bytes);
        anyhow::ensure!(
            status == 201,
            "uploading {name} to {id} answered {status}: {body}"
        );
        Ok(token)
    }

    /// Uploads `bytes` as plugin `name` of `tenant`: the status (0: no answer), how
    /// long it took, and the answer's body (to say why an upload was refused).
    pub(crate) fn upload(
        &self,
        http: &Client,
        tenant: &str,
        token: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> (u16, Duration, String) {
        let sent = Instant::now();
        let (status, body) = match http
            .put(format!("{}/t/{tenant}/plugins/{name}", self.base))
            .bearer_auth(token)
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
        {
            Ok(answer) => (answer.status().as_u16(), answer.text().unwrap_or_default()),
            Err(error) => (0, error.to_string()),
        };
        (status, sent.elapsed(), body)
    }

    /// A built component: `target/{dir}/{name}.wasm`.
    pub(crate) fn component(&self, dir: &str, name: &str) -> anyhow::Result<Vec<u8>> {
        let path = self
            .root
            .join("target")
            .join(dir)
            .join(format!("{name}.wasm"));
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// `POST /t/{tenant}/import` of `body`; the answer.
    pub(crate) fn import(&self, tenant: &str, token: &str, body: String) -> anyhow::Result<Value> {
        Ok(self
            .http
            .post(format!("{}/t/{tenant}/import", self.base))
            .bearer_auth(token)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()?
            .error_for_status()?
            .json()?)
    }

    fn usage(&self, tenant: &str) -> anyhow::Result<Value> {
        let tenant: Value = self
            .http
            .get(format!("{}/admin/tenants/{tenant}", self.base))
            .bearer_auth(OPERATOR)
            .send()?
            .error_for_status()?
            .json()?;
        Ok(tenant["usage"].clone())
    }

    /// The neighbour's parked projection builds.
    fn parked(&self) -> anyhow::Result<Vec<String>> {
        let view: Value = self
            .http
            .get(format!("{}/t/{NEIGHBOUR}/projections/balances", self.base))
            .bearer_auth(&self.neighbour_token)
            .send()?
            .error_for_status()?
            .json()?;
        Ok(crate::campaign::parked_builds(&view))
    }
}

/// An attack's threads: they loop until told to stop, counting the attacker's
/// answers by status (0: none came).
pub(crate) struct Crew {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) http: Client,
    answers: Arc<Mutex<BTreeMap<u16, u64>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Crew {
    fn new(timeout: Duration) -> anyhow::Result<Crew> {
        Ok(Crew {
            stop: Arc::new(AtomicBool::new(false)),
            http: Client::builder()
                .timeout(timeout)
                .pool_max_idle_per_host(128)
                .build()?,
            answers: Arc::default(),
            threads: Mutex::default(),
        })
    }

    /// Runs `work` on `n` threads, each until the crew stops; `work` gets the thread's
    /// index and returns the status of one request (`None`: nothing to count).
    pub(crate) fn spawn(
        &self,
        n: usize,
        work: impl Fn(usize) -> Option<u16> + Send + Sync + 'static,
    ) {
        let work = Arc::new(work);
        for i in 0..n {
            let (stop, answers, work) = (self.stop.clone(), self.answers.clone(), work.clone());
            self.threads
                .lock()
                .expect("crew")
                .push(std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(status) = work(i) {
                            *answers.lock().expect("crew").entry(status).or_insert(0) += 1;
                        }
                    }
                }));
        }
    }

    /// Counts one answer of a request made outside `spawn`.
    pub(crate) fn count(&self, status: u16) {
        *self
            .answers
            .lock()
            .expect("crew")
            .entry(status)
            .or_insert(0) += 1;
    }

    /// Tells the threads to stop and waits up to `linger` for requests in flight
    /// (a compile, an import); threads still waiting then are left to end with the
    /// server. The attacker's answers by status.
    fn stop(self, linger: Duration) -> BTreeMap<u16, u64> {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + linger;
        let threads = std::mem::take(&mut *self.threads.lock().expect("crew"));
        let mut left = 0;
        for thread in threads {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                left += 1;
            }
        }
        let mut answers = self.answers.lock().expect("crew").clone();
        if left > 0 {
            // Requests still in flight: counted as unanswered in the table.
            *answers.entry(0).or_insert(0) += left;
        }
        answers
    }
}

/// One neighbour round: a deposit (timed) and the read of its own write.
struct Sample {
    sent: Instant,
    took: Duration,
    command: u16,
    read: u16,
}

/// The neighbour's clients, running from the first attack to the last.
struct Load {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// The neighbour in one window of time.
#[derive(Default)]
pub(crate) struct Window {
    p50_ms: f64,
    p99_ms: f64,
    /// Rounds (a deposit and its read) per second.
    rate: f64,
    /// Requests answered other than 2xx, by status (0: none came).
    failures: BTreeMap<u16, u64>,
}

impl Load {
    fn start(base: &str, token: &str, clients: usize) -> Load {
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|c| {
                let (base, token) = (base.to_owned(), token.to_owned());
                let (samples, stop) = (samples.clone(), stop.clone());
                std::thread::spawn(move || {
                    neighbour_client(&base, &token, c, &samples, &stop);
                })
            })
            .collect();
        Load {
            samples,
            stop,
            threads,
        }
    }

    fn window(&self, from: Instant, to: Instant) -> Window {
        let samples = self.samples.lock().expect("samples");
        let inside: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.sent >= from && s.sent < to)
            .collect();
        let mut window = Window::default();
        let mut latencies: Vec<Duration> = inside.iter().map(|s| s.took).collect();
        latencies.sort();
        let at = |q: f64| {
            latencies
                .get(((latencies.len() as f64 * q) as usize).min(latencies.len().max(1) - 1))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        window.p50_ms = at(0.50);
        window.p99_ms = at(0.99);
        window.rate = inside.len() as f64 / (to - from).as_secs_f64().max(0.001);
        for s in &inside {
            for status in [s.command, s.read] {
                if !(200..300).contains(&status) {
                    *window.failures.entry(status).or_insert(0) += 1;
                }
            }
        }
        window
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// One neighbour client: its own account, deposits and read-your-writes until stopped.
fn neighbour_client(
    base: &str,
    token: &str,
    client: usize,
    samples: &Mutex<Vec<Sample>>,
    stop: &AtomicBool,
) {
    let Ok(http) = Client::builder().timeout(Duration::from_secs(30)).build() else {
        return;
    };
    let account = format!("c{client}");
    let neighbour = loop {
        match Neighbour::open_account(&http, base, NEIGHBOUR, token, &account) {
            Ok(neighbour) => break neighbour,
            Err(_) if !stop.load(Ordering::Relaxed) => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(_) => return,
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let deposit = neighbour.deposit_answer(&http);
        let read = match deposit.body["position"].as_u64() {
            Some(position) if deposit.status == 200 => {
                neighbour.read_your_write(&http, position).status
            }
            // No write to read back: the round failed at its command.
            _ => 200,
        };
        samples.lock().expect("samples").push(Sample {
            sent,
            took: deposit.took,
            command: deposit.status,
            read,
        });
    }
}

/// The server's resident memory, sampled every 100 ms.
struct RssSampler {
    samples: Arc<Mutex<Vec<(Instant, u64)>>>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let samples: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (samples, stop) = (samples.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(kib) = status_kib(pid, "VmRSS:") {
                        samples.lock().expect("rss").push((Instant::now(), kib));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        RssSampler {
            samples,
            stop,
            thread,
        }
    }

    fn peak(&self, from: Instant, to: Instant) -> u64 {
        self.samples
            .lock()
            .expect("rss")
            .iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .map(|(_, kib)| *kib)
            .max()
            .unwrap_or(0)
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}
