//! The attacks of issue 29's table (its two memory rows as `start-memory` and `memory`),
//! each played by a tenant of its own (`evil-NAME`,
//! so its usage counters are its alone): what it prepares outside the measured
//! windows (plugins, history), the threads it runs during its window, and what it
//! notes afterwards.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::{Body, Client};
use serde_json::{Value, json};

use super::component::{many_functions, memory_touched_at_start, with_nonce};
use super::{Crew, Ctx, NEIGHBOUR, Timing};

/// Every attack's name, in the table's order (`--only NAME`).
pub(crate) const NAMES: [&str; 10] = [
    "import-tiny",
    "import-big",
    "uploads",
    "start-memory",
    "memory",
    "upcaster",
    "verify",
    "loops",
    "missing-plugin",
    "drip",
];

pub(crate) trait Attack {
    fn name(&self) -> &'static str;
    /// One line: what the attacker does.
    fn what(&self) -> String;
    /// The attacker's tenant.
    fn tenant(&self) -> String {
        format!("evil-{}", self.name())
    }
    /// What the attack needs before the window before it opens.
    fn prepare(&mut self, ctx: &Ctx) -> anyhow::Result<()>;
    /// Starts the attack's threads on `crew`.
    fn start(&mut self, ctx: &Ctx, crew: &Crew) -> anyhow::Result<()>;
    /// Measures something of the neighbour's while the attack runs (the window stays
    /// open at least until this returns).
    fn during(&mut self, _ctx: &Ctx, _notes: &mut Vec<String>) -> anyhow::Result<()> {
        Ok(())
    }
    /// After the attack's threads stopped: what it notes.
    fn finish(&mut self, _ctx: &Ctx, _notes: &mut Vec<String>) -> anyhow::Result<()> {
        Ok(())
    }
}

pub(crate) fn all(timing: Timing) -> Vec<Box<dyn Attack>> {
    vec![
        Box::new(ImportTiny::default()),
        Box::new(ImportBig {
            lines: timing.pick(24, 1500),
            ..ImportBig::default()
        }),
        Box::new(Uploads {
            functions: timing.pick(20_000, 60_000),
            ..Uploads::default()
        }),
        Box::new(Calls {
            name: "start-memory",
            command: "Deposit",
            clients: timing.pick(6, 16),
            what: "each instance's start function touches 60 MiB of memory (the \
                   tenant's limit is 64 MiB)",
            plugin: Some(|ctx| memory_touched_at_start(&ctx.root, 960)),
            ..Calls::default()
        }),
        Box::new(Calls {
            name: "memory",
            command: "Bomb",
            clients: timing.pick(6, 16),
            what: "each call grows its memory to the tenant's 64 MiB and touches it",
            ..Calls::default()
        }),
        Box::new(Upcaster {
            stored: timing.pick(200, 1000),
            ..Upcaster::default()
        }),
        Box::new(Verify {
            events: timing.pick(10_000, 200_000),
            ..Verify::default()
        }),
        Box::new(Calls {
            name: "loops",
            command: "Loop",
            clients: timing.pick(16, 64),
            what: "each call loops until its CPU budget runs out",
            ..Calls::default()
        }),
        Box::new(Calls {
            name: "missing-plugin",
            command: "Deposit",
            clients: timing.pick(8, 16),
            what: "commands to a plugin the tenant never uploaded, as fast as answered",
            plugin: None,
            ..Calls::default()
        }),
        Box::new(Drip {
            connections: timing.pick(20, 50),
            every: timing.pick(Duration::from_millis(700), Duration::from_secs(5)),
            ..Drip::default()
        }),
    ]
}

/// An NDJSON body made line by line as the server reads it: `line(i)` gives line `i`,
/// or `None` to end the body. Lines are never cut, so a stopped body is still NDJSON.
struct Lines<F> {
    line: F,
    next: u64,
    pending: Vec<u8>,
    at: usize,
}

impl<F: FnMut(u64) -> Option<Vec<u8>> + Send + 'static> Lines<F> {
    fn body(line: F) -> Body {
        Body::new(Lines {
            line,
            next: 0,
            pending: Vec::new(),
            at: 0,
        })
    }
}

