//! The `account-upcaster` upcaster: rewrites version 1's `Deposited { amount }` as
//! version 2's `Deposited { cents }` (the same number: amounts were already in the
//! smallest unit of the currency). A `Deposited` that already has `cents` passes
//! unchanged. With it active, `account-v2` can read the whole history of `account`.

use cairn_guest::{Event, Upcast, Upcaster};
use serde::Deserialize;
use serde_json::json;

/// A stored `Deposited`, in either shape.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StoredDeposit {
    /// Version 2 (tried first, so an event with both fields counts as version 2).
    Cents { cents: i64 },
    /// Version 1.
    Amount { amount: i64 },
}

/// The stored events this upcaster reads.
#[derive(Debug, Deserialize)]
pub enum StoredEvent {
    Deposited(StoredDeposit),
}

pub struct DepositedInCents;

impl Upcaster for DepositedInCents {
    type Event = StoredEvent;

    fn event_types() -> Vec<&'static str> {
        vec!["Deposited"]
    }

    fn upcast(event: Event<StoredEvent>) -> Vec<Upcast> {
        match event.data {
            StoredEvent::Deposited(StoredDeposit::Amount { amount }) => {
                vec![Upcast::to("Deposited", &json!({ "cents": amount }))]
            }
            StoredEvent::Deposited(StoredDeposit::Cents { .. }) => vec![Upcast::keep()],
        }
    }
}

cairn_guest::export_upcaster!(DepositedInCents);

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_guest::{evolve_json, upcast_json};
    use serde_json::Value;

    fn upcast(event_type: &str, data: Value) -> Vec<(String, Value)> {
        upcast_json::<DepositedInCents>(event_type, data)
    }

    #[test]
    fn it_rewrites_only_deposits() {
        assert_eq!(DepositedInCents::event_types(), ["Deposited"]);
    }

    #[test]
    fn version_1_deposits_become_cents() {
        assert_eq!(
            upcast("Deposited", json!({ "amount": 500 })),
            [("Deposited".to_owned(), json!({ "cents": 500 }))]
        );
    }

    #[test]
    fn version_2_deposits_pass_unchanged() {
        assert_eq!(
            upcast("Deposited", json!({ "cents": 500 })),
            [("Deposited".to_owned(), json!({ "cents": 500 }))]
        );
        let kept = DepositedInCents::upcast(Event::for_test(
            "account-1",
            2,
            StoredEvent::Deposited(StoredDeposit::Cents { cents: 5 }),
        ));
        assert_eq!(kept, [Upcast::keep()]);
    }

    #[test]
    fn other_events_pass_untouched() {
        for (event_type, data) in [
            ("Opened", json!({ "owner": "ann" })),
            ("Withdrawn", json!({ "amount": 30 })),
        ] {
            assert_eq!(
                upcast(event_type, data.clone()),
                [(event_type.to_owned(), data)]
            );
        }
    }

    #[test]
    #[should_panic(expected = "event Deposited of test-1 (version 1) does not decode")]
    fn a_deposit_without_a_number_traps() {
        upcast("Deposited", json!({ "sum": 500 }));
    }

    /// Version 1's history, upcasted, folds in version 2 to the state version 1 had.
    #[test]
    fn version_2_reads_upcasted_version_1_history() {
        let history = [
            ("Opened", json!({ "owner": "ann" })),
            ("Deposited", json!({ "amount": 100 })),
            ("Deposited", json!({ "cents": 20 })),
            ("Withdrawn", json!({ "amount": 30 })),
        ];
        let upcasted = history
            .into_iter()
            .flat_map(|(event_type, data)| upcast(event_type, data));
        let account = evolve_json(&account_v2::Account::default(), upcasted);
        assert_eq!(
            serde_json::to_value(account).unwrap(),
            json!({ "open": true, "owner": "ann", "balance": 90 })
        );
    }
}
