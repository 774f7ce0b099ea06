//! `cargo xtask bench-subscribers [--writers N] [--commands M] [--idle I] [--database URL]`:
//! what live subscribers cost writers, and what idle ones cost in memory.
//!
//! A release server; N writer threads send M deposits per phase while 0, 100 and
//! 1,000 live subscribers follow the tenant's log (a tenth of them never read: their
//! sockets fill and stay full). Prints writer commands/s and p50/p99 per phase, then
//! the server's RSS and CPU with I idle subscribers connected (10,000 by default).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::bench::server::{cpu_ticks, rss_kib, ticks_per_second};
use crate::bench::{ReleaseServer, percentile_ms, print_table_head};

/// Subscriber sockets one reader thread drains in turn.
const SOCKETS_PER_READER: usize = 100;

/// `cargo xtask bench-subscribers`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Writer threads.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub writers: u64,
    /// Deposits per phase.
    #[arg(long, value_name = "M", default_value_t = 5000)]
    pub commands: u64,
    /// Idle subscribers held open for the memory measure.
    #[arg(long, value_name = "I", default_value_t = 10_000)]
    pub idle: usize,
    /// The database to run on (pass one of its own: the bench writes a tenant `bench`).
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let (writers, commands, idle) = (args.writers, args.commands, args.idle);
    let database = args.database.clone();
    raise_open_files(idle as u64 + 2000)?;
    // Room for every subscriber and the writers above the default connection cap.
    let max_connections = (idle + 2000).max(10_000).to_string();
    let server = ReleaseServer::start_with(
        root,
        "bench-subscribers-data",
        database.as_deref(),
        &["--max-connections", &max_connections],
    )?;
    let base = server.base.clone();
    let address: SocketAddr = base.trim_start_matches("http://").parse()?;
    let http = Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(writers as usize + 4)
        .build()?;
    let created: Value = http
        .post(format!("{base}/admin/tenants"))
        .bearer_auth("bench")
        .json(&json!({"id": "bench", "limits": {
            "max_concurrent_calls": 48, "max_subscribers": idle.max(2000)
        }}))
        .send()?
        .error_for_status()?
        .json()?;
    let token = created["token"].as_str().context("token")?.to_owned();
    http.put(format!("{base}/t/bench/plugins/account"))
        .bearer_auth(&token)
        .body(std::fs::read(root.join("target/plugins/account.wasm"))?)
        .send()?
        .error_for_status()?;
    for w in 0..writers {
        http.post(format!("{base}/t/bench/aggregates/account/{w}/commands"))
            .bearer_auth(&token)
            .json(&json!({"type": "Open", "payload": {"owner": "bench"}}))
            .send()?
            .error_for_status()?;
    }
    let pid = server.pid();
    let mut rows = Vec::new();
    for subscribers in [0usize, 100, 1000] {
        let head = head(&http, &base, &token)?;
        let never = subscribers / 10;
        let (sockets, stalled) = (0..subscribers)
            .map(|_| subscribe(address, &token, head))
            .collect::<anyhow::Result<Vec<_>>>()?
            .into_iter()
            .enumerate()
            .partition::<Vec<_>, _>(|(i, _)| *i >= never);
        let readers = Readers::start(sockets.into_iter().map(|(_, s)| s).collect());
        std::thread::sleep(Duration::from_secs(1));
        println!(
            "==> {subscribers} subscribers ({never} never reading), {writers} writers, {commands} deposits"
        );
        // CPU of the server and of this process (writers and readers) while writing:
        // on one machine, the readers' share is taken from the server too.
        let (server_cpu, own_cpu) = (cpu_ticks(pid)?, cpu_ticks(std::process::id())?);
        let (per_second, latencies) = drive(&http, &base, &token, writers, commands)?;
        let cpu = (
            (cpu_ticks(pid)? - server_cpu) as f64 / ticks_per_second(),
            (cpu_ticks(std::process::id())? - own_cpu) as f64 / ticks_per_second(),
        );
        let received = readers.stop();
        rows.push((subscribers, per_second, latencies, received, cpu));
        drop(stalled);
    }

    // Idle subscribers: connected, nothing to send them.
    std::thread::sleep(Duration::from_secs(2));
    let rss_before = rss_kib(pid)?;
    let head = head(&http, &base, &token)?;
    println!("==> {idle} idle subscribers");
    let mut held = Vec::with_capacity(idle);
    for _ in 0..idle {
        held.push(subscribe(address, &token, head)?);
    }
    std::thread::sleep(Duration::from_secs(5));
    let rss_idle = rss_kib(pid)?;
    let cpu_before = cpu_ticks(pid)?;
    let quiet = Duration::from_secs(10);
    std::thread::sleep(quiet);
    let cpu = (cpu_ticks(pid)? - cpu_before) as f64 / ticks_per_second() / quiet.as_secs_f64();
    // One event to everyone: the fan-out reaches every idle subscriber.
    let sent = Instant::now();
    http.post(format!("{base}/t/bench/aggregates/account/0/commands"))
        .bearer_auth(&token)
        .json(&json!({"type": "Deposit", "payload": {"amount": 1}}))
        .send()?
        .error_for_status()?;
    let one_command = sent.elapsed();

    print_table_head(database.is_some());
    let baseline = rows[0].1;
    for (subscribers, per_second, latencies, received, (server_cpu, own_cpu)) in &rows {
        println!(
            "| {subscribers} subscribers: writer commands/s, p50 / p99 | {per_second:.0} ({:+.1}%), {:.2} / {:.2} ms |",
            (per_second / baseline - 1.0) * 100.0,
            percentile_ms(latencies, 0.5),
            percentile_ms(latencies, 0.99),
        );
        println!(
            "| {subscribers} subscribers: readers received; CPU server / bench client | {:.1} MB; {server_cpu:.1} s / {own_cpu:.1} s |",
            *received as f64 / 1e6,
        );
    }
    println!(
        "| server RSS, 0 → {idle} idle subscribers | {:.0} MB → {:.0} MB ({:.1} KB each) |",
        rss_before as f64 / 1024.0,
        rss_idle as f64 / 1024.0,
        (rss_idle.saturating_sub(rss_before)) as f64 / idle.max(1) as f64
    );
    println!(
        "| server CPU with {idle} idle subscribers | {:.1}% of a core |",
        cpu * 100.0
    );
    println!(
        "| one command with {idle} idle subscribers | {:.2} ms |",
        one_command.as_secs_f64() * 1000.0
    );
    drop(held);
    drop(server);
    Ok(())
}

