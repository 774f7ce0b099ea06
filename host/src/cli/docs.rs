//! `cairn docs get|list`: reading a projection's documents (one by key, or a page by
//! key prefix), optionally waiting until the projection has passed a position.

use clap::Subcommand;
use serde_json::Value;

use super::Context;
use super::client::{CliError, query, segment};
use super::output::{self, print, str_of};

#[derive(Subcommand, Debug)]
pub enum DocsCommand {
    /// One document: `cairn docs get balances account-42`.
    Get {
        /// The projection.
        name: String,
        key: String,
        /// Wait until the projection has passed this position (read your writes).
        #[arg(long)]
        min_position: Option<u64>,
    },
    /// Documents by key: `cairn docs list balances --prefix account-`.
    List {
        name: String,
        #[arg(long)]
        prefix: Option<String>,
        /// Start after this key (the `next` of the previous page).
        #[arg(long)]
        after: Option<String>,
        #[arg(long)]
        limit: Option<u64>,
        #[arg(long)]
        min_position: Option<u64>,
    },
}

pub async fn run(context: &Context, command: DocsCommand) -> Result<(), CliError> {
    let (client, tenant) = context.tenant_client()?;
    let base = format!("/t/{}/projections", segment(&tenant));
    match command {
        DocsCommand::Get {
            name,
            key,
            min_position,
        } => {
            let answer = client
                .get(&format!(
                    "{base}/{}/docs/{}{}",
                    segment(&name),
                    segment(&key),
                    query(&[("min_position", min_position.map(|p| p.to_string()))])
                ))
                .await?;
            print(context.json, &answer, || output::pretty(&answer));
        }
        DocsCommand::List {
            name,
            prefix,
            after,
            limit,
            min_position,
        } => {
            let answer = client
                .get(&format!(
                    "{base}/{}/docs{}",
                    segment(&name),
                    query(&[
                        ("prefix", prefix),
                        ("after", after),
                        ("limit", limit.map(|l| l.to_string())),
                        ("min_position", min_position.map(|p| p.to_string())),
                    ])
                ))
                .await?;
            print(context.json, &answer, || {
                let mut lines: Vec<String> = answer["docs"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|d| {
                        format!(
                            "{}  {}",
                            str_of(d, "key"),
                            d.get("doc").unwrap_or(&Value::Null)
                        )
                    })
                    .collect();
                if lines.is_empty() {
                    lines.push("no documents".to_owned());
                }
                if let Some(next) = answer["next"].as_str() {
                    lines.push(format!("(more: --after {next})"));
                }
                lines.join("\n")
            });
        }
    }
    Ok(())
}
