//! Tenant isolation over every endpoint: another tenant's token is a 403, no token or
//! a wrong one a 401, a tenant token on /admin a 403, and no answer ever carries
//! another tenant's data. Deleting a tenant removes every row and file of it. Tokens
//! rotate.

mod common;

use common::{Server, assert_error_body, body_of, plugin_bytes};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Every tenant-scoped route of the API, with a body where one is needed.
fn tenant_routes(t: &str) -> Vec<(Method, String, Option<Value>)> {
    let command = json!({"type": "Deposit", "payload": {"amount": 1}});
    let append = json!({"events": [{"type": "X", "data": {}}]});
    vec![
        (Method::GET, format!("/t/{t}/plugins"), None),
        (Method::GET, format!("/t/{t}/plugins/account"), None),
        (Method::GET, format!("/t/{t}/plugins/account/logs"), None),
        (
            Method::POST,
            format!("/t/{t}/aggregates/account/1/commands"),
            Some(command),
        ),
        (Method::GET, format!("/t/{t}/aggregates/account/1"), None),
        (
            Method::GET,
            format!("/t/{t}/aggregates/account/1?version=1"),
            None,
        ),
        (
            Method::POST,
            format!("/t/{t}/streams/account-1"),
            Some(append),
        ),
        (Method::GET, format!("/t/{t}/streams/account-1"), None),
        (Method::GET, format!("/t/{t}/events"), None),
        (Method::GET, format!("/t/{t}/projections"), None),
        (Method::GET, format!("/t/{t}/projections/balances"), None),
        (
            Method::POST,
            format!("/t/{t}/projections/balances/promote"),
            Some(json!({"version": 1})),
        ),
        (
            Method::POST,
            format!("/t/{t}/projections/balances/rebuild"),
            Some(json!({})),
        ),
        (
            Method::GET,
            format!("/t/{t}/projections/balances/docs"),
            None,
        ),
        (
            Method::GET,
            format!("/t/{t}/projections/balances/docs/account-1"),
            None,
        ),
    ]
}

fn admin_routes() -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, "/admin/tenants".into(), None),
        (
            Method::POST,
            "/admin/tenants".into(),
            Some(json!({"id": "sneaky"})),
        ),
        (Method::GET, "/admin/tenants/alpha".into(), None),
        (
            Method::PATCH,
            "/admin/tenants/alpha".into(),
            Some(json!({"limits": {}})),
        ),
        (Method::POST, "/admin/tenants/alpha/token".into(), None),
        (Method::DELETE, "/admin/tenants/alpha".into(), None),
    ]
}

async fn seeded() -> (Server, String, String) {
    let server = Server::start().await;
    let alpha = server.create_tenant("alpha").await;
    let beta = server.create_tenant("beta").await;
    for (t, token, owner) in [
        ("alpha", &alpha, "alice-secret"),
        ("beta", &beta, "bob-secret"),
    ] {
        assert_eq!(
            server
                .upload(token, t, "account", plugin_bytes("account"))
                .await
                .status(),
            201
        );
        assert_eq!(
            server
                .upload(token, t, "balances", plugin_bytes("balances"))
                .await
                .status(),
            201
        );
        let (code, _) = server
            .command_answer(
                token,
                t,
                "account",
                "1",
                json!({"type": "Open", "payload": {"owner": owner}}),
            )
            .await;
        assert_eq!(code, StatusCode::OK);
    }
    (server, alpha, beta)
}

