//! The command pipeline: load state → decide → append → retry, and state reads.
//!
//! One command per stream at a time in this host (a [`StreamLocks`] guard); state
//! loaded by `load.rs` (cache, snapshots, budgeted folds); `decide` in the same fresh
//! instance; the append carries the version the state was read at, and a conflict
//! (another host, or a raw append) reloads and decides again unless the client named
//! its own expected version.

mod load;
mod pipeline;
pub mod state_cache;
pub mod warm;

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::commands::state_cache::{StateCache, StreamLocks};
use crate::error::{ApiError, ApiResult};
use crate::log::appender::Appender;
use crate::metrics::Metrics;
use crate::plugins::{Plugins, ServingAggregate};
use crate::runtime::{AggregateInstance, PluginFailure, Runtime};
use crate::store::{
    Direction, EventStore, ExpectedVersion, ProposedEvent, RecordedEvent, TenantId,
};
use crate::tenancy::gate::TenantGate;
use crate::vocab::stream_of;

/// Conflicts retried before giving up (each retry reloads only the new tail).
const MAX_ATTEMPTS: usize = 8;
/// Most events one `decide` may return.
pub const MAX_EVENTS_PER_COMMAND: usize = 1000;
/// Events read per page while loading a long tail.
const LOAD_PAGE: u32 = 2000;

/// A command as the API received it.
pub struct CommandRequest {
    pub command_type: String,
    /// A JSON object.
    pub payload: Map<String, Value>,
    /// What the client expects of the stream (`Any` when it named nothing): the same
    /// forms a raw append takes.
    pub expected_version: ExpectedVersion,
    pub command_id: Option<String>,
    pub metadata: Map<String, Value>,
}

/// What a command did.
pub struct CommandResult {
    pub stream_id: String,
    pub version: u64,
    pub position: u64,
    pub events: Vec<RecordedEvent>,
}

/// Aggregate state at a version.
pub struct StateView {
    pub stream_id: String,
    pub version: u64,
    pub state: Vec<u8>,
}

/// Which state a read asks for.
pub enum StateAt {
    Latest,
    Version(u64),
    Time(i64),
}

pub struct Commands {
    pub store: Arc<dyn EventStore>,
    pub appender: Appender,
    pub runtime: Arc<Runtime>,
    pub plugins: Arc<Plugins>,
    pub metrics: Arc<Metrics>,
    pub cache: StateCache,
    pub locks: StreamLocks,
    /// Write a snapshot once a stream is this many events past its last one.
    pub snapshot_every: u64,
}

impl Commands {
    /// The state of a stream, now or in the past.
    pub async fn state(
        &self,
        tenant: &TenantId,
        gate: &TenantGate,
        plugin: &str,
        id: &str,
        at: StateAt,
    ) -> ApiResult<StateView> {
        let stream_id = stream_of(plugin, id);
        let serving = self.plugins.aggregate(tenant, plugin).await?;
        let _tenant_slot = gate.call_slot().await;
        let (mut instance, _slot) = self
            .runtime
            .aggregate(&serving.component, gate.call_limits())
            .await
            .map_err(|f| self.failed(gate, f))?;
        let read = self
            .state_of(&mut instance, gate, tenant, &stream_id, &serving, at)
            .await;
        let (version, state) = self.logged(gate, tenant, plugin, &instance, read)?;
        if version == 0 {
            return Err(ApiError::not_found(format!("{stream_id} has no events")));
        }
        Ok(StateView {
            stream_id,
            version,
            state,
        })
    }

    async fn state_of(
        &self,
        instance: &mut AggregateInstance,
        gate: &TenantGate,
        tenant: &TenantId,
        stream_id: &str,
        serving: &ServingAggregate,
        at: StateAt,
    ) -> ApiResult<(u64, Vec<u8>)> {
        let stream_id = stream_id.to_owned();
        Ok(match at {
            StateAt::Latest => {
                let loaded = self
                    .load_latest(instance, gate, tenant, &stream_id, serving)
                    .await?;
                (loaded.version, loaded.state.to_vec())
            }
            StateAt::Version(version) => {
                let current = self.store.stream_version(tenant, &stream_id).await?;
                if version > current {
                    return Err(ApiError::not_found(format!(
                        "{stream_id} has no version {version} (it is at {current})"
                    )));
                }
                let state = self
                    .fold_until(instance, gate, tenant, &stream_id, serving, version)
                    .await?;
                (version, state)
            }
            StateAt::Time(at_ms) => {
                let version = self
                    .store
                    .stream_version_at(tenant, &stream_id, at_ms)
                    .await?;
                let state = self
                    .fold_until(instance, gate, tenant, &stream_id, serving, version)
                    .await?;
                (version, state)
            }
        })
    }

    /// Passes a result through after recording what the plugin printed.
    fn logged<T>(
        &self,
        gate: &TenantGate,
        tenant: &TenantId,
        plugin: &str,
        instance: &AggregateInstance,
        result: ApiResult<T>,
    ) -> ApiResult<T> {
        gate.logs
            .record(tenant.as_str(), plugin, &instance.output());
        result
    }

