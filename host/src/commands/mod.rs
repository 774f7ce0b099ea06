//! The command pipeline: load state → decide → append → retry, and state reads.
//!
//! One command per stream at a time in this host (a [`StreamLocks`] guard); state
//! loaded by `load.rs` (cache, snapshots, budgeted folds); `decide` in the same fresh
//! instance; the append carries the version the state was read at, and a conflict
//! (another host, or a raw append) reloads and decides again unless the client named
//! its own expected version.

mod load;
pub mod warm;

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::appender::Appender;
use crate::error::{ApiError, ApiResult};
use crate::gate::TenantGate;
use crate::metrics::Metrics;
use crate::plugins::{Plugins, ServingAggregate};
use crate::runtime::aggregate::{Command, DecideError};
use crate::runtime::{AggregateInstance, PluginFailure, Runtime};
use crate::state_cache::{StateCache, StreamLocks};
use crate::store::{
    AppendError, AppendRequest, CommandRecord, Direction, EventStore, ExpectedVersion,
    ProposedEvent, RecordedEvent, TenantId, now_ms,
};

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

/// The category of an aggregate's streams: its name with each `-` written `_`.
///
/// Plugin names may hold dashes but never underscores, and a stream's category is
/// the part before its first dash (KurrentDB's convention), so the mapping from
/// (aggregate, id) to stream is one-to-one: `ev` with id `a-1` is `ev-a-1`, `ev-a`
/// with id `1` is `ev_a-1`. Names without a dash, the usual case, keep `{name}-{id}`.
pub fn stream_category(plugin: &str) -> String {
    plugin.replace('-', "_")
}

/// The stream an aggregate instance handles: `{category}-{id}`.
pub fn stream_of(plugin: &str, id: &str) -> String {
    format!("{}-{id}", stream_category(plugin))
}

/// What every stream of an aggregate starts with, and only its streams do.
pub fn stream_prefix(plugin: &str) -> String {
    format!("{}-", stream_category(plugin))
}

impl Commands {
    /// Runs a command; its latency, answered or refused, goes to the tenant's
    /// histogram (`cairn_command_duration_seconds`).
    pub async fn execute(
        &self,
        tenant: &TenantId,
        gate: &TenantGate,
        plugin: &str,
        id: &str,
        request: CommandRequest,
    ) -> ApiResult<CommandResult> {
        let started = std::time::Instant::now();
        let result = self.run(tenant, gate, plugin, id, request).await;
        gate.usage.command_latency.observe(started.elapsed());
        result
    }

