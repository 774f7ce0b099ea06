//! Many tenants, each with a plugin of its own (SQLite): 1,000 tenants, each uploading
//! `account` with a custom section of its own appended (other bytes, so another
//! digest and another artifact; the same code). Then the server restarts: the time
//! from starting the process to its first `/readyz` 200 with those plugins stored
//! (nothing may compile at start: `/metrics` must count 0 compiles), its RSS then, and
//! its RSS once every tenant has run one command (every plugin loaded from its
//! artifact and instantiated).
//!
//! With `seed` (`--quick`), only the first upload compiles: the artifact of each other
//! variant is a copy of the first one's under the variant's digest (a custom section
//! changes nothing cranelift emits), so the uploads find it in the artifact cache.
//! Without it, all 1,000 compile, as they would for distinct plugins.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::blocking::Client;
use sha2::Digest;
use wasm_variant::with_custom_section;

use super::server::rss_kib;
use super::{ReleaseServer, Report};
use crate::bench_long::{counter, create_tenant};

pub(super) fn run(root: &Path, quick: bool, report: &mut Report) -> anyhow::Result<()> {
    let tenants: u64 = 1000;
    let seed = quick;
    let data = "bench-tenants";
    let server = ReleaseServer::start(root, data, None)?;
    let base = server.base.clone();
    let artifacts = root.join("target").join(data).join("artifacts");
    let wasm = std::fs::read(root.join("target/plugins/account.wasm"))?;
    let http = Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    println!("==> {tenants} tenants, each uploading its own variant of account");
    let setting_up = Instant::now();
    let mut tokens = Vec::new();
    for i in 0..tenants {
        tokens.push(create_tenant(&http, &base, &format!("tenant-{i}"))?);
    }
    let put = |i: u64, token: &str| -> anyhow::Result<()> {
        http.put(format!("{base}/t/tenant-{i}/plugins/account"))
            .bearer_auth(token)
            .body(with_custom_section(
                &wasm,
                "cairn-bench",
                format!("tenant-{i}").as_bytes(),
            ))
            .send()?
            .error_for_status()?;
        Ok(())
    };
    put(0, &tokens[0])?;
    if seed {
        let first = std::fs::read_dir(&artifacts)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .context("no artifact after the first upload")?;
        let name = first.file_name().and_then(|n| n.to_str()).context("name")?;
        let tag = name.split_once('-').context("artifact name")?.1;
        for i in 1..tenants {
            let variant =
                with_custom_section(&wasm, "cairn-bench", format!("tenant-{i}").as_bytes());
            let hex: String = sha2::Sha256::digest(&variant)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            std::fs::copy(&first, artifacts.join(format!("{hex}-{tag}")))?;
        }
    }
    // Four uploads at a time.
    let next = AtomicU64::new(1);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= tenants {
                            return Ok(());
                        }
                        put(i, &tokens[i as usize])?;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("an upload thread panicked")?;
        }
        Ok(())
    })?;
    let compiled_before = counter(&http, &base, "cairn_components_compiled_total")?;
    let set_up = setting_up.elapsed().as_secs_f64();
    drop(server);

    let (server, ready) = ReleaseServer::open(root, data, None, &[])?;
    let base = server.base.clone();
    let idle = rss_kib(server.pid())?;
    let commanding = Instant::now();
    let next = AtomicU64::new(0);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= tenants {
                            return Ok(());
                        }
                        http.post(format!("{base}/t/tenant-{i}/aggregates/account/1/commands"))
                            .bearer_auth(&tokens[i as usize])
                            .json(&serde_json::json!({"type": "Open", "payload": {"owner": "b"}}))
                            .send()?
                            .error_for_status()?;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("a command thread panicked")?;
        }
        Ok(())
    })?;
    let commanded = commanding.elapsed().as_secs_f64();
    let busy = rss_kib(server.pid())?;
    let compiled = counter(&http, &base, "cairn_components_compiled_total")?;
    let from_cache = counter(&http, &base, "cairn_components_loaded_from_cache_total")?;
    if compiled != 0 || from_cache != tenants {
        bail!(
            "after the restart {compiled} components compiled and {from_cache} loaded from the cache (expected 0 and {tenants})"
        );
    }
    report.add(
        format!(
            "set-up: {tenants} tenants with a distinct plugin ({})",
            if seed {
                "artifacts seeded by copy, 1 compile".to_owned()
            } else {
                format!("{compiled_before} compiles")
            }
        ),
        format!("{set_up:.1} s"),
    );
    report.add(
        format!("start to ready with {tenants} tenants' plugins stored (0 compiles)"),
        format!("{:.0} ms", ready.as_secs_f64() * 1e3),
    );
    report.add(
        format!("RSS at ready, {tenants} tenants"),
        format!("{:.0} MiB", idle as f64 / 1024.0),
    );
    report.add(
        format!("RSS after one command per tenant ({tenants} plugins loaded from artifacts)"),
        format!("{:.0} MiB", busy as f64 / 1024.0),
    );
    report.add(
        "first command of each tenant after the restart (artifact load, 4 at a time)",
        format!("{:.1} ms mean", commanded * 1e3 / tenants as f64 * 4.0),
    );
    Ok(())
}
