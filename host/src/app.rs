//! The assembled host: every service, built once at start-up and shared by the API.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::commands::Commands;
use crate::commands::state_cache::{StateCache, StreamLocks};
use crate::commands::warm::Warmer;
use crate::fleet::{Fleet, FleetHandles};
use crate::log::appender::{Appender, LogHeads};
use crate::log::live::{Live, LiveSettings};
use crate::metrics::Metrics;
use crate::plugins::Plugins;
use crate::projection::Projections;
use crate::runtime::Runtime;
use crate::store::EventStore;
use crate::store::reachability::Reachability;
use crate::tenancy::tenant::Tenants;

/// Settings the host starts with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where the database (for SQLite), compiled components and the operator token live.
    pub data_dir: std::path::PathBuf,
    /// `sqlite://…` or `postgres://…`; `None` means `<data-dir>/cairn.db`.
    pub database: Option<String>,
    /// The operator token from the environment, if given.
    pub admin_token: Option<String>,
    /// Write an aggregate snapshot every this many events.
    pub snapshot_every: u64,
    /// Aggregate states kept in memory.
    pub state_cache_entries: usize,
    /// Where components are compiled (the server compiles in child processes).
    pub compiler: crate::runtime::Compiler,
    /// The live subscribers' fan-out (buffer size, how far behind before a drop).
    pub live: LiveSettings,
    /// How long a command id is remembered (its answer replayed, another request under
    /// it refused); `None`: for good.
    pub command_retention: Option<std::time::Duration>,
    /// Retired builds of each projection kept for rollback.
    pub projection_builds_kept: usize,
    /// How often the host checks the database for what other hosts changed, behind
    /// their notices (projection workers' idle wait; a full resynchronisation every
    /// 15 of these).
    pub poll_every: std::time::Duration,
    /// This host's name in `/admin/hosts` (unique among the hosts of a database).
    pub host_id: String,
}

pub struct App {
    pub store: Arc<dyn EventStore>,
    pub appender: Appender,
    pub heads: Arc<LogHeads>,
    pub live: Arc<Live>,
    pub runtime: Arc<Runtime>,
    pub plugins: Arc<Plugins>,
    pub tenants: Arc<Tenants>,
    pub commands: Arc<Commands>,
    /// Background snapshot warming (after activations and imports).
    pub warmer: Warmer,
    pub projections: Arc<Projections>,
    pub metrics: Arc<Metrics>,
    /// This host among the hosts sharing the database.
    pub fleet: Fleet,
    /// Whether the database answers right now (the API answers 503 at once if not).
    pub reachability: Reachability,
    /// Forgets a deleted tenant in every cache of this host (`forgetter`).
    forget: Arc<dyn Fn(&crate::store::TenantId) + Send + Sync>,
}

pub type AppState = Arc<App>;

