//! The `cairn` client commands (host/src/cli/, docs/cli.md) run as a user runs them:
//! the real binary against a real server, its output read and its exit codes checked
//! (0 success, 1 refused by the server, 2 usage, 3 server failed or unreachable).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use common::Server;
use common::cli::{Cli, cargo, create_tenant, lines_of, plugin_path, tenant_cli, wait_for};
use serde_json::Value;

#[tokio::test]
async fn tenants_plugins_commands_state_and_streams() {
    let server = Server::start().await;
    let admin = Cli::new(&server);
    let token = create_tenant(&admin, &server, "acme");
    let cli = tenant_cli(&server, "acme", &token);

    let pushed = cli.run(&["plugin", "push", &plugin_path("account")]).ok();
    assert!(
        pushed.stdout.contains("account version 1 (aggregate)") && pushed.stdout.contains("active"),
        "{}",
        pushed.stdout
    );
    let listed = cli.run(&["--json", "plugin", "list"]).ok().json();
    assert_eq!(listed[0]["name"], "account");
    assert_eq!(listed[0]["active_version"], 1);

    let opened = cli
        .run(&["command", "account", "42", "Open", r#"{"owner":"ann"}"#])
        .ok();
    assert!(
        opened.stdout.contains("account-42 now at version 1"),
        "{}",
        opened.stdout
    );
    let deposited = cli
        .run(&[
            "--json",
            "command",
            "account",
            "42",
            "Deposit",
            r#"{"amount":100}"#,
            "--expected-version",
            "1",
            "--command-id",
            "dep-1",
        ])
        .ok()
        .json();
    assert_eq!(deposited["version"], 2);
    assert_eq!(deposited["events"][0]["type"], "Deposited");
    // The same command id again: the first answer, nothing written.
    let repeated = cli
        .run(&[
            "--json",
            "command",
            "account",
            "42",
            "Deposit",
            r#"{"amount":100}"#,
            "--command-id",
            "dep-1",
        ])
        .ok()
        .json();
    assert_eq!(repeated["position"], deposited["position"]);

    // Refused by the domain: exit 1, the code and message on stderr, nothing on stdout.
    let refused = cli.run(&["command", "account", "42", "Withdraw", r#"{"amount":500}"#]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("422 rejected"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("insufficient_funds"),
        "{}",
        refused.stderr
    );
    assert!(refused.stdout.is_empty(), "{}", refused.stdout);
    // With --json the server's error body is on stdout as it came.
    let refused = cli.run(&[
        "--json",
        "command",
        "account",
        "42",
        "Withdraw",
        r#"{"amount":500}"#,
    ]);
    assert_eq!(refused.code, 1);
    assert_eq!(refused.json()["error"]["domain_code"], "insufficient_funds");
    // A stale expectation is refused too (409).
    let stale = cli.run(&[
        "command",
        "account",
        "42",
        "Withdraw",
        r#"{"amount":1}"#,
        "--expected-version",
        "1",
    ]);
    assert_eq!(stale.code, 1);
    assert!(
        stale.stderr.contains("wrong_expected_version"),
        "{}",
        stale.stderr
    );
    cli.run(&["command", "account", "42", "Withdraw", r#"{"amount":30}"#])
        .ok();

    let state = cli.run(&["--json", "state", "account", "42"]).ok().json();
    assert_eq!(state["version"], 3);
    assert_eq!(state["state"]["balance"], 70);
    let then = cli
        .run(&["--json", "state", "account", "42", "--version", "2"])
        .ok()
        .json();
    assert_eq!(then["state"]["balance"], 100);
    let now_ms = chrono::Utc::now().timestamp_millis().to_string();
    let at = cli
        .run(&["--json", "state", "account", "42", "--at", &now_ms])
        .ok()
        .json();
    assert_eq!(at["state"]["balance"], 70);
    let human = cli.run(&["state", "account", "42"]).ok();
    assert!(human.stdout.contains("\"balance\": 70"), "{}", human.stdout);

    // Every page of the stream, then one page of one event.
    let stream = cli
        .run(&["--json", "stream", "read", "account-42"])
        .ok()
        .json();
    let types: Vec<&str> = stream["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Opened", "Deposited", "Withdrawn"]);
    let page = cli
        .run(&["--json", "stream", "read", "account-42", "--limit", "1"])
        .ok()
        .json();
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert_eq!(page["next"], 2);
    let lines = cli.run(&["stream", "read", "account-42"]).ok();
    assert_eq!(lines.stdout.lines().count(), 3, "{}", lines.stdout);
    assert!(
        lines.stdout.contains("Withdrawn {\"amount\":30}"),
        "{}",
        lines.stdout
    );
    let missing = cli.run(&["stream", "read", "account-404"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("404 not_found"),
        "{}",
        missing.stderr
    );

    // The operator's side: list, show, rotate, delete.
    let operator = Cli::new(&server).with_env("CAIRN_ADMIN_TOKEN", server.admin());
    let tenants = operator.run(&["--json", "tenant", "list"]).ok().json();
    assert_eq!(tenants[0]["id"], "acme");
    assert_eq!(tenants[0]["usage"]["events_stored"], 3);
    let shown = operator.run(&["tenant", "show", "acme"]).ok();
    assert!(shown.stdout.contains("events_stored"), "{}", shown.stdout);
    // A tenant token cannot manage tenants: 403, exit 1.
    let forbidden = cli.run(&["tenant", "list"]);
    assert_eq!(forbidden.code, 1);
    assert!(forbidden.stderr.contains("403"), "{}", forbidden.stderr);
    let rotated = operator
        .run(&["--json", "tenant", "rotate-token", "acme"])
        .ok()
        .json();
    let new_token = rotated["token"].as_str().unwrap();
    assert_ne!(new_token, token);
    assert_eq!(
        cli.run(&["plugin", "list"]).code,
        1,
        "the old token still works"
    );
    tenant_cli(&server, "acme", new_token)
        .run(&["plugin", "list"])
        .ok();
    operator.run(&["tenant", "delete", "acme", "--yes"]).ok();
    let gone = operator.run(&["tenant", "show", "acme"]);
    assert_eq!(gone.code, 1);
    assert!(gone.stderr.contains("404"), "{}", gone.stderr);
}

#[tokio::test]
async fn plugin_push_follows_verification_to_its_outcome() {
    let server = Server::start().await;
    let token = create_tenant(&Cli::new(&server), &server, "bank");
    let cli = tenant_cli(&server, "bank", &token);
    cli.run(&["plugin", "push", &plugin_path("account")]).ok();
    cli.run(&["command", "account", "42", "Open", r#"{"owner":"ann"}"#])
        .ok();
    cli.run(&["command", "account", "42", "Deposit", r#"{"amount":500}"#])
        .ok();

    // Version 2 reads deposits as cents: the stored history does not fold. The push
    // follows verification to the rejection and shows where history broke.
    let account_v2 = plugin_path("account-v2");
    let rejected = cli.run(&["plugin", "push", &account_v2, "--name", "account"]);
    assert_eq!(rejected.code, 1, "{}", rejected.stderr);
    assert!(
        rejected
            .stderr
            .contains("account version 2 was rejected by verification"),
        "{}",
        rejected.stderr
    );
    assert!(
        rejected
            .stderr
            .contains("failed: account-42 v2 (Deposited) trap")
            && rejected.stderr.contains("missing field `cents`"),
        "{}",
        rejected.stderr
    );

    // With the upcaster active, the same bytes verify and go live.
    let upcaster = cli
        .run(&["plugin", "push", &plugin_path("account-upcaster")])
        .ok();
    assert!(
        upcaster
            .stdout
            .contains("account-upcaster version 1 verified: active"),
        "{}",
        upcaster.stdout
    );
    let verified = cli
        .run(&["--json", "plugin", "push", &account_v2, "--name", "account"])
        .ok()
        .json();
    assert_eq!(verified["version"], 3);
    assert_eq!(verified["status"], "active");
    assert_eq!(verified["verification"]["failures_total"], 0);
    assert_eq!(verified["verification"]["streams_checked"], 1);
    let upcast = cli
        .run(&["--json", "stream", "read", "account-42", "--upcast"])
        .ok()
        .json();
    assert_eq!(
        upcast["events"][1]["data"],
        serde_json::json!({"cents": 500})
    );

    // Roll back to version 1.
    let back = cli.run(&["plugin", "activate", "account", "1"]).ok();
    assert!(
        back.stdout.contains("account: active version 1"),
        "{}",
        back.stdout
    );
    let listed = cli
        .run(&["--json", "plugin", "show", "account"])
        .ok()
        .json();
    assert_eq!(listed["active_version"], 1);
}

#[tokio::test]
async fn exit_codes_for_unreachable_servers_and_usage_errors() {
    let server = Server::start().await;
    let token = create_tenant(&Cli::new(&server), &server, "acme");
    let cli = tenant_cli(&server, "acme", &token);

    // Nothing listens on port 1.
    let unreachable = cli.run(&["--url", "http://127.0.0.1:1", "plugin", "list"]);
    assert_eq!(unreachable.code, 3, "{}", unreachable.stderr);
    assert!(
        unreachable
            .stderr
            .contains("cannot reach the server at http://127.0.0.1:1"),
        "{}",
        unreachable.stderr
    );

    // Usage errors: clap's own, no tenant, a payload that is not JSON, a missing file.
    assert_eq!(cli.run(&["command", "account"]).code, 2);
    let no_tenant = Cli::new(&server)
        .with_env("CAIRN_TOKEN", &token)
        .run(&["plugin", "list"]);
    assert_eq!(no_tenant.code, 2);
    assert!(
        no_tenant.stderr.contains("no tenant"),
        "{}",
        no_tenant.stderr
    );
    let bad_json = cli.run(&["command", "account", "1", "Open", "{owner"]);
    assert_eq!(bad_json.code, 2);
    assert!(bad_json.stderr.contains("not JSON"), "{}", bad_json.stderr);
    assert_eq!(cli.run(&["plugin", "push", "/nonexistent.wasm"]).code, 2);
    let no_token = Cli::new(&server).run(&["tenant", "list"]);
    assert_eq!(no_token.code, 2);
    assert!(
        no_token.stderr.contains("no operator token"),
        "{}",
        no_token.stderr
    );
    // A wrong token is the server's refusal: 401, exit 1.
    let wrong = Cli::new(&server).run(&["--token", "nope", "tenant", "list"]);
    assert_eq!(wrong.code, 1);
    assert!(wrong.stderr.contains("401"), "{}", wrong.stderr);

    // The server's validation of an upload, shown with its code: exit 1.
    let not_wasm = cli.home.path().join("not.wasm");
    std::fs::write(&not_wasm, b"hello").unwrap();
    let refused = cli.run(&["plugin", "push", not_wasm.to_str().unwrap(), "--name", "x"]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("422 invalid_plugin"),
        "{}",
        refused.stderr
    );
}

#[tokio::test]
async fn flags_beat_environment_beat_profiles() {
    let server = Server::start().await;
    let token = create_tenant(&Cli::new(&server), &server, "acme");
    create_tenant(&Cli::new(&server), &server, "other");

    // A profile written by `tenant create --save-profile`, used by name.
    let cli = Cli::new(&server).with_env("CAIRN_ADMIN_TOKEN", server.admin());
    let saved = cli
        .run(&["tenant", "create", "beta", "--save-profile", "beta"])
        .ok();
    assert!(
        saved.stdout.contains("saved as profile beta"),
        "{}",
        saved.stdout
    );
    let beta = Cli {
        url: cli.url.clone(),
        home: cli.home,
        env: Vec::new(),
    };
    // Only the profile knows beta's token (no CAIRN_ADMIN_TOKEN here).
    beta.run(&[
        "--profile",
        "beta",
        "plugin",
        "push",
        &plugin_path("account"),
    ])
    .ok();
    assert!(
        beta.run(&["plugin", "list"]).code == 2,
        "no tenant without a profile"
    );

    // A hand-written file: the default profile points at a dead server and another
    // tenant; `good` has everything right.
    let file = format!(
        "default_profile = \"dead\"\n\n[profiles.dead]\nurl = \"http://127.0.0.1:1\"\ntenant = \"other\"\ntoken = \"{token}\"\n\n\
         [profiles.good]\nurl = \"{}\"\ntenant = \"acme\"\ntoken = \"{token}\"\n",
        server.base
    );
    let cli = Cli::new(&server);
    std::fs::write(cli.config_path(), file).unwrap();
    // CAIRN_URL (set by the harness) beats the default profile's dead url, but its
    // tenant `other` does not match the token: 403.
    let wrong_tenant = cli.run(&["plugin", "list"]);
    assert_eq!(wrong_tenant.code, 1, "{}", wrong_tenant.stderr);
    assert!(
        wrong_tenant.stderr.contains("403"),
        "{}",
        wrong_tenant.stderr
    );
    // The environment's tenant beats the profile's.
    let env_tenant = Cli {
        env: vec![("CAIRN_TENANT".into(), "acme".into())],
        ..cli
    };
    env_tenant.run(&["plugin", "list"]).ok();
    // A flag beats the environment.
    assert_eq!(
        env_tenant
            .run(&["--tenant", "other", "plugin", "list"])
            .code,
        1
    );
    // Without CAIRN_URL the default profile's url is used: unreachable, 3.
    let mut no_url = env_tenant.command(&["plugin", "list"]);
    no_url.env_remove("CAIRN_URL");
    assert_eq!(no_url.output().unwrap().status.code(), Some(3));
    // --profile (and CAIRN_PROFILE) pick another profile; an unknown one is a usage error.
    let mut good = env_tenant.command(&["--profile", "good", "plugin", "list"]);
    good.env_remove("CAIRN_URL").env_remove("CAIRN_TENANT");
    assert_eq!(good.output().unwrap().status.code(), Some(0));
    let mut by_env = env_tenant.command(&["plugin", "list"]);
    by_env
        .env_remove("CAIRN_URL")
        .env_remove("CAIRN_TENANT")
        .env("CAIRN_PROFILE", "good");
    assert_eq!(by_env.output().unwrap().status.code(), Some(0));
    let unknown = env_tenant.run(&["--profile", "nope", "plugin", "list"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("no profile \"nope\""),
        "{}",
        unknown.stderr
    );
    // A flag beats the profile's token too.
    assert_eq!(
        env_tenant.run(&["--token", "wrong", "plugin", "list"]).code,
        1
    );
}

#[tokio::test]
async fn projections_status_promote_rebuild_and_docs() {
    let server = Server::start().await;
    let token = create_tenant(&Cli::new(&server), &server, "acme");
    let cli = tenant_cli(&server, "acme", &token);
    cli.run(&["plugin", "push", &plugin_path("account")]).ok();
    cli.run(&["command", "account", "1", "Open", r#"{"owner":"ann"}"#])
        .ok();
    let deposit = cli
        .run(&[
            "--json",
            "command",
            "account",
            "1",
            "Deposit",
            r#"{"amount":5}"#,
        ])
        .ok()
        .json();
    cli.run(&["plugin", "push", &plugin_path("balances")]).ok();

    // Read your writes through the CLI.
    let position = deposit["position"].as_u64().unwrap().to_string();
    let doc = cli
        .run(&[
            "--json",
            "docs",
            "get",
            "balances",
            "account-1",
            "--min-position",
            &position,
        ])
        .ok()
        .json();
    assert_eq!(doc["balance"], 5);
    let listed = cli
        .run(&["--json", "docs", "list", "balances", "--prefix", "account-"])
        .ok()
        .json();
    assert_eq!(listed["docs"][0]["key"], "account-1");

    // A rebuild, watched until its build has caught up and is active.
    let watched = cli
        .run(&["--json", "projection", "rebuild", "balances", "--watch"])
        .ok();
    let mut lines = watched.stdout.lines();
    let rebuild: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(rebuild["build"], 2);
    let settled: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(settled["active_build"], 2);
    let build = settled["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["build"] == 2)
        .unwrap();
    assert_eq!(build["status"], "active");
    assert_eq!(build["lag"], 0);
    assert_eq!(build["position"], 2);

    // Roll back to the first build, then forward by version.
    let back = cli
        .run(&[
            "--json",
            "projection",
            "promote",
            "balances",
            "--build",
            "1",
        ])
        .ok()
        .json();
    assert_eq!(back["active_build"], 1);
    let status = cli
        .run(&["--json", "projection", "status", "balances"])
        .ok()
        .json();
    assert_eq!(status["active_build"], 1);
    assert_eq!(status["versions"].as_array().unwrap().len(), 2);
    let human = cli.run(&["projection", "status"]).ok();
    assert!(
        human.stdout.contains("balances: active version 1, build 1"),
        "{}",
        human.stdout
    );
    let forward = cli
        .run(&["--json", "projection", "promote", "balances", "1"])
        .ok()
        .json();
    assert_eq!(forward["active_version"], 1);
    let unknown = cli.run(&["projection", "promote", "balances", "9"]);
    assert_eq!(unknown.code, 1);
    assert!(unknown.stderr.contains("404"), "{}", unknown.stderr);
}

#[tokio::test]
async fn tail_follows_new_events_and_ctrl_c_exits_cleanly() {
    let server = Server::start().await;
    let token = create_tenant(&Cli::new(&server), &server, "acme");
    let cli = tenant_cli(&server, "acme", &token);
    cli.run(&["plugin", "push", &plugin_path("account")]).ok();
    cli.run(&["command", "account", "7", "Open", r#"{"owner":"ann"}"#])
        .ok();

    let mut tail: Child = cli
        .command(&["--json", "tail", "--types", "Deposited,Withdrawn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines_of(tail.stdout.take().unwrap());
    let stderr = lines_of(tail.stderr.take().unwrap());
    wait_for(&stderr, |l| l.contains("caught up at position 1"));
    cli.run(&["command", "account", "7", "Deposit", r#"{"amount":12}"#])
        .ok();
    let line = wait_for(&stdout, |_| true);
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["type"], "Deposited");
    assert_eq!(event["data"]["amount"], 12);
    assert_eq!(event["position"], 2);

    let killed = Command::new("kill")
        .args(["-INT", &tail.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tail.wait().unwrap();
    assert_eq!(status.code(), Some(0), "tail after SIGINT: {status:?}");
}

#[tokio::test]
async fn a_scaffolded_aggregate_builds_uploads_and_serves_commands() {
    let server = Server::start().await;
    let token = create_tenant(&Cli::new(&server), &server, "acme");
    let cli = tenant_cli(&server, "acme", &token);
    // Inside this checkout, whose workspace does not list it: the crate's own empty
    // `[workspace]` keeps cargo from refusing to build it.
    let scratch = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/scaffold-crates");
    std::fs::create_dir_all(&scratch).unwrap();
    let work = tempfile::tempdir_in(&scratch).unwrap();
    let dir = work.path().join("tally-counter");

    let made = cli
        .run(&[
            "new",
            "aggregate",
            "tally-counter",
            "--path",
            dir.to_str().unwrap(),
        ])
        .ok();
    assert!(
        made.stdout.contains("tally_counter.wasm"),
        "{}",
        made.stdout
    );
    for file in ["Cargo.toml", "src/lib.rs", "README.md"] {
        assert!(dir.join(file).is_file(), "{file} was not written");
    }
    // Not over an existing crate.
    let again = cli.run(&[
        "new",
        "aggregate",
        "tally-counter",
        "--path",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(again.code, 2);

    cargo(&dir, &["test", "--quiet"]);
    cargo(
        &dir,
        &["build", "--target", "wasm32-wasip2", "--release", "--quiet"],
    );
    let wasm = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/scaffold/wasm32-wasip2/release/tally_counter.wasm");
    let pushed = cli
        .run(&["--json", "plugin", "push", wasm.to_str().unwrap()])
        .ok()
        .json();
    assert_eq!(pushed["name"], "tally-counter");
    assert_eq!(pushed["kind"], "aggregate");

    cli.run(&["command", "tally-counter", "1", "Add", r#"{"amount":5}"#])
        .ok();
    cli.run(&["command", "tally-counter", "1", "Add", r#"{"amount":2}"#])
        .ok();
    let refused = cli.run(&["command", "tally-counter", "1", "Add", r#"{"amount":0}"#]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("invalid_amount"),
        "{}",
        refused.stderr
    );
    let state = cli
        .run(&["--json", "state", "tally-counter", "1"])
        .ok()
        .json();
    assert_eq!(state["stream_id"], "tally_counter-1");
    assert_eq!(
        state["state"],
        serde_json::json!({"total": 7, "additions": 2})
    );
}

#[tokio::test]
async fn a_scaffolded_projection_builds_and_serves_documents() {
    let server = Server::start().await;
    let token = create_tenant(&Cli::new(&server), &server, "acme");
    let cli = tenant_cli(&server, "acme", &token);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("activity");
    cli.run(&[
        "new",
        "projection",
        "activity",
        "--path",
        dir.to_str().unwrap(),
    ])
    .ok();
    cargo(&dir, &["test", "--quiet"]);
    cargo(
        &dir,
        &["build", "--target", "wasm32-wasip2", "--release", "--quiet"],
    );
    cli.run(&["plugin", "push", &plugin_path("account")]).ok();
    let opened = cli
        .run(&[
            "--json",
            "command",
            "account",
            "9",
            "Open",
            r#"{"owner":"bo"}"#,
        ])
        .ok()
        .json();
    let wasm = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/scaffold/wasm32-wasip2/release/activity.wasm");
    cli.run(&["plugin", "push", wasm.to_str().unwrap()]).ok();
    let position = opened["position"].as_u64().unwrap().to_string();
    let doc = cli
        .run(&[
            "--json",
            "docs",
            "get",
            "activity",
            "account-9",
            "--min-position",
            &position,
        ])
        .ok()
        .json();
    assert_eq!(doc["events"], 1);
    assert_eq!(doc["last_type"], "Opened");
}
