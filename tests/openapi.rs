//! `/openapi.json` as the real server serves it: a valid OpenAPI 3.1 document, listing
//! exactly the routes the router serves, with the contract's shapes (docs/api.md).
//!
//! The document is generated from the handlers (`host/src/api/openapi.rs`): each route
//! is routed and documented by the same `routes!` call. These tests hold the rest: the
//! document is well formed, every route in it answers, no method beside the documented
//! ones does, nothing is routed past `routes!`, and the routes are the ones below.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Server, body_of, expect};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Every operation the server serves. A route added, removed or undocumented changes
/// the document, and this test says so.
const OPERATIONS: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("post", "/admin/tenants"),
    ("get", "/admin/tenants"),
    ("get", "/admin/tenants/{tenant}"),
    ("patch", "/admin/tenants/{tenant}"),
    ("delete", "/admin/tenants/{tenant}"),
    ("post", "/admin/tenants/{tenant}/token"),
    ("get", "/admin/hosts"),
    ("get", "/t/{tenant}/plugins"),
    ("get", "/t/{tenant}/plugins/{name}"),
    ("put", "/t/{tenant}/plugins/{name}"),
    ("get", "/t/{tenant}/plugins/{name}/logs"),
    ("get", "/t/{tenant}/plugins/{name}/versions/{version}"),
    ("post", "/t/{tenant}/plugins/{name}/activate"),
    ("post", "/t/{tenant}/aggregates/{name}/{id}/commands"),
    ("get", "/t/{tenant}/aggregates/{name}/{id}"),
    ("post", "/t/{tenant}/streams"),
    ("post", "/t/{tenant}/streams/{stream}"),
    ("get", "/t/{tenant}/streams/{stream}"),
    ("get", "/t/{tenant}/projections"),
    ("get", "/t/{tenant}/projections/{name}"),
    ("post", "/t/{tenant}/projections/{name}/promote"),
    ("post", "/t/{tenant}/projections/{name}/rebuild"),
    ("delete", "/t/{tenant}/projections/{name}/builds/{build}"),
    ("get", "/t/{tenant}/projections/{name}/docs"),
    ("get", "/t/{tenant}/projections/{name}/docs/{key}"),
    ("post", "/t/{tenant}/import"),
    ("get", "/t/{tenant}/events"),
    ("get", "/t/{tenant}/events/live"),
    ("get", "/console"),
    ("get", "/console/{asset}"),
];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn document(server: &Server) -> Value {
    let response = server.get("/openapi.json", "").await;
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "the document's content type"
    );
    expect(response, StatusCode::OK).await
}

/// `{name}`s of a path template, in order.
fn template_parameters(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_owned)
        .collect()
}

/// The path with each parameter given a value that routes.
fn concrete(path: &str) -> String {
    path.replace("{tenant}", "acme")
        .replace("{name}", "p")
        .replace("{id}", "1")
        .replace("{stream}", "s")
        .replace("{key}", "k")
        .replace("{version}", "1")
        .replace("{build}", "1")
        .replace("{asset}", "app.js")
}

/// Every (method, path, operation) of the document.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            if METHODS.contains(&method.as_str()) {
                all.push((method.clone(), path.clone(), operation));
            }
        }
    }
    all
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let target = doc
                .pointer(reference.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("{reference} does not resolve"));
            resolve(doc, target)
        }
        None => schema,
    }
}

/// The schema under an `Option`: `oneOf: [{"type": "null"}, X]` is X.
fn non_null<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    let schema = resolve(doc, schema);
    if let Some(options) = schema["oneOf"].as_array() {
        let rest: Vec<&Value> = options.iter().filter(|s| s["type"] != "null").collect();
        if rest.len() == 1 && rest.len() < options.len() {
            return resolve(doc, rest[0]);
        }
    }
    schema
}

fn has_type(schema: &Value, kind: &str) -> bool {
    match &schema["type"] {
        Value::String(t) => t == kind,
        Value::Array(types) => types.iter().any(|t| t == kind),
        _ => false,
    }
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let schema = &doc["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema {name}");
    schema
}

fn required(schema: &Value) -> BTreeSet<&str> {
    schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn properties(schema: &Value) -> BTreeSet<&str> {
    schema["properties"]
        .as_object()
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    let operation = &doc["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is not documented");
    operation
}

fn request_schema<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    resolve(
        doc,
        &operation(doc, method, path)["requestBody"]["content"]["application/json"]["schema"],
    )
}

