//! What the fault campaigns share (`chaos`, `faults`): writer threads that send
//! commands with command ids and retry a lost or refused answer with the same id, the
//! ledger of what they were told, and the check of the log afterwards (every
//! acknowledged command exactly once, versions and positions gap-free, the `balances`
//! projection equal to a fold of the log).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::blocking::Client;
use serde_json::{Value, json};

/// Accounts each writer owns (a writer's commands to one account never race its own).
pub(crate) const ACCOUNTS_PER_WRITER: usize = 8;

/// What the writers were told: answered command ids, every answer by status, and when
/// each acknowledgement arrived.
#[derive(Default)]
pub(crate) struct Ledger {
    /// Command id → its stream, for every command answered 200.
    pub answered: Mutex<HashMap<String, String>>,
    pub retries: AtomicU64,
    /// Every answer by host and HTTP status; status 0 counts requests that got no
    /// answer (a refused connection, or none within the client's timeout).
    pub statuses: Mutex<BTreeMap<(usize, u16), u64>>,
    /// When each 200 arrived, and from which host (the writer's `host`).
    pub acks: Mutex<Vec<(Instant, usize)>>,
    /// The first few 500 answers, for the report.
    pub internal_errors: Mutex<Vec<String>>,
}

impl Ledger {
    fn count(&self, host: usize, status: u16) {
        *self
            .statuses
            .lock()
            .expect("ledger")
            .entry((host, status))
            .or_insert(0) += 1;
    }

    /// The answers so far, by host and status (to subtract an earlier copy from).
    pub(crate) fn statuses(&self) -> BTreeMap<(usize, u16), u64> {
        self.statuses.lock().expect("ledger").clone()
    }

    /// Acknowledgements from hosts `hosts` in `[from, to)`, per second.
    pub(crate) fn rate(&self, hosts: &[usize], from: Instant, to: Instant) -> f64 {
        let acks = self.acks.lock().expect("ledger");
        let n = acks
            .iter()
            .filter(|(at, host)| *at >= from && *at < to && hosts.contains(host))
            .count();
        n as f64 / to.saturating_duration_since(from).as_secs_f64().max(0.001)
    }

    /// The fewest acknowledgements from `hosts` in any whole second of `[from, to)`.
    pub(crate) fn slowest_second(&self, hosts: &[usize], from: Instant, to: Instant) -> u64 {
        let acks = self.acks.lock().expect("ledger");
        let seconds = to.saturating_duration_since(from).as_secs() as usize;
        let mut buckets = vec![0u64; seconds];
        for (at, host) in acks.iter() {
            if *at >= from && hosts.contains(host) {
                let second = (*at - from).as_secs() as usize;
                if second < seconds {
                    buckets[second] += 1;
                }
            }
        }
        buckets.into_iter().min().unwrap_or(0)
    }

    /// The first acknowledgement at or after `from` (from `hosts`, or any host).
    pub(crate) fn first_ack_after(
        &self,
        from: Instant,
        hosts: Option<&[usize]>,
    ) -> Option<Instant> {
        self.acks
            .lock()
            .expect("ledger")
            .iter()
            .filter(|(at, host)| *at >= from && hosts.is_none_or(|h| h.contains(host)))
            .map(|(at, _)| *at)
            .min()
    }
}

/// Answers by status (all hosts) since `before`, a copy of `Ledger::statuses`.
pub(crate) fn statuses_since(
    ledger: &Ledger,
    before: &BTreeMap<(usize, u16), u64>,
    host: Option<usize>,
) -> BTreeMap<u16, u64> {
    let mut by_status = BTreeMap::new();
    for ((h, status), n) in ledger.statuses() {
        if host.is_some_and(|host| host != h) {
            continue;
        }
        let n = n - before.get(&(h, status)).copied().unwrap_or(0);
        if n > 0 {
            *by_status.entry(status).or_insert(0) += n;
        }
    }
    by_status
}

