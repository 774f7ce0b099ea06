//! The `cairn` binary: the server (`cairn serve`) and the client commands that talk to
//! one over HTTP (`cairn tenant|plugin|command|state|stream|tail|projection|docs`,
//! `cairn new`; see `cli/` and docs/cli.md).

mod cli;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use cairn_host::app::{App, Settings};
use cairn_host::log::live::LiveSettings;
use cairn_host::serve::ConnectionLimits;

/// mimalloc instead of glibc's malloc: see BENCHMARKS.md for the before and after.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Event sourcing with domain logic in WebAssembly",
    after_help = "Environment: every option's variable is shown beside it; RUST_LOG sets \
                  the log filter (default `info`, e.g. `cairn_host=debug,info`)."
)]
struct Cli {
    /// `text` (one line per event, coloured only on a terminal) or `json` (one JSON
    /// object per line, for log collectors).
    #[arg(long, global = true, env = "CAIRN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    client: cli::config::GlobalArgs,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the server.
    Serve {
        /// Holds the SQLite database, compiled components and the generated operator token.
        #[arg(long, env = "CAIRN_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
        /// Address to listen on (port 0 picks a free port; the address is printed).
        #[arg(long, env = "CAIRN_LISTEN", default_value = "127.0.0.1:4600")]
        listen: SocketAddr,
        /// The operator token (for `/admin`); without it one is generated into
        /// `<data-dir>/admin-token` on first start and read from there after.
        #[arg(long, env = "CAIRN_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
        /// `sqlite://PATH` or `postgres://…`; default `<data-dir>/cairn.db`.
        // Hidden: a database URL may carry a password, and `--help` prints values.
        #[arg(long, env = "CAIRN_DATABASE", hide_env_values = true)]
        database: Option<String>,
        /// Write an aggregate snapshot every N events.
        #[arg(long, env = "CAIRN_SNAPSHOT_EVERY", default_value_t = 100)]
        snapshot_every: u64,
        /// Aggregate states kept in memory.
        #[arg(long, env = "CAIRN_STATE_CACHE_ENTRIES", default_value_t = 100_000)]
        state_cache_entries: usize,
        /// Seconds a client has, from a request's first byte, to send its whole head.
        #[arg(long, env = "CAIRN_HEADER_READ_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
        header_read_timeout: u64,
        /// Seconds the server waits for a request body's next bytes, and for all of a
        /// body's bytes together, plus a second per 64 KiB received; past it, 408.
        #[arg(long, env = "CAIRN_BODY_READ_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
        body_read_timeout: u64,
        /// Seconds a connection may stay open with no request in flight.
        #[arg(long, env = "CAIRN_IDLE_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        idle_timeout: u64,
        /// Open connections at most; past it a new one is answered 503. Keep it below
        /// the process's open-file limit (`ulimit -n`).
        #[arg(long, env = "CAIRN_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        max_connections: u32,
        /// Group commits each tenant's live fan-out holds; a subscriber further behind
        /// catches up from the store.
        #[arg(long, env = "CAIRN_LIVE_BUFFER", default_value_t = LiveSettings::default().buffer)]
        live_buffer: usize,
        /// A live subscriber more than this many events behind when it lags is dropped
        /// (told so in the stream) instead of catching up.
        #[arg(long, env = "CAIRN_LIVE_MAX_BEHIND", default_value_t = LiveSettings::default().max_behind)]
        live_max_behind: u64,
        /// Days a command id is remembered (a repeat gets the first answer, another
        /// request under it a 409); 0 keeps them for good.
        #[arg(long, env = "CAIRN_COMMAND_RETENTION_DAYS", default_value_t = 0)]
        command_retention_days: u64,
        /// Milliseconds between a host's own checks of the database for changes other
        /// hosts made (PostgreSQL): a safety net behind the notices they send.
        #[arg(long, env = "CAIRN_POLL_INTERVAL_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..=86_400_000))]
        poll_interval_ms: u64,
        /// This host's name among the hosts sharing a database (`GET /admin/hosts`);
        /// default: the machine's hostname and the port it listens on.
        #[arg(long, env = "CAIRN_HOST_ID")]
        host_id: Option<String>,
        /// Threads that run requests and plugin calls; default four per core (see
        /// `server` in main.rs for why more than one per core).
        #[arg(long, env = "CAIRN_WORKER_THREADS", value_parser = clap::value_parser!(u32).range(1..=1024))]
        worker_threads: Option<u32>,
        /// Retired builds of each projection kept for rollback (they stop following the
        /// log); older ones are deleted with their documents.
        #[arg(long, env = "CAIRN_PROJECTION_BUILDS_KEPT", default_value_t = 2)]
        projection_builds_kept: usize,
        /// Seconds a store failure that may pass (a lost connection, a busy or full
        /// database) is retried in silence by background work before a projection
        /// build is shown as waiting for the store (it still retries, and resumes on
        /// its own).
        #[arg(long, env = "CAIRN_STORE_RETRY_BUDGET_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        store_retry_budget_secs: u64,
    },
    /// Compile one component with the server's engine settings (the server runs this
    /// in a child process for every upload, so a compile can be timed out and killed).
    #[command(hide = true)]
    CompileComponent { input: PathBuf, output: PathBuf },
    #[command(flatten)]
    Client(cli::ClientCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Commands::Client(command) = cli.command {
        return cli::run(cli.client, command);
    }
    match server(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            ExitCode::FAILURE
        }
    }
}

