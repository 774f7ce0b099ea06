//! What the CLI prints: the server's JSON as it came with `--json`, otherwise short
//! lines and tables for a person (events, states, plugin and projection lists), and
//! the progress bars' style.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

/// The server's JSON on one line (what scripts parse), or `text` for a person.
pub fn print(json: bool, body: &Value, text: impl FnOnce() -> String) {
    if json {
        // A 204 has no body: nothing to print.
        if !body.is_null() {
            println!("{body}");
        }
    } else {
        let text = text();
        if !text.is_empty() {
            println!("{}", text.trim_end());
        }
    }
}

/// JSON indented for a person.
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

pub fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A number or `-` (absent or null).
pub fn num(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "-".to_owned(),
    }
}

/// One recorded event on one line: `#12 account-42 v3 Deposited {"amount":5}`.
pub fn event_line(event: &Value) -> String {
    format!(
        "#{} {} v{} {} {}  ({})",
        num(event, "position"),
        str_of(event, "stream_id"),
        num(event, "version"),
        str_of(event, "type"),
        event.get("data").unwrap_or(&Value::Null),
        str_of(event, "recorded_at"),
    )
}

/// Left-aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A spinner on stderr (hidden when stderr is not a terminal, so that logs and
/// scripts get only the final lines).
pub fn spinner(message: impl Into<String>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, draw_target());
    bar.set_style(
        ProgressStyle::with_template("{spinner:.cyan} {msg} {elapsed:.dim}")
            .expect("a valid template"),
    );
    bar.set_message(message.into());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// A bar on stderr: `[####----] pos/len` with the message after it and an ETA.
pub fn bar(template_message: impl Into<String>) -> ProgressBar {
    // Empty until the first answer gives the real length (0 of 0 would draw full).
    let bar = ProgressBar::with_draw_target(Some(1), draw_target());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner:.cyan} {prefix} [{bar:16.cyan/blue}] {pos}/{len} {msg} ETA {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(template_message.into());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

fn draw_target() -> ProgressDrawTarget {
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns() {
        let text = table(
            &["NAME", "KIND"],
            &[vec!["account".into(), "aggregate".into()]],
        );
        assert_eq!(text, "NAME     KIND\naccount  aggregate");
    }

    #[test]
    fn events_fit_one_line() {
        let e = json!({"position": 4, "stream_id": "account-42", "version": 2,
            "type": "Deposited", "data": {"amount": 5}, "recorded_at": "t"});
        assert_eq!(
            event_line(&e),
            "#4 account-42 v2 Deposited {\"amount\":5}  (t)"
        );
    }
}
