//! The HTTP client the CLI commands share (reqwest, plain HTTP), and how every failure
//! becomes an exit code: 1 when the server refused (4xx, its error code and message
//! shown), 3 when it failed (5xx) or could not be reached, 2 for a usage error found
//! before anything was sent (clap's own usage errors are 2 as well).

use std::process::ExitCode;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use super::config::Target;

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

/// A client for one server with one bearer token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    pub base: String,
    token: Option<String>,
}

/// Ordinary requests; live streams (`tail`) have no overall timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

impl Client {
    pub fn new(target: &Target, token: Option<String>) -> Result<Client, CliError> {
        if !target.url.starts_with("http://") && !target.url.starts_with("https://") {
            return Err(CliError::Usage(format!(
                "the server URL {:?} must start with http://",
                target.url
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("cairn-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Usage(format!("cannot build an HTTP client: {e}")))?;
        Ok(Client {
            http,
            base: target.url.clone(),
            token,
        })
    }

    /// A request to `path` (which starts with `/`), with the token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends and reads the answer as JSON (`null` for an empty body), mapping refusals
    /// and failures to their exit codes.
    pub async fn call(&self, request: RequestBuilder) -> Result<(StatusCode, Value), CliError> {
        let response = self.send(request.timeout(REQUEST_TIMEOUT)).await?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| CliError::Failed {
            status: Some(status),
            body: Value::String(format!("the answer broke off: {e}")),
        })?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        if status.is_client_error() {
            return Err(CliError::Refused { status, body });
        }
        if !status.is_success() {
            return Err(CliError::Failed {
                status: Some(status),
                body,
            });
        }
        Ok((status, body))
    }

    /// Sends without reading the body (live streams); a 4xx or 5xx is read and
    /// mapped like `call`'s.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, CliError> {
        let response = request.send().await.map_err(|e| CliError::Unreachable {
            url: self.base.clone(),
            error: error_chain(&e),
        })?;
        let status = response.status();
        if status.is_client_error() || status.is_server_error() {
            let text = response.text().await.unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            return Err(if status.is_client_error() {
                CliError::Refused { status, body }
            } else {
                CliError::Failed {
                    status: Some(status),
                    body,
                }
            });
        }
        Ok(response)
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        Ok(self.call(self.request(Method::GET, path)).await?.1)
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        Ok(self
            .call(self.request(Method::POST, path).json(body))
            .await?
            .1)
    }

    pub async fn delete(&self, path: &str) -> Result<Value, CliError> {
        Ok(self.call(self.request(Method::DELETE, path)).await?.1)
    }
}

/// reqwest's error with its causes ("error sending request: … Connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// A path segment, percent-encoded (ids may hold any printable character but `/`).
pub fn segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// A query string from the pairs given (`None`s left out), each value encoded.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(key, value)| value.as_ref().map(|v| format!("{key}={}", segment(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_show_code_message_details_and_request_id() {
        let body = json!({"error": {"code": "rejected", "message": "no money",
            "domain_code": "insufficient_funds", "request_id": "r1"}});
        let text = describe_error(StatusCode::UNPROCESSABLE_ENTITY, &body);
        assert_eq!(
            text,
            "422 rejected: no money\n  domain_code: insufficient_funds\n  request id: r1"
        );
    }

    #[test]
    fn segments_and_queries_are_encoded() {
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(
            query(&[
                ("after", Some("3".into())),
                ("types", None),
                ("p", Some("x&y".into()))
            ]),
            "?after=3&p=x%26y"
        );
    }
}
