//! `cairn projection …`: status of one or every projection, promote (and roll back) by
//! plugin version or build id, rebuild, and `--watch`: a progress bar over a build's
//! position against the log's head, with the server's events/s and an ETA, until the
//! build has caught up (or is retired or parked as failed).

use std::time::Duration;

use clap::Subcommand;
use serde_json::{Value, json};

use super::Context;
use super::client::{CliError, Client, segment};
use super::output::{self, num, print, str_of};

#[derive(Subcommand, Debug)]
pub enum ProjectionCommand {
    /// Builds, positions, lag and events/s (every projection without a name).
    Status {
        name: Option<String>,
        /// Follow the newest build that is still catching up.
        #[arg(long)]
        watch: bool,
    },
    /// Make a kept build active: by plugin version (`promote balances 1`) or by build
    /// id (`--build 3`). Rolls back as well.
    Promote {
        name: String,
        /// The plugin version whose build to make active.
        #[arg(required_unless_present = "build")]
        version: Option<u64>,
        #[arg(long)]
        build: Option<u64>,
        /// Follow the promoted build until it has caught up.
        #[arg(long)]
        watch: bool,
    },
    /// Build the active version's code again beside the active build (promoted when
    /// caught up).
    Rebuild {
        name: String,
        /// Follow the new build until it has caught up.
        #[arg(long)]
        watch: bool,
    },
}

pub async fn run(context: &Context, command: ProjectionCommand) -> Result<(), CliError> {
    let (client, tenant) = context.tenant_client()?;
    let json = context.json;
    let base = format!("/t/{}/projections", segment(&tenant));
    match command {
        ProjectionCommand::Status { name: None, .. } => {
            let answer = client.get(&base).await?;
            print(json, &answer, || {
                let list = answer.as_array().map(Vec::as_slice).unwrap_or_default();
                if list.is_empty() {
                    return "no projections".to_owned();
                }
                list.iter()
                    .map(status_text)
                    .collect::<Vec<_>>()
                    .join("\n\n")
            });
        }
        ProjectionCommand::Status {
            name: Some(name),
            watch,
        } => {
            let path = format!("{base}/{}", segment(&name));
            let answer = client.get(&path).await?;
            let building = answer["versions"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter(|b| str_of(b, "status") == "building")
                .filter_map(|b| b["build"].as_u64())
                .max();
            match building {
                Some(build) if watch => watch_build(context, &client, &path, build).await?,
                _ => print(json, &answer, || status_text(&answer)),
            }
        }
        ProjectionCommand::Promote {
            name,
            version,
            build,
            watch,
        } => {
            let mut body = json!({});
            if let Some(version) = version {
                body["version"] = json!(version);
            }
            if let Some(build) = build {
                body["build"] = json!(build);
            }
            let path = format!("{base}/{}", segment(&name));
            let answer = client.post(&format!("{path}/promote"), &body).await?;
            print(json, &answer, || {
                format!(
                    "{name}: active version {}, build {}",
                    num(&answer, "active_version"),
                    num(&answer, "active_build")
                )
            });
            if watch && let Some(build) = answer["active_build"].as_u64() {
                watch_build(context, &client, &path, build).await?;
            }
        }
        ProjectionCommand::Rebuild { name, watch } => {
            let path = format!("{base}/{}", segment(&name));
            let answer = client.post(&format!("{path}/rebuild"), &json!({})).await?;
            print(json, &answer, || {
                format!(
                    "{name}: rebuilding version {} as build {}",
                    num(&answer, "version"),
                    num(&answer, "build")
                )
            });
            if watch && let Some(build) = answer["build"].as_u64() {
                watch_build(context, &client, &path, build).await?;
            }
        }
    }
    Ok(())
}

/// One projection for a person: its active build and a table of its builds.
fn status_text(projection: &Value) -> String {
    let rows: Vec<Vec<String>> = projection["versions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|b| {
            vec![
                num(b, "build"),
                num(b, "version"),
                str_of(b, "status").to_owned(),
                num(b, "position"),
                num(b, "lag"),
                b["events_per_second"]
                    .as_f64()
                    .map_or("-".to_owned(), |r| format!("{r:.0}")),
                b["error"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    format!(
        "{}: active version {}, build {}\n{}",
        str_of(projection, "name"),
        num(projection, "active_version"),
        num(projection, "active_build"),
        output::table(
            &[
                "BUILD", "VERSION", "STATUS", "POSITION", "LAG", "EVENTS/S", "ERROR"
            ],
            &rows
        )
    )
}

/// Polls the projection until `build` has caught up and is active, was retired
/// (another build was chosen meanwhile) or parked as failed (exit 1), drawing
/// position / head, the server's events/s and an ETA.
async fn watch_build(
    context: &Context,
    client: &Client,
    path: &str,
    build: u64,
) -> Result<(), CliError> {
    let bar = output::bar(format!("build {build}"));
    let settled = loop {
        let answer = match client.get(path).await {
            Ok(answer) => answer,
            Err(e) => {
                bar.abandon();
                return Err(e);
            }
        };
        let Some(entry) = answer["versions"]
            .as_array()
            .and_then(|list| list.iter().find(|b| b["build"].as_u64() == Some(build)))
            .cloned()
        else {
            bar.abandon();
            return Err(CliError::Outcome {
                message: format!("build {build} is gone (deleted or replaced)"),
                body: answer,
            });
        };
        let position = entry["position"].as_u64().unwrap_or(0);
        let head = position + entry["lag"].as_u64().unwrap_or(0);
        bar.set_length(head);
        bar.set_position(position);
        bar.set_message(format!(
            "{} events/s",
            entry["events_per_second"]
                .as_f64()
                .map_or("-".to_owned(), |r| format!("{r:.0}"))
        ));
        let status = str_of(&entry, "status");
        let caught_up = entry["lag"].as_u64() == Some(0);
        if status == "failed" || status == "retired" || (status == "active" && caught_up) {
            bar.finish_and_clear();
            break (answer, entry);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let (answer, entry) = settled;
    if str_of(&entry, "status") == "failed" {
        return Err(CliError::Outcome {
            message: format!(
                "build {build} failed at position {}: {}",
                num(&entry, "position"),
                str_of(&entry, "error")
            ),
            body: answer,
        });
    }
    print(context.json, &answer, || {
        format!(
            "build {build} (version {}) {} at position {}",
            num(&entry, "version"),
            if str_of(&entry, "status") == "active" {
                "caught up and active"
            } else {
                "retired (another build was chosen meanwhile)"
            },
            num(&entry, "position")
        )
    });
    Ok(())
}
