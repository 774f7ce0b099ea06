//! The neighbour tenant that `bench-fairness`, `bench-verify`, `bench-polyglot` and
//! `hostile` watch while another tenant works: an `account` opened, then deposits, each
//! timed from request to answer (and, for `hostile`, read back through `balances`).

use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::blocking::Client;
use serde_json::{Value, json};

/// A tenant's account, opened.
pub(crate) struct Neighbour<'a> {
    base: &'a str,
    tenant: &'a str,
    token: &'a str,
    account: String,
}

/// One request's answer: its status (0 when none came) and how long it took.
pub(crate) struct Answer {
    pub status: u16,
    pub took: Duration,
    pub body: Value,
}

impl<'a> Neighbour<'a> {
    /// Opens account `n` of `tenant` (which has `account` uploaded).
    pub(crate) fn open(
        http: &Client,
        base: &'a str,
        tenant: &'a str,
        token: &'a str,
    ) -> anyhow::Result<Neighbour<'a>> {
        Neighbour::open_account(http, base, tenant, token, "n")
    }

    /// Opens `account` of `tenant`: one per client, so clients never contend on a
    /// stream and what is measured is the host, not the domain's ordering.
    pub(crate) fn open_account(
        http: &Client,
        base: &'a str,
        tenant: &'a str,
        token: &'a str,
        account: &str,
    ) -> anyhow::Result<Neighbour<'a>> {
        let neighbour = Neighbour {
            base,
            tenant,
            token,
            account: account.to_owned(),
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

    /// One deposit whatever its answer (a failure is measured, not an error).
    pub(crate) fn deposit_answer(&self, http: &Client) -> Answer {
        self.timed(
            http.post(self.commands_url())
                .json(&json!({"type": "Deposit", "payload": {"amount": 1}})),
        )
    }

    /// Reads this account's `balances` document once the projection has reached
    /// `position` (read-your-writes, waiting up to 20 s).
    pub(crate) fn read_your_write(&self, http: &Client, position: u64) -> Answer {
        self.timed(http.get(format!(
            "{}/t/{}/projections/balances/docs/account-{}?min_position={position}&timeout_ms=20000",
            self.base, self.tenant, self.account
        )))
    }

    fn timed(&self, request: reqwest::blocking::RequestBuilder) -> Answer {
        let sent = Instant::now();
        let (status, body) = match request.bearer_auth(self.token).send() {
            Ok(answer) => {
                let status = answer.status().as_u16();
                (status, answer.json().unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        };
        Answer {
            status,
            took: sent.elapsed(),
            body,
        }
    }

    fn commands_url(&self) -> String {
        format!(
            "{}/t/{}/aggregates/account/{}/commands",
            self.base, self.tenant, self.account
        )
    }

    fn command(&self, http: &Client, body: Value) -> anyhow::Result<()> {
        http.post(self.commands_url())
            .bearer_auth(self.token)
            .json(&body)
            .send()?
            .error_for_status()
            .with_context(|| format!("{} on account {}", body["type"], self.account))?;
        Ok(())
    }
}