#[tokio::test]
async fn every_endpoint_refuses_the_wrong_caller() {
    let (server, alpha, beta) = seeded().await;
    for (method, path, body) in tenant_routes("alpha") {
        let (code, answer) = body_of(
            server
                .send(method.clone(), &path, &beta, body.clone())
                .await,
        )
        .await;
        assert_error_body(code, &answer, StatusCode::FORBIDDEN, "forbidden");
        assert!(!answer.to_string().contains("alice"), "{path}: {answer}");
        let (code, answer) = body_of(
            server
                .send(method.clone(), &path, "cairn_wrong", body.clone())
                .await,
        )
        .await;
        assert_error_body(code, &answer, StatusCode::UNAUTHORIZED, "unauthorized");
        let mut request = server.http.request(method.clone(), server.url(&path));
        if let Some(body) = &body {
            request = request.json(body);
        }
        let (code, answer) = body_of(request.send().await.unwrap()).await;
        assert_error_body(code, &answer, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    for (method, path, body) in admin_routes() {
        let (code, answer) = body_of(server.send(method, &path, &alpha, body).await).await;
        assert_error_body(code, &answer, StatusCode::FORBIDDEN, "forbidden");
    }
    // A tenant reaches its own data; another tenant's plugin names are simply unknown.
    let (code, state) = body_of(server.get("/t/beta/aggregates/account/1", &beta).await).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(state["state"]["owner"], "bob-secret");
    let (code, _) = body_of(
        server
            .upload(&beta, "beta", "only-alpha", b"junk".to_vec())
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    let (code, _) = body_of(server.get("/t/alpha/plugins/only-alpha", &alpha).await).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    // Each tenant's log holds only its own events, numbered from 1.
    for (t, token, own, other) in [
        ("alpha", &alpha, "alice", "bob"),
        ("beta", &beta, "bob", "alice"),
    ] {
        let (_, log) = body_of(server.get(&format!("/t/{t}/events"), token).await).await;
        let text = log.to_string();
        assert!(text.contains(own) && !text.contains(other), "{text}");
        assert_eq!(log["events"][0]["position"], 1);
    }
    // Bad tenant ids in admin routes are a 400 for the operator.
    let (code, body) = body_of(server.get("/admin/tenants/Not_Valid", server.admin()).await).await;
    assert_error_body(code, &body, StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn deleting_a_tenant_removes_every_row_and_file() {
    let (server, alpha, beta) = seeded().await;
    // beta uploaded the same components: compiled artifacts are shared by digest.
    let (code, _) = body_of(
        server
            .send(Method::DELETE, "/admin/tenants/alpha", server.admin(), None)
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let (code, body) = body_of(
        server
            .get("/t/alpha/streams/account-1", server.admin())
            .await,
    )
    .await;
    assert_error_body(code, &body, StatusCode::NOT_FOUND, "not_found");
    let (code, _) = body_of(server.get("/t/alpha/events", &alpha).await).await;
    assert_eq!(
        code,
        StatusCode::UNAUTHORIZED,
        "the deleted tenant's token is dead"
    );
    // Look in the database itself.
    let db = server.data_dir.path().join("cairn.db");
    let url = format!("sqlite://{}?mode=ro", db.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    for table in [
        "events",
        "commands",
        "snapshots",
        "plugins",
        "documents",
        "projections",
    ] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE tenant_id = 'alpha'"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(n, 0, "{table} still holds alpha's rows");
    }
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenants WHERE id = 'alpha'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    // beta, which uses the same components, is untouched and its artifacts remain.
    let (code, _) = server
        .command_answer(
            &beta,
            "beta",
            "account",
            "1",
            json!({"type": "Deposit", "payload": {"amount": 2}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let artifacts = std::fs::read_dir(server.data_dir.path().join("artifacts"))
        .unwrap()
        .count();
    assert_eq!(
        artifacts, 2,
        "shared compiled components stay while beta uses them"
    );
    let (code, _) = body_of(
        server
            .send(Method::DELETE, "/admin/tenants/beta", server.admin(), None)
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let artifacts = std::fs::read_dir(server.data_dir.path().join("artifacts"))
        .unwrap()
        .count();
    assert_eq!(artifacts, 0, "no tenant uses them now: the files are gone");
}

#[tokio::test]
async fn tokens_rotate_and_the_operator_token_file_is_private() {
    let server = Server::start().await;
    let old = server.create_tenant("alpha").await;
    assert!(old.len() >= 64, "256-bit tokens");
    let (code, body) = body_of(
        server
            .send(
                Method::POST,
                "/admin/tenants/alpha/token",
                server.admin(),
                None,
            )
            .await,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let new = body["token"].as_str().unwrap();
    assert_ne!(new, old);
    assert_eq!(
        server.get("/t/alpha/events", &old).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.get("/t/alpha/events", new).await.status(),
        StatusCode::OK
    );
    let (code, body) = body_of(
        server
            .post("/admin/tenants", server.admin(), json!({"id": "alpha"}))
            .await,
    )
    .await;
    assert_error_body(code, &body, StatusCode::CONFLICT, "already_exists");
}

#[cfg(unix)]
#[tokio::test]
async fn a_generated_operator_token_is_written_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("CAIRN_ADMIN_TOKEN")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    let file = dir.path().join("admin-token");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    let token = std::fs::read_to_string(&file).unwrap();
    let base = line
        .trim()
        .strip_prefix("cairn listening on ")
        .unwrap()
        .to_owned();
    let status = reqwest::Client::new()
        .get(format!("{base}/admin/tenants"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .status();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(mode, 0o600);
    assert_eq!(
        status,
        StatusCode::OK,
        "the generated token is the operator's"
    );
}
