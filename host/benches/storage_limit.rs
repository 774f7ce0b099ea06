//! The storage limit: the append workload of the command benchmark driven straight into
//! the store, through the same group-commit appender, with no HTTP and no WebAssembly.
//! What Cairn's command path is measured against (`cargo xtask bench` prints the ratio).
//!
//! `cargo bench -p cairn-host --bench storage_limit -- [--clients N] [--appends M]
//! [--streams S] [--database URL]`: N tasks append M one-event appends (a `Deposited`
//! of about the size a command writes, metadata included) over S streams, each with the
//! expected version the task last saw for that stream (retried on a conflict, as a
//! command is). Prints one line: `storage_limit appends_per_second=… p50_ms=… p99_ms=…`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_host::log::appender::{Appender, LogHeads};
use cairn_host::log::live::{Live, LiveSettings};
use cairn_host::store::{
    AppendError, AppendRequest, EventStore, ExpectedVersion, ProposedEvent, TenantId,
};

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let clients = arg(&args, "--clients", 64);
    let appends = arg(&args, "--appends", 50_000);
    let streams = arg(&args, "--streams", 1000);
    let database = args
        .iter()
        .position(|a| a == "--database")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores * 4)
        .enable_all()
        .build()?
        .block_on(run(clients, appends, streams, database))
}

async fn run(
    clients: u64,
    appends: u64,
    streams: u64,
    database: Option<String>,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn EventStore> = match &database {
        Some(url) => Arc::new(cairn_host::store::postgres::PostgresStore::open(url).await?),
        None => Arc::new(
            cairn_host::store::sqlite::SqliteStore::open(&format!(
                "sqlite://{}",
                dir.path().join("limit.db").display()
            ))
            .await?,
        ),
    };
    let tenant = TenantId::parse("limit").expect("a valid id");
    store
        .create_tenant(&tenant, "limit-token-hash", &serde_json::json!({}))
        .await?;
    let metrics = Arc::new(cairn_host::metrics::Metrics::default());
    let live = Live::new(store.clone(), LiveSettings::default(), metrics.clone());
    let appender = Appender::start(store.clone(), Arc::new(LogHeads::default()), live, metrics);
    // What each stream's version was last seen at, shared as commands share the cache.
    let versions: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (appender, tenant, versions) = (appender.clone(), tenant.clone(), versions.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = c;
                while i < appends {
                    let stream = (i * 7919) % streams;
                    let sent = Instant::now();
                    loop {
                        let seen = *versions.lock().unwrap().get(&stream).unwrap_or(&0);
                        let request = deposit(&tenant, stream, seen);
                        match appender.append(request).await {
                            Ok(outcome) => {
                                versions.lock().unwrap().insert(stream, outcome.version);
                                break;
                            }
                            Err(AppendError::WrongExpectedVersion { current }) => {
                                versions.lock().unwrap().insert(stream, current);
                            }
                            Err(other) => panic!("append failed: {other}"),
                        }
                    }
                    latencies.push(sent.elapsed());
                    i += clients;
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = Vec::new();
    for task in tasks {
        latencies.extend(task.await?);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1000.0
    };
    println!(
        "storage_limit appends_per_second={:.0} p50_ms={:.2} p99_ms={:.2}",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99)
    );
    Ok(())
}

/// One `Deposited` event with the metadata a command adds.
fn deposit(tenant: &TenantId, stream: u64, expected: u64) -> AppendRequest {
    let command = uuid::Uuid::new_v4().to_string();
    AppendRequest {
        tenant: tenant.clone(),
        stream_id: format!("account-{stream}"),
        expected: ExpectedVersion::Exact(expected),
        events: vec![ProposedEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            event_type: "Deposited".into(),
            payload: r#"{"amount":1}"#.into(),
            metadata: format!(r#"{{"correlation_id":"{command}","causation_id":"{command}"}}"#),
        }],
        ids_from_writer: false,
        command_id: None,
        command_fingerprint: None,
        atomic_group: None,
    }
}
