//! A verification's options and its report: what is stored with each version and
//! shown by `GET /t/{tenant}/plugins/{name}/versions/{version}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::runtime::PluginFailure;
use crate::store::{PinnedPlugin, PluginKind, RecordedEvent, now_ms};

/// Failures kept in a report. Verification stops at this many: the version is
/// rejected either way, and a hostile version that fails slowly on every stream must
/// not keep the tenant's verifier busy for long.
pub const MAX_FAILURES: usize = 20;
/// State differences shown in full in a report.
pub const MAX_DIFFERENCES: usize = 5;

/// What a state difference means for the new version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A difference is reported as a warning (a bug fix that changes state on purpose).
    #[default]
    Warn,
    /// A difference rejects the version (a refactor that must not change state).
    Strict,
}

/// Whether a version that passes verification starts serving by itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    #[default]
    Auto,
    /// Staged: activated later with `POST …/activate`.
    Manual,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct VerifyOptions {
    pub mode: Mode,
    pub activation: Activation,
}

/// A version's verification report, as stored and shown.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    pub mode: Mode,
    pub activate: Activation,
    /// The upcasters history was read through.
    pub upcasters: Vec<PinnedPlugin>,
    /// The version active when verification started (whose states were compared, for
    /// an aggregate); the new version is activated only if it is still active then.
    pub compared_with: Option<u64>,
    pub streams_total: u64,
    pub streams_checked: u64,
    /// Events in the history to check (for an upcaster: those of its types checked so far).
    pub events_total: u64,
    /// Events folded (or upcast) so far.
    pub events_folded: u64,
    /// True when the history was larger than `verify_max_events` and only a sample
    /// was checked; `sample_rule` says which.
    pub sampled: bool,
    pub sample_rule: Option<String>,
    /// The streams of the sample (the first 50).
    pub sampled_streams: Vec<String>,
    pub failures_total: u64,
    pub failures: Vec<Failure>,
    /// True when verification stopped at the first failures without checking the rest.
    pub stopped_early: bool,
    /// Streams whose state differs from the active version's.
    pub state_differences: u64,
    pub difference_examples: Vec<Difference>,
    /// One sentence on how it ended.
    pub outcome: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
}

/// Where history did not fold (or upcast).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Failure {
    pub stream_id: String,
    pub version: u64,
    pub position: u64,
    pub event_type: String,
    /// `trap`, `deadline`, `memory`, `invalid_output`, `instantiate`.
    pub reason: String,
    pub error: String,
}

impl Failure {
    /// The failure of `event` of `stream_id` (or of the stream as a whole, before any
    /// event: instantiation or `initial-state`).
    pub fn at(stream_id: &str, event: Option<&RecordedEvent>, failure: PluginFailure) -> Failure {
        Failure {
            stream_id: stream_id.to_owned(),
            version: event.map_or(0, |e| e.version),
            position: event.map_or(0, |e| e.position),
            event_type: event.map_or_else(String::new, |e| e.event_type.clone()),
            reason: failure.reason.as_str().to_owned(),
            error: failure.message,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Difference {
    pub stream_id: String,
    pub version: u64,
    pub active_state: Value,
    pub new_state: Value,
}

pub fn initial_report(options: &VerifyOptions, upcasters: &[PinnedPlugin]) -> Value {
    serde_json::to_value(Report {
        mode: options.mode,
        activate: options.activation,
        upcasters: upcasters.to_vec(),
        started_at: rfc3339(now_ms()),
        ..Report::default()
    })
    .expect("a report is JSON")
}

/// The report of a version that had no history to check.
pub fn nothing_to_check(
    options: &VerifyOptions,
    upcasters: &[PinnedPlugin],
    kind: PluginKind,
) -> Value {
    let now = rfc3339(now_ms());
    serde_json::to_value(Report {
        mode: options.mode,
        activate: options.activation,
        upcasters: upcasters.to_vec(),
        outcome: Some(match kind {
            PluginKind::Upcaster => "verified: no stored event of its types yet".to_owned(),
            _ => "verified: no stream of this aggregate yet".to_owned(),
        }),
        started_at: now.clone(),
        finished_at: Some(now),
        ..Report::default()
    })
    .expect("a report is JSON")
}

/// States are equal when they are equal JSON (key order aside), else equal bytes.
pub fn same_state(a: &[u8], b: &[u8]) -> bool {
    match (
        serde_json::from_slice::<Value>(a),
        serde_json::from_slice::<Value>(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Largest state shown whole in a report; a larger one is shown by its start, so a
/// report (read on every status poll) stays small whatever the states weigh.
const MAX_SHOWN_STATE: usize = 4096;

/// A state as a report shows it: its JSON, else its text; cut when it is large.
pub fn shown(state: &[u8]) -> Value {
    if state.len() > MAX_SHOWN_STATE {
        // A character cut in two shows as U+FFFD: harmless in a preview.
        return serde_json::json!({
            "truncated": true,
            "bytes": state.len(),
            "start": String::from_utf8_lossy(&state[..MAX_SHOWN_STATE]),
        });
    }
    serde_json::from_slice(state)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(state).into_owned()))
}

/// Unix milliseconds as RFC 3339, as the API shows times.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_compare_as_json() {
        assert!(same_state(br#"{"a":1,"b":2}"#, br#"{"b":2, "a":1}"#));
        assert!(!same_state(br#"{"a":1}"#, br#"{"a":2}"#));
        assert!(same_state(b"\x00raw", b"\x00raw"));
    }

    #[test]
    fn large_states_are_shown_by_their_start() {
        let big = format!("{{\"k\":\"{}\"}}", "é".repeat(5000));
        let view = shown(big.as_bytes());
        assert_eq!(view["truncated"], true);
        assert_eq!(view["bytes"], big.len());
        assert!(view["start"].as_str().unwrap().starts_with("{\"k\":\"éé"));
        assert_eq!(shown(br#"{"a":1}"#), serde_json::json!({"a": 1}));
    }
}
