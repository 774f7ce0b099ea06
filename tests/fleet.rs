//! A fleet of hosts on one PostgreSQL database: each follows what the others change
//! through the notices they send (`LISTEN/NOTIFY`). The hosts here check the database
//! on their own only every ten minutes (`--poll-interval-ms`), so within these tests
//! only a notice can carry a change from one host to another: each test fails if
//! notices do. PostgreSQL must be reachable: these fail, never skip, without it.

mod common;

use std::time::Duration;

use common::sse::{Sse, SseParser};
use common::{
    Server, body_of, drop_database, expect, hostile_bytes, plugin_bytes, postgres_database,
    wait_for,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Hosts on one fresh database; the hosts are killed and the database dropped with it.
struct Fleet {
    hosts: Vec<Server>,
    database: String,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.hosts.clear();
        drop_database(std::mem::take(&mut self.database));
    }
}

/// `n` hosts on one fresh database.
async fn fleet(n: usize) -> Fleet {
    let (url, database) = postgres_database().await;
    let mut hosts = Vec::new();
    for i in 0..n {
        let id = format!("host-{i}");
        hosts.push(
            Server::start_with(&[
                "--database",
                &url,
                "--host-id",
                &id,
                "--poll-interval-ms",
                "600000",
            ])
            .await,
        );
    }
    Fleet { hosts, database }
}