fn response_schema<'a>(doc: &'a Value, method: &str, path: &str, status: &str) -> &'a Value {
    resolve(
        doc,
        &operation(doc, method, path)["responses"][status]["content"]["application/json"]["schema"],
    )
}

fn parameter<'a>(doc: &'a Value, method: &str, path: &str, name: &str) -> &'a Value {
    operation(doc, method, path)["parameters"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))
}

/// What is wrong with `doc` as an OpenAPI 3.1 document of this API; empty when nothing.
fn problems(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |p: String| problems.push(p);
    if !doc["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.1."))
    {
        problem(format!("openapi is {}, not 3.1.x", doc["openapi"]));
    }
    for field in ["title", "version", "description"] {
        if doc["info"][field]
            .as_str()
            .is_none_or(|v| v.trim().is_empty())
        {
            problem(format!("info.{field} is missing or empty"));
        }
    }
    // Every $ref resolves.
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(list) => list.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all_refs = Vec::new();
    refs(doc, &mut all_refs);
    for reference in all_refs {
        let resolves = reference
            .strip_prefix('#')
            .is_some_and(|pointer| doc.pointer(pointer).is_some());
        if !resolves {
            problem(format!("$ref {reference} does not resolve"));
        }
    }
    let schemes = &doc["components"]["securitySchemes"];
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    let mut operation_ids = BTreeSet::new();
    for (method, path, op) in operations(doc) {
        let at = format!("{} {path}", method.to_uppercase());
        match op["operationId"].as_str() {
            Some(id) if operation_ids.insert(id.to_owned()) => {}
            Some(id) => problem(format!("{at}: operationId {id} is used twice")),
            None => problem(format!("{at}: no operationId")),
        }
        if !op["summary"]
            .as_str()
            .is_some_and(|s| !s.is_empty() && !s.contains('\n'))
        {
            problem(format!("{at}: no summary, or one of several lines"));
        }
        for tag in op["tags"].as_array().into_iter().flatten() {
            if !tag.as_str().is_some_and(|t| tags.contains(t)) {
                problem(format!("{at}: tag {tag} is not declared"));
            }
        }
        // Path parameters: exactly the template's, each required, each typed.
        let declared: Vec<&Value> = doc["paths"][&path]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(op["parameters"].as_array().into_iter().flatten())
            .collect();
        let in_path: BTreeMap<&str, &Value> = declared
            .iter()
            .filter(|p| p["in"] == "path")
            .filter_map(|p| Some((p["name"].as_str()?, *p)))
            .collect();
        let template = template_parameters(&path);
        for name in &template {
            match in_path.get(name.as_str()) {
                None => problem(format!("{at}: path parameter {{{name}}} is not declared")),
                Some(p) if p["required"] != true => {
                    problem(format!("{at}: path parameter {name} is not required"))
                }
                Some(p) if !p["schema"].is_object() => {
                    problem(format!("{at}: path parameter {name} has no schema"))
                }
                Some(_) => {}
            }
        }
        for name in in_path.keys() {
            if !template.iter().any(|t| t == name) {
                problem(format!("{at}: path parameter {name} is not in the path"));
            }
        }
        for p in &declared {
            if !p["schema"].is_object() {
                problem(format!("{at}: parameter {} has no schema", p["name"]));
            }
        }
        // Bodies in and out have schemas.
        if let Some(body) = op.get("requestBody") {
            let content = body["content"].as_object();
            if content.is_none_or(|c| c.is_empty()) {
                problem(format!("{at}: a request body without content"));
            }
            for (media, c) in content.into_iter().flatten() {
                if !c["schema"].is_object() {
                    problem(format!("{at}: request body {media} has no schema"));
                }
            }
        }
        let responses = op["responses"].as_object();
        if responses.is_none_or(|r| r.is_empty()) {
            problem(format!("{at}: no responses"));
        }
        let mut success = false;
        for (status, response) in responses.into_iter().flatten() {
            let at = format!("{at} → {status}");
            if !response["description"].is_string() {
                problem(format!("{at}: no description"));
            }
            if !response["headers"]["x-request-id"]["schema"].is_object() {
                problem(format!("{at}: no x-request-id header"));
            }
            let content = response["content"].as_object();
            if status.starts_with('2') {
                success = true;
                for (media, c) in content.into_iter().flatten() {
                    if !c["schema"].is_object() {
                        problem(format!("{at}: {media} has no schema"));
                    }
                }
                if status != "204" && content.is_none_or(|c| c.is_empty()) {
                    problem(format!("{at}: a success without a body schema"));
                }
            } else if status.starts_with('4') || status.starts_with('5') {
                if response["content"]["application/json"]["schema"]["$ref"]
                    != "#/components/schemas/ErrorBody"
                {
                    problem(format!("{at}: not the ErrorBody shape"));
                }
                if !response["description"]
                    .as_str()
                    .is_some_and(|d| d.contains('`'))
                {
                    problem(format!("{at}: lists no error code"));
                }
            } else {
                problem(format!("{at}: an unexpected status"));
            }
        }
        if !success {
            problem(format!("{at}: no success response"));
        }
        // Who may call it.
        for requirement in op["security"].as_array().into_iter().flatten() {
            for name in requirement
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
            {
                if !schemes[name].is_object() {
                    problem(format!("{at}: security scheme {name} is not declared"));
                }
            }
        }
        let needs = |scheme: &str| {
            op["security"]
                .as_array()
                .is_some_and(|all| all.iter().any(|r| r.get(scheme).is_some()))
        };
        if path.starts_with("/admin/") && !needs("operator_token") {
            problem(format!("{at}: no operator_token security"));
        }
        if path.starts_with("/t/") && !(needs("tenant_token") && needs("operator_token")) {
            problem(format!("{at}: not tenant_token or operator_token security"));
        }
        // Answers made before routing, and to a body that stops arriving.
        for (status, code) in [
            ("400", "malformed_request"),
            ("414", "uri_too_long"),
            ("431", "headers_too_large"),
        ] {
            if !op["responses"][status]["description"]
                .as_str()
                .is_some_and(|d| d.contains(code))
            {
                problem(format!("{at}: no {status} {code}"));
            }
        }
        if !op["requestBody"].is_null()
            && !op["responses"]["408"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("body_timeout"))
        {
            problem(format!("{at}: takes a body but lists no 408 body_timeout"));
        }
        if path.starts_with("/admin/") || path.starts_with("/t/") {
            for status in ["401", "403", "500"] {
                if op["responses"][status].is_null() {
                    problem(format!("{at}: no {status}"));
                }
            }
        }
    }
    problems
}

