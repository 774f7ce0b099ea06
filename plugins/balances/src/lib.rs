//! The `balances` projection: one document per account stream, keyed by the stream id
//! (`account-42`), holding `{"owner", "balance", "version"}`.

use cairn_guest::{Documents, Event, Projection};
use serde::{Deserialize, Serialize};

/// The account events this projection reads (a subset of the account plugin's).
#[derive(Debug, Deserialize)]
pub enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: i64 },
    Withdrawn { amount: i64 },
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Balance {
    pub owner: Option<String>,
    pub balance: i64,
    /// The stream version of the last event applied.
    pub version: u64,
}

pub struct Balances;

impl Projection for Balances {
    type Event = AccountEvent;

    fn event_types() -> Vec<&'static str> {
        vec!["Opened", "Deposited", "Withdrawn"]
    }

    fn handle(event: Event<AccountEvent>, docs: &mut Documents) {
        // Only account streams: another aggregate may use the same event names.
        if !event.stream_id.starts_with("account-") {
            return;
        }
        let mut doc: Balance = docs.get(&event.stream_id).unwrap_or_default();
        match event.data {
            AccountEvent::Opened { owner } => doc.owner = Some(owner),
            // Saturating: raw appends can carry any amount; a sum never wraps.
            AccountEvent::Deposited { amount } => doc.balance = doc.balance.saturating_add(amount),
            AccountEvent::Withdrawn { amount } => doc.balance = doc.balance.saturating_sub(amount),
        }
        doc.version = event.version;
        docs.put(&event.stream_id, &doc);
    }
}

cairn_guest::export_projection!(Balances);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_document_per_account() {
        let mut docs = Documents::in_memory();
        let feed = [
            (
                "account-1",
                1,
                AccountEvent::Opened {
                    owner: "ann".into(),
                },
            ),
            (
                "account-2",
                1,
                AccountEvent::Opened {
                    owner: "bob".into(),
                },
            ),
            ("account-1", 2, AccountEvent::Deposited { amount: 100 }),
            ("account-1", 3, AccountEvent::Withdrawn { amount: 30 }),
        ];
        for (stream, version, data) in feed {
            Balances::handle(Event::for_test(stream, version, data), &mut docs);
        }
        assert_eq!(docs.keys(), vec!["account-1", "account-2"]);
        let ann: Balance = docs.get("account-1").unwrap();
        assert_eq!(
            ann,
            Balance {
                owner: Some("ann".into()),
                balance: 70,
                version: 3
            }
        );
        let json = serde_json::to_value(&ann).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"owner": "ann", "balance": 70, "version": 3})
        );
    }

    #[test]
    fn sums_saturate_instead_of_wrapping() {
        let mut docs = Documents::in_memory();
        for (version, data) in [
            (1, AccountEvent::Deposited { amount: 5 }),
            (2, AccountEvent::Deposited { amount: i64::MAX }),
        ] {
            Balances::handle(Event::for_test("account-1", version, data), &mut docs);
        }
        let doc: Balance = docs.get("account-1").unwrap();
        assert_eq!(doc.balance, i64::MAX);
    }

    #[test]
    fn other_streams_are_ignored() {
        let mut docs = Documents::in_memory();
        Balances::handle(
            Event::for_test("loan-1", 1, AccountEvent::Deposited { amount: 5 }),
            &mut docs,
        );
        assert!(docs.keys().is_empty());
    }
}
