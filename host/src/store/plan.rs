//! The rules of an append, as pure functions shared by every backend.
//!
//! A backend reads the facts (the stream's current version, which of the request's
//! event ids already exist and where) inside its transaction and asks [`check_append`]
//! what to do. Keeping the rules here means SQLite and PostgreSQL cannot drift apart.

use serde::{Deserialize, Serialize};

/// What the writer believes about the stream before its append (KurrentDB's modes,
/// with versions counted from 1, so an exact `0` means the same as `no_stream`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    Any,
    NoStream,
    StreamExists,
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream at `current` (0 = no events) satisfies this expectation.
    pub fn admits(self, current: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::StreamExists => current > 0,
            ExpectedVersion::Exact(v) => current == v,
        }
    }

    /// Whether an append whose first event landed at `first_version` could have been
    /// made under this expectation: used to recognise a retry "at the same place".
    fn admits_first_version(self, first_version: u64) -> bool {
        match self {
            ExpectedVersion::Any | ExpectedVersion::StreamExists => true,
            ExpectedVersion::NoStream => first_version == 1,
            ExpectedVersion::Exact(v) => first_version == v + 1,
        }
    }
}

/// Why an append was refused. Only `Store` is the host's fault.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AppendError {
    #[error("expected version does not match: the stream is at version {current}")]
    WrongExpectedVersion { current: u64 },
    #[error("some of these event ids were already appended, but not as this same append")]
    IdempotencyConflict,
    #[error("this command id was already applied to the stream")]
    CommandAlreadyApplied,
    #[error("the tenant does not exist")]
    UnknownTenant,
    /// Another append of the same atomic group was refused, so this one was not written.
    #[error("not written: another append of the same atomic group was refused")]
    GroupRefused,
    /// The store failed: nothing of the request is known to be written (a commit whose
    /// answer was lost may have been; a retry with the same command id finds out).
    #[error("storage failed: {1}")]
    Store(super::StoreFault, String),
}

impl AppendError {
    /// A store failure of the kind `error` is.
    pub fn store(error: &anyhow::Error) -> AppendError {
        AppendError::Store(super::fault::classify(error), format!("{error:#}"))
    }

    /// The append never reached the store (the writer stopped): retryable.
    pub fn not_reached(why: &str) -> AppendError {
        AppendError::Store(super::StoreFault::Unavailable, why.to_owned())
    }
}

/// Where an already-recorded event id sits.
#[derive(Clone, Debug)]
pub struct ExistingId {
    pub event_id: String,
    pub stream_id: String,
    pub version: u64,
}

/// What a backend must do with one request.
#[derive(Debug, PartialEq, Eq)]
pub enum AppendDecision {
    /// Write the events at versions `current + 1 ..`.
    Write,
    /// Every event is already there, at these versions of this stream: answer with them.
    Replay {
        first_version: u64,
        last_version: u64,
    },
}

/// Applies the expected-version and idempotency rules.
///
/// `existing` lists the request's event ids that are already recorded (any stream).
pub fn check_append(
    stream_id: &str,
    expected: ExpectedVersion,
    event_ids: &[&str],
    current: u64,
    existing: &[ExistingId],
) -> Result<AppendDecision, AppendError> {
    if !existing.is_empty() {
        return check_retry(stream_id, expected, event_ids, current, existing);
    }
    if expected.admits(current) {
        Ok(AppendDecision::Write)
    } else {
        Err(AppendError::WrongExpectedVersion { current })
    }
}

fn check_retry(
    stream_id: &str,
    expected: ExpectedVersion,
    event_ids: &[&str],
    current: u64,
    existing: &[ExistingId],
) -> Result<AppendDecision, AppendError> {
    if existing.len() != event_ids.len() {
        return Err(AppendError::IdempotencyConflict);
    }
    let version_of = |id: &str| {
        existing
            .iter()
            .find(|e| e.event_id == id && e.stream_id == stream_id)
            .map(|e| e.version)
    };
    let Some(first_version) = version_of(event_ids[0]) else {
        return Err(AppendError::IdempotencyConflict);
    };
    let same_sequence = event_ids
        .iter()
        .enumerate()
        .all(|(i, id)| version_of(id) == Some(first_version + i as u64));
    if !same_sequence {
        return Err(AppendError::IdempotencyConflict);
    }
    if !expected.admits_first_version(first_version) {
        return Err(AppendError::WrongExpectedVersion { current });
    }
    Ok(AppendDecision::Replay {
        first_version,
        last_version: first_version + event_ids.len() as u64 - 1,
    })
}

