//! `cargo xtask demo`: builds the plugins and the server, starts a server on a fresh
//! SQLite data directory, runs a short banking scenario against it over HTTP, prints
//! every step, and leaves the server running (unless `--no-wait`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

/// Stops the server when the demo ends early (an error, or `--no-wait`).
pub(crate) struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Builds the plugins and the server, starts it on a fresh data directory under
/// `target/<name>`, and returns it with its base URL and operator token.
pub(crate) fn start(root: &Path, name: &str) -> anyhow::Result<(Server, Demo, String)> {
    crate::build_plugins::run(root)?;
    // One server build, never a second: the release build when there is one (the
    // tutorial's `cargo build --release`), brought up to date; else the debug build
    // that `cargo test` and CI already made.
    let profile = if root.join("target/release/cairn").exists() {
        "release"
    } else {
        "debug"
    };
    let mut args = vec!["build", "--quiet", "-p", "cairn-host", "--bin", "cairn"];
    if profile == "release" {
        args.push("--release");
    }
    println!("==> building the server (cargo {})", args.join(" "));
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(&args)
        .status()?;
    if !status.success() {
        bail!("building the server failed");
    }
    let binary = root.join("target").join(profile).join("cairn");
    let data_dir = root.join("target").join(name);
    let _ = std::fs::remove_dir_all(&data_dir);
    let token = format!("{name}-admin-{}", std::process::id());
    let mut child = Command::new(&binary)
        .args(["serve", "--data-dir"])
        .arg(&data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .env("CAIRN_ADMIN_TOKEN", &token)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stdout = child.stdout.take().context("server stdout")?;
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let base = line
        .trim()
        .strip_prefix("cairn listening on ")
        .with_context(|| format!("unexpected first line from the server: {line:?}"))?
        .to_owned();
    println!("==> server at {base}, data in {}", data_dir.display());
    let demo = Demo {
        client: Client::builder().timeout(Duration::from_secs(30)).build()?,
        base,
    };
    demo.wait_ready()?;
    Ok((server, demo, token))
}

/// `cargo xtask demo`'s arguments.
#[derive(clap::Args, Debug, Default)]
pub(crate) struct Args {
    /// Stop the server after the scenario instead of leaving it running (CI).
    #[arg(long)]
    pub no_wait: bool,
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let wait = !args.no_wait;
    let (mut server, demo, token) = start(root, "demo-data")?;
    scenario(&demo, root, &token)?;
    if wait {
        let base = &demo.base;
        println!(
            "\nThe server is still running. Try:\n  export T='Authorization: Bearer {token}'\n  \
             curl -s {base}/t/demo/aggregates/account/42 -H \"$T\"\n  \
             curl -sN {base}/t/demo/events/live -H \"$T\"\nPress Ctrl-C to stop it."
        );
        server.0.wait()?;
    }
    Ok(())
}

pub(crate) struct Demo {
    client: Client,
    pub base: String,
}

impl Demo {
    fn wait_ready(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(r) = self.client.get(format!("{}/readyz", self.base)).send()
                && r.status().is_success()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the server did not become ready")
    }

    /// Posts JSON without printing; fails on any status but 200.
    pub(crate) fn quiet_post(
        &self,
        path: &str,
        token: &str,
        body: &Value,
    ) -> anyhow::Result<Value> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body)
            .send()?;
        if !response.status().is_success() {
            bail!("POST {path}: {} {}", response.status(), response.text()?);
        }
        Ok(response.json()?)
    }

    /// Sends a request, prints it and the answer, and returns the answer's JSON.
    pub(crate) fn call(
        &self,
        what: &str,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Body>,
        expect: u16,
    ) -> anyhow::Result<Value> {
        println!("\n--- {what}\n{method} {path}");
        let url = format!("{}{path}", self.base);
        let mut request = self
            .client
            .request(method.parse()?, &url)
            .bearer_auth(token);
        match body {
            Some(Body::Json(json)) => {
                println!("{json}");
                request = request.json(&json);
            }
            Some(Body::Wasm(bytes)) => {
                println!("<{} bytes of component>", bytes.len());
                request = request
                    .header("content-type", "application/wasm")
                    .body(bytes);
            }
            None => {}
        }
        let response: Response = request.send()?;
        let status = response.status().as_u16();
        let text = response.text()?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        println!("=> {status} {}", shorten(&value));
        if status != expect {
            bail!("{what}: expected HTTP {expect}, got {status}");
        }
        Ok(value)
    }
}

