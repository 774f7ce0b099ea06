//! `cairn tenant …`: the operator's commands on `/admin/tenants` (create, optionally
//! saving a profile with the new token; list; show; delete; rotate-token).

use clap::Subcommand;
use serde_json::{Value, json};

use super::client::{CliError, segment};
use super::config::{self, Profile};
use super::output::{self, num, print, str_of};
use super::{Context, json_arg};

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Create a tenant; its token is printed once (keep it, or `--save-profile`).
    Create {
        /// `[a-z0-9][a-z0-9-]{0,62}`.
        id: String,
        /// Limits as JSON, e.g. `{"max_stored_bytes": 1000000}` (docs/limits.md).
        #[arg(long)]
        limits: Option<String>,
        /// Also write a profile of this name to the config file, with the server's
        /// URL, the tenant and its new token.
        #[arg(long, value_name = "NAME")]
        save_profile: Option<String>,
    },
    /// Every tenant with its usage.
    List,
    /// One tenant's limits and usage (default: the configured tenant).
    Show { id: Option<String> },
    /// Delete a tenant and every row of it (asks first on a terminal, unless `--yes`).
    Delete {
        id: String,
        #[arg(long, short)]
        yes: bool,
    },
    /// A new token for the tenant; the old one stops working.
    RotateToken {
        id: Option<String>,
        /// Write the new token into this profile of the config file (it must exist).
        #[arg(long, value_name = "NAME")]
        save_profile: Option<String>,
    },
}

pub async fn run(context: &Context, command: TenantCommand) -> Result<(), CliError> {
    let client = context.operator_client()?;
    let json = context.json;
    let pick = |id: Option<String>| -> Result<String, CliError> {
        match id {
            Some(id) => Ok(id),
            None => context.target.tenant().map(str::to_owned),
        }
    };
    match command {
        TenantCommand::Create {
            id,
            limits,
            save_profile,
        } => {
            let mut body = json!({"id": id});
            if let Some(limits) = limits {
                body["limits"] = json_arg("--limits", &limits)?;
            }
            let config_path = match &save_profile {
                Some(name) => {
                    let path = config::config_path().ok_or_else(|| {
                        CliError::Usage("no config file: set CAIRN_CONFIG or HOME".into())
                    })?;
                    config::check_new_profile(&path, name)?;
                    Some((path, name.clone()))
                }
                None => None,
            };
            let answer = client.post("/admin/tenants", &body).await?;
            let token = str_of(&answer, "token").to_owned();
            // The token first: it is shown only once, whatever happens to the file.
            print(json, &answer, || {
                format!("tenant {id} created\ntoken: {token}\n(shown only once: keep it)")
            });
            if let Some((path, name)) = &config_path {
                let profile = Profile {
                    url: Some(context.target.url.clone()),
                    tenant: Some(id.clone()),
                    token: Some(token.clone()),
                    admin_token: None,
                };
                config::append_profile(path, name, &profile)?;
                if !json {
                    println!(
                        "saved as profile {name} in {} (use --profile {name} or CAIRN_PROFILE={name})",
                        path.display()
                    );
                }
            }
        }
        TenantCommand::List => {
            let answer = client.get("/admin/tenants").await?;
            print(json, &answer, || {
                let rows: Vec<Vec<String>> = answer
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|t| {
                        let usage = t.get("usage").cloned().unwrap_or(Value::Null);
                        vec![
                            str_of(t, "id").to_owned(),
                            num(&usage, "events_stored"),
                            num(&usage, "bytes_stored"),
                            num(&usage, "commands"),
                            num(&usage, "plugin_calls"),
                        ]
                    })
                    .collect();
                if rows.is_empty() {
                    return "no tenants".to_owned();
                }
                output::table(
                    &["ID", "EVENTS", "BYTES", "COMMANDS", "PLUGIN CALLS"],
                    &rows,
                )
            });
        }
        TenantCommand::Show { id } => {
            let id = pick(id)?;
            let answer = client
                .get(&format!("/admin/tenants/{}", segment(&id)))
                .await?;
            print(json, &answer, || {
                format!(
                    "tenant {}\nlimits: {}\nusage: {}",
                    str_of(&answer, "id"),
                    output::pretty(answer.get("limits").unwrap_or(&Value::Null)),
                    output::pretty(answer.get("usage").unwrap_or(&Value::Null)),
                )
            });
        }
        TenantCommand::Delete { id, yes } => {
            if !yes && !confirmed(&id)? {
                return Err(CliError::Usage("not deleted".into()));
            }
            let answer = client
                .delete(&format!("/admin/tenants/{}", segment(&id)))
                .await?;
            print(json, &answer, || format!("tenant {id} deleted"));
        }
        TenantCommand::RotateToken { id, save_profile } => {
            let id = pick(id)?;
            let answer = client
                .post(
                    &format!("/admin/tenants/{}/token", segment(&id)),
                    &json!({}),
                )
                .await?;
            let token = str_of(&answer, "token");
            print(json, &answer, || {
                format!("tenant {id}: new token {token}\n(the old one no longer works)")
            });
            if let Some(name) = &save_profile {
                replace_token(name, token)?;
            }
        }
    }
    Ok(())
}

/// On a terminal, asks for the tenant's id before deleting it; elsewhere (scripts)
/// deletes without asking.
fn confirmed(id: &str) -> Result<bool, CliError> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Ok(true);
    }
    eprint!("This deletes every event, plugin and document of {id}. Type its id to go on: ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::Usage(format!("reading the answer: {e}")))?;
    Ok(line.trim() == id)
}

/// Rewrites the `token` of one profile (the file is re-serialised: comments go).
fn replace_token(name: &str, token: &str) -> Result<(), CliError> {
    let path = config::config_path()
        .ok_or_else(|| CliError::Usage("no config file: set CAIRN_CONFIG or HOME".into()))?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
    let mut table: toml::Table = toml::from_str(&text)
        .map_err(|e| CliError::Usage(format!("{} does not parse: {e}", path.display())))?;
    let profile = table
        .get_mut("profiles")
        .and_then(|p| p.get_mut(name))
        .and_then(toml::Value::as_table_mut)
        .ok_or_else(|| CliError::Usage(format!("no profile {name:?} in {}", path.display())))?;
    profile.insert("token".into(), toml::Value::String(token.to_owned()));
    let text =
        toml::to_string(&table).map_err(|e| CliError::Usage(format!("writing the config: {e}")))?;
    std::fs::write(&path, text)
        .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", path.display())))
}
