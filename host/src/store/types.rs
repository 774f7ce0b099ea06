//! The store's value types: tenant ids and the naming rules every client string
//! passes, events proposed and recorded, append requests and outcomes, tenants,
//! plugin versions, snapshots, command records, leases and hosts. Re-exported by
//! `store/mod.rs`, so their paths are `crate::store::…`.

use serde::{Deserialize, Serialize};

use super::ExpectedVersion;

/// A tenant's id, checked against `[a-z0-9][a-z0-9-]{0,62}` when it is made.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    /// Parses a tenant id; `None` when it does not match the naming rule.
    pub fn parse(raw: &str) -> Option<TenantId> {
        is_valid_name(raw).then(|| TenantId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The naming rule shared by tenants and plugins: `[a-z0-9][a-z0-9-]{0,62}`.
pub fn is_valid_name(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// A stream id: 1 to 200 printable ASCII characters other than `/`, so it is
/// safe in a URL path segment and in logs.
pub fn is_valid_stream_id(raw: &str) -> bool {
    !raw.is_empty() && raw.len() <= 200 && raw.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

/// Why `raw`, given as `field`, cannot be stored as text: PostgreSQL refuses U+0000 in
/// `text` (SQLite would keep it). Every string a client sends that reaches the store —
/// path segments, query filters and cursors, ids in bodies — passes here first, so both
/// backends answer the same 400. JSON payloads and metadata need no check: they are
/// stored as serialised JSON text, where a NUL is the escape `\u0000`.
pub fn text_problem(field: &str, raw: &str) -> Option<String> {
    raw.contains('\0')
        .then(|| format!("`{field}` holds U+0000 (NUL), which cannot be stored; {raw:?}"))
}

/// Why `raw` cannot be an event type (or an event id): empty, longer than 200 bytes,
/// or holding a character that is not printable — a control character (NUL, ESC, CR,
/// LF…), or an invisible formatting one (bidirectional overrides, zero-width marks)
/// that would let two types look the same or break a log line or an SSE field.
/// `field` is what the client called it (`type`, `event_id`).
pub fn name_problem(field: &str, raw: &str) -> Option<String> {
    if raw.is_empty() || raw.len() > 200 {
        return Some(format!("`{field}` must be 1 to 200 bytes"));
    }
    let bad = raw.chars().find(|c| {
        c.is_control()
            || matches!(*c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
    })?;
    Some(format!(
        "`{field}` must hold only printable characters; {raw:?} holds U+{:04X}",
        bad as u32
    ))
}

/// An event about to be appended. Payload and metadata are JSON text, already validated.
#[derive(Clone, Debug)]
pub struct ProposedEvent {
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    pub metadata: String,
}

/// An event as the store recorded it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    pub event_id: String,
    pub stream_id: String,
    pub version: u64,
    pub position: u64,
    pub event_type: String,
    pub payload: String,
    pub metadata: String,
    /// Unix milliseconds, assigned at commit.
    pub recorded_at: i64,
}

/// One append: a group of events for one stream, all or nothing.
#[derive(Clone, Debug)]
pub struct AppendRequest {
    pub tenant: TenantId,
    pub stream_id: String,
    pub expected: ExpectedVersion,
    pub events: Vec<ProposedEvent>,
    /// Event ids were given by the writer, so a retry may repeat them; when the host
    /// generated them there is nothing to look up.
    pub ids_from_writer: bool,
    /// Set for commands that carry a `command_id`: recorded in the same transaction so
    /// that a repeat finds the first answer.
    pub command_id: Option<String>,
    /// The fingerprint of the command's request (aggregate, id, type, payload), kept
    /// with its id so that a repeat with another request is told apart.
    pub command_fingerprint: Option<String>,
    /// Requests next to each other in one `append_batch` with the same group commit
    /// all or none (a multi-stream append). Set by the appender, which never splits a
    /// group between batches; `None` for a request on its own.
    pub atomic_group: Option<u32>,
}

/// The result of an append that succeeded (or had already succeeded, for a retry).
#[derive(Clone, Debug, PartialEq)]
pub struct AppendOutcome {
    /// The stream's version after the append (unchanged when `events` is empty).
    pub version: u64,
    pub events: Vec<RecordedEvent>,
    /// True when nothing was written because an identical append was already applied.
    pub replayed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Forward,
    Backward,
}

/// What the store keeps about a tenant (the token only as a hash).
#[derive(Clone, Debug)]
pub struct TenantRecord {
    pub id: TenantId,
    pub limits: serde_json::Value,
    pub created_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    Aggregate,
    Projection,
    Upcaster,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Aggregate => "aggregate",
            PluginKind::Projection => "projection",
            PluginKind::Upcaster => "upcaster",
        }
    }

    pub fn parse(raw: &str) -> Option<PluginKind> {
        match raw {
            "aggregate" => Some(PluginKind::Aggregate),
            "projection" => Some(PluginKind::Projection),
            "upcaster" => Some(PluginKind::Upcaster),
            _ => None,
        }
    }
}

/// One uploaded version of a plugin (the bytes are fetched separately by digest).
#[derive(Clone, Debug)]
pub struct PluginVersion {
    pub name: String,
    pub version: u64,
    pub kind: PluginKind,
    pub digest: String,
    pub uploaded_at: i64,
    /// Where verification of this version stands (projections are always `Verified`:
    /// their builds have a lifecycle of their own).
    pub verification: Verification,
    /// The verification report (progress, failures, state differences), as JSON.
    pub report: Option<serde_json::Value>,
    /// The upcasters this version reads history through, fixed when it was uploaded,
    /// so that a later upcaster never changes what an already verified version sees.
    pub upcasters: Vec<PinnedPlugin>,
    /// True for the one version of an aggregate or upcaster that serves now.
    pub active: bool,
}

/// Where the verification of an uploaded version stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verification {
    /// Replaying history in the background.
    Verifying,
    /// Every checked stream (or event) folded: it may be activated.
    Verified,
    /// Some history did not fold: it can never be activated.
    Rejected,
}

impl Verification {
    pub fn as_str(self) -> &'static str {
        match self {
            Verification::Verifying => "verifying",
            Verification::Verified => "verified",
            Verification::Rejected => "rejected",
        }
    }

    pub fn parse(raw: &str) -> Option<Verification> {
        match raw {
            "verifying" => Some(Verification::Verifying),
            "verified" => Some(Verification::Verified),
            "rejected" => Some(Verification::Rejected),
            _ => None,
        }
    }
}