fn head(http: &Client, base: &str, token: &str) -> anyhow::Result<u64> {
    let page: Value = http
        .get(format!("{base}/t/bench/events?after=0&limit=1"))
        .bearer_auth(token)
        .send()?
        .error_for_status()?
        .json()?;
    page["head"].as_u64().context("head")
}

/// A live subscription from `after` on a raw socket, its response head read.
fn subscribe(address: SocketAddr, token: &str, after: u64) -> anyhow::Result<TcpStream> {
    let mut socket = TcpStream::connect(address)?;
    write!(
        socket,
        "GET /t/bench/events/live?after={after} HTTP/1.1\r\nHost: {address}\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    socket.read_exact(&mut head)?;
    anyhow::ensure!(
        &head == b"HTTP/1.1 200",
        "subscription refused: {}",
        String::from_utf8_lossy(&head)
    );
    Ok(socket)
}

/// Threads that drain subscriber sockets, each a share of them, counting bytes.
struct Readers {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Readers {
    fn start(sockets: Vec<TcpStream>) -> Readers {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let mut sockets = sockets.into_iter().peekable();
        let mut threads = Vec::new();
        while sockets.peek().is_some() {
            let mine: Vec<TcpStream> = sockets.by_ref().take(SOCKETS_PER_READER).collect();
            let (stop, received) = (stop.clone(), received.clone());
            threads.push(std::thread::spawn(move || {
                for s in &mine {
                    s.set_nonblocking(true).expect("nonblocking");
                }
                let mut buffer = vec![0u8; 256 << 10];
                let mut mine = mine;
                while !stop.load(Ordering::Relaxed) {
                    let mut any = false;
                    for s in &mut mine {
                        if let Ok(n) = s.read(&mut buffer)
                            && n > 0
                        {
                            received.fetch_add(n as u64, Ordering::Relaxed);
                            any = true;
                        }
                    }
                    if !any {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            }));
        }
        Readers {
            stop,
            received,
            threads,
        }
    }

    /// Stops the threads (closing their sockets); the bytes they received.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
        self.received.load(Ordering::Relaxed)
    }
}

/// `commands` deposits from `writers` threads, each on its own account; commands/s and
/// the sorted latencies.
fn drive(
    http: &Client,
    base: &str,
    token: &str,
    writers: u64,
    commands: u64,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let started = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (http, base, token) = (http.clone(), base.to_owned(), token.to_owned());
            std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
                let mut latencies = Vec::new();
                for _ in 0..commands / writers {
                    let sent = Instant::now();
                    http.post(format!("{base}/t/bench/aggregates/account/{w}/commands"))
                        .bearer_auth(&token)
                        .json(&json!({"type": "Deposit", "payload": {"amount": 1}}))
                        .send()?
                        .error_for_status()?;
                    latencies.push(sent.elapsed());
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for thread in threads {
        latencies.extend(thread.join().expect("writer panicked")?);
    }
    let per_second = latencies.len() as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    Ok((per_second, latencies))
}

/// 10,000 subscribers need as many sockets here, and again in the server (a process
/// of its own, which inherits the limit): raise the soft limit towards the hard one.
fn raise_open_files(wanted: u64) -> anyhow::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write or read the struct we own, nothing else.
    unsafe {
        anyhow::ensure!(
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0,
            "getrlimit failed"
        );
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            anyhow::ensure!(
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0,
                "setrlimit failed"
            );
        }
    }
    anyhow::ensure!(
        limit.rlim_cur >= wanted,
        "open files are limited to {} (hard limit); {wanted} are needed: lower --idle",
        limit.rlim_cur
    );
    Ok(())
}
