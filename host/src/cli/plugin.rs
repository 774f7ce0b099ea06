//! `cairn plugin …`: pushing a component (upload and compile, then verification by
//! replay followed on `status_url` with a progress bar until it settles), listing
//! plugins and their versions, activation and rollback, a plugin's log lines.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::Context;
use super::client::{CliError, query, segment};
use super::output::{self, num, print, str_of};

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Upload a component (`.wasm`) and follow it until it serves or is rejected.
    Push {
        /// The component, e.g. target/wasm32-wasip2/release/account.wasm.
        path: PathBuf,
        /// The plugin's name; default: the file's name without `.wasm`, `_` written `-`.
        #[arg(long)]
        name: Option<String>,
        /// `warn` (a changed state is a warning; the default) or `strict` (it rejects).
        #[arg(long, value_parser = ["warn", "strict"])]
        verify: Option<String>,
        /// Stage the version once verified instead of activating it.
        #[arg(long)]
        manual: bool,
        /// Return after the upload without following verification.
        #[arg(long)]
        no_wait: bool,
    },
    /// The tenant's plugins and their versions.
    List,
    /// One plugin with every version.
    Show { name: String },
    /// Activate a verified version, or roll back to an older one.
    Activate {
        name: String,
        version: u64,
        /// Check the version against history again before it serves.
        #[arg(long)]
        verify: bool,
    },
    /// What the plugin printed (stdout and stderr, bounded).
    Logs { name: String },
}

