//! The group commit as a tenant's commands see it, on PostgreSQL (which must be
//! reachable: this fails, never skips, without it). PostgreSQL because a test can hold
//! a tenant's appends there from outside the server, deterministically: every append
//! locks its tenant's row. (SQLite cannot be held that way: a writer that finds the
//! file locked mid-transaction fails at once instead of waiting.)

mod common;

use std::time::Duration;

use common::{Server, drop_database, expect, plugin_bytes, postgres_database};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;

fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{name} missing: {metrics}"))
}

/// A command holds its call slot while it decides, not while it waits for its commit:
/// with one call slot, commands on many streams still queue for one commit together.
/// (Held, the slot let one command at a time wait, so each commit carried one.)
#[tokio::test]
async fn commands_waiting_for_their_commit_hold_no_call_slot() {
    let (url, database) = postgres_database().await;
    let server = Server::with_database(&url).await;
    let token = server
        .create_tenant_with("solo", json!({"max_concurrent_calls": 1}))
        .await;
    let up = server
        .upload(&token, "solo", "account", plugin_bytes("account"))
        .await;
    assert_eq!(up.status(), StatusCode::CREATED);
    let ids: Vec<String> = (0..16).map(|n| n.to_string()).collect();
    let commands = |command: Value| {
        futures::future::join_all(
            ids.iter()
                .map(|id| server.command(&token, "solo", "account", id, command.clone())),
        )
    };
    for answer in commands(json!({"type": "Open", "payload": {"owner": "ann"}})).await {
        expect(answer, StatusCode::OK).await;
    }
    let before = server.metrics().await;

    // The tenant's row is held: every deposit decides, then waits at its append.
    let mut hold = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("BEGIN").execute(&mut hold).await.unwrap();
    sqlx::query("SELECT head FROM tenants WHERE id = $1 FOR UPDATE")
        .bind("solo")
        .fetch_one(&mut hold)
        .await
        .unwrap();
    let releasing = async {
        // Long enough for all sixteen to decide one after another and queue.
        tokio::time::sleep(Duration::from_secs(2)).await;
        sqlx::raw_sql("ROLLBACK").execute(&mut hold).await.unwrap();
    };
    let deposits = commands(json!({"type": "Deposit", "payload": {"amount": 5}}));
    let (answers, ()) = tokio::join!(deposits, releasing);
    for answer in answers {
        expect(answer, StatusCode::OK).await;
    }

    let after = server.metrics().await;
    let requests = counter(&after, "cairn_append_requests_total")
        - counter(&before, "cairn_append_requests_total");
    let transactions = counter(&after, "cairn_append_transactions_total")
        - counter(&before, "cairn_append_transactions_total");
    assert_eq!(requests, 16.0, "one append per command");
    assert!(
        transactions <= 3.0,
        "16 commands queued behind one held commit took {transactions} transactions"
    );
    drop(server);
    drop_database(database);
}
