//! Verification of a new aggregate or upcaster version against recorded history,
//! in the background, before it may serve.
//!
//! An aggregate version folds every stream of its aggregate (each under the tenant's
//! limits, one stream per tenant call slot, so commands keep their turns) and its
//! state is compared with the active version's; an upcaster upcasts every stored
//! event of its types. The report (progress, the first failures, state differences)
//! is written to the store as it goes, so any host can show it. A version with a
//! failure is `rejected` and never serves; the active version is untouched either way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::Plugins;
use super::fold::{Folded, Folder, PAGE, SNAPSHOT_FROM_VERSION};
use super::report::{
    Activation, Difference, Failure, MAX_DIFFERENCES, MAX_FAILURES, Mode, Report, plural, rfc3339,
    same_state, shown,
};
use crate::error::ApiError;
use crate::store::retry::{Backoff, Transient, retry};
use crate::store::{PluginKind, PluginVersion, TenantId, Verification, now_ms};
use crate::tenancy::gate::TenantGate;

/// How often progress is written to the store. Each write is a commit (an fsync on
/// SQLite) on the connection appends use, so not more often than this.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

impl Plugins {
    /// Starts verifying `version` in the background (unless this host already is).
    pub(super) fn start_verification(
        self: Arc<Self>,
        tenant: TenantId,
        gate: Arc<TenantGate>,
        version: PluginVersion,
    ) {
        let key = (tenant.clone(), version.name.clone(), version.version);
        if !self
            .running
            .lock()
            .expect("running lock")
            .insert(key.clone())
        {
            return;
        }
        super::background::runtime().spawn(async move {
            // A store failure that may pass (each read is retried for the retry
            // budget first) starts the verification again after a backoff: the
            // version stays `verifying`, never rejected for the store's trouble.
            let mut backoff = Backoff::new();
            let (mut report, result) = loop {
                let mut report: Report = version
                    .report
                    .clone()
                    .and_then(|r| serde_json::from_value(r).ok())
                    .unwrap_or_default();
                report.started_at = rfc3339(now_ms());
                let result = match version.kind {
                    PluginKind::Aggregate => {
                        self.verify_aggregate(&tenant, &gate, &version, &mut report)
                            .await
                    }
                    PluginKind::Upcaster => {
                        self.verify_upcaster(&tenant, &gate, &version, &mut report)
                            .await
                    }
                    PluginKind::Projection => Ok(()),
                };
                match result {
                    Err(error) if error.is_transient() => {
                        let wait = backoff.failed();
                        tracing::warn!(%tenant, plugin = %version.name, version = version.version,
                            "verification interrupted by the store; starting again in {wait:?}: {error:#}");
                        tokio::time::sleep(wait).await;
                    }
                    result => break (report, result),
                }
            };
            if let Err(error) = result {
                tracing::warn!(%tenant, plugin = %version.name, version = version.version,
                    "verification could not finish: {error:#}");
                report.outcome = Some(format!("verification could not finish: {error:#}"));
                report.failures_total += 1;
            }
            let finished = retry("recording a verification", || {
                self.finish(&tenant, &version, report.clone())
            })
            .await;
            if let Err(error) = finished {
                tracing::warn!(%tenant, plugin = %version.name, "recording a verification failed: {error:#}");
            }
            self.running.lock().expect("running lock").remove(&key);
        });
    }

    async fn finish(
        &self,
        tenant: &TenantId,
        version: &PluginVersion,
        mut report: Report,
    ) -> anyhow::Result<()> {
        let strict_refusal = report.mode == Mode::Strict && report.state_differences > 0;
        let rejected = report.failures_total > 0 || strict_refusal;
        if report.outcome.is_none() {
            report.outcome = Some(if report.stopped_early {
                format!(
                    "rejected: verification stopped at the first {} failures; the rest of \
                     the history was not checked",
                    report.failures.len()
                )
            } else if report.failures_total > 0 {
                format!(
                    "rejected: {} of the checked history did not fold with this version",
                    plural(report.failures_total, "stream")
                )
            } else if strict_refusal {
                format!(
                    "rejected: the state of {} differs from the active version's, and \
                     verification was strict",
                    plural(report.state_differences, "stream")
                )
            } else if report.state_differences > 0 {
                format!(
                    "verified with a warning: the state of {} differs from the active \
                     version's",
                    plural(report.state_differences, "stream")
                )
            } else {
                "verified".to_owned()
            });
        }
        report.finished_at = Some(rfc3339(now_ms()));
        let status = if rejected {
            Verification::Rejected
        } else {
            Verification::Verified
        };
        // Activated in the same transaction unless someone else changed the active
        // version meanwhile (a newer upload's verification, a rollback).
        let activate_over = (status == Verification::Verified
            && report.activate == Activation::Auto)
            .then(|| report.compared_with.unwrap_or(0));
        self.store
            .finish_plugin_verification(
                tenant,
                &version.name,
                version.version,
                status,
                &serde_json::to_value(&report)?,
                activate_over,
            )
            .await?;
        tracing::info!(%tenant, plugin = %version.name, version = version.version,
            status = status.as_str(), "verification finished");
        let versions = self.changed(tenant).await.map_err(ApiError::into_anyhow)?;
        let now_active = versions
            .iter()
            .any(|v| v.name == version.name && v.version == version.version && v.active);
        if activate_over.is_some() && now_active && version.kind == PluginKind::Aggregate {
            self.activated(tenant, &version.name);
        }
        Ok(())
    }

