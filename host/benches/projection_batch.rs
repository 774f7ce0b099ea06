//! What one batch of a projection costs in the runtime alone: `handle` over 2,000
//! events spread over 1,000 account streams, with the documents read from and merged
//! into a map in memory (no store, no worker). It separates the guest's and the
//! boundary's share of a catch-up from the store's.
//!
//! `cargo bench -p cairn-host --bench projection_batch -- --wasm PATH [--batches N]`:
//! prints `projection_batch us_per_event=… events_per_second=…` for the fastest of
//! five rounds (on a shared machine the slowest rounds measure the neighbours).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cairn_host::runtime::projection::DocumentSource;
use cairn_host::runtime::{CallLimits, Compiler, Runtime};
use cairn_host::store::RecordedEvent;

/// Documents as committed so far.
#[derive(Default)]
struct Committed(Mutex<HashMap<String, Vec<u8>>>);

#[async_trait]
impl DocumentSource for Committed {
    async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
}

const BATCH: u64 = 2_000;
const STREAMS: u64 = 1_000;

fn event(position: u64) -> RecordedEvent {
    let stream = position % STREAMS;
    let version = position / STREAMS + 1;
    let (event_type, payload) = if version == 1 {
        ("Opened", r#"{"owner":"bench"}"#)
    } else {
        ("Deposited", r#"{"amount":1}"#)
    };
    RecordedEvent {
        event_id: format!("{position:08}-aaaa-bbbb-cccc-dddddddddddd"),
        stream_id: format!("account-{stream}"),
        version,
        position: position + 1,
        event_type: event_type.into(),
        payload: payload.into(),
        metadata: r#"{"correlation-id":"c0a8f5e2-1111-2222-3333-444455556666","causation-id":"c0a8f5e2-1111-2222-3333-444455556666"}"#.into(),
        recorded_at: 1_700_000_000_000,
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let wasm = std::fs::read(value("--wasm").unwrap_or("target/plugins/balances.wasm".into()))?;
    let batches: u64 = value("--batches").map_or(Ok(50), |v| v.parse())?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(wasm, batches))
}

async fn run(wasm: Vec<u8>, batches: u64) -> anyhow::Result<()> {
    let artifacts = tempfile::tempdir()?;
    let runtime = Runtime::new(artifacts.path(), Compiler::InProcess)?;
    let component = runtime
        .inspect(wasm, Duration::from_secs(600))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let limits = CallLimits::new(64 << 20, Duration::from_secs(60));
    let mut fastest = f64::INFINITY;
    for _ in 0..5 {
        let committed = Arc::new(Committed::default());
        let (mut instance, _permit) = runtime
            .projection(&component, limits.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut elapsed = Duration::ZERO;
        for b in 0..batches {
            let events: Vec<RecordedEvent> = (b * BATCH..(b + 1) * BATCH).map(event).collect();
            let started = Instant::now();
            let writes = instance
                .handle(events, committed.clone(), 64 << 20)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            elapsed += started.elapsed();
            let mut docs = committed.0.lock().unwrap();
            for (key, doc) in writes {
                match doc {
                    Some(doc) => docs.insert(key, doc),
                    None => docs.remove(&key),
                };
            }
        }
        let docs = committed.0.lock().unwrap();
        let last = docs.get("account-7").expect("account-7 has a document");
        let balance: serde_json::Value = serde_json::from_slice(last)?;
        assert_eq!(balance["balance"], (batches * BATCH / STREAMS - 1));
        fastest = fastest.min(elapsed.as_secs_f64() * 1e6 / (batches * BATCH) as f64);
    }
    println!(
        "projection_batch us_per_event={fastest:.3} events_per_second={:.0}",
        1e6 / fastest
    );
    Ok(())
}