/// The document's (method, path) pairs against `OPERATIONS`.
fn route_problems(doc: &Value) -> Vec<String> {
    let documented: BTreeSet<(String, String)> = operations(doc)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let expected: BTreeSet<(String, String)> = OPERATIONS
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let mut problems = Vec::new();
    for (method, path) in expected.difference(&documented) {
        problems.push(format!("{method} {path} is not documented"));
    }
    for (method, path) in documented.difference(&expected) {
        problems.push(format!(
            "{method} {path} is documented but not listed in tests/openapi.rs"
        ));
    }
    problems
}

#[tokio::test]
async fn the_served_document_is_valid_openapi_3_1() {
    let server = Server::start().await;
    let doc = document(&server).await;
    let found = problems(&doc);
    assert!(found.is_empty(), "{}", found.join("\n"));
    assert_eq!(doc["info"]["title"], "Cairn");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    // The checks do catch a broken document.
    let mut broken = doc.clone();
    let read = broken["paths"]["/t/{tenant}/streams/{stream}"]["get"]
        .as_object_mut()
        .unwrap();
    read["parameters"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["name"] != "stream");
    read["responses"]["404"]["content"]["application/json"]["schema"]["$ref"] =
        "#/components/schemas/Nowhere".into();
    read["responses"]["200"]["content"]["application/json"]
        .as_object_mut()
        .unwrap()
        .remove("schema");
    let found = problems(&broken).join("\n");
    for expected in [
        "path parameter {stream} is not declared",
        "$ref #/components/schemas/Nowhere does not resolve",
        "GET /t/{tenant}/streams/{stream} → 200: application/json has no schema",
        "→ 404: not the ErrorBody shape",
    ] {
        assert!(found.contains(expected), "{expected:?} not in:\n{found}");
    }
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_served() {
    let server = Server::start().await;
    let doc = document(&server).await;
    let found = route_problems(&doc);
    assert!(found.is_empty(), "{}", found.join("\n"));

    // Every documented route answers (something other than "no such route").
    for (method, path) in OPERATIONS {
        let (status, body) = body_of(
            server
                .send(
                    method.to_uppercase().parse().unwrap(),
                    &concrete(path),
                    server.admin(),
                    None,
                )
                .await,
        )
        .await;
        assert_ne!(body["error"]["message"], "no such route", "{method} {path}");
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
    // No method beside the documented ones answers on a documented path.
    let paths: BTreeSet<&str> = OPERATIONS.iter().map(|(_, p)| *p).collect();
    for path in paths {
        for method in ["get", "put", "post", "delete", "patch"] {
            if OPERATIONS.contains(&(method, path)) {
                continue;
            }
            let (status, body) = body_of(
                server
                    .send(
                        Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                        &concrete(path),
                        server.admin(),
                        None,
                    )
                    .await,
            )
            .await;
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} answers but is not documented: {body}"
            );
        }
    }

    // And the checks catch a route that lost its documentation.
    let mut undocumented = doc.clone();
    undocumented["paths"]["/t/{tenant}/import"]
        .as_object_mut()
        .unwrap()
        .remove("post");
    assert_eq!(
        route_problems(&undocumented),
        ["post /t/{tenant}/import is not documented"]
    );
}