pub(crate) enum Body {
    Json(Value),
    Wasm(Vec<u8>),
}

fn shorten(value: &Value) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    if text.len() > 1500 {
        format!("{}\n   … ({} bytes in all)", &text[..1500], text.len())
    } else {
        text
    }
}

fn scenario(demo: &Demo, root: &Path, admin: &str) -> anyhow::Result<()> {
    let created = demo.call(
        "Create a tenant (operator token)",
        "POST",
        "/admin/tenants",
        admin,
        Some(Body::Json(json!({"id": "demo"}))),
        201,
    )?;
    let token = created["token"]
        .as_str()
        .context("tenant token")?
        .to_owned();
    for plugin in ["account", "balances", "daily-totals"] {
        let bytes = std::fs::read(root.join(format!("target/plugins/{plugin}.wasm")))?;
        demo.call(
            &format!("Upload the {plugin} plugin"),
            "PUT",
            &format!("/t/demo/plugins/{plugin}"),
            &token,
            Some(Body::Wasm(bytes)),
            201,
        )?;
    }
    let command = |what: &str, id: &str, body: Value, expect: u16| {
        demo.call(
            what,
            "POST",
            &format!("/t/demo/aggregates/account/{id}/commands"),
            &token,
            Some(Body::Json(body)),
            expect,
        )
    };
    command(
        "Ann opens account 42",
        "42",
        json!({"type": "Open", "payload": {"owner": "ann"}}),
        200,
    )?;
    command(
        "Ann deposits 100",
        "42",
        json!({"type": "Deposit", "payload": {"amount": 100}}),
        200,
    )?;
    command(
        "Ann tries to withdraw 500: the domain refuses (nothing is written)",
        "42",
        json!({"type": "Withdraw", "payload": {"amount": 500}}),
        422,
    )?;
    let last = command(
        "Ann withdraws 30",
        "42",
        json!({"type": "Withdraw", "payload": {"amount": 30}, "command_id": "ann-withdraw-1"}),
        200,
    )?;
    command(
        "The same command id again: the first answer, nothing written",
        "42",
        json!({"type": "Withdraw", "payload": {"amount": 30}, "command_id": "ann-withdraw-1"}),
        200,
    )?;
    command(
        "Bob opens account 7",
        "7",
        json!({"type": "Open", "payload": {"owner": "bob"}}),
        200,
    )?;
    let bob = command(
        "Bob deposits 250",
        "7",
        json!({"type": "Deposit", "payload": {"amount": 250}}),
        200,
    )?;
    demo.call(
        "Account 42 now",
        "GET",
        "/t/demo/aggregates/account/42",
        &token,
        None,
        200,
    )?;
    demo.call(
        "Account 42 as it was at version 2",
        "GET",
        "/t/demo/aggregates/account/42?version=2",
        &token,
        None,
        200,
    )?;
    demo.call(
        "The stream account-42",
        "GET",
        "/t/demo/streams/account-42",
        &token,
        None,
        200,
    )?;
    let position = bob["position"]
        .as_u64()
        .unwrap_or(0)
        .max(last["position"].as_u64().unwrap_or(0));
    demo.call(
        "The balances projection, reading our own writes",
        "GET",
        &format!("/t/demo/projections/balances/docs?prefix=account-&min_position={position}"),
        &token,
        None,
        200,
    )?;
    demo.call(
        "Totals per day, across every account",
        "GET",
        &format!("/t/demo/projections/daily-totals/docs?min_position={position}"),
        &token,
        None,
        200,
    )?;
    demo.call(
        "Another tenant's token cannot read this one (403)",
        "GET",
        "/t/other/aggregates/account/42",
        &token,
        None,
        403,
    )?;
    Ok(())
}
