//! The `cairn` binary: the server (`cairn serve`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use cairn_host::app::{App, Settings};

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Event sourcing with domain logic in WebAssembly"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the server.
    Serve {
        /// Holds the SQLite database, compiled components and the generated operator token.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Address to listen on (port 0 picks a free port; the address is printed).
        #[arg(long, default_value = "127.0.0.1:4600")]
        listen: SocketAddr,
        /// `sqlite://PATH` or `postgres://…`; default `<data-dir>/cairn.db`.
        #[arg(long, env = "CAIRN_DATABASE")]
        database: Option<String>,
        /// Write an aggregate snapshot every N events.
        #[arg(long, default_value_t = 100)]
        snapshot_every: u64,
        /// Aggregate states kept in memory.
        #[arg(long, default_value_t = 100_000)]
        state_cache_entries: usize,
    },
    /// Compile one component with the server's engine settings (the server runs this
    /// in a child process for every upload, so a compile can be timed out and killed).
    #[command(hide = true)]
    CompileComponent { input: PathBuf, output: PathBuf },
}

fn main() -> anyhow::Result<()> {
    // More worker threads than cores. Plugin calls run on these workers and yield at
    // every epoch tick, but some guest work cannot be interrupted (a `memory.fill` of
    // a whole memory, first-touch page faults): a tenant holds at most one CPU turn
    // per core (see `gate.rs`), so with four workers per core the threads left
    // over keep serving everyone else while the OS shares the CPUs between them.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores * 4)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Commands::Serve {
            data_dir,
            listen,
            database,
            snapshot_every,
            state_cache_entries,
        } => {
            let settings = Settings {
                data_dir,
                database,
                admin_token: std::env::var("CAIRN_ADMIN_TOKEN").ok(),
                snapshot_every,
                state_cache_entries,
                compiler: cairn_host::runtime::Compiler::Subprocess(
                    std::env::current_exe().context("finding the cairn executable")?,
                ),
            };
            serve(settings, listen).await
        }
        Commands::CompileComponent { input, output } => {
            cairn_host::runtime::compile_to_file(&input, &output)
        }
    }
}

async fn serve(settings: Settings, listen: SocketAddr) -> anyhow::Result<()> {
    let app = App::start(&settings).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let address = listener.local_addr()?;
    // Printed on stdout, on its own line, so scripts and tests can find the port.
    println!("cairn listening on http://{address}");
    tracing::info!(%address, data_dir = %settings.data_dir.display(), "cairn is serving");
    axum::serve(listener, cairn_host::api::router(app))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
