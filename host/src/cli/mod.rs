//! The client side of the `cairn` binary: commands that talk to a Cairn server over
//! its HTTP contract (docs/api.md), and `cairn new`, which writes a plugin crate.
//! This module owns the command tree (clap) and the dispatch; each group lives in a
//! file of its own, the configuration in `config.rs`, HTTP and exit codes in
//! `client.rs`, printing in `output.rs`. docs/cli.md is the user's page.

pub mod aggregate;
pub mod client;
pub mod config;
pub mod docs;
pub mod error;
pub mod output;
pub mod plugin;
pub mod projection;
pub mod scaffold;
pub mod tail;
pub mod tenant;

use std::process::ExitCode;

use clap::Subcommand;

use client::{CliError, Client};
use config::{GlobalArgs, Target};

/// The client commands, beside `cairn serve`.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Tenants: create, list, show, delete, rotate-token (operator token).
    #[command(subcommand)]
    Tenant(tenant::TenantCommand),
    /// Plugins: push a component (with verification progress), list, activate, logs.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Send a command to an aggregate: `cairn command account 42 Deposit '{"amount":5}'`.
    Command(aggregate::CommandArgs),
    /// An aggregate's state, now or as it was (`--version N`, `--at TIME`).
    State(aggregate::StateArgs),
    /// Raw streams: `cairn stream read account-42`.
    #[command(subcommand)]
    Stream(aggregate::StreamCommand),
    /// Follow the tenant's log live (Ctrl-C stops).
    Tail(tail::TailArgs),
    /// Projections: status, promote (rollback), rebuild, with `--watch` progress.
    #[command(subcommand)]
    Projection(projection::ProjectionCommand),
    /// A projection's documents: get one, list by prefix.
    #[command(subcommand)]
    Docs(docs::DocsCommand),
    /// Write a new plugin crate: `cairn new aggregate NAME`, `cairn new projection NAME`.
    #[command(subcommand)]
    New(scaffold::NewCommand),
}

/// What every command gets: the merged configuration.
pub struct Context {
    pub target: Target,
    pub json: bool,
}

impl Context {
    /// A client for `/t/{tenant}/…` and the tenant's id.
    pub fn tenant_client(&self) -> Result<(Client, String), CliError> {
        let tenant = self.target.tenant()?.to_owned();
        let token = self.target.tenant_token().ok_or_else(|| {
            CliError::Usage(
                "no token: pass --token, set CAIRN_TOKEN, or name one in a profile".into(),
            )
        })?;
        let client = Client::new(&self.target, Some(token))?;
        Ok((client, tenant))
    }

    /// A client for `/admin/…`.
    pub fn operator_client(&self) -> Result<Client, CliError> {
        let token = self.target.operator_token().ok_or_else(|| {
            CliError::Usage(
                "no operator token: pass --token, set CAIRN_ADMIN_TOKEN, or give a profile \
                 an admin_token"
                    .into(),
            )
        })?;
        Client::new(&self.target, Some(token))
    }
}

/// Runs one client command to its exit code.
pub fn run(global: GlobalArgs, command: ClientCommand) -> ExitCode {
    let json = global.json;
    // Scaffolding needs no server and no configuration.
    if let ClientCommand::New(new) = command {
        return match scaffold::run(new) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => e.report(json),
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let outcome = runtime.block_on(async move {
        let target = config::resolve(&global)?;
        let context = Context { target, json };
        match command {
            ClientCommand::Tenant(c) => tenant::run(&context, c).await,
            ClientCommand::Plugin(c) => plugin::run(&context, c).await,
            ClientCommand::Command(c) => aggregate::command(&context, c).await,
            ClientCommand::State(c) => aggregate::state(&context, c).await,
            ClientCommand::Stream(c) => aggregate::stream(&context, c).await,
            ClientCommand::Tail(c) => tail::run(&context, c).await,
            ClientCommand::Projection(c) => projection::run(&context, c).await,
            ClientCommand::Docs(c) => docs::run(&context, c).await,
            ClientCommand::New(_) => unreachable!("handled above"),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(json),
    }
}

/// Parses a JSON argument (a payload, limits), refusing with a usage error.
pub fn json_arg(what: &str, raw: &str) -> Result<serde_json::Value, CliError> {
    serde_json::from_str(raw).map_err(|e| CliError::Usage(format!("{what} is not JSON: {e}")))
}
