//! The `cairn` binary: the server (`cairn serve`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use cairn_host::app::{App, Settings};
use cairn_host::live::LiveSettings;

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
        /// Group commits each tenant's live fan-out holds; a subscriber further behind
        /// catches up from the store.
        #[arg(long, env = "CAIRN_LIVE_BUFFER", default_value_t = LiveSettings::default().buffer)]
        live_buffer: usize,
        /// A live subscriber more than this many events behind when it lags is dropped
        /// (told so in the stream) instead of catching up.
        #[arg(long, env = "CAIRN_LIVE_MAX_BEHIND", default_value_t = LiveSettings::default().max_behind)]
        live_max_behind: u64,
    },
    /// Compile one component with the server's engine settings (the server runs this
    /// in a child process for every upload, so a compile can be timed out and killed).
    #[command(hide = true)]
    CompileComponent { input: PathBuf, output: PathBuf },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
            live_buffer,
            live_max_behind,
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
                live: LiveSettings {
                    buffer: live_buffer.max(1),
                    max_behind: live_max_behind,
                },
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
