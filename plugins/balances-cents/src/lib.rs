//! The `balances-cents` projection: `balances` for `account-v2`'s event shape, where a
//! deposit is `Deposited { cents }`. It reads history written by `account` (v1,
//! `Deposited { amount }`) only through `account-upcaster`; see examples/upcasting.
//! One document per account stream, keyed by the stream id, `{"owner", "balance",
//! "version"}`.

use cairn_guest::{Documents, Event, Projection};
use serde::{Deserialize, Serialize};

/// The account events this projection reads, in account-v2's shapes.
#[derive(Debug, Deserialize)]
pub enum AccountEvent {
    Opened { owner: String },
    Deposited { cents: i64 },
    Withdrawn { amount: i64 },
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Balance {
    pub owner: Option<String>,
    pub balance: i64,
    /// The stream version of the last event applied.
    pub version: u64,
}

pub struct BalancesInCents;

impl Projection for BalancesInCents {
    type Event = AccountEvent;

    fn event_types() -> Vec<&'static str> {
        vec!["Opened", "Deposited", "Withdrawn"]
    }

    fn handle(event: Event<AccountEvent>, docs: &mut Documents) {
        if !event.stream_id.starts_with("account-") {
            return;
        }
        let mut doc: Balance = docs.get(&event.stream_id).unwrap_or_default();
        match event.data {
            AccountEvent::Opened { owner } => doc.owner = Some(owner),
            // Saturating: raw appends can carry any amount; a sum never wraps.
            AccountEvent::Deposited { cents } => doc.balance = doc.balance.saturating_add(cents),
            AccountEvent::Withdrawn { amount } => doc.balance = doc.balance.saturating_sub(amount),
        }
        doc.version = event.version;
        docs.put(&event.stream_id, &doc);
    }
}

cairn_guest::export_projection!(BalancesInCents);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deposits_in_cents_add_up() {
        let mut docs = Documents::in_memory();
        BalancesInCents::handle(
            Event::for_test(
                "account-1",
                1,
                AccountEvent::Opened {
                    owner: "ada".into(),
                },
            ),
            &mut docs,
        );
        BalancesInCents::handle(
            Event::for_test("account-1", 2, AccountEvent::Deposited { cents: 250 }),
            &mut docs,
        );
        assert_eq!(
            docs.get::<Balance>("account-1"),
            Some(Balance {
                owner: Some("ada".into()),
                balance: 250,
                version: 2
            })
        );
    }
}