/// The router is built from `routes!` alone: a route added any other way would be
/// served without documentation.
#[test]
fn every_route_is_added_with_its_documentation() {
    let router = include_str!("../host/src/api/mod.rs");
    for undocumented in [
        ".route(",
        ".route_service(",
        ".nest(",
        ".nest_service(",
        ".merge(",
        "Router::new(",
    ] {
        assert!(
            !router.contains(undocumented),
            "host/src/api/mod.rs uses `{undocumented}`: add routes with `.routes(routes!(handler))`, \
             which documents them"
        );
    }
    assert!(router.contains(".routes(routes!("));
}

#[tokio::test]
async fn the_schemas_carry_the_contract() {
    let server = Server::start().await;
    let doc = document(&server).await;
    let commands = "/t/{tenant}/aggregates/{name}/{id}/commands";

    // The command body: `type` required, the rest optional, nothing else accepted.
    let command = request_schema(&doc, "post", commands);
    assert_eq!(required(command), BTreeSet::from(["type"]));
    assert_eq!(
        properties(command),
        BTreeSet::from([
            "type",
            "payload",
            "expected_version",
            "command_id",
            "metadata"
        ])
    );
    assert_eq!(command["additionalProperties"], false);
    assert_eq!(command["properties"]["type"]["minLength"], 1);
    assert_eq!(command["properties"]["type"]["maxLength"], 200);
    let expected_version = |schema: &Value| -> Vec<Value> {
        let forms = non_null(&doc, &schema["properties"]["expected_version"]);
        forms["oneOf"]
            .as_array()
            .expect("expected_version is one of several forms")
            .iter()
            .map(|form| resolve(&doc, form).clone())
            .collect()
    };
    for forms in [
        expected_version(command),
        expected_version(request_schema(&doc, "post", "/t/{tenant}/streams/{stream}")),
    ] {
        let modes = forms
            .iter()
            .find(|f| has_type(f, "string"))
            .expect("a string mode");
        assert_eq!(
            modes["enum"],
            serde_json::json!(["any", "no_stream", "stream_exists"])
        );
        let number = forms
            .iter()
            .find(|f| has_type(f, "integer"))
            .expect("a version number");
        assert_eq!(number["minimum"], 0);
    }
    let ran = operation(&doc, "post", commands);
    let bad_request = ran["responses"]["400"]["description"].as_str().unwrap();
    assert!(bad_request.contains("`invalid_command`"), "{bad_request}");
    assert!(bad_request.contains("`invalid_body`"), "{bad_request}");
    let conflict = ran["responses"]["409"]["description"].as_str().unwrap();
    for code in [
        "wrong_expected_version",
        "idempotency_conflict",
        "not_active",
    ] {
        assert!(conflict.contains(&format!("`{code}`")), "{conflict}");
    }
    let answered = response_schema(&doc, "post", commands, "200");
    assert!(has_type(&answered["properties"]["position"], "integer"));

    // The append body.
    let append = request_schema(&doc, "post", "/t/{tenant}/streams/{stream}");
    assert_eq!(required(append), BTreeSet::from(["events"]));
    assert_eq!(append["properties"]["events"]["minItems"], 1);
    assert_eq!(append["properties"]["events"]["maxItems"], 1000);
    let event = resolve(&doc, &append["properties"]["events"]["items"]);
    assert_eq!(required(event), BTreeSet::from(["type", "data"]));

    // A recorded event.
    let recorded = schema(&doc, "Event");
    assert_eq!(
        required(recorded),
        BTreeSet::from([
            "event_id",
            "stream_id",
            "version",
            "position",
            "type",
            "data",
            "metadata",
            "recorded_at"
        ])
    );
    for field in ["version", "position"] {
        assert!(
            has_type(&recorded["properties"][field], "integer"),
            "{field}"
        );
    }

    // Query parameters are typed.
    for name in ["after", "limit"] {
        let p = parameter(&doc, "get", "/t/{tenant}/events", name);
        assert_eq!(p["in"], "query");
        assert_ne!(p["required"], true);
        assert!(
            has_type(non_null(&doc, &p["schema"]), "integer"),
            "{name}: {p}"
        );
    }
    let direction = parameter(&doc, "get", "/t/{tenant}/streams/{stream}", "direction");
    assert_eq!(
        non_null(&doc, &direction["schema"])["enum"],
        serde_json::json!(["forward", "backward"])
    );
    let version = parameter(
        &doc,
        "get",
        "/t/{tenant}/plugins/{name}/versions/{version}",
        "version",
    );
    assert!(has_type(&version["schema"], "integer"));

    // Projections, in the form with builds.
    let projection = response_schema(&doc, "get", "/t/{tenant}/projections/{name}", "200");
    assert_eq!(
        required(projection),
        BTreeSet::from(["name", "active_version", "active_build", "versions"])
    );
    let build = resolve(&doc, &projection["properties"]["versions"]["items"]);
    for field in ["version", "build", "position", "lag"] {
        assert!(has_type(&build["properties"][field], "integer"), "{field}");
    }
    assert_eq!(
        resolve(&doc, &build["properties"]["status"])["enum"],
        serde_json::json!(["building", "active", "retired", "failed"])
    );
    let promote = "/t/{tenant}/projections/{name}/promote";
    let promote_body = request_schema(&doc, "post", promote);
    assert_eq!(
        properties(promote_body),
        BTreeSet::from(["version", "build"])
    );
    assert_eq!(promote_body["minProperties"], 1);
    let promoted = response_schema(&doc, "post", promote, "200");
    assert_eq!(
        required(promoted),
        BTreeSet::from(["name", "active_version", "active_build"])
    );
    let failed = operation(&doc, "post", promote)["responses"]["409"]["description"]
        .as_str()
        .unwrap();
    assert!(failed.contains("`failed_version`"), "{failed}");
    let rebuilding = response_schema(
        &doc,
        "post",
        "/t/{tenant}/projections/{name}/rebuild",
        "202",
    );
    assert_eq!(
        required(rebuilding),
        BTreeSet::from(["name", "version", "build", "status"])
    );
    let delete = "/t/{tenant}/projections/{name}/builds/{build}";
    let deleted = response_schema(&doc, "delete", delete, "200");
    assert_eq!(
        required(deleted),
        BTreeSet::from(["name", "build", "deleted"])
    );
    let active = operation(&doc, "delete", delete)["responses"]["409"]["description"]
        .as_str()
        .unwrap();
    assert!(active.contains("`active_build`"), "{active}");

    // The one error shape.
    let error = schema(&doc, "ErrorBody");
    assert_eq!(required(error), BTreeSet::from(["error"]));
    let detail = resolve(&doc, &error["properties"]["error"]);
    assert_eq!(
        required(detail),
        BTreeSet::from(["code", "message", "request_id"])
    );
    assert_eq!(detail["additionalProperties"], true);

    // An import's lines.
    let line = schema(&doc, "ImportLine");
    assert_eq!(required(line), BTreeSet::from(["stream", "type", "data"]));
    assert_eq!(
        operation(&doc, "post", "/t/{tenant}/import")["requestBody"]["content"]["application/x-ndjson"]
            ["schema"]["type"],
        "string"
    );

    // Tenant limits are typed and bounded.
    let limits = schema(&doc, "Limits");
    assert!(has_type(&limits["properties"]["max_body_bytes"], "integer"));
    assert_eq!(limits["properties"]["max_concurrent_calls"]["maximum"], 48);
}
