//! `cargo xtask upcasting`: the walkthrough of examples/upcasting, run for real.
//! Version 1 of `account` writes `Deposited{amount}`; `account-v2` (which stores
//! `Deposited{cents}`) is rejected by verification; the `account-upcaster` is uploaded;
//! `account-v2` uploaded again is verified through it and serves v1's history; a
//! projection uploaded after the upcaster reads old deposits in the new shape. Every
//! step is checked, so the walkthrough fails loudly if the behaviour drifts.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use crate::demo::{Body, Demo};

/// Polls a version's status URL until it has left `verifying`.
fn settled(demo: &Demo, token: &str, url: &str) -> anyhow::Result<Value> {
    let started = Instant::now();
    loop {
        let view = demo.call("Verification status", "GET", url, token, None, 200)?;
        if view["status"] != "verifying" {
            return Ok(view);
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("verification did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    let (_server, demo, admin) = crate::demo::start(root, "upcasting-data")?;
    let created = demo.call(
        "Create a tenant",
        "POST",
        "/admin/tenants",
        &admin,
        Some(Body::Json(json!({"id": "bank"}))),
        201,
    )?;
    let token = created["token"].as_str().context("token")?.to_owned();
    let wasm = |file: &str| std::fs::read(root.join(format!("target/plugins/{file}.wasm")));
    let upload = |name: &str, file: &str, what: &str, status: u16| -> anyhow::Result<Value> {
        demo.call(
            what,
            "PUT",
            &format!("/t/bank/plugins/{name}"),
            &token,
            Some(Body::Wasm(wasm(file)?)),
            status,
        )
    };
    let command = |id: &str, body: Value| -> anyhow::Result<Value> {
        demo.call(
            "A command",
            "POST",
            &format!("/t/bank/aggregates/account/{id}/commands"),
            &token,
            Some(Body::Json(body)),
            200,
        )
    };

    upload("account", "account", "Version 1 of account", 201)?;
    command("42", json!({"type": "Open", "payload": {"owner": "ann"}}))?;
    command("42", json!({"type": "Deposit", "payload": {"amount": 500}}))?;

    let accepted = upload(
        "account",
        "account-v2",
        "Version 2 (stores Deposited{cents}): verified against history first",
        202,
    )?;
    let url = accepted["status_url"].as_str().context("status_url")?;
    let rejected = settled(&demo, &token, url)?;
    ensure!(
        rejected["status"] == "rejected",
        "version 2 should be rejected without an upcaster: {rejected}"
    );
    let answer = command("42", json!({"type": "Deposit", "payload": {"amount": 250}}))?;
    ensure!(
        answer["events"][0]["data"] == json!({"amount": 250}),
        "version 1 should still serve: {answer}"
    );

    let accepted = upload(
        "account-upcaster",
        "account-upcaster",
        "The upcaster: Deposited{amount} -> Deposited{cents}; every stored deposit must upcast",
        202,
    )?;
    let upcaster = settled(
        &demo,
        &token,
        accepted["status_url"].as_str().context("status_url")?,
    )?;
    ensure!(upcaster["status"] == "active", "{upcaster}");

    let accepted = upload(
        "account",
        "account-v2",
        "Version 2 again: verified anew, now through the upcaster",
        202,
    )?;
    let v3 = settled(
        &demo,
        &token,
        accepted["status_url"].as_str().context("status_url")?,
    )?;
    ensure!(v3["status"] == "active", "{v3}");
    let state = demo.call(
        "State, folded by the new version from v1's history",
        "GET",
        "/t/bank/aggregates/account/42",
        &token,
        None,
        200,
    )?;
    ensure!(state["state"]["balance"] == 750, "{state}");
    let answer = command("42", json!({"type": "Deposit", "payload": {"amount": 100}}))?;
    ensure!(
        answer["events"][0]["data"] == json!({"cents": 100}),
        "the new version writes the new shape: {answer}"
    );
    demo.call(
        "The log as stored",
        "GET",
        "/t/bank/events?types=Deposited",
        &token,
        None,
        200,
    )?;
    let upcast = demo.call(
        "The log as readers see it",
        "GET",
        "/t/bank/events?types=Deposited&upcast=true",
        &token,
        None,
        200,
    )?;
    let position = upcast["head"].as_u64().context("head")?;
    upload(
        "balances-cents",
        "balances-cents",
        "A projection that knows only Deposited{cents}",
        201,
    )?;
    let doc = demo.call(
        "Its document, built from the whole history",
        "GET",
        &format!("/t/bank/projections/balances-cents/docs/account-42?min_position={position}"),
        &token,
        None,
        200,
    )?;
    ensure!(doc["balance"] == 850, "{doc}");
    demo.call(
        "Every version of account",
        "GET",
        "/t/bank/plugins/account",
        &token,
        None,
        200,
    )?;
    println!("\n==> the upcasting walkthrough passed");
    Ok(())
}
