//! `cargo xtask <command>`: the project's own tasks, in Rust so they run anywhere cargo does.
//!
//! - `build-plugins [--polyglot]`: the example plugins → `target/plugins/`, the hostile
//!   corpus → `target/hostile/`; with `--polyglot` also the Python and JavaScript
//!   examples (toolchains installed into `target/polyglot-tools/`)
//! - `build-python DIR [--world W] [--out FILE]`, `build-js ENTRY.js [--world W] [--out
//!   FILE]`: one plugin in Python (componentize-py) or JavaScript (componentize-js)
//! - `test-polyglot`: the Python and JavaScript examples' native tests
//! - `bench-polyglot [--database URL]`: what the Python and JavaScript plugins cost
//!   beside the Rust ones, and a neighbour's p99 while a Python component compiles
//! - `demo [--no-wait]`: a server on SQLite and a banking scenario against it
//! - `hot-swap`: the projection hot-swap walkthrough (examples/hot-swap)
//! - `ci`: everything CI checks (what `.ci/run` runs)
//! - `bench [--quick] [--full]`: commands/s over HTTP at 1, 16 and 64 clients on both
//!   backends beside the storage limit and the ratio, the wasmtime share of the CPU,
//!   plugin costs (native against WebAssembly, instantiate, compile, artifact load),
//!   projection catch-up against the raw read rate, cold loads, 1,000 tenants' RSS and
//!   start to ready, and a chart; `bench --clients N [--commands M] [--streams S]
//!   [--database URL]`: one load run
//! - `bench-verify [--streams S] [--events E] [--database URL]`: verification speed and
//!   a neighbour's latency meanwhile
//! - `bench-fairness [--clients N] [--seconds S] [--database URL]`: a neighbour's latency
//!   while another tenant's plugins spin
//! - `bench-long [--events E] [--database URL]`: one stream of E events (a million by
//!   default): cold load, a read in its middle, the first command after an upgrade
//! - `bench-subscribers [--writers N] [--commands M] [--idle I] [--database URL]`: what
//!   live subscribers cost writers, and idle ones in memory
//! - `upcasting`: the upcaster walkthrough (examples/upcasting)
//! - `chaos [--postgres | --database URL] [--seconds S] [--writers N] [--quick] [--release]`:
//!   the fault campaign (kill -9 under commands, rebuilds and promotions; then every
//!   acknowledged command checked in the log, and the projection against a fold)
//! - `fuzz-api [--postgres | --database URL] [--examples N] [--seconds S]`:
//!   openapi-spec-validator, then schemathesis, against `/openapi.json` (no 5xx, every
//!   error in the contract's shape)
//! - `fleet [--events N] [--debug]`: three hosts on one PostgreSQL database: live
//!   latency across hosts, the projection lease's takeover after `kill -9`, documents
//!   against a fold of the log
//! - `faults [--quick] [--release] [--seconds S]`: storage and fleet faults under
//!   writers with command ids (a full disk under SQLite; on three hosts sharing one
//!   PostgreSQL: SIGSTOP of a host and of the lease holder, a frozen then cut database
//!   path, `pg_terminate_backend`, kill -9, a PostgreSQL restart), each followed by the
//!   log's check; the other hosts' rate during each fault and the recovery times.
//!   Needs root.
//! - `hostile [--backend sqlite|postgres|both] [--quick] [--only NAME] [--release]`: the
//!   containment campaign of issue 29: each attack of its table against a running
//!   server while a neighbour tenant works; the neighbour's p99 and throughput before
//!   and during each, its failures, parked projections, RSS and the attacker's refusals

mod bench;
mod bench_fairness;
mod bench_long;
mod bench_polyglot;
mod bench_subscribers;
mod bench_verify;
mod build_plugins;
mod campaign;
mod chaos;
mod ci;
mod demo;
mod faults;
mod fleet;
mod fuzz_api;
mod hostile;
mod hot_swap;
mod neighbour;
mod polyglot;
mod upcasting;

use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    let rest = args.get(1..).unwrap_or_default();
    let result = match args.first().map(String::as_str) {
        Some("build-plugins") => build_plugins::run_with(&root, rest),
        Some("build-python") => polyglot::build_one(&root, "python", rest),
        Some("build-js") => polyglot::build_one(&root, "js", rest),
        Some("test-polyglot") => polyglot::test_examples(&root),
        Some("bench-polyglot") => bench_polyglot::run(&root, rest),
        Some("demo") => demo::run(&root, rest),
        Some("hot-swap") => hot_swap::run(&root),
        Some("upcasting") => upcasting::run(&root),
        Some("ci") => ci::run(&root),
        Some("bench") => bench::run(&root, rest),
        Some("bench-verify") => bench_verify::run(&root, rest),
        Some("bench-fairness") => bench_fairness::run(&root, rest),
        Some("bench-long") => bench_long::run(&root, rest),
        Some("bench-subscribers") => bench_subscribers::run(&root, rest),
        Some("chaos") => chaos::run(&root, rest),
        Some("fuzz-api") => fuzz_api::run(&root, rest),
        Some("fleet") => fleet::run(&root, rest),
        Some("faults") => faults::run(&root, rest),
        Some("hostile") => hostile::run_args(&root, rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <build-plugins [--polyglot] | build-python DIR [--world W] [--out FILE] | build-js ENTRY.js [--world W] [--out FILE] | test-polyglot | bench-polyglot [--database URL] | demo [--no-wait] | hot-swap | upcasting | ci | bench [--quick] [--full] | bench --clients N [--commands M] [--streams S] [--database URL] | bench-verify [--streams S] [--events E] [--database URL] | bench-fairness [--clients N] [--seconds S] [--database URL] | bench-long [--events E] [--database URL] | bench-subscribers [--writers N] [--commands M] [--idle I] [--database URL] | chaos [--postgres | --database URL] [--seconds S] [--writers N] [--quick] [--release] | fuzz-api [--postgres | --database URL] [--examples N] [--seconds S] | fleet [--events N] [--debug] | faults [--quick] [--release] [--seconds S] | hostile [--backend sqlite|postgres|both] [--quick] [--only NAME] [--release]>"
            );
            std::process::exit(2);
        }
    };
    if let Err(error) = result {
        eprintln!("xtask failed: {error:#}");
        std::process::exit(1);
    }
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_owned()
}