/// `200: 3400, 503: 12, no answer: 2`: answers by status.
pub(crate) fn statuses_line(statuses: &BTreeMap<u16, u64>) -> String {
    if statuses.is_empty() {
        return "none".to_owned();
    }
    statuses
        .iter()
        .map(|(status, n)| match status {
            0 => format!("no answer: {n}"),
            s => format!("{s}: {n}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a writer sends its commands.
#[derive(Clone)]
pub(crate) struct Target {
    pub base: String,
    pub tenant: String,
    pub token: String,
    /// The host's index in the campaign (for rates per host).
    pub host: usize,
    /// Bytes of padding in each command's metadata (big events fill a disk quickly).
    pub pad: usize,
}

/// One writer: opens its accounts, then deposits into them until told to stop. A
/// command whose answer is lost (the server died) or refused with a 5xx is sent again
/// with the same id until it is answered, as a client would. `name` makes its command
/// ids and accounts unique among all writers.
pub(crate) fn write_loop(
    name: &str,
    target: &Target,
    ledger: &Ledger,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let http = Client::builder().timeout(Duration::from_secs(10)).build()?;
    let mut random = Random::seeded();
    let accounts: Vec<String> = (0..ACCOUNTS_PER_WRITER)
        .map(|a| format!("w{name}a{a}"))
        .collect();
    let mut sequence = 0u64;
    let mut opened = HashSet::new();
    let tenant = &target.tenant;
    while !stop.load(Ordering::Relaxed) {
        let account = &accounts[random.below(accounts.len() as u64) as usize];
        let mut body = if opened.contains(account) {
            json!({"type": "Deposit", "payload": {"amount": 1 + random.below(100)}})
        } else {
            json!({"type": "Open", "payload": {"owner": account}})
        };
        sequence += 1;
        let command_id = format!("{name}-{sequence}");
        body["command_id"] = json!(command_id);
        if target.pad > 0 {
            body["metadata"] = json!({"pad": "p".repeat(target.pad)});
        }
        let url = format!(
            "{}/t/{tenant}/aggregates/account/{account}/commands",
            target.base
        );
        let give_up = Instant::now() + Duration::from_secs(120);
        loop {
            match http
                .post(&url)
                .bearer_auth(&target.token)
                .json(&body)
                .send()
            {
                Ok(answer) if answer.status().is_success() => {
                    ledger.count(target.host, answer.status().as_u16());
                    ledger
                        .answered
                        .lock()
                        .expect("ledger")
                        .insert(command_id.clone(), format!("account-{account}"));
                    ledger
                        .acks
                        .lock()
                        .expect("ledger")
                        .push((Instant::now(), target.host));
                    opened.insert(account.clone());
                    break;
                }
                Ok(answer) if answer.status().is_server_error() => {
                    // 503 while the host starts or its store is away, 507 while the
                    // disk is full: retry. A 500 is counted, and retried too.
                    let status = answer.status().as_u16();
                    ledger.count(target.host, status);
                    if status == 500 {
                        let text = answer.text().unwrap_or_default();
                        let mut errors = ledger.internal_errors.lock().expect("ledger");
                        if errors.len() < 5 {
                            errors.push(format!("{command_id}: {text}"));
                        }
                    }
                    ledger.retries.fetch_add(1, Ordering::Relaxed);
                }
                Ok(answer) => {
                    let status = answer.status();
                    ledger.count(target.host, status.as_u16());
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
                    ledger.count(target.host, 0);
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

/// What the check of the log found.
#[derive(Default)]
pub(crate) struct Report {
    pub events: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub mismatches: u64,
    /// The first few violations, for the message.
    pub problems: Vec<String>,
}

impl Report {
    fn problem(&mut self, what: String) {
        if self.problems.len() < 10 {
            self.problems.push(what);
        }
    }

    pub(crate) fn violations(&self) -> u64 {
        self.lost + self.duplicates + self.gaps + self.mismatches
    }
}

/// Reads `tenant`'s whole log through `base` and checks it against the ledger, then
/// waits (up to `catch_up`) for `balances` to reach the log's head and compares its
/// documents with a fold of the log.
pub(crate) fn verify(
    http: &Client,
    base: &str,
    tenant: &str,
    token: &str,
    ledger: &Ledger,
    catch_up: Duration,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    // The whole log, page by page.
    let mut after = 0u64;
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut effects: HashMap<String, u64> = HashMap::new();
    let mut balances: BTreeMap<String, i64> = BTreeMap::new();
    let head;
    loop {
        let page: Value = http
            .get(format!("{base}/t/{tenant}/events?after={after}&limit=1000"))
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
                "{base}/t/{tenant}/projections/balances/docs?limit=1&min_position={head}"
            ))
            .bearer_auth(token)
            .send()?;
        if doc.status().is_success() {
            break read_all_docs(http, base, tenant, token)?;
        }
        if started.elapsed() > catch_up {
            bail!(
                "balances never caught up with position {head} in {} s: {}",
                catch_up.as_secs(),
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

fn read_all_docs(
    http: &Client,
    base: &str,
    tenant: &str,
    token: &str,
) -> anyhow::Result<HashMap<String, Value>> {
    let mut docs = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{base}/t/{tenant}/projections/balances/docs?limit=1000");
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

/// The builds of a projection's status view (`GET …/projections/{name}`) that are
/// parked (`failed`), each as `build N: error`.
pub(crate) fn parked_builds(view: &Value) -> Vec<String> {
    view["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["status"] == "failed")
        .map(|b| format!("build {}: {}", b["build"], b["error"]))
        .collect()
}

/// A small xorshift generator: the campaigns need no cryptography, only variety.
pub(crate) struct Random(u64);

impl Random {
    pub(crate) fn seeded() -> Random {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&(nanos, std::thread::current().id()), &mut hasher);
        Random(std::hash::Hasher::finish(&hasher) | 1)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