impl App {
    pub async fn start(settings: &Settings) -> anyhow::Result<AppState> {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating {}", settings.data_dir.display()))?;
        let store = open_store(settings.database.as_deref(), &settings.data_dir).await?;
        let runtime = Arc::new(Runtime::new(
            &settings.data_dir.join("artifacts"),
            settings.compiler.clone(),
        )?);
        let heads = Arc::new(LogHeads::default());
        let metrics = Arc::new(Metrics::default());
        let live = Live::new(store.clone(), settings.live, metrics.clone());
        let appender = Appender::start(store.clone(), heads.clone(), live.clone(), metrics.clone());
        let plugins = Plugins::new(store.clone(), runtime.clone());
        // Every file the host itself touches is below the data directory: it is opened
        // once as a capability and paths are resolved inside it.
        let data_dir =
            cap_std::fs::Dir::open_ambient_dir(&settings.data_dir, cap_std::ambient_authority())
                .with_context(|| format!("opening {}", settings.data_dir.display()))?;
        let operator_token = crate::tenancy::tenant::operator_token(
            settings.admin_token.clone(),
            &data_dir,
            &settings.data_dir,
        )?;
        let commands = Arc::new(Commands {
            store: store.clone(),
            appender: appender.clone(),
            runtime: runtime.clone(),
            plugins: plugins.clone(),
            metrics: metrics.clone(),
            cache: StateCache::new(settings.state_cache_entries, 1 << 20),
            locks: StreamLocks::default(),
            snapshot_every: settings.snapshot_every.max(1),
        });
        let tenants = Arc::new(Tenants::new(store.clone(), &operator_token));
        let projections = Projections::new(
            store.clone(),
            runtime.clone(),
            heads.clone(),
            tenants.clone(),
            plugins.clone(),
            settings.projection_builds_kept,
            settings.poll_every,
        );
        projections.resume_all().await?;
        plugins.resume_verifications(&tenants).await?;
        let warmer = Warmer {
            plugins: plugins.clone(),
            tenants: tenants.clone(),
            commands: commands.clone(),
        };
        let forget = forgetter(&plugins, &commands, &projections, &heads, &live);
        let store_for_fleet = store.clone();
        let app = Arc::new(App {
            projections,
            tenants,
            store,
            appender,
            heads,
            live,
            runtime,
            plugins,
            commands,
            warmer: warmer.clone(),
            forget,
            metrics,
            fleet: Fleet::new(settings.host_id.clone(), store_for_fleet.clone()),
            reachability: Reachability::start(store_for_fleet),
        });
        let handles = FleetHandles {
            store: app.store.clone(),
            heads: app.heads.clone(),
            live: app.live.clone(),
            plugins: app.plugins.clone(),
            projections: app.projections.clone(),
            tenants: app.tenants.clone(),
            forget_tenant: app.forget.clone(),
        };
        app.fleet.start(handles, settings.poll_every * 15).await?;
        crate::commands::warm::start(warmer);
        if let Some(retention) = settings.command_retention {
            tokio::spawn(forget_old_command_ids(app.store.clone(), retention));
        }
        Ok(app)
    }
}

impl App {
    /// Forgets a deleted tenant everywhere this host keeps something of it (its rows
    /// are gone already).
    pub fn forget_tenant(&self, tenant: &crate::store::TenantId) {
        (self.forget)(tenant);
    }
}

/// How a deleted tenant is forgotten everywhere this host keeps something of it: shared
/// by `App::forget_tenant` (a deletion here) and the fleet (a deletion by another host).
fn forgetter(
    plugins: &Arc<Plugins>,
    commands: &Arc<Commands>,
    projections: &Arc<Projections>,
    heads: &Arc<LogHeads>,
    live: &Arc<Live>,
) -> Arc<dyn Fn(&crate::store::TenantId) + Send + Sync> {
    let (plugins, commands, projections, heads, live) = (
        plugins.clone(),
        commands.clone(),
        projections.clone(),
        heads.clone(),
        live.clone(),
    );
    Arc::new(move |tenant: &crate::store::TenantId| {
        plugins.forget(tenant);
        commands.forget_tenant(tenant);
        projections.forget_tenant(tenant);
        heads.remove(tenant);
        live.remove(tenant);
    })
}

/// Retention of command ids: once an hour, ids older than `retention` are forgotten
/// (a repeat after that is a new command).
async fn forget_old_command_ids(store: Arc<dyn EventStore>, retention: std::time::Duration) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every.tick().await;
        let before = crate::store::now_ms() - retention.as_millis() as i64;
        match store.prune_commands(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(forgotten = n, "command ids past their retention forgotten"),
            Err(error) => tracing::warn!("forgetting old command ids failed: {error:#}"),
        }
    }
}

async fn open_store(
    database: Option<&str>,
    data_dir: &Path,
) -> anyhow::Result<Arc<dyn EventStore>> {
    let url = match database {
        Some(url) => url.to_owned(),
        None => format!("sqlite://{}", data_dir.join("cairn.db").display()),
    };
    if url.starts_with("sqlite:") {
        tracing::info!(backend = "sqlite", file = %url.trim_start_matches("sqlite://"), "opening the store");
        Ok(Arc::new(
            crate::store::sqlite::SqliteStore::open(&url).await?,
        ))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        tracing::info!(backend = "postgres", server = %without_password(&url), "opening the store");
        Ok(Arc::new(
            crate::store::postgres::PostgresStore::open(&url).await?,
        ))
    } else {
        anyhow::bail!("unsupported database url {url}: use sqlite://PATH or postgres://…")
    }
}

/// A database URL fit for a log line: any password replaced by `***`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or_default();
            let hidden = if credentials.contains(':') {
                ":***"
            } else {
                ""
            };
            format!("{scheme}://{user}{hidden}@{host}")
        }
        None => url.to_owned(),
    }
}
