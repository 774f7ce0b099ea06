//! The HTTP client the CLI commands share (reqwest, plain HTTP), and how every failure
//! becomes an exit code: 1 when the server refused (4xx, its error code and message
//! shown), 3 when it failed (5xx) or could not be reached, 2 for a usage error found
//! before anything was sent (clap's own usage errors are 2 as well).

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use super::config::Target;
pub use super::error::CliError;

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
    use crate::cli::error::describe_error;
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
