//! Hostile input over HTTP: every refusal is JSON in the contract's error shape with a
//! stable code and a request id; strings the database cannot store (U+0000) are refused
//! on both backends before they reach it; an empty path segment is a 400; a store
//! failure shows the client a request id, never the database's message. Requests broken
//! on the wire itself are in `wire.rs`.

mod common;

use common::{Server, body_of, expect, plugin_bytes};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Asserts a refusal's status, JSON content type, code and request id (also in the
/// `x-request-id` header); returns the `error` object.
async fn refused(resp: reqwest::Response, status: StatusCode, code: &str, what: &str) -> Value {
    let content_type = resp.headers().get("content-type").cloned();
    let header_id = resp.headers().get("x-request-id").cloned();
    let (got, body) = body_of(resp).await;
    assert_eq!(got, status, "{what}: {body}");
    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{what}: {body}"
    );
    let error = &body["error"];
    assert_eq!(error["code"], code, "{what}: {body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
    let id = error["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no request_id: {body}"));
    assert_eq!(header_id.unwrap().to_str().unwrap(), id, "{what}");
    error.clone()
}

#[derive(Clone, Copy)]
enum Who {
    Operator,
    Tenant,
}

/// A tenant `acme` with the account aggregate and the balances projection.
async fn seeded() -> (Server, String) {
    let server = Server::start().await;
    let token = server.tenant_with_account("acme").await;
    let up = server.upload(&token, "acme", "balances", plugin_bytes("balances"));
    expect(up.await, StatusCode::CREATED).await;
    (server, token)
}

/// Method, path, token, body, status, code.
type Case = (
    &'static str,
    &'static str,
    Who,
    Option<&'static str>,
    u16,
    &'static str,
);

#[tokio::test]
async fn every_refusal_is_json_in_the_error_shape() {
    use Who::*;
    let (server, token) = seeded().await;
    let (q, p, b) = ("invalid_query", "invalid_path", "invalid_body");
    let table: &[Case] = &[
        // Query strings that do not parse, on every route that takes one.
        ("GET", "/t/acme/events?after=-1", Tenant, None, 400, q),
        ("GET", "/t/acme/events?limit=many", Tenant, None, 400, q),
        ("GET", "/t/acme/events?upcast=perhaps", Tenant, None, 400, q),
        ("GET", "/t/acme/events/live?after=x", Tenant, None, 400, q),
        ("GET", "/t/acme/streams/s-1?from=-1", Tenant, None, 400, q),
        ("GET", "/t/acme/streams/s-1?limit=1e3", Tenant, None, 400, q),
        (
            "GET",
            "/t/acme/streams/s-1?direction=sideways",
            Tenant,
            None,
            400,
            q,
        ),
        (
            "GET",
            "/t/acme/aggregates/account/1?version=two",
            Tenant,
            None,
            400,
            q,
        ),
        (
            "GET",
            "/t/acme/projections/balances/docs?min_position=-1",
            Tenant,
            None,
            400,
            q,
        ),
        (
            "GET",
            "/t/acme/projections/balances/docs?timeout_ms=soon",
            Tenant,
            None,
            400,
            q,
        ),
        (
            "GET",
            "/t/acme/projections/balances/docs?limit=-1",
            Tenant,
            None,
            400,
            q,
        ),
        (
            "GET",
            "/t/acme/projections/balances/docs/k?min_position=x",
            Tenant,
            None,
            400,
            q,
        ),
        (
            "PUT",
            "/t/acme/plugins/account?verify=warn&bogus=1",
            Tenant,
            Some("x"),
            400,
            q,
        ),
        // Paths that are not UTF-8 once decoded.
        ("GET", "/t/acme/plugins/a%FFb", Tenant, None, 400, p),
        ("GET", "/t/acme/streams/%C3%28", Tenant, None, 400, p),
        (
            "GET",
            "/t/acme/projections/balances/docs/%FF",
            Tenant,
            None,
            400,
            p,
        ),
        ("GET", "/admin/tenants/%FF", Operator, None, 400, p),
        ("GET", "/t/%FF/events", Operator, None, 400, p),
        // Bodies that are not JSON or not the expected shape.
        ("POST", "/admin/tenants", Operator, Some("{"), 400, b),
        ("POST", "/t/acme/streams/s-1", Tenant, Some("[1]"), 400, b),
        (
            "POST",
            "/t/acme/aggregates/account/1/commands",
            Tenant,
            Some("{\"type\":1}"),
            400,
            b,
        ),
        (
            "POST",
            "/t/acme/projections/balances/promote",
            Tenant,
            Some("{}"),
            400,
            b,
        ),
        (
            "POST",
            "/t/acme/plugins/account/activate",
            Tenant,
            Some("nope"),
            400,
            b,
        ),
        (
            "PATCH",
            "/admin/tenants/acme",
            Operator,
            Some("{\"limits\""),
            400,
            b,
        ),
        // Limits must be an object (serde alone would read `[]` as all defaults).
        (
            "POST",
            "/admin/tenants",
            Operator,
            Some("{\"id\":\"x\",\"limits\":[]}"),
            400,
            "bad_request",
        ),
        (
            "PATCH",
            "/admin/tenants/acme",
            Operator,
            Some("{\"limits\":[]}"),
            400,
            "bad_request",
        ),
        // Routes and methods that do not exist.
        ("GET", "/nowhere", Tenant, None, 404, "not_found"),
        (
            "DELETE",
            "/healthz",
            Tenant,
            None,
            405,
            "method_not_allowed",
        ),
        (
            "PUT",
            "/t/acme/events",
            Tenant,
            None,
            405,
            "method_not_allowed",
        ),
    ];
    for &(method, path, who, body, status, code) in table {
        let token = match who {
            Operator => server.admin(),
            Tenant => token.as_str(),
        };
        let mut request = server
            .http
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                server.url(path),
            )
            .bearer_auth(token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let status = StatusCode::from_u16(status).unwrap();
        refused(
            request.send().await.unwrap(),
            status,
            code,
            &format!("{method} {path}"),
        )
        .await;
    }
    // The tenant `x` of the `"limits": []` attempt was not made.
    let gone = server.get("/admin/tenants/x", server.admin()).await;
    refused(gone, StatusCode::NOT_FOUND, "not_found", "tenant x").await;
}