impl<F: FnMut(u64) -> Option<Vec<u8>>> Read for Lines<F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.pending.len() {
            match (self.line)(self.next) {
                Some(line) => {
                    self.next += 1;
                    self.pending = line;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Sends `body` as an import of `tenant`; the status, and the answer's `events`.
fn import(http: &Client, ctx: &Ctx, tenant: &str, token: &str, body: Body) -> (u16, u64) {
    match http
        .post(format!("{}/t/{tenant}/import", ctx.base))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
    {
        Ok(answer) => {
            let status = answer.status().as_u16();
            let events = answer
                .json::<Value>()
                .ok()
                .and_then(|v| {
                    v["events"]
                        .as_u64()
                        .or(v["error"]["imported_events"].as_u64())
                })
                .unwrap_or(0);
            (status, events)
        }
        Err(_) => (0, 0),
    }
}

/// (1) Imports of tiny lines, streamed without a pause for the whole window.
#[derive(Default)]
struct ImportTiny {
    token: String,
    events: Arc<AtomicU64>,
}

impl Attack for ImportTiny {
    fn name(&self) -> &'static str {
        "import-tiny"
    }
    fn what(&self) -> String {
        "two imports at a time of tiny NDJSON lines, streamed for the whole window".into()
    }
    fn prepare(&mut self, ctx: &Ctx) -> anyhow::Result<()> {
        self.token = ctx.tenant(&self.tenant())?;
        Ok(())
    }
    fn start(&mut self, ctx: &Ctx, crew: &Crew) -> anyhow::Result<()> {
        let (http, ctx, token, tenant) = (
            crew.http.clone(),
            ctx.clone(),
            self.token.clone(),
            self.tenant(),
        );
        let (stop, events) = (crew.stop.clone(), self.events.clone());
        crew.spawn(2, move |worker| {
            let stop = stop.clone();
            let body = Lines::body(move |i| {
                (!stop.load(Ordering::Relaxed)).then(|| {
                    format!(
                        "{{\"stream\":\"t{worker}-{}\",\"type\":\"T\",\"data\":{{}}}}\n",
                        i / 100
                    )
                    .into_bytes()
                })
            });
            let (status, n) = import(&http, &ctx, &tenant, &token, body);
            events.fetch_add(n, Ordering::Relaxed);
            Some(status)
        });
        Ok(())
    }
    fn finish(&mut self, _ctx: &Ctx, notes: &mut Vec<String>) -> anyhow::Result<()> {
        notes.push(format!(
            "{} events imported",
            self.events.load(Ordering::Relaxed)
        ));
        Ok(())
    }
}

/// (2) One import body of many lines of about 1 MiB each (each under
/// `max_body_bytes`).
#[derive(Default)]
struct ImportBig {
    lines: u64,
    token: String,
    sent: Arc<AtomicU64>,
    events: Arc<AtomicU64>,
}

impl Attack for ImportBig {
    fn name(&self) -> &'static str {
        "import-big"
    }
    fn what(&self) -> String {
        format!("one import of {} lines of ~1 MiB", self.lines)
    }
    fn prepare(&mut self, ctx: &Ctx) -> anyhow::Result<()> {
        self.token = ctx.tenant(&self.tenant())?;
        Ok(())
    }
    fn start(&mut self, ctx: &Ctx, crew: &Crew) -> anyhow::Result<()> {
        let (http, ctx, token, tenant) = (
            crew.http.clone(),
            ctx.clone(),
            self.token.clone(),
            self.tenant(),
        );
        let (stop, sent, events, lines) = (
            crew.stop.clone(),
            self.sent.clone(),
            self.events.clone(),
            self.lines,
        );
        let done = Arc::new(AtomicBool::new(false));
        crew.spawn(1, move |_| {
            if done.swap(true, Ordering::Relaxed) {
                // One import only: the thread idles until the crew stops.
                std::thread::sleep(Duration::from_millis(50));
                return None;
            }
            let pad = "x".repeat((1 << 20) - 256);
            let (stop, sent) = (stop.clone(), sent.clone());
            let body = Lines::body(move |i| {
                (i < lines && !stop.load(Ordering::Relaxed)).then(|| {
                    sent.fetch_add(1, Ordering::Relaxed);
                    format!(
                        "{{\"stream\":\"big-{i}\",\"type\":\"Big\",\"data\":{{\"pad\":\"{pad}\"}}}}\n"
                    )
                    .into_bytes()
                })
            });
            let (status, n) = import(&http, &ctx, &tenant, &token, body);
            events.fetch_add(n, Ordering::Relaxed);
            Some(status)
        });
        Ok(())
    }
    fn finish(&mut self, _ctx: &Ctx, notes: &mut Vec<String>) -> anyhow::Result<()> {
        notes.push(format!(
            "{} lines sent, {} events imported",
            self.sent.load(Ordering::Relaxed),
            self.events.load(Ordering::Relaxed)
        ));
        Ok(())
    }
}

/// (3) Uploads, one after another from two clients, of a component of tens of
/// thousands of functions (each with a new nonce, so each is compiled); the
/// neighbour's own upload of a small plugin is timed idle and during the attack.
#[derive(Default)]
struct Uploads {
    functions: u32,
    token: String,
    bomb: Arc<Vec<u8>>,
    idle: Duration,
    probes: u64,
}

impl Uploads {
    /// The neighbour uploads `account` (with a new nonce, so it is compiled) as a new
    /// plugin; the status and how long the answer took.
    fn probe(&mut self, ctx: &Ctx) -> anyhow::Result<(u16, Duration, String)> {
        self.probes += 1;
        let bytes = with_nonce(&ctx.component("plugins", "account")?, self.probes);
        Ok(ctx.upload(
            &ctx.http,
            NEIGHBOUR,
            &ctx.neighbour_token,
            &format!("probe-{}", self.probes),
            bytes,
        ))
    }
}

impl Attack for Uploads {
    fn name(&self) -> &'static str {
        "uploads"
    }
    fn what(&self) -> String {
        format!(
            "two clients uploading a {}-function component again and again",
            self.functions
        )
    }
    fn prepare(&mut self, ctx: &Ctx) -> anyhow::Result<()> {
        self.token = ctx.tenant(&self.tenant())?;
        self.bomb = Arc::new(many_functions(self.functions));
        let (status, took, body) = self.probe(ctx)?;
        anyhow::ensure!(
            status == 201,
            "the neighbour's idle upload answered {status}: {body}"
        );
        self.idle = took;
        Ok(())
    }
    fn start(&mut self, ctx: &Ctx, crew: &Crew) -> anyhow::Result<()> {
        let ctx = ctx.clone();
        let (http, token, tenant, bomb) = (
            crew.http.clone(),
            self.token.clone(),
            self.tenant(),
            self.bomb.clone(),
        );
        let nonce = AtomicU64::new(0);
        crew.spawn(2, move |_| {
            let n = nonce.fetch_add(1, Ordering::Relaxed);
            Some(
                ctx.upload(&http, &tenant, &token, "bomb", with_nonce(&bomb, n))
                    .0,
            )
        });
        Ok(())
    }
    fn during(&mut self, ctx: &Ctx, notes: &mut Vec<String>) -> anyhow::Result<()> {
        let (status, took, _) = self.probe(ctx)?;
        notes.push(format!(
            "bomb {} KiB; neighbour upload idle {:.2} s, during {:.2} s ({status})",
            self.bomb.len() / 1024,
            self.idle.as_secs_f64(),
            took.as_secs_f64()
        ));
        Ok(())
    }
}