    async fn run(
        &self,
        tenant: &TenantId,
        gate: &TenantGate,
        plugin: &str,
        id: &str,
        request: CommandRequest,
    ) -> ApiResult<CommandResult> {
        gate.admit_command()?;
        Metrics::add(&self.metrics.commands, 1);
        let stream_id = stream_of(plugin, id);
        let serving = self.plugins.aggregate(tenant, plugin).await?;
        let _turn = self.locks.lock(tenant, &stream_id).await;

        let fingerprint = request_fingerprint(plugin, id, &request);
        if let Some(command_id) = &request.command_id
            && let Some(answer) = self
                .earlier_answer(tenant, &stream_id, command_id, &fingerprint)
                .await?
        {
            return Ok(answer);
        }
        let command_uuid = uuid::Uuid::new_v4().to_string();
        let metadata = event_metadata(&request, &command_uuid);
        let payload = Value::Object(request.payload.clone())
            .to_string()
            .into_bytes();

        // A cached state is decided on without reading the store: the append's
        // expected-version check is the guard against anything appended since (a raw
        // append, another host). Every answer that is not a successful append (a
        // conflict, a rejection, a no-op, a stale expected_version) is re-checked
        // against the store before it is given.
        let mut trust_cache = true;
        for attempt in 0..MAX_ATTEMPTS {
            let tenant_slot = gate.call_slot().await;
            let (mut instance, instance_slot) = self
                .runtime
                .aggregate(&serving.component, gate.call_limits())
                .await
                .map_err(|f| self.failed(gate, f))?;
            let cached = if trust_cache {
                let cached = self
                    .cached(&mut instance, gate, tenant, &stream_id, &serving)
                    .await;
                self.logged(gate, tenant, plugin, &instance, cached)?
            } else {
                None
            };
            let from_cache = cached.is_some();
            let loaded = match cached {
                Some(cached) => cached,
                None => {
                    let loaded = self
                        .load_latest(&mut instance, gate, tenant, &stream_id, &serving)
                        .await;
                    self.logged(gate, tenant, plugin, &instance, loaded)?
                }
            };
            trust_cache = false;
            if !request.expected_version.admits(loaded.version) {
                if from_cache {
                    continue;
                }
                return Err(ApiError::wrong_expected_version(loaded.version));
            }
            let command = Command {
                stream_id: stream_id.clone(),
                command_type: request.command_type.clone(),
                payload: payload.clone(),
                issued_at: now_ms().max(0) as u64,
            };
            let seed = match &request.command_id {
                Some(id) => format!("command:{id}"),
                None => format!("stream:{stream_id}@{}", loaded.version),
            };
            let deciding = std::time::Instant::now();
            let decided = instance
                .decide(&loaded.state, &command, &seed)
                .await
                .map_err(|f| self.failed(gate, f));
            gate.usage.plugin_call(plugin, "decide", deciding.elapsed());
            let decided = self.logged(gate, tenant, plugin, &instance, decided)?;
            let new_events = match decided {
                Ok(events) => events,
                Err(_) if from_cache => continue,
                // Not a domain refusal: the client's command could not be read. Not
                // remembered under a command id: the corrected request may reuse the id.
                Err(DecideError::InvalidCommand(message)) => {
                    return Err(ApiError::new(
                        axum::http::StatusCode::BAD_REQUEST,
                        "invalid_command",
                        message,
                    ));
                }
                Err(DecideError::Rejected(rejection)) => {
                    Metrics::add(&self.metrics.commands_rejected, 1);
                    // A refusal is an answer like any other: a repeat of the id gets it
                    // again instead of a second chance.
                    if let Some(command_id) = &request.command_id {
                        let record = CommandRecord {
                            stream_id: stream_id.clone(),
                            first_version: loaded.version + 1,
                            last_version: loaded.version,
                            fingerprint: Some(fingerprint.clone()),
                            rejection: Some(
                                serde_json::json!({"code": rejection.code, "message": rejection.message})
                                    .to_string(),
                            ),
                        };
                        self.store
                            .record_rejection(tenant, command_id, &record)
                            .await?;
                    }
                    return Err(ApiError::rejected(rejection.code, rejection.message));
                }
            };
            let events = check_new_events(new_events, &metadata, gate.limits.max_body_bytes)
                .map_err(|f| self.failed(gate, f))?;
            if events.is_empty() && request.command_id.is_none() {
                if from_cache {
                    continue;
                }
                return Ok(CommandResult {
                    stream_id,
                    version: loaded.version,
                    position: loaded.last_position,
                    events: Vec::new(),
                });
            }
            let append = AppendRequest {
                tenant: tenant.clone(),
                stream_id: stream_id.clone(),
                expected: ExpectedVersion::Exact(loaded.version),
                events,
                ids_from_writer: false,
                command_id: request.command_id.clone(),
                command_fingerprint: request.command_id.as_ref().map(|_| fingerprint.clone()),
                atomic_group: None,
            };
            // The append waits for a commit, often two (the one under way, then its
            // own): it holds no instance and none of the tenant's call slots meanwhile.
            // Held, they capped what one tenant could have queued for a commit at its
            // `max_concurrent_calls`, so a batch carried at most half of them while the
            // other half waited, and commands/s stopped at that cap over two commits.
            // The new events are folded by the stream's next command instead.
            drop(instance);
            drop(instance_slot);
            drop(tenant_slot);
            let appended = gate
                .append_within_quota(&self.store, &self.appender, append)
                .await?;
            match appended {
                Ok(outcome) => {
                    Metrics::add(&self.metrics.events_appended, outcome.events.len() as u64);
                    let position = outcome
                        .events
                        .last()
                        .map_or(loaded.last_position, |e| e.position);
                    if !outcome.replayed {
                        self.remember_committed(tenant, &stream_id, loaded, &outcome.events);
                    }
                    return Ok(CommandResult {
                        stream_id,
                        version: outcome.version,
                        position,
                        events: outcome.events,
                    });
                }
                Err(AppendError::WrongExpectedVersion { current }) => {
                    // A named version (or "no stream yet") no longer holds once someone
                    // else appended; "any" and "stream exists" still do: decide again.
                    if matches!(
                        request.expected_version,
                        ExpectedVersion::Exact(_) | ExpectedVersion::NoStream
                    ) {
                        return Err(ApiError::wrong_expected_version(current));
                    }
                    Metrics::add(&self.metrics.command_conflict_retries, 1);
                    tracing::debug!(%tenant, %stream_id, attempt, "append conflict, deciding again");
                }
                Err(AppendError::CommandAlreadyApplied) => {
                    let command_id = request.command_id.as_deref().unwrap_or_default();
                    if let Some(answer) = self
                        .earlier_answer(tenant, &stream_id, command_id, &fingerprint)
                        .await?
                    {
                        return Ok(answer);
                    }
                    return Err(ApiError::internal("command recorded but not found"));
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(ApiError::unavailable(
            "contention",
            format!("{stream_id} kept changing under this command; try again"),
        ))
    }

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
