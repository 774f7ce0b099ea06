//! The `account` aggregate: a bank account that can be opened, paid into and drawn
//! from, never below zero. Streams are `account-{id}`.

use cairn_guest::{Aggregate, CommandContext, Rejection};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub open: bool,
    pub owner: Option<String>,
    /// In the smallest unit of the currency.
    pub balance: i64,
}

#[derive(Debug, Deserialize)]
pub enum AccountCommand {
    Open { owner: String },
    Deposit { amount: i64 },
    Withdraw { amount: i64 },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: i64 },
    Withdrawn { amount: i64 },
}

fn positive(amount: i64) -> Result<i64, Rejection> {
    if amount > 0 {
        Ok(amount)
    } else {
        Err(Rejection::new(
            "invalid_amount",
            format!("the amount must be positive, not {amount}"),
        ))
    }
}

impl Account {
    fn must_be_open(&self) -> Result<(), Rejection> {
        if self.open {
            Ok(())
        } else {
            Err(Rejection::new("not_open", "the account is not open"))
        }
    }
}

impl Aggregate for Account {
    type Command = AccountCommand;
    type Event = AccountEvent;

    fn decide(
        &self,
        command: AccountCommand,
        _: &CommandContext,
    ) -> Result<Vec<AccountEvent>, Rejection> {
        match command {
            AccountCommand::Open { .. } if self.open => Err(Rejection::new(
                "already_open",
                "the account is already open",
            )),
            AccountCommand::Open { owner } => Ok(vec![AccountEvent::Opened { owner }]),
            AccountCommand::Deposit { amount } => {
                self.must_be_open()?;
                let amount = positive(amount)?;
                // In release builds (plugins are) `+` wraps: a deposit that would
                // overflow the balance is refused instead of turning it negative.
                if self.balance.checked_add(amount).is_none() {
                    return Err(Rejection::new(
                        "invalid_amount",
                        format!(
                            "a deposit of {amount} would take the balance of {} past the largest \
                             balance an account can hold",
                            self.balance
                        ),
                    ));
                }
                Ok(vec![AccountEvent::Deposited { amount }])
            }
            AccountCommand::Withdraw { amount } => {
                self.must_be_open()?;
                let amount = positive(amount)?;
                if amount > self.balance {
                    return Err(Rejection::new(
                        "insufficient_funds",
                        format!("the balance is {}, less than {amount}", self.balance),
                    ));
                }
                Ok(vec![AccountEvent::Withdrawn { amount }])
            }
        }
    }

    fn evolve(&mut self, event: AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => {
                self.open = true;
                self.owner = Some(owner);
            }
            // Saturating: history written before deposits were checked (or by raw
            // appends) must still fold, never wrap.
            AccountEvent::Deposited { amount } => {
                self.balance = self.balance.saturating_add(amount)
            }
            AccountEvent::Withdrawn { amount } => {
                self.balance = self.balance.saturating_sub(amount)
            }
        }
    }
}

cairn_guest::export_aggregate!(Account);

#[cfg(test)]
mod tests {
    use super::*;

    fn run(state: &mut Account, command: AccountCommand) -> Result<(), Rejection> {
        for event in state.decide(command, &CommandContext::default())? {
            state.evolve(event);
        }
        Ok(())
    }

    fn opened(balance: i64) -> Account {
        Account {
            open: true,
            owner: Some("ann".into()),
            balance,
        }
    }

    #[test]
    fn open_deposit_withdraw() {
        let mut account = Account::default();
        run(
            &mut account,
            AccountCommand::Open {
                owner: "ann".into(),
            },
        )
        .unwrap();
        run(&mut account, AccountCommand::Deposit { amount: 100 }).unwrap();
        run(&mut account, AccountCommand::Withdraw { amount: 30 }).unwrap();
        assert_eq!(account, opened(70));
    }

    #[test]
    fn opening_twice_is_refused() {
        let err = run(
            &mut opened(0),
            AccountCommand::Open {
                owner: "bob".into(),
            },
        )
        .unwrap_err();
        assert_eq!(err.code, "already_open");
    }

    #[test]
    fn money_needs_an_open_account() {
        let mut closed = Account::default();
        assert_eq!(
            run(&mut closed, AccountCommand::Deposit { amount: 5 })
                .unwrap_err()
                .code,
            "not_open"
        );
        assert_eq!(
            run(&mut closed, AccountCommand::Withdraw { amount: 5 })
                .unwrap_err()
                .code,
            "not_open"
        );
    }

    #[test]
    fn overdrafts_are_refused() {
        let err = run(&mut opened(10), AccountCommand::Withdraw { amount: 11 }).unwrap_err();
        assert_eq!(err.code, "insufficient_funds");
    }

    #[test]
    fn a_deposit_that_would_overflow_is_refused() {
        let mut account = opened(5);
        let err = run(&mut account, AccountCommand::Deposit { amount: i64::MAX }).unwrap_err();
        assert_eq!(err.code, "invalid_amount");
        assert_eq!(account, opened(5));
        run(
            &mut account,
            AccountCommand::Deposit {
                amount: i64::MAX - 5,
            },
        )
        .unwrap();
        assert_eq!(account.balance, i64::MAX);
    }

    #[test]
    fn amounts_must_be_positive() {
        for amount in [0, -5] {
            let mut account = opened(10);
            assert_eq!(
                run(&mut account, AccountCommand::Deposit { amount })
                    .unwrap_err()
                    .code,
                "invalid_amount"
            );
            assert_eq!(
                run(&mut account, AccountCommand::Withdraw { amount })
                    .unwrap_err()
                    .code,
                "invalid_amount"
            );
        }
    }

    #[test]
    fn state_json_shows_owner_and_balance() {
        let json = serde_json::to_value(opened(70)).unwrap();
        assert_eq!(json["owner"], "ann");
        assert_eq!(json["balance"], 70);
    }
}
