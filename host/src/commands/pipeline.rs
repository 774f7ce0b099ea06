//! The command pipeline's steps: a command admitted and locked on its stream, then
//! attempts of load → decide → append until one commits (or answers), each step a
//! method of its own. A conflict with an append this host did not see (another host,
//! a raw append) ends an attempt; the next one reloads and decides again.

use serde_json::Value;

use super::state_cache::CachedState;
use super::{
    CommandRequest, CommandResult, Commands, MAX_ATTEMPTS, check_new_events, event_metadata,
    request_fingerprint,
};
use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use crate::plugins::ServingAggregate;
use crate::runtime::AggregateInstance;
use crate::runtime::aggregate::{Command, DecideError, Rejection};
use crate::store::{
    AppendError, AppendRequest, CommandRecord, ExpectedVersion, ProposedEvent, TenantId, now_ms,
};
use crate::tenancy::gate::TenantGate;
use crate::vocab::stream_of;

/// A command on its way through the pipeline: the request, and what is derived from
/// it once for every attempt.
struct Pending<'r> {
    /// The tenant whose stream it is.
    tenant: &'r TenantId,
    /// The tenant's gate: call slots, limits, usage, the storage quota.
    gate: &'r TenantGate,
    /// The aggregate's name, for logs and usage.
    plugin: &'r str,
    /// The active version that decides.
    serving: &'r ServingAggregate,
    /// The client's request.
    request: &'r CommandRequest,
    /// The stream of (aggregate, id).
    stream_id: String,
    /// The request's idempotency fingerprint (kept with its command id).
    fingerprint: String,
    /// The metadata every new event carries.
    metadata: String,
    /// The command's payload, serialized once.
    payload: Vec<u8>,
}

impl Commands {
    /// Runs a command: admits it, takes its stream's turn, answers a repeated command
    /// id from its first answer, and otherwise tries up to `MAX_ATTEMPTS` times. Its
    /// latency, answered or refused, goes to the tenant's histogram
    /// (`cairn_command_duration_seconds`).
    pub async fn execute(
        &self,
        tenant: &TenantId,
        gate: &TenantGate,
        plugin: &str,
        id: &str,
        request: CommandRequest,
    ) -> ApiResult<CommandResult> {
        let started = std::time::Instant::now();
        let result: ApiResult<CommandResult> = async {
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
            let pending = Pending {
                tenant,
                gate,
                plugin,
                serving: &serving,
                request: &request,
                metadata: event_metadata(&request, &command_uuid),
                payload: Value::Object(request.payload.clone())
                    .to_string()
                    .into_bytes(),
                stream_id,
                fingerprint,
            };
            // A cached state is decided on without reading the store: the append's
            // expected-version check is the guard against anything appended since (a raw
            // append, another host). Every answer that is not a successful append (a
            // conflict, a rejection, a no-op, a stale expected_version) is re-checked
            // against the store before it is given: only the first attempt trusts the cache.
            for attempt in 0..MAX_ATTEMPTS {
                if let Some(answer) = self.attempt(&pending, attempt == 0, attempt).await? {
                    return Ok(answer);
                }
            }
            Err(ApiError::unavailable(
                "contention",
                format!(
                    "{} kept changing under this command; try again",
                    pending.stream_id
                ),
            ))
        }
        .await;
        gate.usage.command_latency.observe(started.elapsed());
        result
    }

    /// One attempt: load, decide, append. `None`: decide again (a cached state that
    /// turned out stale, or an append that met a concurrent one).
    async fn attempt(
        &self,
        c: &Pending<'_>,
        trust_cache: bool,
        attempt: usize,
    ) -> ApiResult<Option<CommandResult>> {
        let tenant_slot = c.gate.call_slot().await;
        let (mut instance, instance_slot) = self
            .runtime
            .aggregate(&c.serving.component, c.gate.call_limits())
            .await
            .map_err(|f| self.failed(c.gate, f))?;
        let (loaded, from_cache) = self.load_state(&mut instance, c, trust_cache).await?;
        if !c.request.expected_version.admits(loaded.version) {
            if from_cache {
                return Ok(None);
            }
            return Err(ApiError::wrong_expected_version(loaded.version));
        }
        let Some(events) = self.decide(&mut instance, c, &loaded, from_cache).await? else {
            return Ok(None);
        };
        if events.is_empty() && c.request.command_id.is_none() {
            if from_cache {
                return Ok(None);
            }
            return Ok(Some(CommandResult {
                stream_id: c.stream_id.clone(),
                version: loaded.version,
                position: loaded.last_position,
                events: Vec::new(),
            }));
        }
        // The append waits for a commit, often two (the one under way, then its own):
        // it holds no instance and none of the tenant's call slots meanwhile. Held,
        // they capped what one tenant could have queued for a commit at its
        // `max_concurrent_calls`, so a batch carried at most half of them while the
        // other half waited, and commands/s stopped at that cap over two commits. The
        // new events are folded by the stream's next command instead.
        drop(instance);
        drop(instance_slot);
        drop(tenant_slot);
        self.append(c, loaded, events, attempt).await
    }

