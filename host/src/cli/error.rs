//! Why a CLI command did not succeed, its exit code (1 refused, 2 usage, 3 failed or
//! unreachable), and the server's error shape written for a person. Its own file so
//! that the client and the configuration both use it without depending on each other.

use std::process::ExitCode;

use reqwest::StatusCode;
use serde_json::Value;

/// Why a command did not succeed, and its exit code.
#[derive(Debug)]
pub enum CliError {
    /// The invocation is wrong (exit 2): a missing tenant, an argument that is not
    /// JSON, a file that cannot be read, a config file that does not parse.
    Usage(String),
    /// The server answered 4xx (exit 1): the body in the contract's error shape.
    Refused { status: StatusCode, body: Value },
    /// The server answered 5xx or something unreadable (exit 3).
    Failed {
        status: Option<StatusCode>,
        body: Value,
    },
    /// No answer at all (exit 3).
    Unreachable { url: String, error: String },
    /// The server accepted the request but the outcome is a refusal it reported
    /// later (a plugin version rejected by verification, a build parked as failed):
    /// exit 1, with what it said.
    Outcome { message: String, body: Value },
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Refused { .. } | CliError::Outcome { .. } => 1,
            CliError::Failed { .. } | CliError::Unreachable { .. } => 3,
        }
    }

    /// Prints the error for a person on stderr; with `--json` the server's error body
    /// also goes to stdout, as it came.
    pub fn report(&self, json: bool) -> ExitCode {
        match self {
            CliError::Usage(message) => eprintln!("error: {message}"),
            CliError::Refused { status, body }
            | CliError::Failed {
                status: Some(status),
                body,
            } => {
                if json {
                    println!("{body}");
                }
                eprintln!("error: {}", describe_error(*status, body));
            }
            CliError::Failed { status: None, body } => {
                eprintln!("error: the server's answer could not be read: {body}")
            }
            CliError::Unreachable { url, error } => {
                eprintln!("error: cannot reach the server at {url}: {error}")
            }
            CliError::Outcome { message, body } => {
                if json {
                    println!("{body}");
                }
                eprintln!("error: {message}");
            }
        }
        ExitCode::from(self.exit_code())
    }
}

/// `422 rejected: the balance is 70, less than 500` followed by the error's other
/// fields (`domain_code: insufficient_funds`, …) and its request id.
pub fn describe_error(status: StatusCode, body: &Value) -> String {
    let Some(error) = body.get("error").and_then(Value::as_object) else {
        let text = match body {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return format!("{} {}", status.as_u16(), text.trim());
    };
    let code = error.get("code").and_then(Value::as_str).unwrap_or("error");
    let message = error.get("message").and_then(Value::as_str).unwrap_or("");
    let mut out = format!("{} {code}: {message}", status.as_u16());
    for (key, value) in error {
        if matches!(key.as_str(), "code" | "message" | "request_id") {
            continue;
        }
        let value = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&format!("\n  {key}: {value}"));
    }
    if let Some(id) = error.get("request_id").and_then(Value::as_str) {
        out.push_str(&format!("\n  request id: {id}"));
    }
    out
}