/// One plugin version named by another (an aggregate's upcasters).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PinnedPlugin {
    pub name: String,
    pub version: u64,
    pub digest: String,
}

/// A new plugin version as the registry records it.
pub struct NewPluginVersion<'a> {
    pub name: &'a str,
    pub kind: PluginKind,
    pub digest: &'a str,
    pub wasm: &'a [u8],
    /// The size of the compiled artifact, counted in the tenant's storage.
    pub artifact_bytes: u64,
    pub verification: Verification,
    pub report: Option<&'a serde_json::Value>,
    pub upcasters: &'a [PinnedPlugin],
    /// Make it the active version in the same transaction.
    pub activate: bool,
}

/// What a tenant stores, in bytes by kind: what `max_stored_bytes` limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct StoredUsage {
    /// Events stored (a count, not bytes).
    pub events: u64,
    /// Event payloads and metadata.
    pub event_bytes: u64,
    /// Projection documents, keys included, of every build (retired builds' documents
    /// count until they are deleted).
    pub document_bytes: u64,
    /// Aggregate state snapshots.
    pub snapshot_bytes: u64,
    /// Plugin uploads and their compiled artifacts.
    pub plugin_bytes: u64,
}

impl StoredUsage {
    /// Every byte the tenant stores: what its quota is measured against.
    pub fn total(&self) -> u64 {
        self.event_bytes + self.document_bytes + self.snapshot_bytes + self.plugin_bytes
    }
}

/// A state snapshot of one stream, valid only for the component that produced it.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub version: u64,
    pub state: Vec<u8>,
}

/// Result of a command id lookup: the versions its events occupy (`first > last`
/// when the command produced no events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandRecord {
    pub stream_id: String,
    pub first_version: u64,
    pub last_version: u64,
    /// `None` for ids recorded before fingerprints were kept.
    pub fingerprint: Option<String>,
    /// The domain rejection, as JSON `{"code", "message"}`, of a refused command.
    pub rejection: Option<String>,
}

pub type StoreResult<T> = Result<T, anyhow::Error>;

/// Which host runs a projection build's worker, until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    pub tenant: TenantId,
    pub name: String,
    pub build: u64,
    pub owner: String,
    /// Unix milliseconds.
    pub expires_at: i64,
}

/// A host's row in the hosts table.
#[derive(Clone, Debug)]
pub struct HostRecord {
    pub host_id: String,
    /// Unix milliseconds.
    pub started_at: i64,
    /// Unix milliseconds of its last heartbeat.
    pub heartbeat_at: i64,
}
