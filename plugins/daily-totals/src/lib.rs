//! The `daily-totals` projection: one document per UTC day across every account,
//! keyed `YYYY-MM-DD`, with the money deposited and withdrawn and the accounts opened.

use cairn_guest::{Documents, Event, Projection};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
pub enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: i64 },
    Withdrawn { amount: i64 },
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DailyTotal {
    pub day: String,
    pub deposited: i64,
    pub withdrawn: i64,
    pub accounts_opened: u64,
    pub events: u64,
}

/// The UTC calendar day of a unix-milliseconds time, as `YYYY-MM-DD`
/// (Howard Hinnant's days-to-civil algorithm).
pub fn day_of(unix_ms: u64) -> String {
    let days = (unix_ms / 86_400_000) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

pub struct DailyTotals;

impl Projection for DailyTotals {
    type Event = AccountEvent;

    fn event_types() -> Vec<&'static str> {
        vec!["Opened", "Deposited", "Withdrawn"]
    }

    fn handle(event: Event<AccountEvent>, docs: &mut Documents) {
        if !event.stream_id.starts_with("account-") {
            return;
        }
        let day = day_of(event.recorded_at);
        let mut doc: DailyTotal = docs.get(&day).unwrap_or_else(|| DailyTotal {
            day: day.clone(),
            ..DailyTotal::default()
        });
        match event.data {
            AccountEvent::Opened { .. } => doc.accounts_opened += 1,
            // Saturating: the day's sum over every account can pass i64::MAX.
            AccountEvent::Deposited { amount } => {
                doc.deposited = doc.deposited.saturating_add(amount)
            }
            AccountEvent::Withdrawn { amount } => {
                doc.withdrawn = doc.withdrawn.saturating_add(amount)
            }
        }
        doc.events += 1;
        docs.put(&day, &doc);
    }
}

cairn_guest::export_projection!(DailyTotals);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_from_unix_time() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(951_782_400_000), "2000-02-29");
        assert_eq!(day_of(1_795_400_000_000), "2026-11-23");
    }

    #[test]
    fn totals_per_day_across_accounts() {
        let mut docs = Documents::in_memory();
        let at = |ms: u64, stream: &str, data| {
            let mut e = Event::for_test(stream, 1, data);
            e.recorded_at = ms;
            e
        };
        let day1 = 1_795_400_000_000;
        let day2 = day1 + 86_400_000;
        DailyTotals::handle(
            at(
                day1,
                "account-1",
                AccountEvent::Opened { owner: "a".into() },
            ),
            &mut docs,
        );
        DailyTotals::handle(
            at(day1, "account-2", AccountEvent::Deposited { amount: 40 }),
            &mut docs,
        );
        DailyTotals::handle(
            at(day1, "account-1", AccountEvent::Deposited { amount: 2 }),
            &mut docs,
        );
        DailyTotals::handle(
            at(day2, "account-1", AccountEvent::Withdrawn { amount: 7 }),
            &mut docs,
        );
        let first: DailyTotal = docs.get("2026-11-23").unwrap();
        assert_eq!(
            (first.deposited, first.accounts_opened, first.events),
            (42, 1, 3)
        );
        let second: DailyTotal = docs.get("2026-11-24").unwrap();
        assert_eq!((second.withdrawn, second.events), (7, 1));
    }
}
