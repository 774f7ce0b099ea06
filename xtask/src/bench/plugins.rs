//! What a plugin costs (`host/benches/plugin_costs.rs`): the `account` aggregate
//! natively and as a component, instantiation, compiles and cached-artifact loads.

use std::path::Path;

use super::{Report, cargo_bench};

pub(super) fn run(root: &Path, quick: bool, report: &mut Report) -> anyhow::Result<()> {
    let (calls, compiles) = if quick { (5_000, 2) } else { (20_000, 5) };
    let wasm = root.join("target/plugins/account.wasm");
    let cairn = super::server::binary(root);
    let costs = cargo_bench(
        root,
        "plugin_costs",
        &[
            "--wasm".into(),
            wasm.display().to_string(),
            "--calls".into(),
            calls.to_string(),
            "--compiles".into(),
            compiles.to_string(),
            "--cairn".into(),
            cairn.display().to_string(),
        ],
    )?;
    let get = |key: &str| costs.get(key).copied().unwrap_or(f64::NAN);
    for (what, native, wasm) in [
        ("decide, per call", "native_decide_us", "wasm_decide_us"),
        (
            "evolve of 1 event, per call",
            "native_evolve_1_us",
            "wasm_evolve_1_us",
        ),
        (
            "evolve of 1,000 events, per call",
            "native_evolve_1000_us",
            "wasm_evolve_1000_us",
        ),
    ] {
        report.add(
            format!("account {what}: native / component"),
            format!(
                "{:.2} / {:.2} µs (component {:.1}× native)",
                get(native),
                get(wasm),
                get(wasm) / get(native)
            ),
        );
    }
    report.add(
        "instantiate (fresh limited Store and instance)",
        format!("{:.1} µs", get("instantiate_us")),
    );
    report.add(
        "a command's plugin work on a cached state (instantiate + decide)",
        format!("{:.1} µs", get("wasm_command_us")),
    );
    report.add(
        format!("compile one component (child process, as the server does; mean of {compiles})"),
        format!("{:.0} ms", get("compile_ms")),
    );
    report.add(
        "load a cached artifact in a fresh runtime (mmap + link)",
        format!("{:.2} ms", get("artifact_load_ms")),
    );
    Ok(())
}
