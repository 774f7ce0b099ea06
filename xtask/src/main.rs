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
//! - `deny [--advisories]`: cargo-deny by `deny.toml`: licenses, bans, sources, and
//!   advisories where github.com (the RustSec database) is reachable
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
//!
//! Arguments are parsed by clap (each subcommand's `Args` lives beside its `run`), so a
//! mistyped flag is refused instead of silently ignored.

// A binary: nothing here is reachable from outside, so items are `pub(crate)` at most
// and `pub` would only mislead (the workspace leaves this lint to each crate).
#![warn(unreachable_pub)]

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
mod deny;
mod faults;
mod fleet;
mod fuzz_api;
mod hostile;
mod hot_swap;
mod neighbour;
mod polyglot;
mod upcasting;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The project's own tasks. Every subcommand refuses flags it does not know.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// The example plugins into target/plugins/, the hostile and compat corpora into
    /// target/hostile/ (and --polyglot: the Python and JavaScript examples).
    BuildPlugins(build_plugins::Args),
    /// One plugin in Python (componentize-py).
    BuildPython(polyglot::BuildArgs),
    /// One plugin in JavaScript (componentize-js).
    BuildJs(polyglot::BuildArgs),
    /// The Python and JavaScript examples' native tests.
    TestPolyglot,
    /// What the Python and JavaScript plugins cost beside the Rust ones.
    BenchPolyglot(bench_polyglot::Args),
    /// A server on SQLite and a banking scenario against it.
    Demo(demo::Args),
    /// The projection hot-swap walkthrough (examples/hot-swap).
    HotSwap,
    /// The upcaster walkthrough (examples/upcasting).
    Upcasting,
    /// Everything CI checks (what .ci/run runs).
    Ci,
    /// cargo-deny: licenses, bans, sources; advisories where the network allows.
    Deny(deny::Args),
    /// The benchmark table and chart; or one load run (--clients), or a flame graph (--flame).
    Bench(bench::Args),
    /// Verification speed and a neighbour's latency meanwhile.
    BenchVerify(bench_verify::Args),
    /// A neighbour's latency while another tenant's plugins spin.
    BenchFairness(bench_fairness::Args),
    /// One stream of a million events: cold load, temporal read, upgrade, import.
    BenchLong(bench_long::Args),
    /// What live subscribers cost writers, and idle ones in memory.
    BenchSubscribers(bench_subscribers::Args),
    /// The kill -9 fault campaign.
    Chaos(chaos::Args),
    /// openapi-spec-validator, then schemathesis, against /openapi.json.
    FuzzApi(fuzz_api::Args),
    /// Three hosts on one PostgreSQL database.
    Fleet(fleet::Args),
    /// Storage and fleet faults under writers with command ids (needs root).
    Faults(faults::Args),
    /// Issue 29's containment campaign: a neighbour's latency under each attack.
    Hostile(hostile::Args),
}

fn main() {
    let cli = Cli::parse();
    let root = workspace_root();
    let result = match &cli.task {
        Task::BuildPlugins(args) => build_plugins::run_with(&root, args),
        Task::BuildPython(args) => polyglot::build_one(&root, "python", args),
        Task::BuildJs(args) => polyglot::build_one(&root, "js", args),
        Task::TestPolyglot => polyglot::test_examples(&root),
        Task::BenchPolyglot(args) => bench_polyglot::run(&root, args),
        Task::Demo(args) => demo::run(&root, args),
        Task::HotSwap => hot_swap::run(&root),
        Task::Upcasting => upcasting::run(&root),
        Task::Ci => ci::run(&root),
        Task::Deny(args) => deny::run(&root, args),
        Task::Bench(args) => bench::run(&root, args),
        Task::BenchVerify(args) => bench_verify::run(&root, args),
        Task::BenchFairness(args) => bench_fairness::run(&root, args),
        Task::BenchLong(args) => bench_long::run(&root, args),
        Task::BenchSubscribers(args) => bench_subscribers::run(&root, args),
        Task::Chaos(args) => chaos::run(&root, args),
        Task::FuzzApi(args) => fuzz_api::run(&root, args),
        Task::Fleet(args) => fleet::run(&root, args),
        Task::Faults(args) => faults::run(&root, args),
        Task::Hostile(args) => hostile::run(&root, args),
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::Cli;

    fn parses(line: &str) -> bool {
        Cli::try_parse_from(std::iter::once("xtask").chain(line.split_whitespace())).is_ok()
    }

    #[test]
    fn the_command_tree_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// Every form README.md, docs/, ARCHITECTURE.md and ci.rs show.
    #[test]
    fn every_documented_invocation_parses() {
        for line in [
            "build-plugins",
            "build-plugins --polyglot",
            "build-python examples/python/loan",
            "build-python examples/python/loan --out loan.wasm --world aggregate",
            "build-js examples/js/on-loan/component.js -o on-loan.wasm",
            "build-js examples/js/on-loan/component.js --world projection",
            "test-polyglot",
            "bench-polyglot --seconds 5 --calls 100 --database postgres://h/db",
            "demo",
            "demo --no-wait",
            "hot-swap",
            "upcasting",
            "ci",
            "deny",
            "deny --advisories",
            "bench",
            "bench --quick",
            "bench --full",
            "bench --quick --full",
            "bench --only catch-up",
            "bench --only rows,plugins --backend sqlite",
            "bench --clients 64",
            "bench --clients 64 --commands 20000 --streams 1000 --database postgres://h/db",
            "bench --flame before --database postgres://h/db --commands 5000",
            "bench-verify --streams 10 --events 100 --database postgres://h/db",
            "bench-fairness --clients 8 --seconds 3 --database postgres://h/db",
            "bench-long --events 1000 --database postgres://h/db",
            "bench-subscribers --writers 4 --commands 100 --idle 10 --database sqlite://x",
            "chaos --postgres --seconds 10 --writers 2 --quick --release",
            "chaos --database postgres://h/db",
            "fuzz-api --postgres --examples 10 --seconds 5",
            "fuzz-api --database postgres://h/db",
            "fleet --events 10 --debug",
            "faults --quick --release --seconds 3",
            "hostile",
            "hostile --quick --backend sqlite --only import-tiny --release",
            "hostile --backend both",
        ] {
            assert!(parses(line), "cargo xtask {line} no longer parses");
        }
    }

    #[test]
    fn mistakes_are_refused() {
        for line in [
            "bench --client 64",
            "bench --clients",
            "bench --clients many",
            "hot-swap --quick",
            "demo --nowait",
            "chaos --postgres --database postgres://h/db",
            "build-python",
            "build-plugin",
        ] {
            assert!(!parses(line), "cargo xtask {line} was accepted");
        }
    }
}
