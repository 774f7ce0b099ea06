//! `cairn command`, `cairn state` and `cairn stream read`: sending a command to an
//! aggregate, reading its state (now, at a version or at a time) and reading a raw
//! stream page by page.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::{CliError, query, segment};
use super::output::{self, event_line, num, print, str_of};
use super::{Context, json_arg};

#[derive(Args, Debug)]
pub struct CommandArgs {
    /// The aggregate plugin, e.g. `account`.
    pub aggregate: String,
    /// The aggregate's id, e.g. `42` (the stream is `account-42`).
    pub id: String,
    /// The command's type, e.g. `Deposit`.
    #[arg(value_name = "TYPE")]
    pub command_type: String,
    /// The payload as JSON, e.g. `{"amount": 5}` (default `{}`).
    pub payload: Option<String>,
    /// A version number, `no_stream`, `stream_exists` or `any` (409 when it does not hold).
    #[arg(long)]
    pub expected_version: Option<String>,
    /// An idempotency key: the same request again gets the first answer.
    #[arg(long)]
    pub command_id: Option<String>,
    /// Metadata as JSON, kept on every event.
    #[arg(long)]
    pub metadata: Option<String>,
}

#[derive(Args, Debug)]
pub struct StateArgs {
    pub aggregate: String,
    pub id: String,
    /// The state after this version.
    #[arg(long, conflicts_with = "at")]
    pub version: Option<u64>,
    /// The state at a time: Unix milliseconds or an RFC 3339 time.
    #[arg(long)]
    pub at: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum StreamCommand {
    /// A stream's events (every page, unless `--limit`).
    Read {
        stream: String,
        /// The first version to read (default 1, or the last going backward).
        #[arg(long)]
        from: Option<u64>,
        /// Read one page of at most this many events.
        #[arg(long)]
        limit: Option<u64>,
        /// Newest first.
        #[arg(long)]
        backward: bool,
        /// Show the events through the tenant's active upcasters.
        #[arg(long)]
        upcast: bool,
    },
}

/// `"any"`, `"no_stream"`, `"stream_exists"` as strings, numbers as numbers.
fn expected_version(raw: &str) -> Value {
    match raw.parse::<u64>() {
        Ok(n) => json!(n),
        Err(_) => json!(raw),
    }
}

pub async fn command(context: &Context, args: CommandArgs) -> Result<(), CliError> {
    let (client, tenant) = context.tenant_client()?;
    let payload = match &args.payload {
        Some(raw) => json_arg("the payload", raw)?,
        None => json!({}),
    };
    let mut body = json!({"type": args.command_type, "payload": payload});
    if let Some(v) = &args.expected_version {
        body["expected_version"] = expected_version(v);
    }
    if let Some(id) = &args.command_id {
        body["command_id"] = json!(id);
    }
    if let Some(raw) = &args.metadata {
        body["metadata"] = json_arg("--metadata", raw)?;
    }
    let path = format!(
        "/t/{}/aggregates/{}/{}/commands",
        segment(&tenant),
        segment(&args.aggregate),
        segment(&args.id)
    );
    let answer = client.post(&path, &body).await?;
    print(context.json, &answer, || {
        let mut out = format!(
            "{} now at version {} (position {})",
            str_of(&answer, "stream_id"),
            num(&answer, "version"),
            num(&answer, "position")
        );
        for event in answer["events"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            out.push_str(&format!(
                "\n  v{} {} {}",
                num(event, "version"),
                str_of(event, "type"),
                event.get("data").unwrap_or(&Value::Null)
            ));
        }
        out
    });
    Ok(())
}

/// `--at`: digits are Unix milliseconds, turned into RFC 3339; anything else is sent
/// as it is (the server checks it).
fn at_param(raw: &str) -> Result<String, CliError> {
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        let ms: i64 = raw
            .parse()
            .map_err(|_| CliError::Usage(format!("--at {raw}: too large")))?;
        let time = chrono::DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| CliError::Usage(format!("--at {raw}: out of range")))?;
        return Ok(time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }
    Ok(raw.to_owned())
}

pub async fn state(context: &Context, args: StateArgs) -> Result<(), CliError> {
    let (client, tenant) = context.tenant_client()?;
    let at = args.at.as_deref().map(at_param).transpose()?;
    let path = format!(
        "/t/{}/aggregates/{}/{}{}",
        segment(&tenant),
        segment(&args.aggregate),
        segment(&args.id),
        query(&[("version", args.version.map(|v| v.to_string())), ("at", at)])
    );
    let answer = client.get(&path).await?;
    print(context.json, &answer, || {
        format!(
            "{} version {}\n{}",
            str_of(&answer, "stream_id"),
            num(&answer, "version"),
            output::pretty(answer.get("state").unwrap_or(&Value::Null))
        )
    });
    Ok(())
}

pub async fn stream(context: &Context, command: StreamCommand) -> Result<(), CliError> {
    let (client, tenant) = context.tenant_client()?;
    let StreamCommand::Read {
        stream,
        from,
        limit,
        backward,
        upcast,
    } = command;
    let mut events: Vec<Value> = Vec::new();
    let mut from = from;
    let last = loop {
        let path = format!(
            "/t/{}/streams/{}{}",
            segment(&tenant),
            segment(&stream),
            query(&[
                ("from", from.map(|f| f.to_string())),
                ("limit", limit.map(|l| l.to_string())),
                ("direction", backward.then(|| "backward".to_owned())),
                ("upcast", upcast.then(|| "true".to_owned())),
            ])
        );
        let page = client.get(&path).await?;
        events.extend(
            page["events"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .cloned(),
        );
        match page["next"].as_u64() {
            Some(next) if limit.is_none() => from = Some(next),
            _ => break page,
        }
    };
    // One page: the server's answer as it came; several: the same shape, every event.
    let answer = if limit.is_some() {
        last
    } else {
        json!({"events": events, "next": Value::Null})
    };
    print(context.json, &answer, || {
        let mut out: Vec<String> = answer["events"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(event_line)
            .collect();
        if let Some(next) = answer["next"].as_u64() {
            out.push(format!("(more: --from {next})"));
        }
        out.join("\n")
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_takes_milliseconds_or_a_time() {
        assert_eq!(at_param("0").unwrap(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            at_param("2026-01-01T00:00:00Z").unwrap(),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(expected_version("3"), json!(3));
        assert_eq!(expected_version("no_stream"), json!("no_stream"));
    }
}