/// How an attack gets the component it uploads.
type Component = fn(&Ctx) -> anyhow::Result<Vec<u8>>;

/// (`start-memory`, `memory`, `loops`, `missing-plugin`) Commands from many clients
/// at once: to the aggregate whose start function touches its memory, to the hostile aggregate (`Bomb`, `Loop`), or
/// to a plugin that does not exist.
struct Calls {
    name: &'static str,
    what: &'static str,
    command: &'static str,
    clients: usize,
    /// The plugin the commands go to, uploaded as `h`; `None`: a missing one.
    plugin: Option<Component>,
    token: String,
}

impl Default for Calls {
    fn default() -> Calls {
        Calls {
            name: "",
            what: "",
            command: "",
            clients: 1,
            plugin: Some(|ctx| ctx.component("hostile", "aggregate")),
            token: String::new(),
        }
    }
}

impl Attack for Calls {
    fn name(&self) -> &'static str {
        self.name
    }
    fn what(&self) -> String {
        format!(
            "{} clients sending `{}`: {}",
            self.clients, self.command, self.what
        )
    }
    fn prepare(&mut self, ctx: &Ctx) -> anyhow::Result<()> {
        self.token = match self.plugin {
            Some(plugin) => ctx.tenant_with(&self.tenant(), "h", plugin(ctx)?)?,
            None => ctx.tenant(&self.tenant())?,
        };
        Ok(())
    }
    fn start(&mut self, ctx: &Ctx, crew: &Crew) -> anyhow::Result<()> {
        let plugin = if self.plugin.is_some() { "h" } else { "nope" };
        let url = format!(
            "{}/t/{}/aggregates/{plugin}/{{}}/commands",
            ctx.base,
            self.tenant()
        );
        let (http, token, command) = (crew.http.clone(), self.token.clone(), self.command);
        crew.spawn(self.clients, move |client| {
            http.post(url.replace("{}", &(client % 8).to_string()))
                .bearer_auth(&token)
                .json(&json!({"type": command, "payload": {"amount": 1}}))
                .send()
                .map_or(Some(0), |r| Some(r.status().as_u16()))
        });
        Ok(())
    }
}