    /// The stream's state to decide on: the cached one when it is trusted and there,
    /// else loaded (snapshot and tail); and whether it came from the cache.
    async fn load_state(
        &self,
        instance: &mut AggregateInstance,
        c: &Pending<'_>,
        trust_cache: bool,
    ) -> ApiResult<(CachedState, bool)> {
        let cached = if trust_cache {
            let cached = self
                .cached(instance, c.gate, c.tenant, &c.stream_id, c.serving)
                .await;
            self.logged(c.gate, c.tenant, c.plugin, instance, cached)?
        } else {
            None
        };
        if let Some(cached) = cached {
            return Ok((cached, true));
        }
        let loaded = self
            .load_latest(instance, c.gate, c.tenant, &c.stream_id, c.serving)
            .await;
        Ok((
            self.logged(c.gate, c.tenant, c.plugin, instance, loaded)?,
            false,
        ))
    }

    /// `decide` on the loaded state: the new events, checked; `None` when a refusal
    /// from a cached state must be checked against the store first.
    async fn decide(
        &self,
        instance: &mut AggregateInstance,
        c: &Pending<'_>,
        loaded: &CachedState,
        from_cache: bool,
    ) -> ApiResult<Option<Vec<ProposedEvent>>> {
        let command = Command {
            stream_id: c.stream_id.clone(),
            command_type: c.request.command_type.clone(),
            payload: c.payload.clone(),
            issued_at: now_ms().max(0) as u64,
        };
        let seed = match &c.request.command_id {
            Some(id) => format!("command:{id}"),
            None => format!("stream:{}@{}", c.stream_id, loaded.version),
        };
        let deciding = std::time::Instant::now();
        let decided = instance
            .decide(&loaded.state, &command, &seed)
            .await
            .map_err(|f| self.failed(c.gate, f));
        c.gate
            .usage
            .plugin_call(c.plugin, "decide", deciding.elapsed());
        let decided = self.logged(c.gate, c.tenant, c.plugin, instance, decided)?;
        let new_events = match decided {
            Ok(events) => events,
            Err(_) if from_cache => return Ok(None),
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
                return Err(self.reject(c, loaded, rejection).await);
            }
        };
        check_new_events(new_events, &c.metadata, c.gate.limits.max_body_bytes)
            .map(Some)
            .map_err(|f| self.failed(c.gate, f))
    }

    /// A domain refusal is an answer like any other: under a command id it is recorded,
    /// so a repeat of the id gets it again instead of a second chance.
    async fn reject(
        &self,
        c: &Pending<'_>,
        loaded: &CachedState,
        rejection: Rejection,
    ) -> ApiError {
        Metrics::add(&self.metrics.commands_rejected, 1);
        if let Some(command_id) = &c.request.command_id {
            let record = CommandRecord {
                stream_id: c.stream_id.clone(),
                first_version: loaded.version + 1,
                last_version: loaded.version,
                fingerprint: Some(c.fingerprint.clone()),
                rejection: Some(
                    serde_json::json!({"code": rejection.code, "message": rejection.message})
                        .to_string(),
                ),
            };
            if let Err(error) = self
                .store
                .record_rejection(c.tenant, command_id, &record)
                .await
            {
                return error.into();
            }
        }
        ApiError::rejected(rejection.code, rejection.message)
    }

    /// Appends the decided events at the version they were decided on; `None`: a
    /// concurrent append moved the stream and the command may decide again.
    async fn append(
        &self,
        c: &Pending<'_>,
        loaded: CachedState,
        events: Vec<ProposedEvent>,
        attempt: usize,
    ) -> ApiResult<Option<CommandResult>> {
        let append = AppendRequest {
            tenant: c.tenant.clone(),
            stream_id: c.stream_id.clone(),
            expected: ExpectedVersion::Exact(loaded.version),
            events,
            ids_from_writer: false,
            command_id: c.request.command_id.clone(),
            command_fingerprint: c.request.command_id.as_ref().map(|_| c.fingerprint.clone()),
            atomic_group: None,
        };
        let appended = c
            .gate
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
                    self.remember_committed(c.tenant, &c.stream_id, loaded, &outcome.events);
                }
                Ok(Some(CommandResult {
                    stream_id: c.stream_id.clone(),
                    version: outcome.version,
                    position,
                    events: outcome.events,
                }))
            }
            Err(AppendError::WrongExpectedVersion { current }) => {
                // A named version (or "no stream yet") no longer holds once someone
                // else appended; "any" and "stream exists" still do: decide again.
                if matches!(
                    c.request.expected_version,
                    ExpectedVersion::Exact(_) | ExpectedVersion::NoStream
                ) {
                    return Err(ApiError::wrong_expected_version(current));
                }
                Metrics::add(&self.metrics.command_conflict_retries, 1);
                let (tenant, stream_id) = (c.tenant, &c.stream_id);
                tracing::debug!(%tenant, %stream_id, attempt, "append conflict, deciding again");
                Ok(None)
            }
            Err(AppendError::CommandAlreadyApplied) => {
                let command_id = c.request.command_id.as_deref().unwrap_or_default();
                match self
                    .earlier_answer(c.tenant, &c.stream_id, command_id, &c.fingerprint)
                    .await?
                {
                    Some(answer) => Ok(Some(answer)),
                    None => Err(ApiError::internal("command recorded but not found")),
                }
            }
            Err(other) => Err(other.into()),
        }
    }
}