/// Gives the request's events their versions (after `current`) and positions
/// (ending at `head`, the tenant's log head after this append).
pub fn number_events(
    request: &super::AppendRequest,
    current: u64,
    head: u64,
    recorded_at: i64,
) -> Vec<super::RecordedEvent> {
    let first_position = head + 1 - request.events.len() as u64;
    request
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| super::RecordedEvent {
            event_id: e.event_id.clone(),
            stream_id: request.stream_id.clone(),
            version: current + 1 + i as u64,
            position: first_position + i as u64,
            event_type: e.event_type.clone(),
            payload: e.payload.clone(),
            metadata: e.metadata.clone(),
            recorded_at,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(id: &str, stream: &str, version: u64) -> ExistingId {
        ExistingId {
            event_id: id.into(),
            stream_id: stream.into(),
            version,
        }
    }

    #[test]
    fn expected_version_modes() {
        assert!(ExpectedVersion::Any.admits(0));
        assert!(ExpectedVersion::NoStream.admits(0));
        assert!(!ExpectedVersion::NoStream.admits(1));
        assert!(ExpectedVersion::StreamExists.admits(3));
        assert!(!ExpectedVersion::StreamExists.admits(0));
        assert!(ExpectedVersion::Exact(2).admits(2));
        assert!(!ExpectedVersion::Exact(2).admits(3));
    }

    #[test]
    fn stale_exact_version_reports_current() {
        let r = check_append("s", ExpectedVersion::Exact(1), &["a"], 4, &[]);
        assert!(matches!(
            r,
            Err(AppendError::WrongExpectedVersion { current: 4 })
        ));
    }

    #[test]
    fn full_retry_at_same_place_replays() {
        let existing = [at("a", "s", 3), at("b", "s", 4)];
        let r = check_append("s", ExpectedVersion::Exact(2), &["a", "b"], 4, &existing);
        assert_eq!(
            r.unwrap(),
            AppendDecision::Replay {
                first_version: 3,
                last_version: 4
            }
        );
    }

    #[test]
    fn partial_retry_is_a_conflict() {
        let existing = [at("a", "s", 3)];
        let r = check_append("s", ExpectedVersion::Any, &["a", "z"], 3, &existing);
        assert!(matches!(r, Err(AppendError::IdempotencyConflict)));
    }

    #[test]
    fn same_ids_at_another_place_are_stale() {
        let existing = [at("a", "s", 3)];
        let r = check_append("s", ExpectedVersion::Exact(5), &["a"], 6, &existing);
        assert!(matches!(
            r,
            Err(AppendError::WrongExpectedVersion { current: 6 })
        ));
    }

    #[test]
    fn ids_in_another_stream_conflict() {
        let existing = [at("a", "other", 1)];
        let r = check_append("s", ExpectedVersion::Any, &["a"], 0, &existing);
        assert!(matches!(r, Err(AppendError::IdempotencyConflict)));
    }
}

/// Snapshots kept per stream and component: a bounded history, so that a read of an
/// old version starts near it, whatever the stream's length.
pub const SNAPSHOTS_PER_STREAM: usize = 16;

/// Which snapshot to delete when a stream has more than [`SNAPSHOTS_PER_STREAM`]
/// (`versions` ascending): never the oldest or the newest two, and of the others the
/// one whose neighbours are closest together. The history thins evenly as a stream
/// grows, so the nearest snapshot below any version is never far.
pub fn snapshot_to_thin(versions: &[i64]) -> Option<i64> {
    if versions.len() <= SNAPSHOTS_PER_STREAM {
        return None;
    }
    (1..versions.len() - 2)
        .min_by_key(|&i| versions[i + 1] - versions[i - 1])
        .map(|i| versions[i])
}

#[cfg(test)]
mod snapshot_history_tests {
    use super::*;

    #[test]
    fn the_history_stays_bounded_and_spread_over_the_stream() {
        let mut kept: Vec<i64> = Vec::new();
        for version in (100..=100_000).step_by(100) {
            kept.push(version);
            if let Some(thinned) = snapshot_to_thin(&kept) {
                kept.retain(|v| *v != thinned);
            }
        }
        assert_eq!(kept.len(), SNAPSHOTS_PER_STREAM);
        assert_eq!(kept[0], 100, "the oldest is kept");
        assert_eq!(kept[kept.len() - 1], 100_000, "the newest is kept");
        // No gap is much wider than an even spread would give.
        let widest = kept.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(
            widest <= 3 * 100_000 / SNAPSHOTS_PER_STREAM as i64,
            "{kept:?}"
        );
    }
}