/// (5) An upcaster that makes 100 events of each stored one, read back a thousand
/// stored events a page by several clients.
#[derive(Default)]
struct Upcaster {
    stored: u64,
    token: String,
    bytes_read: Arc<AtomicU64>,
    /// The first refusal's answer, for the notes.
    refusal: Arc<Mutex<Option<String>>>,
}

impl Attack for Upcaster {
    fn name(&self) -> &'static str {
        "upcaster"
    }
    fn what(&self) -> String {
        format!(
            "4 clients reading `?upcast=true&limit=1000` over {} stored events, each upcast \
             to 100, and 10 asking for 1,000",
            self.stored
        )
    }
    fn prepare(&mut self, ctx: &Ctx) -> anyhow::Result<()> {
        let tenant = self.tenant();
        self.token =
            ctx.tenant_with(&tenant, "multiplier", ctx.component("hostile", "upcaster")?)?;
        // Ten stored events asking for more than one event may become, then `stored`
        // of 100 copies each (a page of them is as much as the host makes for a
        // reader).
        let mut body = String::new();
        for i in 0..self.stored + 10 {
            let copies = if i < 10 { 1000 } else { 100 };
            body.push_str(&format!(
                "{{\"stream\":\"boom-{}\",\"type\":\"Boom\",\"data\":{{\"copies\":{copies},\"bytes\":100}}}}\n",
                i % 10
            ));
        }
        ctx.import(&tenant, &self.token, body)?;
        Ok(())
    }
    fn start(&mut self, ctx: &Ctx, crew: &Crew) -> anyhow::Result<()> {
        let (http, token, bytes, refusal) = (
            crew.http.clone(),
            self.token.clone(),
            self.bytes_read.clone(),
            self.refusal.clone(),
        );
        let url = format!("{}/t/{}/events", ctx.base, self.tenant());
        crew.spawn(4, move |client| {
            // Half the clients read the largest page served (past the oversized
            // events), half one that starts with them.
            let after = if client % 2 == 0 { 10 } else { 0 };
            match http
                .get(format!("{url}?after={after}&upcast=true&limit=1000"))
                .bearer_auth(&token)
                .send()
            {
                Ok(answer) => {
                    let status = answer.status().as_u16();
                    let body = answer.bytes().unwrap_or_default();
                    bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    if status != 200 {
                        let mut first = refusal.lock().expect("refusal");
                        if first.is_none() {
                            let text = String::from_utf8_lossy(&body);
                            *first = Some(text.chars().take(200).collect());
                        }
                    }
                    Some(status)
                }
                Err(_) => Some(0),
            }
        });
        Ok(())
    }
    fn finish(&mut self, _ctx: &Ctx, notes: &mut Vec<String>) -> anyhow::Result<()> {
        notes.push(format!(
            "{} MiB read upcast",
            self.bytes_read.load(Ordering::Relaxed) >> 20
        ));
        if let Some(refusal) = self.refusal.lock().expect("refusal").as_ref() {
            notes.push(format!("first refusal: {refusal}"));
        }
        Ok(())
    }
}

/// (6) Candidate versions of `account` uploaded one after another over a long
/// history, each verified by replay.
#[derive(Default)]
struct Verify {
    events: u64,
    token: String,
}