/// An empty path segment names nothing: 400 `bad_request` on every route with path
/// parameters, whether the empty segment matched a route or left it unmatched, and
/// nothing is written (an empty aggregate id once wrote a stream `account-` that no
/// read could name).
#[tokio::test]
async fn an_empty_path_segment_is_400_and_writes_nothing() {
    use Who::*;
    let (server, token) = seeded().await;
    let command = r#"{"type": "Open", "payload": {"owner": "ann"}}"#;
    let events = r#"{"events": [{"type": "A", "data": {}}]}"#;
    let table: &[(&str, &str, Who, Option<&str>)] = &[
        (
            "POST",
            "/t/acme/aggregates/account//commands",
            Tenant,
            Some(command),
        ),
        (
            "POST",
            "/t/acme/aggregates//1/commands",
            Tenant,
            Some(command),
        ),
        (
            "POST",
            "/t/acme/aggregates///commands",
            Tenant,
            Some(command),
        ),
        ("GET", "/t/acme/aggregates//1", Tenant, None),
        ("GET", "/t/acme/aggregates/account/", Tenant, None),
        ("POST", "/t/acme/streams/", Tenant, Some(events)),
        ("GET", "/t/acme/streams/", Tenant, None),
        ("GET", "/t/acme/projections//docs", Tenant, None),
        ("GET", "/t/acme/projections//docs/k", Tenant, None),
        ("GET", "/t/acme/projections/balances/docs/", Tenant, None),
        ("GET", "/t/acme/projections/", Tenant, None),
        ("POST", "/t/acme/projections//promote", Tenant, Some("{}")),
        ("POST", "/t/acme/projections//rebuild", Tenant, Some("{}")),
        ("DELETE", "/t/acme/projections//builds/1", Tenant, None),
        (
            "DELETE",
            "/t/acme/projections/balances/builds/",
            Tenant,
            None,
        ),
        ("GET", "/t/acme/plugins//logs", Tenant, None),
        ("GET", "/t/acme/plugins//versions/1", Tenant, None),
        ("GET", "/t/acme/plugins/account/versions/", Tenant, None),
        ("POST", "/t/acme/plugins//activate", Tenant, Some("{}")),
        ("PUT", "/t/acme/plugins/", Tenant, Some("x")),
        ("GET", "/t//events", Operator, None),
        ("GET", "/t//plugins/account", Operator, None),
        ("POST", "/admin/tenants//token", Operator, None),
        ("GET", "/admin/tenants/", Operator, None),
    ];
    for &(method, path, who, body) in table {
        let token = match who {
            Operator => server.admin(),
            Tenant => token.as_str(),
        };
        let mut request = server
            .http
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                server.url(path),
            )
            .bearer_auth(token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let what = format!("{method} {path}");
        let error = refused(
            request.send().await.unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_request",
            &what,
        )
        .await;
        assert!(
            error["message"].as_str().unwrap().contains("empty"),
            "{what}: {error}"
        );
    }
    let log = expect(server.get("/t/acme/events", &token).await, StatusCode::OK).await;
    assert_eq!(log["head"], 0, "{log}");
}