    /// The answer a command with this id gave the first time, if it ran.
    /// The answer a command id already has, if any: the same request again gets it
    /// (its events, or its rejection); another request under the same id is a 409.
    async fn earlier_answer(
        &self,
        tenant: &TenantId,
        stream_id: &str,
        command_id: &str,
        fingerprint: &str,
    ) -> ApiResult<Option<CommandResult>> {
        let Some(record) = self.store.command_record(tenant, command_id).await? else {
            return Ok(None);
        };
        // Ids recorded before fingerprints were kept match on their stream alone.
        let same = match &record.fingerprint {
            Some(theirs) => theirs == fingerprint,
            None => record.stream_id == stream_id,
        };
        if !same {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "idempotency_conflict",
                format!(
                    "command id {command_id} was already used for another request (on {}); \
                     use a new id for a new command",
                    record.stream_id
                ),
            )
            .with("stream_id", record.stream_id));
        }
        if let Some(rejection) = &record.rejection {
            let rejection: Value = serde_json::from_str(rejection).unwrap_or_default();
            return Err(ApiError::rejected(
                rejection["code"].as_str().unwrap_or("rejected").to_owned(),
                rejection["message"].as_str().unwrap_or_default().to_owned(),
            )
            .with("replayed", true));
        }
        let stream_id = record.stream_id.as_str();
        let events = self
            .store
            .read_stream_range(
                tenant,
                stream_id,
                record.first_version - 1,
                record.last_version,
            )
            .await?;
        let position = match events.last() {
            Some(last) => last.position,
            None => self
                .store
                .read_stream(
                    tenant,
                    stream_id,
                    record.last_version,
                    1,
                    Direction::Backward,
                )
                .await?
                .first()
                .map_or(0, |e| e.position),
        };
        Ok(Some(CommandResult {
            stream_id: stream_id.to_owned(),
            version: record.last_version,
            position,
            events,
        }))
    }

    fn failed(&self, gate: &TenantGate, failure: PluginFailure) -> ApiError {
        Metrics::add(&self.metrics.plugin_failures, 1);
        gate.usage.failure(&failure);
        failure.into()
    }

    pub fn forget_tenant(&self, tenant: &TenantId) {
        self.cache.forget_tenant(tenant);
    }
}

/// The metadata every event of a command carries: the client's keys, a
/// `correlation_id` (carried over, else the command's own id) and a `causation_id`
/// (the command's id).
/// What identifies a command's request for its idempotency key: the aggregate, the
/// id, the type and the payload (its keys sorted, so key order does not matter).
fn request_fingerprint(plugin: &str, id: &str, request: &CommandRequest) -> String {
    use sha2::{Digest, Sha256};
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for key in keys {
                    out.insert(key.clone(), sorted(&map[key]));
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    let canonical = serde_json::json!([
        plugin,
        id,
        request.command_type,
        sorted(&Value::Object(request.payload.clone()))
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

fn event_metadata(request: &CommandRequest, command_uuid: &str) -> String {
    let mut metadata = request.metadata.clone();
    let command_id = request.command_id.as_deref().unwrap_or(command_uuid);
    metadata
        .entry("correlation_id")
        .or_insert_with(|| Value::String(command_id.to_owned()));
    metadata.insert("causation_id".into(), Value::String(command_id.to_owned()));
    Value::Object(metadata).to_string()
}

/// Checks what `decide` returned before anything is written: as many events and as
/// many payload bytes as one raw append may carry (the tenant's body limit applies to
/// a command's output too), and types a client could have written itself.
fn check_new_events(
    events: Vec<crate::runtime::aggregate::NewEvent>,
    metadata: &str,
    max_bytes: u64,
) -> Result<Vec<ProposedEvent>, PluginFailure> {
    if events.len() > MAX_EVENTS_PER_COMMAND {
        return Err(PluginFailure::invalid_output(format!(
            "decide returned {} events; at most {MAX_EVENTS_PER_COMMAND} are allowed per command",
            events.len()
        )));
    }
    let bytes: u64 = events
        .iter()
        .map(|e| (e.event_type.len() + e.payload.len()) as u64)
        .sum();
    if bytes > max_bytes {
        return Err(PluginFailure::invalid_output(format!(
            "decide returned {bytes} bytes of events; a command may write at most \
             {max_bytes} (the tenant's max_body_bytes)"
        )));
    }
    events
        .into_iter()
        .map(|e| {
            if let Some(problem) = crate::store::name_problem("type", &e.event_type) {
                return Err(PluginFailure::invalid_output(format!(
                    "decide returned an event that cannot be stored: {problem}"
                )));
            }
            let payload = String::from_utf8(e.payload)
                .ok()
                .filter(|p| crate::strict_json::is_strict(p.as_bytes()))
                .ok_or_else(|| {
                    PluginFailure::invalid_output(format!(
                        "decide returned a {} event whose payload is not JSON",
                        e.event_type
                    ))
                })?;
            Ok(ProposedEvent {
                event_id: uuid::Uuid::new_v4().to_string(),
                event_type: e.event_type,
                payload,
                metadata: metadata.to_owned(),
            })
        })
        .collect()
}
