//! The load generator: deposits over HTTP/1.1 keep-alive connections, one blocking
//! thread per client writing each request with one `write` and parsing only the status
//! line and `content-length` of the answer. No HTTP library, no async runtime between
//! the clients and their sockets: what the generator costs is measured (its own CPU,
//! from `getrusage`) and printed beside the server's.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::blocking::Client;
use serde_json::json;

use super::percentile_ms;
use super::server::cpu_seconds;

/// One keep-alive connection.
pub(crate) struct Connection {
    address: String,
    stream: Option<TcpStream>,
    buffer: Vec<u8>,
}

impl Connection {
    /// `base` is `http://HOST:PORT`.
    pub(crate) fn new(base: &str) -> Connection {
        Connection {
            address: base.trim_start_matches("http://").to_owned(),
            stream: None,
            buffer: Vec::with_capacity(4096),
        }
    }

    /// POSTs `body` (JSON) to `path` with the bearer `token`; the status code. The
    /// connection is reopened when the server closed it.
    pub(crate) fn post(&mut self, path: &str, token: &str, body: &str) -> anyhow::Result<u16> {
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            self.address,
            body.len()
        );
        for attempt in 0..2 {
            if self.stream.is_none() {
                let stream = TcpStream::connect(&self.address)?;
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(Duration::from_secs(60)))?;
                self.stream = Some(stream);
                self.buffer.clear();
            }
            match self.exchange(request.as_bytes()) {
                Ok((status, keep)) => {
                    if !keep {
                        self.stream = None;
                    }
                    return Ok(status);
                }
                // A keep-alive connection the server closed meanwhile: once more.
                Err(_) if attempt == 0 => self.stream = None,
                Err(error) => return Err(error),
            }
        }
        unreachable!()
    }

    /// Writes the request, reads one answer: its status and whether the connection
    /// stays open.
    fn exchange(&mut self, request: &[u8]) -> anyhow::Result<(u16, bool)> {
        let stream = self.stream.as_mut().expect("connected");
        stream.write_all(request)?;
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                bail!("the server closed the connection");
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        };
        let head = std::str::from_utf8(&self.buffer[..head_end])?.to_ascii_lowercase();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .context("no status")?
            .parse()?;
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
        };
        if header("transfer-encoding:").is_some() {
            bail!("chunked answers are not read here");
        }
        let length: usize = header("content-length:").map_or(Ok(0), |v| v.parse())?;
        let keep = header("connection:").is_none_or(|v| v != "close");
        while self.buffer.len() < head_end + length {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                bail!("the server closed the connection mid-answer");
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
        self.buffer.drain(..head_end + length);
        Ok((status, keep))
    }
}

/// The bench tenant's `max_concurrent_calls`: `CAIRN_BENCH_CALLS`, else 48 (the
/// most a tenant may have; 16 is the default a tenant is created with).
fn bench_calls() -> anyhow::Result<u32> {
    std::env::var("CAIRN_BENCH_CALLS").map_or(Ok(48), |v| {
        v.parse()
            .with_context(|| format!("CAIRN_BENCH_CALLS={v} is not a number"))
    })
}

/// A tenant `bench` with the account aggregate and `streams` opened accounts (written
/// by the bulk import: opening 100,000 accounts by command would take minutes); its
/// token.
pub(crate) fn prepare(root: &std::path::Path, base: &str, streams: u64) -> anyhow::Result<String> {
    let http = Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let created: serde_json::Value = http
        .post(format!("{base}/admin/tenants"))
        .bearer_auth("bench")
        // Its own request rate raised: a fast machine passes the default 10,000/s.
        .json(&json!({"id": "bench", "limits": {
            "max_concurrent_calls": bench_calls()?,
            "requests_per_second": 1_000_000,
        }}))
        .send()?
        .error_for_status()?
        .json()?;
    let token = created["token"].as_str().context("token")?.to_owned();
    let wasm = std::fs::read(root.join("target/plugins/account.wasm"))?;
    http.put(format!("{base}/t/bench/plugins/account"))
        .bearer_auth(&token)
        .body(wasm)
        .send()?
        .error_for_status()?;
    let mut opened = String::new();
    for s in 0..streams {
        opened.push_str(
            &json!({"stream": format!("account-{s}"), "type": "Opened", "data": {"owner": "bench"}})
                .to_string(),
        );
        opened.push('\n');
    }
    http.post(format!("{base}/t/bench/import"))
        .bearer_auth(&token)
        .body(opened)
        .send()?
        .error_for_status()?;
    Ok(token)
}

/// Throughput and latency of one load run, and what it cost.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Load {
    pub per_second: f64,
    pub p50: f64,
    pub p99: f64,
    /// Cores the server used on average during the run.
    pub server_cores: f64,
    /// Cores the load generator used on average during the run.
    pub client_cores: f64,
}

/// `commands` deposits from `clients` threads over `streams` accounts of tenant
/// `bench`, against the server with process id `pid`.
pub(crate) fn drive(
    base: &str,
    pid: u32,
    token: &str,
    clients: u64,
    commands: u64,
    streams: u64,
) -> anyhow::Result<Load> {
    let (server_before, client_before) = (cpu_seconds(pid)?, own_cpu_seconds());
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let (token, base) = (token.to_owned(), base.to_owned());
            std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
                let mut connection = Connection::new(&base);
                let mut latencies = Vec::with_capacity((commands / clients + 1) as usize);
                let body = r#"{"type":"Deposit","payload":{"amount":1}}"#;
                let mut i = c;
                while i < commands {
                    let stream = (i * 7919) % streams;
                    let path = format!("/t/bench/aggregates/account/{stream}/commands");
                    let sent = Instant::now();
                    let status = connection.post(&path, &token, body)?;
                    if !(200..300).contains(&status) {
                        bail!("a command was answered {status}");
                    }
                    latencies.push(sent.elapsed());
                    i += clients;
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.join().expect("worker panicked")?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    Ok(Load {
        per_second: latencies.len() as f64 / elapsed,
        p50: percentile_ms(&latencies, 0.5),
        p99: percentile_ms(&latencies, 0.99),
        server_cores: (cpu_seconds(pid)? - server_before) / elapsed,
        client_cores: (own_cpu_seconds() - client_before) / elapsed,
    })
}

/// User and system CPU of this process (every thread) so far, in seconds.
pub(crate) fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
