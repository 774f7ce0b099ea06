//! `cargo xtask hot-swap`: the walkthrough of examples/hot-swap. Uploads balances v1,
//! loads events, uploads v2 (a new document shape) under the same name, watches it
//! build beside v1 and take over, then rolls back to v1 and forward again.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::demo::Body;

pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    let (_server, demo, admin) = crate::demo::start(root, "hot-swap-data")?;
    let created = demo.call(
        "Create a tenant",
        "POST",
        "/admin/tenants",
        &admin,
        Some(Body::Json(json!({"id": "swap"}))),
        201,
    )?;
    let token = created["token"].as_str().context("token")?.to_owned();
    let upload = |name: &str, file: &str, what: &str| -> anyhow::Result<Value> {
        let bytes = std::fs::read(root.join(format!("target/plugins/{file}.wasm")))?;
        demo.call(
            what,
            "PUT",
            &format!("/t/swap/plugins/{name}"),
            &token,
            Some(Body::Wasm(bytes)),
            201,
        )
    };
    upload("account", "account", "Upload the account aggregate")?;
    upload("balances", "balances", "Upload balances version 1")?;

    println!("\n==> loading events: 10 accounts, each opened and paid into 3 times");
    let mut position = 0;
    for id in 0..10 {
        for body in [
            json!({"type": "Open", "payload": {"owner": format!("owner-{id}")}}),
            json!({"type": "Deposit", "payload": {"amount": 10}}),
            json!({"type": "Deposit", "payload": {"amount": 20}}),
            json!({"type": "Deposit", "payload": {"amount": 30}}),
        ] {
            let answer: Value = demo.quiet_post(
                &format!("/t/swap/aggregates/account/{id}/commands"),
                &token,
                &body,
            )?;
            position = answer["position"].as_u64().unwrap_or(position);
        }
    }
    let doc = format!("/t/swap/projections/balances/docs/account-3?min_position={position}");
    demo.call("A version 1 document", "GET", &doc, &token, None, 200)?;

    upload(
        "balances",
        "balances-v2",
        "Upload balances version 2 (new document shape)",
    )?;
    let started = Instant::now();
    loop {
        let status = demo.call(
            "Projection status",
            "GET",
            "/t/swap/projections/balances",
            &token,
            None,
            200,
        )?;
        if status["active_version"] == 2 {
            println!(
                "==> version 2 took over after {:.1}s",
                started.elapsed().as_secs_f64()
            );
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("version 2 did not take over within 30 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    demo.call(
        "The same document, now version 2's shape",
        "GET",
        &doc,
        &token,
        None,
        200,
    )?;
    demo.call(
        "Roll back to version 1",
        "POST",
        "/t/swap/projections/balances/promote",
        &token,
        Some(Body::Json(json!({"version": 1}))),
        200,
    )?;
    demo.call(
        "Reads are version 1's again",
        "GET",
        &doc,
        &token,
        None,
        200,
    )?;
    demo.call(
        "Forward to version 2 again",
        "POST",
        "/t/swap/projections/balances/promote",
        &token,
        Some(Body::Json(json!({"version": 2}))),
        200,
    )?;
    demo.call(
        "Final status",
        "GET",
        "/t/swap/projections/balances",
        &token,
        None,
        200,
    )?;
    Ok(())
}