async fn open(host: &Server, token: &str, id: &str) {
    let (code, body) = host
        .command_answer(
            token,
            "acme",
            "account",
            id,
            json!({"type": "Open", "payload": {"owner": format!("o{id}")}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn an_append_through_one_host_reaches_a_live_subscriber_on_another() {
    let fleet = fleet(2).await;
    let hosts = &fleet.hosts;
    let token = hosts[0].tenant_with_account("acme").await;
    let opened = hosts[0]
        .command_answer(
            &token,
            "acme",
            "account",
            "1",
            json!({"type": "Open", "payload": {"owner": "ann"}}),
        )
        .await;
    assert_eq!(opened.0, StatusCode::OK, "{}", opened.1);

    let mut live = Sse::connect(&hosts[1], &token, "/t/acme/events/live?after=0", None).await;
    live.expect_event(1, "Opened").await;
    live.expect_caught_up().await;
    // Appends through the other host arrive in order, each within the reader's 10 s.
    for n in 0..3 {
        let body = expect(hosts[0].deposit(&token, "1", 10 + n).await, StatusCode::OK).await;
        let position = body["position"].as_u64().unwrap();
        let event = live.expect_event(position, "Deposited").await;
        assert_eq!(event["data"]["amount"], 10 + n, "{event}");
    }
}

/// A counter's value in a host's `/metrics`.
async fn counter(host: &Server, name: &str) -> u64 {
    let text = host.metrics().await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test]
async fn another_hosts_commits_are_read_once_for_all_live_subscribers() {
    const SUBSCRIBERS: u64 = 20;
    const COMMITS: i64 = 15;
    let fleet = fleet(2).await;
    let hosts = &fleet.hosts;
    let token = hosts[0].tenant_with_account("acme").await;
    let opened = hosts[0]
        .command_answer(
            &token,
            "acme",
            "account",
            "1",
            json!({"type": "Open", "payload": {"owner": "ann"}}),
        )
        .await;
    assert_eq!(opened.0, StatusCode::OK, "{}", opened.1);
    let mut subscribers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut live = Sse::connect(&hosts[1], &token, "/t/acme/events/live?after=0", None).await;
        live.expect_event(1, "Opened").await;
        live.expect_caught_up().await;
        subscribers.push(live);
    }
    let reads_before = counter(&hosts[1], "cairn_live_subscriber_reads_total").await;
    let mut positions = Vec::new();
    for n in 0..COMMITS {
        let body = expect(hosts[0].deposit(&token, "1", 10 + n).await, StatusCode::OK).await;
        positions.push(body["position"].as_u64().unwrap());
    }
    for live in &mut subscribers {
        for &position in &positions {
            live.expect_event(position, "Deposited").await;
        }
    }
    // Each subscriber read the store once each to catch up above; the remote commits
    // came from one read per commit on the host, shared. Read per subscriber, they
    // would be SUBSCRIBERS × COMMITS reads.
    let subscriber_reads =
        counter(&hosts[1], "cairn_live_subscriber_reads_total").await - reads_before;
    let remote_reads = counter(&hosts[1], "cairn_live_remote_reads_total").await;
    assert!(
        subscriber_reads <= SUBSCRIBERS,
        "{subscriber_reads} subscriber reads for {COMMITS} remote commits"
    );
    assert!(
        remote_reads >= 1 && remote_reads <= COMMITS as u64 * 2,
        "{remote_reads}"
    );
}

#[tokio::test]
async fn a_projection_uploaded_through_one_host_is_built_promoted_and_served_by_another() {
    let fleet = fleet(2).await;
    let hosts = &fleet.hosts;
    let token = hosts[0].tenant_with_account("acme").await;
    for id in ["1", "2"] {
        hosts[0]
            .command_answer(
                &token,
                "acme",
                "account",
                id,
                json!({"type": "Open", "payload": {"owner": format!("o{id}")}}),
            )
            .await;
    }
    let resp = hosts[0]
        .upload(&token, "acme", "balances", plugin_bytes("balances"))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let position = expect(hosts[0].deposit(&token, "1", 5).await, StatusCode::OK).await["position"]
        .as_u64()
        .unwrap();
    // The other host learnt of the build and runs it: its read waits for the position.
    let doc = expect(
        hosts[1]
            .get(
                &format!(
                    "/t/acme/projections/balances/docs/account-1?min_position={position}&timeout_ms=20000"
                ),
                &token,
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(doc["balance"], 5, "{doc}");

    // A new version uploaded through the first host takes over on both.
    let resp = hosts[0]
        .upload(&token, "acme", "balances", plugin_bytes("balances-v2"))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    for host in hosts {
        wait_for("version 2 active on every host", async || {
            let (_, status) = body_of(host.get("/t/acme/projections/balances", &token).await).await;
            status["active_version"] == 2
        })
        .await;
    }
    // A rollback through the second host is what the first serves.
    let (code, body) = body_of(
        hosts[1]
            .post(
                "/t/acme/projections/balances/promote",
                &token,
                json!({"version": 1}),
            )
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    wait_for("the rollback seen by the first host", async || {
        let (_, status) = body_of(hosts[0].get("/t/acme/projections/balances", &token).await).await;
        status["active_version"] == 1
    })
    .await;
    let (_, doc) = body_of(
        hosts[0]
            .get("/t/acme/projections/balances/docs/account-1", &token)
            .await,
    )
    .await;
    assert_eq!(doc["balance"], 5, "version 1's document shape: {doc}");
}

#[tokio::test]
async fn token_rotation_and_tenant_deletion_reach_every_host() {
    let fleet = fleet(2).await;
    let hosts = &fleet.hosts;
    let token = hosts[0].tenant_with_account("acme").await;
    // The second host learns (and caches) the token.
    let state = hosts[1].get("/t/acme/plugins", &token).await;
    assert_eq!(state.status(), StatusCode::OK);
    let mut live = Sse::connect(&hosts[1], &token, "/t/acme/events/live?after=0", None).await;
    live.expect_caught_up().await;

    let rotated = expect(
        hosts[0]
            .http
            .post(hosts[0].url("/admin/tenants/acme/token"))
            .bearer_auth(hosts[0].admin())
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let new_token = rotated["token"].as_str().unwrap().to_owned();
    // A stream the old token opened on the other host ends too.
    let dropped = live.next().await;
    assert_eq!(dropped.event.as_deref(), Some("dropped"), "{dropped:?}");
    assert!(dropped.data.contains("token_revoked"), "{dropped:?}");
    wait_for("the old token refused on the second host", async || {
        hosts[1].get("/t/acme/plugins", &token).await.status() == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_eq!(
        hosts[1].get("/t/acme/plugins", &new_token).await.status(),
        StatusCode::OK
    );

    let deleted = hosts[0]
        .http
        .delete(hosts[0].url("/admin/tenants/acme"))
        .bearer_auth(hosts[0].admin())
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    wait_for(
        "the deleted tenant refused on the second host",
        async || {
            hosts[1].get("/t/acme/plugins", &new_token).await.status() == StatusCode::UNAUTHORIZED
        },
    )
    .await;
}

#[tokio::test]
async fn every_host_is_listed_and_a_stopped_one_leaves() {
    let mut fleet = fleet(2).await;
    let hosts = &mut fleet.hosts;
    let listed = |body: &Value| -> Vec<(String, bool)> {
        body["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["host_id"].as_str().unwrap().to_owned(),
                    h["alive"] == true,
                )
            })
            .collect()
    };
    let hosts_of = async |host: &Server| {
        expect(
            host.http
                .get(host.url("/admin/hosts"))
                .bearer_auth(host.admin())
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await
    };
    let body = hosts_of(&hosts[0]).await;
    assert_eq!(body["host_id"], "host-0", "{body}");
    assert_eq!(
        listed(&body),
        [("host-0".to_owned(), true), ("host-1".to_owned(), true)],
        "{body}"
    );
    hosts[1].stop();
    let body = hosts_of(&hosts[0]).await;
    assert_eq!(listed(&body), [("host-0".to_owned(), true)], "{body}");
}

/// Each projection's builds as one host reports them: (name, build) → the host running it.
async fn runners(host: &Server, token: &str) -> Vec<((String, u64), Option<String>)> {
    let list = expect(host.get("/t/acme/projections", token).await, StatusCode::OK).await;
    let mut runners = Vec::new();
    for projection in list.as_array().unwrap() {
        for build in projection["versions"].as_array().unwrap() {
            runners.push((
                (
                    projection["name"].as_str().unwrap().to_owned(),
                    build["build"].as_u64().unwrap(),
                ),
                build["host"].as_str().map(str::to_owned),
            ));
        }
    }
    runners.sort();
    runners
}

/// Uploads the balances projection under each of `names`.
async fn upload_projections(host: &Server, token: &str, names: &[&str]) {
    for name in names {
        let resp = host
            .upload(token, "acme", name, plugin_bytes("balances"))
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
}

/// The balance projection `name` holds for `account` once past `position`, read on `host`.
async fn balance_on(host: &Server, token: &str, name: &str, account: &str, position: u64) -> Value {
    let doc = expect(
        host.get(
            &format!(
                "/t/acme/projections/{name}/docs/account-{account}?min_position={position}&timeout_ms=20000"
            ),
            token,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    doc["balance"].clone()
}

/// How many builds `seen` shows running on host `id`.
fn running_on(seen: &[((String, u64), Option<String>)], id: &str) -> usize {
    seen.iter()
        .filter(|(_, host)| host.as_deref() == Some(id))
        .count()
}

#[tokio::test]
async fn each_projection_build_runs_on_exactly_one_host_and_the_hosts_share_them() {
    let fleet = fleet(3).await;
    let hosts = &fleet.hosts;
    let token = hosts[0].tenant_with_account("acme").await;
    let names = ["p1", "p2", "p3", "p4", "p5", "p6"];
    upload_projections(&hosts[0], &token, &names).await;
    // Every host reports the same runner for every build, and every build has one.
    wait_for("one runner per build, the same on every host", async || {
        let seen = runners(&hosts[0], &token).await;
        if seen.len() != names.len() || seen.iter().any(|(_, host)| host.is_none()) {
            return false;
        }
        for host in &hosts[1..] {
            if runners(host, &token).await != seen {
                return false;
            }
        }
        true
    })
    .await;
    // Balanced: with six builds and three hosts, each runs two.
    wait_for("the builds shared out", async || {
        let seen = runners(&hosts[0], &token).await;
        (0..3).all(|i| {
            let id = format!("host-{i}");
            seen.iter()
                .filter(|(_, host)| host.as_deref() == Some(&id))
                .count()
                == 2
        })
    })
    .await;
    // Every build's documents are served by every host.
    open(&hosts[2], &token, "9").await;
    let position = expect(hosts[1].deposit(&token, "9", 3).await, StatusCode::OK).await["position"]
        .as_u64()
        .unwrap();
    for host in hosts {
        for name in names {
            assert_eq!(
                balance_on(host, &token, name, "9", position).await,
                3,
                "{name}"
            );
        }
    }
}

/// A version's status and report through `host`.
async fn version_of(host: &Server, token: &str, name: &str, version: u64) -> Value {
    expect(
        host.get(&format!("/t/acme/plugins/{name}/versions/{version}"), token)
            .await,
        StatusCode::OK,
    )
    .await
}

#[tokio::test]
async fn a_verification_whose_host_is_killed_is_finished_by_another() {
    let mut fleet = fleet(2).await;
    let token = fleet.hosts[0].create_tenant("acme").await;
    let hosts = &fleet.hosts;
    let up = hosts[0]
        .upload(&token, "acme", "h", hostile_bytes("aggregate"))
        .await;
    expect(up, StatusCode::CREATED).await;
    // About 1 ms of CPU per event for each version folded: several seconds to verify.
    for _ in 0..6 {
        let events: Vec<Value> = (0..1000)
            .map(|_| json!({"type": "Heavy", "data": {}}))
            .collect();
        let resp = hosts[0]
            .append(&token, "acme", "h-long", json!({"events": events}))
            .await;
        expect(resp, StatusCode::OK).await;
    }
    // The same behaviour under a new digest: verified by replay before it serves.
    let mut bytes = hostile_bytes("aggregate");
    bytes.extend_from_slice(&[0, 9, 8]);
    bytes.extend_from_slice(b"cairn-v2");
    let uploaded = expect(
        hosts[0].upload(&token, "acme", "h", bytes).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(uploaded["status"], "verifying", "{uploaded}");
    fleet.hosts[0].kill9();
    let started = std::time::Instant::now();
    loop {
        let version = version_of(&fleet.hosts[1], &token, "h", 2).await;
        if version["status"] == "active" {
            break;
        }
        assert_eq!(version["status"], "verifying", "{version}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(90),
            "still verifying 90 s after its host was killed: {version}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn the_builds_of_a_killed_host_move_to_the_others() {
    let mut fleet = fleet(2).await;
    let hosts = &mut fleet.hosts;
    let token = hosts[0].tenant_with_account("acme").await;
    upload_projections(&hosts[0], &token, &["p1", "p2"]).await;
    wait_for("each host running one build", async || {
        let seen = runners(&hosts[0], &token).await;
        running_on(&seen, "host-0") == 1 && running_on(&seen, "host-1") == 1
    })
    .await;
    hosts[1].kill9();
    // The survivor takes the dead host's build over once its lease expires.
    wait_for("host-0 running both builds", async || {
        runners(&hosts[0], &token)
            .await
            .iter()
            .all(|(_, h)| h.as_deref() == Some("host-0"))
    })
    .await;
    open(&hosts[0], &token, "4").await;
    let position = expect(hosts[0].deposit(&token, "4", 7).await, StatusCode::OK).await["position"]
        .as_u64()
        .unwrap();
    for name in ["p1", "p2"] {
        assert_eq!(
            balance_on(&hosts[0], &token, name, "4", position).await,
            7,
            "{name}"
        );
    }
}

#[tokio::test]
async fn concurrent_commands_on_one_stream_through_every_host_keep_versions_and_positions_whole() {
    let mut fleet = fleet(3).await;
    let token = fleet.hosts[0].tenant_with_account("acme").await;
    open(&fleet.hosts[0], &token, "shared").await;
    // Three writers per host, all on one stream: every conflict is across hosts or
    // within one, and each is retried by the host that lost it.
    let hosts = std::sync::Arc::new(std::mem::take(&mut fleet.hosts));
    let mut writers = Vec::new();
    for writer in 0..9 {
        let (hosts, token) = (hosts.clone(), token.clone());
        writers.push(tokio::spawn(async move {
            let host = &hosts[writer % 3];
            let mut answered = 0u64;
            for _ in 0..15 {
                let (code, body) = host
                    .command_answer(
                        &token,
                        "acme",
                        "account",
                        "shared",
                        json!({"type": "Deposit", "payload": {"amount": 1}}),
                    )
                    .await;
                match code {
                    StatusCode::OK => answered += 1,
                    // Retries ran out under contention: a clean refusal, nothing written.
                    StatusCode::SERVICE_UNAVAILABLE if body["error"]["code"] == "contention" => {}
                    other => panic!("{other}: {body}"),
                }
            }
            answered
        }));
    }
    let mut answered = 0;
    for writer in writers {
        answered += writer.await.unwrap();
    }
    assert!(answered > 0);
    let state = expect(
        hosts[1]
            .get("/t/acme/aggregates/account/shared", &token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(state["version"], answered + 1, "{state}");
    assert_eq!(state["state"]["balance"], answered, "{state}");
    let log = expect(
        hosts[2]
            .get("/t/acme/events?after=0&limit=1000", &token)
            .await,
        StatusCode::OK,
    )
    .await;
    let positions: Vec<u64> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=answered + 1).collect();
    assert_eq!(
        positions, expected,
        "positions gap-free and in commit order"
    );
}

/// Commands with ids, sent round-robin over the hosts whose addresses `bases` holds; a
/// command whose answer is lost (its host is restarting) goes again, same id, to the
/// next host. Returns the acknowledged ids.
async fn steady_writer(
    writer: usize,
    bases: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    token: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut acknowledged = Vec::new();
    let mut next_host = writer;
    let mut sequence = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        sequence += 1;
        let id = format!("w{writer}-{sequence}");
        let body = json!({"type": "Deposit", "payload": {"amount": 1}, "command_id": id});
        loop {
            let base = {
                let bases = bases.lock().unwrap();
                next_host = (next_host + 1) % bases.len();
                bases[next_host].clone()
            };
            let sent = http
                .post(format!(
                    "{base}/t/acme/aggregates/account/w{writer}/commands"
                ))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status() == StatusCode::OK => break,
                Ok(resp) if resp.status().is_server_error() => {}
                Ok(resp) => panic!("{}: {}", resp.status(), resp.text().await.unwrap()),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        acknowledged.push(id);
    }
    acknowledged
}

/// Follows the live log from whichever host answers, resuming with `Last-Event-ID`
/// after each disconnection, until it has delivered `until` (set at the end). Returns
/// every position delivered, in order.
async fn steady_subscriber(
    bases: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    token: String,
    until: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Vec<u64> {
    use futures::StreamExt;
    let http = reqwest::Client::new();
    let mut delivered: Vec<u64> = Vec::new();
    let mut host = 0;
    loop {
        let target = until.load(std::sync::atomic::Ordering::Relaxed);
        if target > 0 && delivered.last().copied().unwrap_or(0) >= target {
            return delivered;
        }
        let base = bases.lock().unwrap()[host % 3].clone();
        host += 1;
        let last = delivered.last().copied().unwrap_or(0).to_string();
        let resp = http
            .get(format!("{base}/t/acme/events/live"))
            .bearer_auth(&token)
            .header("Last-Event-ID", last)
            .send()
            .await;
        let Ok(resp) = resp.and_then(|r| r.error_for_status()) else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut body = resp.bytes_stream();
        let mut parser = SseParser::default();
        'read: loop {
            let chunk = tokio::time::timeout(Duration::from_millis(500), body.next()).await;
            let chunk = match chunk {
                Ok(Some(Ok(chunk))) => chunk,
                // Ended, broken, or quiet: check whether we are done, else reconnect.
                _ => break 'read,
            };
            parser.push(&chunk);
            while let Some(event) = parser.next_event() {
                if let Some(position) = event.id.and_then(|id| id.parse::<u64>().ok()) {
                    delivered.push(position);
                }
            }
        }
    }
}

#[tokio::test]
async fn a_rolling_restart_loses_no_acknowledged_command_and_no_subscriber_event() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    let mut fleet = fleet(3).await;
    let hosts = &mut fleet.hosts;
    let token = hosts[0].tenant_with_account("acme").await;
    for (writer, host) in hosts.iter().take(2).enumerate() {
        open(host, &token, &format!("w{writer}")).await;
    }
    let bases = Arc::new(Mutex::new(
        hosts.iter().map(|h| h.url("")).collect::<Vec<_>>(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let until = Arc::new(AtomicU64::new(0));
    let subscriber = tokio::spawn(steady_subscriber(
        bases.clone(),
        token.clone(),
        until.clone(),
    ));
    let writers: Vec<_> = (0..2)
        .map(|w| tokio::spawn(steady_writer(w, bases.clone(), token.clone(), stop.clone())))
        .collect();
    // Each host in turn: a graceful stop (SIGTERM: drain, hand leases back), then
    // a new process under the same name.
    for (i, host) in hosts.iter_mut().enumerate() {
        tokio::time::sleep(Duration::from_millis(700)).await;
        host.restart().await;
        bases.lock().unwrap()[i] = host.url("");
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    assert!(
        acknowledged.len() > 10,
        "too few commands: {}",
        acknowledged.len()
    );

    let log = expect(
        hosts[0]
            .get("/t/acme/events?after=0&limit=1000", &token)
            .await,
        StatusCode::OK,
    )
    .await;
    let events = log["events"].as_array().unwrap();
    let head = log["head"].as_u64().unwrap();
    assert_eq!(events.len() as u64, head, "one page holds the whole log");
    let mut effects = std::collections::HashMap::new();
    for e in events {
        if let Some(id) = e["metadata"]["causation_id"].as_str() {
            *effects.entry(id.to_owned()).or_insert(0) += 1;
        }
    }
    for id in &acknowledged {
        assert_eq!(effects.get(id), Some(&1), "command {id} once in the log");
    }
    until.store(head, Ordering::Relaxed);
    let delivered = tokio::time::timeout(Duration::from_secs(60), subscriber)
        .await
        .expect("the subscriber reached the head")
        .unwrap();
    let expected: Vec<u64> = (1..=head).collect();
    assert_eq!(delivered, expected, "every event delivered once, in order");
}
