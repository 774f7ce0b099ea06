//! `cairn tail`: follows `/t/{tenant}/events/live` (Server-Sent Events), printing each
//! event as it commits; resumes by itself from the last position when the server
//! drops it for falling behind; Ctrl-C (SIGINT) ends it with exit 0.

use std::io::Write;

use clap::Args;
use futures::StreamExt;
use serde_json::Value;

use super::Context;
use super::client::{CliError, query, segment};
use super::output::event_line;

#[derive(Args, Debug)]
pub struct TailArgs {
    /// Only these event types, e.g. `Deposited,Withdrawn`.
    #[arg(long, value_delimiter = ',')]
    pub types: Vec<String>,
    /// Start after this position (default: from the start of the log: 0). The backlog
    /// comes first, then new events as they commit.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
}

/// One Server-Sent Event.
#[derive(Debug, Default, PartialEq)]
pub struct Frame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Takes the complete frames out of `buffer` (comments and heartbeats skipped); bytes,
/// so that a character split between chunks is decoded whole.
pub fn frames(buffer: &mut Vec<u8>) -> Vec<Frame> {
    let mut out = Vec::new();
    while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
        let bytes: Vec<u8> = buffer.drain(..end + 2).collect();
        let block = String::from_utf8_lossy(&bytes);
        let mut frame = Frame::default();
        let mut has_data = false;
        for line in block.lines() {
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line, ""),
            };
            match field {
                "" => {} // a comment (heartbeat)
                "id" => frame.id = Some(value.to_owned()),
                "event" => frame.event = Some(value.to_owned()),
                "data" => {
                    if has_data {
                        frame.data.push('\n');
                    }
                    frame.data.push_str(value);
                    has_data = true;
                }
                _ => {}
            }
        }
        if has_data || frame.event.is_some() {
            out.push(frame);
        }
    }
    out
}

/// Writes a line to stdout; `false` when stdout is gone (`cairn tail | head`).
fn emit(line: &str) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
}

pub async fn run(context: &Context, args: TailArgs) -> Result<(), CliError> {
    let (client, tenant) = context.tenant_client()?;
    // Registered before connecting, so that an interrupt at any point ends cleanly.
    #[cfg(unix)]
    let mut interrupt =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(|e| CliError::Usage(format!("installing the SIGINT handler: {e}")))?;
    let stopped = async {
        #[cfg(unix)]
        interrupt.recv().await;
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    };
    tokio::select! {
        outcome = follow(context, &client, &tenant, &args) => outcome,
        _ = stopped => Ok(()),
    }
}

async fn follow(
    context: &Context,
    client: &super::client::Client,
    tenant: &str,
    args: &TailArgs,
) -> Result<(), CliError> {
    let types = (!args.types.is_empty()).then(|| args.types.join(","));
    let mut after = args.after;
    loop {
        let path = format!(
            "/t/{}/events/live{}",
            segment(tenant),
            query(&[("after", Some(after.to_string())), ("types", types.clone())])
        );
        let response = client
            .send(
                client
                    .request(reqwest::Method::GET, &path)
                    .header("accept", "text/event-stream"),
            )
            .await?;
        let mut body = response.bytes_stream();
        let mut buffer = Vec::new();
        let mut resumed = false;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| CliError::Unreachable {
                url: client.base.clone(),
                error: format!("the live stream broke off: {e}"),
            })?;
            buffer.extend_from_slice(&chunk);
            for frame in frames(&mut buffer) {
                match frame.event.as_deref() {
                    Some("caught-up") => {
                        let position = serde_json::from_str::<Value>(&frame.data)
                            .ok()
                            .and_then(|d| d["position"].as_u64())
                            .unwrap_or(after);
                        eprintln!("-- caught up at position {position}; following (Ctrl-C stops)");
                    }
                    Some("dropped") => {
                        // Too far behind: resume from the store where it stopped.
                        if let Some(position) = serde_json::from_str::<Value>(&frame.data)
                            .ok()
                            .and_then(|d| d["position"].as_u64())
                        {
                            after = after.max(position);
                        }
                        eprintln!("-- the server dropped this subscriber; resuming after {after}");
                        resumed = true;
                    }
                    _ => {
                        if let Some(position) = frame.id.as_deref().and_then(|i| i.parse().ok()) {
                            after = position;
                        }
                        let line = if context.json {
                            frame.data.clone()
                        } else {
                            match serde_json::from_str::<Value>(&frame.data) {
                                Ok(event) => event_line(&event),
                                Err(_) => frame.data.clone(),
                            }
                        };
                        if !emit(&line) {
                            return Ok(());
                        }
                    }
                }
            }
            if resumed {
                break;
            }
        }
        if !resumed {
            return Err(CliError::Failed {
                status: None,
                body: Value::String("the server ended the live stream".into()),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_and_heartbeats_skipped() {
        let mut buffer =
            ": heartbeat\n\nid: 3\nevent: Deposited\ndata: {\"a\":1}\n\nevent: caught-up\ndata: {}\n\nid: 4\n"
                .as_bytes()
                .to_vec();
        let got = frames(&mut buffer);
        assert_eq!(
            got,
            vec![
                Frame {
                    id: Some("3".into()),
                    event: Some("Deposited".into()),
                    data: "{\"a\":1}".into()
                },
                Frame {
                    id: None,
                    event: Some("caught-up".into()),
                    data: "{}".into()
                },
            ]
        );
        assert_eq!(buffer, b"id: 4\n");
    }
}