#[tokio::test]
async fn nul_is_refused_wherever_it_would_reach_the_store() {
    let (server, token) = seeded().await;
    let t = token.as_str();
    // In the path: tenant, plugin, stream, aggregate id, projection, document key.
    for path in [
        "/admin/tenants/ac%00me",
        "/t/acme/plugins/acc%00ount",
        "/t/acme/plugins/account/versions/1%00",
        "/t/acme/streams/s%001",
        "/t/acme/aggregates/account/1%002",
        "/t/acme/projections/bal%00ances",
        "/t/acme/projections/balances/docs/k%00ey",
    ] {
        let token = if path.starts_with("/admin") {
            server.admin()
        } else {
            t
        };
        let e = refused(
            server.get(path, token).await,
            StatusCode::BAD_REQUEST,
            "invalid_path",
            path,
        )
        .await;
        assert!(
            e["message"].as_str().unwrap().contains("U+0000"),
            "{path}: {e}"
        );
    }
    // In the query: the type filter, the document prefix and cursor.
    for path in [
        "/t/acme/events?types=Opened,Dep%00osited",
        "/t/acme/events/live?types=%00",
        "/t/acme/projections/balances/docs?prefix=acc%00",
        "/t/acme/projections/balances/docs?after=account-1%00",
    ] {
        let e = refused(
            server.get(path, t).await,
            StatusCode::BAD_REQUEST,
            "invalid_query",
            path,
        )
        .await;
        assert!(
            e["message"].as_str().unwrap().contains("U+0000"),
            "{path}: {e}"
        );
    }
    // In bodies: event type and id, command id, tenant id.
    let append = |event: Value| server.append(t, "acme", "s-1", json!({"events": [event]}));
    for (event, field) in [
        (json!({"type": "A\u{0}", "data": {}}), "type"),
        (
            json!({"type": "A", "event_id": "e\u{0}", "data": {}}),
            "event_id",
        ),
    ] {
        let e = refused(
            append(event).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
            field,
        )
        .await;
        let message = e["message"].as_str().unwrap();
        assert!(message.contains("U+0000") && message.contains(field), "{e}");
    }
    let command = json!({"type": "Open", "payload": {"owner": "ann"}, "command_id": "c\u{0}"});
    let resp = server.command(t, "acme", "account", "1", command).await;
    let e = refused(resp, StatusCode::BAD_REQUEST, "bad_request", "command_id").await;
    assert!(e["message"].as_str().unwrap().contains("command_id"), "{e}");
    let resp = server
        .post("/admin/tenants", server.admin(), json!({"id": "a\u{0}"}))
        .await;
    refused(resp, StatusCode::BAD_REQUEST, "bad_request", "tenant id").await;
    // Nothing was written.
    let log = expect(server.get("/t/acme/events", t).await, StatusCode::OK).await;
    assert_eq!(log["head"], 0, "{log}");
    // Inside JSON payloads and metadata a NUL is stored escaped, and comes back intact.
    let event = json!({"type": "A", "data": {"s": "a\u{0}b"}, "metadata": {"m": "\u{0}"}});
    expect(append(event).await, StatusCode::OK).await;
    let read = expect(server.get("/t/acme/streams/s-1", t).await, StatusCode::OK).await;
    assert_eq!(read["events"][0]["data"]["s"], "a\u{0}b");
    assert_eq!(read["events"][0]["metadata"]["m"], "\u{0}");
    let open = json!({"type": "Open", "payload": {"owner": "n\u{0}l"}, "metadata": {"k": "\u{0}"}});
    expect(
        server.command(t, "acme", "account", "1", open).await,
        StatusCode::OK,
    )
    .await;
    let state = server.get("/t/acme/aggregates/account/1", t).await;
    assert_eq!(
        expect(state, StatusCode::OK).await["state"]["owner"],
        "n\u{0}l"
    );
}

/// What the server says when its store fails under it: the events table is dropped
/// behind its back.
#[tokio::test]
async fn a_store_failure_shows_a_request_id_not_the_database_message() {
    use sqlx::Connection;
    let on_postgres = std::env::var("CAIRN_TEST_BACKEND").is_ok_and(|b| b == "postgres");
    let (server, url) = if on_postgres {
        let (url, name) = common::postgres_database().await;
        let server = Server::with_database(&url).await;
        (server, Some((url, name)))
    } else {
        (Server::start().await, None)
    };
    let token = server.create_tenant("acme").await;
    let drop_events = sqlx::AssertSqlSafe("DROP TABLE events CASCADE".to_owned());
    match &url {
        Some((url, _)) => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::raw_sql(drop_events).execute(&mut conn).await.unwrap();
        }
        None => {
            let path = server.data_dir.path().join("cairn.db");
            let url = format!("sqlite://{}", path.display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe("DROP TABLE events".to_owned()))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
    let resp = server
        .http
        .get(server.url("/t/acme/events"))
        .bearer_auth(&token)
        .header("x-request-id", "support-case-42")
        .send()
        .await
        .unwrap();
    let e = refused(
        resp,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "dropped table",
    )
    .await;
    // A caller's well-formed id carries through; the message tells nothing of the store.
    assert_eq!(e["request_id"], "support-case-42");
    let message = e["message"].as_str().unwrap().to_lowercase();
    for leak in ["events", "table", "relation", "sql", "database"] {
        assert!(!message.contains(leak), "the message leaks {leak:?}: {e}");
    }
    drop(server);
    if let Some((_, name)) = url {
        common::drop_database(name);
    }
}
