//! `cargo xtask bench --flame NAME [--database URL] [--commands N]`: a flame graph of the
//! command path. The release server runs deposits from 64 clients on 1,000 streams
//! while `perf` samples it with DWARF call graphs (the release build keeps its unwind
//! tables and symbols, only debug info is stripped); the stacks are folded and drawn
//! with `inferno` into `docs/flame/NAME.svg`, and the biggest inclusive frames are
//! printed, so a change to the command path can be shown before and after.

use std::collections::HashMap;
use std::io::BufReader;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use inferno::collapse::Collapse;

use super::ReleaseServer;
use super::load::{drive, prepare};

/// `name`: the SVG is `docs/flame/NAME.svg`.
pub(crate) fn run(
    root: &Path,
    name: &str,
    commands: u64,
    database: Option<&str>,
) -> anyhow::Result<()> {
    let server = ReleaseServer::start(root, "bench-flame", database)?;
    let token = prepare(root, &server.base, 1000)?;
    // Warm the state cache and the pool first: the graph is of the steady state.
    drive(&server.base, server.pid(), &token, 64, 3000, 1000)?;

    let recorder = Recorder::start(root, server.pid())?;
    let load = drive(&server.base, server.pid(), &token, 64, commands, 1000);
    let data = recorder.stop()?;
    let load = load?;
    drop(server);
    println!(
        "==> {commands} commands at 64 clients: {:.0} commands/s, p99 {:.2} ms, \
         {:.0} µs of server CPU per command",
        load.per_second,
        load.p99,
        load.server_cores / load.per_second * 1e6
    );
    let title = format!(
        "{name}: deposits at 64 clients, {} ({:.0} commands/s, {:.0} µs server CPU each)",
        database.map_or("sqlite", |_| "postgres"),
        load.per_second,
        load.server_cores / load.per_second * 1e6
    );
    render(root, &data, name, &title)
}

/// `perf record` with DWARF call graphs of one process, until stopped.
pub(crate) struct Recorder {
    child: std::process::Child,
    data: std::path::PathBuf,
}

impl Recorder {
    pub(crate) fn start(root: &Path, pid: u32) -> anyhow::Result<Recorder> {
        let data = root.join("target/bench/flame.data");
        std::fs::create_dir_all(data.parent().expect("a parent"))?;
        let child = Command::new("perf")
            .args(["record", "-F", "499", "--call-graph", "dwarf,16384", "-o"])
            .arg(&data)
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("running perf (Debian's linux-perf)")?;
        std::thread::sleep(std::time::Duration::from_millis(300));
        Ok(Recorder { child, data })
    }

    pub(crate) fn stop(mut self) -> anyhow::Result<std::path::PathBuf> {
        // SAFETY: signals our own child, still running.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child.wait()?;
        Ok(self.data.clone())
    }
}

/// Folds the stacks perf recorded in `data` and draws `docs/flame/NAME.svg`.
pub(crate) fn render(root: &Path, data: &Path, name: &str, title: &str) -> anyhow::Result<()> {
    println!("==> folding the stacks");
    // Without inlined frames: resolving them runs addr2line on every address and
    // takes minutes; the graph keeps every real call.
    let script = Command::new("perf")
        .args(["script", "--no-inline", "-i"])
        .arg(data)
        .stderr(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut folded = Vec::new();
    let mut options = inferno::collapse::perf::Options::default();
    options.skip_after = Vec::new();
    inferno::collapse::perf::Folder::from(options)
        .collapse(
            BufReader::new(script.stdout.context("perf script")?),
            &mut folded,
        )
        .context("folding perf's stacks")?;
    let folded = String::from_utf8_lossy(&folded).into_owned();
    if folded.trim().is_empty() {
        bail!("perf recorded no stacks");
    }
    std::fs::write(root.join(format!("target/bench/{name}.folded")), &folded)?;

    let out_dir = root.join("docs/flame");
    std::fs::create_dir_all(&out_dir)?;
    let svg = out_dir.join(format!("{name}.svg"));
    let mut graph = inferno::flamegraph::Options::default();
    graph.title = title.to_owned();
    graph.count_name = "samples".into();
    graph.min_width = 0.05;
    inferno::flamegraph::from_lines(
        &mut graph,
        folded.lines(),
        std::fs::File::create(&svg).with_context(|| format!("writing {}", svg.display()))?,
    )
    .context("drawing the flame graph")?;
    println!("==> {}", svg.display());
    print_top(&folded);
    Ok(())
}

/// Prints the frames with the largest inclusive share of samples (each counted once
/// per stack), a text view of the same graph for notes and commit messages.
fn print_top(folded: &str) {
    let mut total = 0u64;
    let mut inclusive: HashMap<&str, u64> = HashMap::new();
    for line in folded.lines() {
        let Some((stack, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(count) = count.parse::<u64>() else {
            continue;
        };
        total += count;
        let mut seen: Vec<&str> = Vec::new();
        for frame in stack.split(';') {
            if !seen.contains(&frame) {
                seen.push(frame);
                *inclusive.entry(frame).or_default() += count;
            }
        }
    }
    let mut frames: Vec<_> = inclusive.into_iter().collect();
    frames.sort_by_key(|frame| std::cmp::Reverse(frame.1));
    println!("==> inclusive share of {total} samples:");
    for (frame, count) in frames.into_iter().take(60) {
        let short: String = frame.chars().take(110).collect();
        println!("{:>6.1}%  {short}", count as f64 * 100.0 / total as f64);
    }
}
