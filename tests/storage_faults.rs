//! The storage under a host fails: a full disk under SQLite (a small tmpfs mounted as
//! the data directory). What must hold: no command is acknowledged that the file does
//! not hold, every refusal is a retryable `507 storage_full` (never a 500), reads go on,
//! `/readyz` says not ready, and the host recovers by itself once space returns.
//!
//! Mounting needs root, as CI has; without it the test fails (it never skips).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, body_of, expect};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A tmpfs of `megabytes` mounted on a fresh directory, unmounted when dropped.
struct SmallDisk {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mounting a {megabytes} MiB tmpfs on {} failed: this test needs root",
            path.display()
        );
        SmallDisk {
            dir: Some(dir),
            path,
        }
    }

    /// The mounted directory, for the server (which removes it when it is dropped:
    /// the mount is gone by then, see `Drop`).
    fn take_dir(&mut self) -> tempfile::TempDir {
        self.dir.take().unwrap()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: the server may still have files open if the test failed half-way.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes a file in `dir` until the filesystem refuses (ENOSPC); returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xa5_u8; 64 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let _ = file.flush();
    path
}

/// A deposit under `command_id`, with big metadata: big events fill the store's pages
/// quickly.
fn padded_deposit(command_id: &str) -> Value {
    let mut body = common::deposit(1);
    body["command_id"] = json!(command_id);
    body["metadata"] = json!({"pad": "p".repeat(4000)});
    body
}

const ACCOUNTS: usize = 4;
const PER_ACCOUNT: usize = 120;

#[tokio::test]
async fn a_full_disk_never_acknowledges_what_it_did_not_store_and_recovers_by_itself() {
    if std::env::var("CAIRN_TEST_BACKEND").is_ok_and(|b| b == "postgres") {
        // The disk under test is SQLite's own file; PostgreSQL's is its server's.
        return;
    }
    let mut disk = SmallDisk::mount(48);
    let server = Server::start_in(disk.take_dir(), &[]).await;
    let token = server.tenant_with_account("acme").await;
    for account in 0..ACCOUNTS {
        let (code, body) = server
            .command_answer(
                &token,
                "acme",
                "account",
                &format!("a{account}"),
                json!({"type": "Open", "payload": {"owner": "ann"}}),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }

    let filler = fill(&disk.path);

    // Writers while the disk is full: every answer is recorded by command id.
    let mut writers = Vec::new();
    let server = std::sync::Arc::new(server);
    for account in 0..ACCOUNTS {
        let server = server.clone();
        let token = token.clone();
        writers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in 0..PER_ACCOUNT {
                let id = format!("c-{account}-{i}");
                let (code, body) = server
                    .command_answer(
                        &token,
                        "acme",
                        "account",
                        &format!("a{account}"),
                        padded_deposit(&id),
                    )
                    .await;
                answers.push((id, account, code, body));
            }
            answers
        }));
    }
    let mut answers = Vec::new();
    for writer in writers {
        answers.extend(writer.await.unwrap());
    }
    let mut acknowledged: HashMap<String, u64> = HashMap::new();
    let mut refused = Vec::new();
    for (id, account, code, body) in &answers {
        match *code {
            StatusCode::OK => {
                acknowledged.insert(id.clone(), body["position"].as_u64().unwrap());
            }
            StatusCode::INSUFFICIENT_STORAGE => {
                assert_eq!(body["error"]["code"], "storage_full", "{body}");
                refused.push((id.clone(), *account));
            }
            other => panic!("{id}: {other} {body} (only 200 or 507 storage_full)"),
        }
    }
    assert!(
        !refused.is_empty(),
        "the disk never filled ({} acknowledged): the test did not test anything",
        acknowledged.len()
    );

    // Full: not ready, reads still served, an upload blames the disk, not the plugin.
    let ready = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let read = server.get("/t/acme/aggregates/account/a0", &token).await;
    expect(read, StatusCode::OK).await;
    let upload = server
        .upload(&token, "acme", "balances", common::plugin_bytes("balances"))
        .await;
    let (code, body) = body_of(upload).await;
    assert_eq!(code, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert_eq!(body["error"]["code"], "storage_full", "{body}");

    // Space returns: ready again without a restart, and every refused command goes
    // through when retried with its own id.
    std::fs::remove_file(&filler).unwrap();
    let started = Instant::now();
    loop {
        let ready = server.http.get(server.url("/readyz")).send().await.unwrap();
        if ready.status() == StatusCode::OK {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not ready 30 s after space returned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (id, account) in &refused {
        let (code, body) = server
            .command_answer(
                &token,
                "acme",
                "account",
                &format!("a{account}"),
                padded_deposit(id),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{id} after space returned: {body}");
        acknowledged.insert(id.clone(), body["position"].as_u64().unwrap());
    }

    check(&server, &token, &acknowledged).await;

    // And the file holds it: the same after a restart.
    let mut server = std::sync::Arc::into_inner(server).expect("writers done");
    server.restart().await;
    check(&server, &token, &acknowledged).await;
    server.stop();
    drop(disk);
}

/// The log holds every acknowledged command exactly once, where it was acknowledged,
/// at gap-free positions, and every account's balance counts every deposit.
async fn check(server: &Server, token: &str, acknowledged: &HashMap<String, u64>) {
    common::assert_log_holds_exactly(server, token, acknowledged).await;
    for account in 0..ACCOUNTS {
        let state = expect(
            server
                .get(&format!("/t/acme/aggregates/account/a{account}"), token)
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(
            state["state"]["balance"].as_u64(),
            Some(PER_ACCOUNT as u64),
            "a{account}: {state}"
        );
    }
}