fn server(cli: Cli) -> anyhow::Result<()> {
    // More worker threads than cores. Plugin calls run on these workers and yield at
    // every epoch tick, but some guest work cannot be interrupted (a `memory.fill` of
    // a whole memory, first-touch page faults): a tenant holds at most one CPU turn
    // per core (see `gate.rs`), so with four workers per core the threads left
    // over keep serving everyone else while the OS shares the CPUs between them.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let workers = match &cli.command {
        Commands::Serve {
            worker_threads: Some(n),
            ..
        } => *n as usize,
        _ => cores * 4,
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        // Colour codes only where a person reads them: a file or a collector would
        // keep the escape bytes.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    match cli.command {
        Commands::Serve {
            data_dir,
            listen,
            admin_token,
            database,
            snapshot_every,
            state_cache_entries,
            header_read_timeout,
            body_read_timeout,
            idle_timeout,
            max_connections,
            live_buffer,
            live_max_behind,
            command_retention_days,
            projection_builds_kept,
            poll_interval_ms,
            host_id,
            worker_threads: _,
            store_retry_budget_secs,
        } => {
            cairn_host::store::retry::set_budget(Duration::from_secs(store_retry_budget_secs));
            let limits = ConnectionLimits {
                header_read_timeout: Duration::from_secs(header_read_timeout),
                idle_timeout: Duration::from_secs(idle_timeout),
                max_connections: max_connections as usize,
                body_read_timeout: Duration::from_secs(body_read_timeout),
            };
            let settings = Settings {
                data_dir,
                database,
                admin_token,
                snapshot_every,
                state_cache_entries,
                compiler: cairn_host::runtime::Compiler::Subprocess(
                    std::env::current_exe().context("finding the cairn executable")?,
                ),
                live: LiveSettings {
                    buffer: live_buffer.max(1),
                    max_behind: live_max_behind,
                    poll_every: Duration::from_millis(poll_interval_ms),
                },
                command_retention: (command_retention_days > 0)
                    .then(|| Duration::from_secs(command_retention_days * 86_400)),
                projection_builds_kept,
                poll_every: Duration::from_millis(poll_interval_ms),
                // Named once the port is bound (see `serve`).
                host_id: host_id.unwrap_or_default(),
            };
            serve(settings, listen, limits).await
        }
        Commands::CompileComponent { input, output } => {
            cairn_host::runtime::compile_to_file(&input, &output)
        }
        Commands::Client(_) => unreachable!("client commands run without the server runtime"),
    }
}

async fn serve(
    mut settings: Settings,
    listen: SocketAddr,
    limits: ConnectionLimits,
) -> anyhow::Result<()> {
    check_open_files(limits.max_connections);
    // Bound before the host starts (connections wait in the backlog meanwhile), so
    // that its default name can carry the port.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let address = listener.local_addr()?;
    if settings.host_id.is_empty() {
        settings.host_id = cairn_host::fleet::default_host_id(address.port());
    }
    let app = App::start(&settings).await?;
    // Printed on stdout, on its own line, so scripts and tests can find the port.
    println!("cairn listening on http://{address}");
    tracing::info!(%address, data_dir = %settings.data_dir.display(), "cairn is serving");
    cairn_host::serve::serve(
        listener,
        cairn_host::api::router(app.clone()),
        limits,
        shutdown_signal(),
    )
    .await?;
    app.fleet.leave().await;
    Ok(())
}

/// File descriptors the host needs beside its connections: the database pool, compiled
/// components, compiler pipes, the log.
const SPARE_FILES: u64 = 256;

/// Each connection is an open file: raise the soft limit toward the hard one when the
/// connection cap needs it, and warn when even that is not enough (accepts past the
/// limit fail with EMFILE, which the accept loop survives, but nothing is answered).
fn check_open_files(max_connections: usize) {
    #[cfg(unix)]
    {
        let needed = (max_connections as u64 + SPARE_FILES) as libc::rlim_t;
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return;
            }
            if limit.rlim_cur < needed {
                let raised = libc::rlimit {
                    rlim_cur: needed.min(limit.rlim_max),
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
        }
        if limit.rlim_cur < needed {
            tracing::warn!(
                open_files = limit.rlim_cur,
                max_connections,
                "the open-file limit (ulimit -n) is below --max-connections plus {SPARE_FILES}; \
                 connections past it will fail to be accepted"
            );
        }
    }
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
