//! Version 2 of the `balances` projection, with a new document shape: the owner is a
//! `holder`, the money says its currency, and the document counts its movements.
//! Uploaded as a new version of `balances`, it is built beside version 1 and takes
//! over when it has caught up (see examples/hot-swap).

use cairn_guest::{Documents, Event, Projection};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
pub enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: i64 },
    Withdrawn { amount: i64 },
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Money {
    pub amount: i64,
    pub currency: String,
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BalanceV2 {
    pub holder: Option<String>,
    pub balance: Money,
    pub movements: u64,
    pub version: u64,
}

pub struct BalancesV2;

impl Projection for BalancesV2 {
    type Event = AccountEvent;

    fn event_types() -> Vec<&'static str> {
        vec!["Opened", "Deposited", "Withdrawn"]
    }

    fn handle(event: Event<AccountEvent>, docs: &mut Documents) {
        if !event.stream_id.starts_with("account-") {
            return;
        }
        let mut doc: BalanceV2 = docs.get(&event.stream_id).unwrap_or_default();
        doc.balance.currency = "EUR".into();
        match event.data {
            AccountEvent::Opened { owner } => doc.holder = Some(owner),
            AccountEvent::Deposited { amount } => {
                // Saturating: raw appends can carry any amount; a sum never wraps.
                doc.balance.amount = doc.balance.amount.saturating_add(amount);
                doc.movements += 1;
            }
            AccountEvent::Withdrawn { amount } => {
                doc.balance.amount = doc.balance.amount.saturating_sub(amount);
                doc.movements += 1;
            }
        }
        doc.version = event.version;
        docs.put(&event.stream_id, &doc);
    }
}

cairn_guest::export_projection!(BalancesV2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_shape() {
        let mut docs = Documents::in_memory();
        BalancesV2::handle(
            Event::for_test(
                "account-1",
                1,
                AccountEvent::Opened {
                    owner: "ann".into(),
                },
            ),
            &mut docs,
        );
        BalancesV2::handle(
            Event::for_test("account-1", 2, AccountEvent::Deposited { amount: 9 }),
            &mut docs,
        );
        let json = serde_json::to_value(docs.get::<BalanceV2>("account-1").unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"holder": "ann", "balance": {"amount": 9, "currency": "EUR"}, "movements": 1, "version": 2})
        );
    }
}