impl Attack for Verify {
    fn name(&self) -> &'static str {
        "verify"
    }
    fn what(&self) -> String {
        format!(
            "candidate versions of `account` uploaded every second over {} events",
            self.events
        )
    }
    fn prepare(&mut self, ctx: &Ctx) -> anyhow::Result<()> {
        let tenant = self.tenant();
        self.token = ctx.tenant_with(&tenant, "account", ctx.component("plugins", "account")?)?;
        // 200 streams, each opened then deposited into.
        let streams = 200;
        let mut sent = 0;
        while sent < self.events {
            let mut body = String::new();
            for _ in 0..50_000.min(self.events - sent) {
                let stream = sent % streams;
                let line = if sent < streams {
                    format!(
                        "{{\"stream\":\"account-v{stream}\",\"type\":\"Opened\",\"data\":{{\"owner\":\"v\"}}}}\n"
                    )
                } else {
                    format!(
                        "{{\"stream\":\"account-v{stream}\",\"type\":\"Deposited\",\"data\":{{\"amount\":1}}}}\n"
                    )
                };
                body.push_str(&line);
                sent += 1;
            }
            ctx.import(&tenant, &self.token, body)?;
        }
        Ok(())
    }
    fn start(&mut self, ctx: &Ctx, crew: &Crew) -> anyhow::Result<()> {
        let ctx = ctx.clone();
        let (http, token, tenant) = (crew.http.clone(), self.token.clone(), self.tenant());
        let account = ctx.component("plugins", "account")?;
        let (nonce, stop) = (AtomicU64::new(0), crew.stop.clone());
        crew.spawn(1, move |_| {
            let n = nonce.fetch_add(1, Ordering::Relaxed);
            let status = ctx
                .upload(&http, &tenant, &token, "account", with_nonce(&account, n))
                .0;
            // One a second (the ten candidates over its 40 s window).
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            Some(status)
        });
        Ok(())
    }
}

/// (9) Imports whose bodies drip a byte every few seconds, holding connections open.
#[derive(Default)]
struct Drip {
    connections: usize,
    every: Duration,
    token: String,
    /// Connections the server closed, or answered, before the window ended.
    closed: Arc<AtomicU64>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Attack for Drip {
    fn name(&self) -> &'static str {
        "drip"
    }
    fn what(&self) -> String {
        format!(
            "{} imports sending one byte every {:.1} s",
            self.connections,
            self.every.as_secs_f64()
        )
    }
    fn prepare(&mut self, ctx: &Ctx) -> anyhow::Result<()> {
        self.token = ctx.tenant(&self.tenant())?;
        Ok(())
    }
    fn start(&mut self, ctx: &Ctx, crew: &Crew) -> anyhow::Result<()> {
        let address = ctx.base.trim_start_matches("http://").to_owned();
        let head = format!(
            "POST /t/{}/import HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {}\r\n\
             content-type: application/x-ndjson\r\ncontent-length: 100000000\r\n\r\n",
            self.tenant(),
            self.token
        );
        for _ in 0..self.connections {
            match TcpStream::connect(&address) {
                Ok(mut stream) => {
                    let _ = stream.write_all(head.as_bytes());
                    self.streams.lock().expect("drip").push(stream);
                }
                // Refused at connect: counted as unanswered.
                Err(_) => crew.count(0),
            }
        }
        let (streams, closed, every, stop) = (
            self.streams.clone(),
            self.closed.clone(),
            self.every,
            crew.stop.clone(),
        );
        crew.spawn(1, move |_| {
            let until = Instant::now() + every;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let mut streams = streams.lock().expect("drip");
            let before = streams.len();
            streams.retain_mut(|s| s.write_all(b" ").is_ok() && open(s));
            closed.fetch_add((before - streams.len()) as u64, Ordering::Relaxed);
            None
        });
        Ok(())
    }
    fn during(&mut self, ctx: &Ctx, notes: &mut Vec<String>) -> anyhow::Result<()> {
        // A new connection of the neighbour's while the drips hold theirs.
        let fresh = Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()?;
        let sent = Instant::now();
        let status = fresh
            .post(format!(
                "{}/t/{NEIGHBOUR}/aggregates/account/fresh/commands",
                ctx.base
            ))
            .bearer_auth(&ctx.neighbour_token)
            .json(&json!({"type": "Open", "payload": {"owner": "fresh"}}))
            .send()
            .map_or(0, |r| r.status().as_u16());
        notes.push(format!(
            "a new neighbour connection answered {status} in {:.0} ms",
            sent.elapsed().as_secs_f64() * 1000.0
        ));
        Ok(())
    }
    fn finish(&mut self, _ctx: &Ctx, notes: &mut Vec<String>) -> anyhow::Result<()> {
        let mut streams = self.streams.lock().expect("drip");
        let still = streams.iter_mut().map(open).filter(|o| *o).count();
        notes.push(format!(
            "{still} of {} drips still open at the end of the window",
            self.connections
        ));
        streams.clear();
        Ok(())
    }
}

/// Whether the server has neither closed nor answered `stream` yet.
fn open(stream: &mut TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    let open =
        matches!(stream.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    let _ = stream.set_nonblocking(false);
    open
}
