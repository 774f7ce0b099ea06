//! The raw read rate of a tenant's log: pages read straight from the store, as a
//! projection build reads them (`CATCH_UP_PAGE` events a page, or `--page N`; filtered by the `balances`
//! projection's event types), with no WebAssembly and no document writes. What a
//! projection's catch-up is measured against (`cargo xtask bench` prints the ratio).
//!
//! `cargo bench -p cairn-host --bench read_log -- --database URL --tenant T`: URL is
//! `sqlite://PATH` (a server's `cairn.db`; it may be running) or `postgres://…`.
//! Prints one line: `read_log events=… events_per_second=…`.

use std::sync::Arc;
use std::time::Instant;

use cairn_host::store::{EventStore, TenantId};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let url = value("--database").unwrap_or_default();
    let page_size: u32 = value("--page")
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(cairn_host::projection::CATCH_UP_PAGE);
    let tenant = TenantId::parse(&value("--tenant").unwrap_or("bench".into()))
        .ok_or_else(|| anyhow::anyhow!("not a tenant id"))?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(async move {
            let store: Arc<dyn EventStore> = if url.starts_with("postgres") {
                Arc::new(cairn_host::store::postgres::PostgresStore::open(&url).await?)
            } else {
                Arc::new(cairn_host::store::sqlite::SqliteStore::open(&url).await?)
            };
            let types: Vec<String> = ["Opened", "Deposited", "Withdrawn"]
                .map(String::from)
                .to_vec();
            let started = Instant::now();
            let (mut after, mut events) = (0, 0u64);
            loop {
                let page = store.read_log(&tenant, after, page_size, &types).await?;
                let Some(last) = page.last() else { break };
                after = last.position;
                events += page.len() as u64;
            }
            println!(
                "read_log events={events} events_per_second={:.0}",
                events as f64 / started.elapsed().as_secs_f64()
            );
            anyhow::Ok(())
        })
}
