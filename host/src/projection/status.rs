//! What a projection's builds look like from outside: the status views (which build
//! serves, each build's position, lag, throughput, and why it is parked or waiting for
//! the store) and read-your-writes waits on the active build.

use std::time::Duration;

use serde::Serialize;

use super::{DEFAULT_WAIT, MAX_WAIT, Projections};
use crate::error::{ApiError, ApiResult};
use crate::store::{ProjectionStatus, TenantId};

/// One build of a projection, as the API shows it: a plugin version folded over the
/// tenant's log.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BuildView {
    /// The plugin version this build runs.
    pub version: u64,
    /// The build's id: a rebuild of the same plugin version is a new build.
    pub build: u64,
    /// The host whose worker runs it, on a fleet of hosts on PostgreSQL (its lease
    /// holder); `null` on a single SQLite host, or while no host runs it.
    #[schema(required = true)]
    pub host: Option<String>,
    pub status: ProjectionStatus,
    /// The last position of the tenant's log this build has handled.
    pub position: u64,
    /// How far behind the log's head it is, in positions.
    pub lag: u64,
    /// Why it failed (`status` `failed`), or, with `retrying`, that it has been waiting
    /// for the store for longer than the retry budget; `null` otherwise.
    #[schema(required = true)]
    pub error: Option<String>,
    /// Its worker's store calls are failing for a passing reason (the database
    /// unreachable or busy, the disk full) and it retries with backoff: it resumes on
    /// its own once the store answers. Not parked: `status` stays what it was. Shown by
    /// the host that runs the build.
    pub retrying: bool,
    /// Events handled per second since this host started tracking it.
    pub events_per_second: f64,
}

/// A projection, as the API shows it: which build serves reads, and every build kept.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProjectionView {
    pub name: String,
    /// The plugin version of the build that serves reads; `null` while none does.
    #[schema(required = true)]
    pub active_version: Option<u64>,
    /// The build that serves reads; `null` while none does.
    #[schema(required = true)]
    pub active_build: Option<u64>,
    /// Every build kept (the active one, those building, the retired kept for rollback,
    /// the failed), oldest first.
    pub versions: Vec<BuildView>,
}

impl Projections {
    /// The active build, once it has passed `min_position` (waiting up to `wait`).
    pub async fn readable(
        &self,
        tenant: &TenantId,
        name: &str,
        min_position: Option<u64>,
        wait: Option<Duration>,
    ) -> ApiResult<u64> {
        let deadline = tokio::time::Instant::now() + wait.unwrap_or(DEFAULT_WAIT).min(MAX_WAIT);
        loop {
            let active = self.active_record(tenant, name)?;
            let Some(min) = min_position else {
                return Ok(active.version);
            };
            let key = (tenant.clone(), name.to_owned());
            let Some(mut position) =
                self.build_mut(&key, active.version, |b| b.position.subscribe())
            else {
                continue;
            };
            let at = *position.borrow_and_update();
            if at >= min {
                return Ok(active.version);
            }
            // A build waiting for the store past the retry budget will not move before
            // the store answers again: say so now, as the store's own unavailability.
            let waiting = self
                .build_mut(&key, active.version, |b| {
                    b.store_wait.as_ref().and_then(|w| w.parked.clone())
                })
                .flatten();
            if let Some(waiting) = waiting {
                return Err(ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    format!(
                        "{name} version {} is at position {at}, not yet at {min}, and is {waiting}",
                        active.version
                    ),
                )
                .with("version", active.version)
                .with("position", at)
                .retry_after(5));
            }
            // A parked build will not move: say so now rather than after the wait.
            if let Some(error) = &active.error {
                return Err(ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    "projection_failed",
                    format!(
                        "{name} version {} is parked at position {at} and will not reach \
                         {min}: {error}",
                        active.version
                    ),
                )
                .with("version", active.version)
                .with("position", at)
                .with("error", error.clone()));
            }
            // Wake on progress, and re-check the active build now and then in case a
            // promotion switched it.
            let step = tokio::time::Instant::now() + Duration::from_millis(200);
            let until = step.min(deadline);
            let _ = tokio::time::timeout_at(until, position.changed()).await;
            if tokio::time::Instant::now() >= deadline {
                let at = *position.borrow();
                if at >= min {
                    return Ok(active.version);
                }
                return Err(ApiError::unavailable(
                    "not_caught_up",
                    format!("{name} is at position {at}, not yet at {min}; try again"),
                )
                .with("position", at));
            }
        }
    }

    /// Status of one projection, or of all of the tenant's.
    pub async fn status(
        &self,
        tenant: &TenantId,
        name: Option<&str>,
    ) -> ApiResult<Vec<ProjectionView>> {
        let head = self.store.head(tenant).await?;
        let holders = self.lease_holders(tenant).await?;
        let builds = self.builds.lock().expect("builds lock");
        let mut views: Vec<ProjectionView> = builds
            .iter()
            .filter(|((t, n), _)| t == tenant && name.is_none_or(|name| name == n))
            .map(|((_, n), versions)| {
                let mut list: Vec<BuildView> = versions
                    .values()
                    .map(|b| {
                        let position = *b.position.borrow();
                        let seconds = b.started.elapsed().as_secs_f64().max(0.001);
                        let parked = b.record.error.is_some();
                        // A retired build's worker has stopped: whatever it was
                        // waiting for when it stopped is no longer waited for.
                        let waiting = b
                            .store_wait
                            .as_ref()
                            .filter(|_| b.record.status != ProjectionStatus::Retired);
                        BuildView {
                            version: b.record.plugin_version,
                            build: b.record.version,
                            host: holders.get(&(n.clone(), b.record.version)).cloned(),
                            status: if parked {
                                ProjectionStatus::Failed
                            } else {
                                b.record.status
                            },
                            position,
                            lag: head.saturating_sub(position),
                            error: b
                                .record
                                .error
                                .clone()
                                .or_else(|| waiting.and_then(|w| w.parked.clone())),
                            retrying: waiting.is_some() && !parked,
                            events_per_second: (b.handled as f64 / seconds * 10.0).round() / 10.0,
                        }
                    })
                    .collect();
                list.sort_by_key(|b| b.build);
                let active = versions
                    .values()
                    .find(|b| b.record.status == ProjectionStatus::Active);
                ProjectionView {
                    name: n.clone(),
                    active_version: active.map(|b| b.record.plugin_version),
                    active_build: active.map(|b| b.record.version),
                    versions: list,
                }
            })
            .collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(name) = name
            && views.is_empty()
        {
            return Err(ApiError::not_found(format!("no projection named {name}")));
        }
        Ok(views)
    }
}