    async fn progress(
        &self,
        tenant: &TenantId,
        version: &PluginVersion,
        report: &Report,
    ) -> anyhow::Result<()> {
        let report = serde_json::to_value(report)?;
        retry("recording verification progress", || {
            self.store.set_plugin_verification(
                tenant,
                &version.name,
                version.version,
                Verification::Verifying,
                &report,
            )
        })
        .await
    }

    async fn verify_aggregate(
        &self,
        tenant: &TenantId,
        gate: &TenantGate,
        version: &PluginVersion,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let api = ApiError::into_anyhow;
        let candidate = self.serving(tenant, version).await.map_err(api)?;
        let active = match self
            .all(tenant)
            .await
            .map_err(api)?
            .iter()
            .find(|v| v.name == version.name && v.active && v.version != version.version)
        {
            Some(active) => Some(self.serving(tenant, active).await.map_err(api)?),
            None => None,
        };
        report.compared_with = active.as_ref().map(|a| a.version.version);
        let streams = self.streams_of(tenant, &version.name).await.map_err(api)?;
        report.streams_total = streams.len() as u64;
        report.events_total = streams.iter().map(|(_, v)| v).sum();
        let budget = gate.limits.verify_max_events;
        let streams = if report.events_total > budget {
            let sample = sample(streams, budget);
            report.sampled = true;
            report.sample_rule = Some(format!(
                "the history holds {} events, more than verify_max_events ({budget}): \
                 streams were taken in the order of the SHA-256 of their id while their \
                 events fit in the budget (when none fits, the shortest stream, past the \
                 budget: something is always verified)",
                report.events_total
            ));
            report.sampled_streams = sample.iter().take(50).map(|(s, _)| s.clone()).collect();
            sample
        } else {
            streams
        };
        self.progress(tenant, version, report).await?;
        let mut folders = vec![Folder::new(&candidate)];
        folders.extend(active.as_deref().map(Folder::new));
        let mut flushed = Instant::now();
        for (stream_id, _) in &streams {
            let mut outcomes = self
                .fold_stream(&mut folders, gate, tenant, stream_id)
                .await?
                .into_iter();
            let (new, old) = (outcomes.next().expect("the candidate's"), outcomes.next());
            match new {
                Folded::Failed(failure) => {
                    report.failures_total += 1;
                    report.failures.push(failure);
                    if report.failures.len() >= MAX_FAILURES {
                        report.streams_checked += 1;
                        report.stopped_early = report.streams_checked < streams.len() as u64;
                        break;
                    }
                }
                Folded::State {
                    state,
                    version: at,
                    events,
                } => {
                    report.events_folded += events;
                    // The new version's first command on this stream starts from here,
                    // not from event 1: verification is the fold an upgrade needs.
                    if at >= SNAPSHOT_FROM_VERSION {
                        self.keep_snapshot(
                            gate,
                            tenant,
                            stream_id,
                            &candidate.state_key,
                            at,
                            &state,
                        )
                        .await;
                    }
                    if let Some(Folded::State { state: old, .. }) = old
                        && !same_state(&old, &state)
                    {
                        report.state_differences += 1;
                        if report.difference_examples.len() < MAX_DIFFERENCES {
                            report.difference_examples.push(Difference {
                                stream_id: stream_id.clone(),
                                version: at,
                                active_state: shown(&old),
                                new_state: shown(&state),
                            });
                        }
                    }
                }
            }
            report.streams_checked += 1;
            if flushed.elapsed() >= PROGRESS_EVERY {
                self.progress(tenant, version, report).await?;
                flushed = Instant::now();
            }
            // Verification is background work: let commands run between streams.
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    async fn verify_upcaster(
        &self,
        tenant: &TenantId,
        gate: &TenantGate,
        version: &PluginVersion,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let api = ApiError::into_anyhow;
        report.compared_with = self
            .all(tenant)
            .await
            .map_err(api)?
            .iter()
            .find(|v| v.name == version.name && v.active)
            .map(|v| v.version);
        let component = self.component(tenant, version).await.map_err(api)?;
        let types: Vec<String> = self
            .upcaster_types(&component, gate)
            .await
            .map_err(api)?
            .iter()
            .cloned()
            .collect();
        // Without the tenant's CPU turns: this thread already runs only when nothing
        // else wants the CPU, and a turn held by a starved thread would be one less
        // for the tenant's own commands.
        let limits = gate.limits.call_limits();
        let budget = gate.limits.verify_max_events;
        let mut flushed = Instant::now();
        let mut after = 0;
        loop {
            let page = retry("reading the log to verify", || {
                self.store.read_log(tenant, after, PAGE, &types)
            })
            .await?;
            let Some(last) = page.last() else { break };
            if report.events_folded >= budget {
                report.sampled = true;
                report.sample_rule = Some(format!(
                    "only the first {budget} events of its types in log order were checked \
                     (verify_max_events)"
                ));
                break;
            }
            after = last.position;
            let _tenant_slot = gate.call_slot().await;
            let _slot = self.runtime.slot().await;
            let mut instance = self.runtime.upcaster(&component, limits.clone()).await?;
            if instance.upcast(&page).await.is_err() {
                // Check each event alone to report every one that fails.
                for event in &page {
                    if let Err(failure) = instance.upcast(std::slice::from_ref(event)).await {
                        report.failures_total += 1;
                        report
                            .failures
                            .push(Failure::at(&event.stream_id, Some(event), failure));
                        if report.failures.len() >= MAX_FAILURES {
                            break;
                        }
                        instance = self.runtime.upcaster(&component, limits.clone()).await?;
                    }
                }
            }
            if report.failures.len() >= MAX_FAILURES {
                report.stopped_early = true;
                break;
            }
            report.events_folded += page.len() as u64;
            report.events_total = report.events_folded;
            if flushed.elapsed() >= PROGRESS_EVERY {
                self.progress(tenant, version, report).await?;
                flushed = Instant::now();
            }
            tokio::task::yield_now().await;
        }
        Ok(())
    }
}

/// A deterministic sample: streams in the order of the SHA-256 of their id, taken while
/// their events fit in `budget`; returned in id order.
fn sample(streams: Vec<(String, u64)>, budget: u64) -> Vec<(String, u64)> {
    let mut keyed: Vec<([u8; 32], (String, u64))> = streams
        .into_iter()
        .map(|s| (Sha256::digest(s.0.as_bytes()).into(), s))
        .collect();
    keyed.sort_by_key(|k| k.0);
    let mut left = budget;
    let mut taken: Vec<(String, u64)> = Vec::new();
    let mut shortest: Option<(String, u64)> = None;
    for (_, (id, events)) in keyed {
        if events <= left {
            left -= events;
            taken.push((id, events));
        } else if shortest.as_ref().is_none_or(|s| events < s.1) {
            shortest = Some((id, events));
        }
    }
    // Every stream longer than the budget: the shortest is verified anyway, past the
    // budget, so that a version never goes live with nothing of its history checked.
    if taken.is_empty()
        && let Some(shortest) = shortest
    {
        taken.push(shortest);
    }
    taken.sort();
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_smaller_than_every_stream_still_verifies_one() {
        let streams = vec![("a-1".to_owned(), 500), ("a-2".to_owned(), 300)];
        assert_eq!(sample(streams, 100), vec![("a-2".to_owned(), 300)]);
    }

    #[test]
    fn the_sample_is_deterministic_and_fits_the_budget() {
        let streams: Vec<(String, u64)> = (0..100).map(|i| (format!("a-{i:03}"), 10)).collect();
        let first = sample(streams.clone(), 255);
        assert_eq!(first.len(), 25);
        assert_eq!(first, sample(streams.into_iter().rev().collect(), 255));
        assert!(first.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
