//! The neighbour tenant that `bench-fairness`, `bench-verify` and `bench-polyglot`
//! watch while another tenant works: one `account` opened, then deposits, each timed
//! from request to answer.

use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::json;

/// A tenant's account `n`, opened.
pub(crate) struct Neighbour<'a> {
    base: &'a str,
    tenant: &'a str,
    token: &'a str,
}

impl<'a> Neighbour<'a> {
    /// Opens account `n` of `tenant` (which has `account` uploaded).
    pub(crate) fn open(
        http: &Client,
        base: &'a str,
        tenant: &'a str,
        token: &'a str,
    ) -> anyhow::Result<Neighbour<'a>> {
        let neighbour = Neighbour {
            base,
            tenant,
            token,
        };
        neighbour.command(http, json!({"type": "Open", "payload": {"owner": "n"}}))?;
        Ok(neighbour)
    }

    /// One deposit, and how long its answer took.
    pub(crate) fn deposit(&self, http: &Client) -> anyhow::Result<Duration> {
        let sent = Instant::now();
        self.command(http, json!({"type": "Deposit", "payload": {"amount": 1}}))?;
        Ok(sent.elapsed())
    }

    fn command(&self, http: &Client, body: serde_json::Value) -> anyhow::Result<()> {
        http.post(format!(
            "{}/t/{}/aggregates/account/n/commands",
            self.base, self.tenant
        ))
        .bearer_auth(self.token)
        .json(&body)
        .send()?
        .error_for_status()?;
        Ok(())
    }
}