pub async fn run(context: &Context, command: PluginCommand) -> Result<(), CliError> {
    let (client, tenant) = context.tenant_client()?;
    let json = context.json;
    let t = segment(&tenant);
    match command {
        PluginCommand::Push {
            path,
            name,
            verify,
            manual,
            no_wait,
        } => {
            let bytes = std::fs::read(&path)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
            let name = match name {
                Some(name) => name,
                None => default_name(&path)?,
            };
            let spinner = output::spinner(format!(
                "uploading and compiling {name} ({} KiB)",
                bytes.len().div_ceil(1024)
            ));
            let request = client
                .request(
                    Method::PUT,
                    &format!(
                        "/t/{t}/plugins/{}{}",
                        segment(&name),
                        query(&[
                            ("verify", verify),
                            ("activate", manual.then(|| "manual".to_owned())),
                        ])
                    ),
                )
                .header("content-type", "application/wasm")
                .body(bytes);
            let outcome = client.call(request).await;
            spinner.finish_and_clear();
            let (status, answer) = outcome?;
            if status != StatusCode::ACCEPTED || no_wait {
                print(json, &answer, || pushed_line(&answer, status));
                return Ok(());
            }
            let url = str_of(&answer, "status_url").to_owned();
            let settled = follow_verification(&client, &name, &url).await?;
            if str_of(&settled, "status") == "rejected" {
                return Err(CliError::Outcome {
                    message: format!(
                        "{name} version {} was rejected by verification\n{}",
                        num(&settled, "version"),
                        report_text(settled.get("verification").unwrap_or(&Value::Null))
                    ),
                    body: settled,
                });
            }
            print(json, &settled, || {
                let mut out = format!(
                    "{name} version {} verified: {}",
                    num(&settled, "version"),
                    str_of(&settled, "status")
                );
                let report = report_text(settled.get("verification").unwrap_or(&Value::Null));
                if !report.is_empty() {
                    out.push('\n');
                    out.push_str(&report);
                }
                out
            });
        }
        PluginCommand::List => {
            let answer = client.get(&format!("/t/{t}/plugins")).await?;
            print(json, &answer, || {
                let rows: Vec<Vec<String>> = answer
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|p| {
                        vec![
                            str_of(p, "name").to_owned(),
                            str_of(p, "kind").to_owned(),
                            num(p, "active_version"),
                            versions_text(p),
                        ]
                    })
                    .collect();
                if rows.is_empty() {
                    return "no plugins".to_owned();
                }
                output::table(&["NAME", "KIND", "ACTIVE", "VERSIONS"], &rows)
            });
        }
        PluginCommand::Show { name } => {
            let answer = client
                .get(&format!("/t/{t}/plugins/{}", segment(&name)))
                .await?;
            print(json, &answer, || {
                let rows: Vec<Vec<String>> = answer["versions"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|v| {
                        vec![
                            num(v, "version"),
                            str_of(v, "status").to_owned(),
                            str_of(v, "uploaded_at").to_owned(),
                            str_of(v, "digest").to_owned(),
                        ]
                    })
                    .collect();
                format!(
                    "{} ({}), active version {}\n{}",
                    str_of(&answer, "name"),
                    str_of(&answer, "kind"),
                    num(&answer, "active_version"),
                    output::table(&["VERSION", "STATUS", "UPLOADED", "DIGEST"], &rows)
                )
            });
        }
        PluginCommand::Activate {
            name,
            version,
            verify,
        } => {
            let path = format!("/t/{t}/plugins/{}/activate", segment(&name));
            let request = client
                .request(Method::POST, &path)
                .json(&json!({"version": version, "verify": verify}));
            let (status, answer) = client.call(request).await?;
            if status == StatusCode::ACCEPTED {
                let url = format!("/t/{t}/plugins/{}/versions/{version}", segment(&name));
                let settled = follow_verification(&client, &name, &url).await?;
                if str_of(&settled, "status") == "rejected" {
                    return Err(CliError::Outcome {
                        message: format!("{name} version {version} was rejected by verification"),
                        body: settled,
                    });
                }
            }
            let answer = if status == StatusCode::ACCEPTED {
                client
                    .get(&format!("/t/{t}/plugins/{}", segment(&name)))
                    .await?
            } else {
                answer
            };
            print(json, &answer, || {
                format!("{name}: active version {}", num(&answer, "active_version"))
            });
        }
        PluginCommand::Logs { name } => {
            let answer = client
                .get(&format!("/t/{t}/plugins/{}/logs", segment(&name)))
                .await?;
            print(json, &answer, || {
                answer["lines"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|l| match l {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
    }
    Ok(())
}

/// `account.wasm` → `account`; `bank_account.wasm` (cargo's file for `bank-account`)
/// → `bank-account`.
pub fn default_name(path: &std::path::Path) -> Result<String, CliError> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| CliError::Usage(format!("{}: pass --name", path.display())))?;
    Ok(stem.replace('_', "-").to_ascii_lowercase())
}

/// Polls a version's status until it is no longer `verifying`, drawing the replay's
/// progress (events folded of the history, streams checked).
async fn follow_verification(
    client: &super::client::Client,
    name: &str,
    url: &str,
) -> Result<Value, CliError> {
    let bar = output::bar(format!("verifying {name}"));
    loop {
        let version = match client.get(url).await {
            Ok(version) => version,
            Err(e) => {
                bar.abandon();
                return Err(e);
            }
        };
        let report = version.get("verification").cloned().unwrap_or(Value::Null);
        let total = report["events_total"].as_u64().unwrap_or(0);
        bar.set_length(total.max(report["events_folded"].as_u64().unwrap_or(0)));
        bar.set_position(report["events_folded"].as_u64().unwrap_or(0));
        bar.set_message(format!(
            "events, {}/{} streams",
            num(&report, "streams_checked"),
            num(&report, "streams_total")
        ));
        if str_of(&version, "status") != "verifying" {
            bar.finish_and_clear();
            return Ok(version);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn pushed_line(answer: &Value, status: StatusCode) -> String {
    let head = format!(
        "{} version {} ({}) {}: {}",
        str_of(answer, "name"),
        num(answer, "version"),
        str_of(answer, "kind"),
        if status == StatusCode::OK {
            "unchanged (the same bytes as the newest version)"
        } else {
            "uploaded"
        },
        str_of(answer, "status"),
    );
    format!("{head}\ndigest: {}", str_of(answer, "digest"))
}

/// `v1 active, v2 rejected`.
fn versions_text(plugin: &Value) -> String {
    plugin["versions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|v| format!("v{} {}", num(v, "version"), str_of(v, "status")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Failures a report shows a person (`--json` has the server's whole report).
const SHOWN_FAILURES: usize = 3;

/// A verification report for a person: the outcome, the counts, the first failures
/// and state differences.
pub fn report_text(report: &Value) -> String {
    if report.is_null() {
        return String::new();
    }
    let mut out = format!(
        "  checked {}/{} streams, {} events",
        num(report, "streams_checked"),
        num(report, "streams_total"),
        num(report, "events_folded")
    );
    if let Some(outcome) = report["outcome"].as_str() {
        out = format!("  {outcome}\n{out}");
    }
    let failures = report["failures"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for failure in failures.iter().take(SHOWN_FAILURES) {
        out.push_str(&format!(
            "\n  failed: {} v{} ({}) {}: {}",
            str_of(failure, "stream_id"),
            num(failure, "version"),
            str_of(failure, "event_type"),
            str_of(failure, "reason"),
            str_of(failure, "error")
        ));
    }
    let total = report["failures_total"]
        .as_u64()
        .unwrap_or(failures.len() as u64);
    if total > SHOWN_FAILURES as u64 {
        out.push_str(&format!(
            "\n  … {} more failures (all of the report: --json)",
            total - SHOWN_FAILURES as u64
        ));
    }
    let differences = report["state_differences"].as_u64().unwrap_or(0);
    if differences > 0 {
        out.push_str(&format!(
            "\n  {differences} streams fold to a different state"
        ));
        for d in report["difference_examples"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            out.push_str(&format!(
                "\n    {} v{}: {} → {}",
                str_of(d, "stream_id"),
                num(d, "version"),
                d["active_state"],
                d["new_state"]
            ));
        }
    }
    out
}
