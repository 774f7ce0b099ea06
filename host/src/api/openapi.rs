//! `/openapi.json`, generated: the paths, parameters, bodies and answers come from each
//! handler's `#[utoipa::path]` and the types it takes and answers, collected by the same
//! `routes!` calls that route them (`api::routes`), so a route cannot be served without
//! being documented. This file adds what is the same for every operation, decided by
//! the route's place (every `/admin/…` handler takes `Operator`, every `/t/{tenant}/…`
//! handler `TenantAccess`): the security schemes, and the error answers any request
//! can get (401, 403, malformed paths, queries and bodies, 500), each in the one error
//! shape (`schemas::ErrorBody`) and listing its codes.

use std::sync::LazyLock;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, Content, InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder, PathItem,
    Ref, RefOr, Response,
};
use utoipa::{PartialSchema, ToSchema};

use super::import::ImportLine;
use super::schemas::{ErrorBody, ErrorDetail, ExpectedVersionSchema};

const OPERATOR: &str = "operator_token";
const TENANT: &str = "tenant_token";

/// The document's fixed parts: info, tags, security schemes, the error shape.
pub fn base() -> OpenApi {
    let bearer = |description: &str| {
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(description))
                .build(),
        )
    };
    let tag = |name: &str, description: &str| {
        TagBuilder::new()
            .name(name)
            .description(Some(description))
            .build()
    };
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Cairn")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION))
                .license(Some(LicenseBuilder::new().name("Apache-2.0").build()))
                .build(),
        )
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme(
                    OPERATOR,
                    bearer(
                        "The operator token (`CAIRN_ADMIN_TOKEN`, or generated at first start \
                         into `<data-dir>/admin-token`): `/admin/…`, every tenant's routes, \
                         and the per-tenant series of `/metrics`.",
                    ),
                )
                .security_scheme(
                    TENANT,
                    bearer(
                        "A tenant's token, answered when the tenant is created or its token \
                         rotated: `/t/{that tenant}/…` only.",
                    ),
                )
                .schema(ErrorBody::name(), ErrorBody::schema())
                .schema(ErrorDetail::name(), ErrorDetail::schema())
                .schema(ExpectedVersionSchema::name(), ExpectedVersionSchema::schema())
                // The lines of an NDJSON import (its body is text, so nothing refers to it).
                .schema(ImportLine::name(), ImportLine::schema())
                .build(),
        ))
        .tags(Some([
            tag("operations", "Liveness, readiness, metrics and this document."),
            tag("tenants", "The operator creates, lists, changes and deletes tenants."),
            tag(
                "plugins",
                "Uploads of WebAssembly components, their verification by replay, activation and rollback.",
            ),
            tag("aggregates", "Commands, and aggregate state now or as it was."),
            tag("streams", "Raw appends and reads, several streams at once, bulk import."),
            tag("log", "The tenant's log in position order, paged or live."),
            tag(
                "projections",
                "Projection builds, promotion and rollback, rebuilds, document reads.",
            ),
            tag(
                "console",
                "The web console's page and files (docs/console.md); it calls the routes above.",
            ),
        ]))
        .build()
}

const DESCRIPTION: &str = "Event sourcing with tenants' domain logic in WebAssembly components: \
aggregates decide commands, projections fold the log into documents, upcasters show old \
events in new shapes.\n\n\
JSON in and out. `/admin/…` takes the operator's bearer token; `/t/{tenant}/…` the \
tenant's own token or the operator's. Every error, on every route (unknown routes and \
methods too), is `{\"error\": {\"code\", \"message\", \"request_id\", ...details}}` (the \
`ErrorBody` schema); each response lists the codes it can carry. Every answer has an \
`x-request-id` header. Past the server's connection cap any request may get 503 \
`too_many_connections` with `Retry-After`.\n\n\
This document is generated from the server's handlers; the reference with the reasons \
is docs/api.md.";

/// The whole document, as `/openapi.json` serves it.
pub fn document() -> OpenApi {
    let mut document = super::routes().into_openapi();
    for (path, item) in document.paths.paths.iter_mut() {
        for operation in operations(item) {
            complete(path, operation);
        }
    }
    document
}

/// The document as JSON, made once.
pub fn document_json() -> &'static str {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        document()
            .to_pretty_json()
            .expect("the OpenAPI document serializes")
    });
    &JSON
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// Adds to one operation what follows from its route: who may call it, and the errors
/// every request of its kind can get.
fn complete(path: &str, operation: &mut Operation) {
    let admin = path.starts_with("/admin/");
    let tenant = path.starts_with("/t/{tenant}");
    operation.security = if admin {
        Some(vec![SecurityRequirement::new(
            OPERATOR,
            Vec::<String>::new(),
        )])
    } else if tenant {
        Some(vec![
            SecurityRequirement::new(TENANT, Vec::<String>::new()),
            SecurityRequirement::new(OPERATOR, Vec::<String>::new()),
        ])
    } else if path == "/metrics" {
        // Optional: the operator sees more.
        Some(vec![
            SecurityRequirement::default(),
            SecurityRequirement::new(OPERATOR, Vec::<String>::new()),
        ])
    } else {
        None
    };
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let in_path = parameters
        .iter()
        .any(|p| p.parameter_in == ParameterIn::Path);
    let in_query = parameters
        .iter()
        .any(|p| p.parameter_in == ParameterIn::Query);
    let json_body = operation
        .request_body
        .as_ref()
        .is_some_and(|body| body.content.contains_key("application/json"));
    // The import documents its own 408 (with how far it got); others get the common one.
    let timed = operation
        .responses
        .responses
        .get("408")
        .is_some_and(|r| matches!(r, RefOr::T(r) if r.description.contains("body_timeout")));
    let takes_body = operation.request_body.is_some();
    let mut add = |status: &str, line: &str| {
        let responses = &mut operation.responses.responses;
        let entry = responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(Response::new("")));
        if let RefOr::T(response) = entry {
            if response.description.is_empty() {
                response.description = line.to_owned();
            } else {
                response.description = format!("{}\n{line}", response.description);
            }
        }
    };
    if in_path {
        add(
            "400",
            "`invalid_path`: a path segment that is not UTF-8 once percent-decoded, does not \
             parse, or holds U+0000",
        );
        add("400", "`bad_request`: an empty path segment");
    }
    if in_query {
        add(
            "400",
            "`invalid_query`: a query parameter that does not parse (a negative or non-numeric \
             number, an unknown value), or text holding U+0000",
        );
    }
    if json_body {
        add(
            "400",
            "`invalid_body`: the body is not JSON, not of this shape (a missing or unknown \
             field, a wrong type), or broke off on the wire",
        );
        add(
            "413",
            "`too_large`: the body is larger than the tenant's `max_body_bytes` (1 MiB where \
             no tenant is named)",
        );
    }
    if tenant {
        add(
            "400",
            "`bad_request`: with the operator token, an invalid tenant id",
        );
    }
    if admin || tenant {
        add(
            "401",
            "`unauthorized`: no `Authorization: Bearer <token>`, or an unknown token",
        );
    }
    if admin {
        add(
            "403",
            "`forbidden`: a tenant's token; this route needs the operator's",
        );
    }
    if tenant {
        add("403", "`forbidden`: the token of another tenant");
        add("404", "`not_found`: no such tenant (operator token)");
    }
    if tenant {
        add(
            "429",
            "`over_limit`: past the tenant's `requests_per_second` or `max_concurrent_requests` \
             (every request made with its token counts, whatever its route), or on an import \
             its `max_concurrent_imports`; `limit` names the limit; with `Retry-After`",
        );
    }
    if admin || tenant {
        add(
            "503",
            "`store_unavailable`: the database is down, restarting, frozen or refused for a \
             passing reason; with `Retry-After`. Retry (a command with the same \
             `command_id` is applied at most once)",
        );
        add(
            "507",
            "`storage_full`: no room to write on the server's or the database's disk; \
             nothing was stored; with `Retry-After`. Retry once space is freed",
        );
    }
    // Answered before any route, so every operation can get them.
    add(
        "400",
        "`malformed_request`: a request head that is not valid HTTP/1.1 (its request \
         line, a header, `Content-Length`); the connection is closed",
    );
    add(
        "414",
        "`uri_too_long`: a URI longer than 65,534 bytes; the connection is closed",
    );
    add(
        "431",
        "`headers_too_large`: more than 100 header fields, or a head over 408 KiB; the \
         connection is closed",
    );
    if takes_body && !timed {
        add(
            "408",
            "`body_timeout`: the body stopped arriving, or came too slowly \
             (`cairn serve --body-read-timeout`); the connection is closed",
        );
    }
    add(
        "500",
        "`internal`: a bug; the message is generic and the server's log has the cause \
         under the `request_id`",
    );
    for (status, response) in operation.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        response.headers.insert(
            "x-request-id".to_owned(),
            HeaderBuilder::new()
                .schema(String::schema())
                .description(Some(
                    "The request's id: the caller's own when it is 1–64 characters of \
                     `[A-Za-z0-9._-]`, else a fresh one; on every server log line of it.",
                ))
                .build(),
        );
        if !(status.starts_with('4') || status.starts_with('5')) {
            continue;
        }
        // One code a line, as a list.
        response.description = response
            .description
            .lines()
            .map(|line| {
                if line.starts_with('`') {
                    format!("- {line}")
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        response.content.insert(
            "application/json".to_owned(),
            Content::new(Some(Ref::from_schema_name(ErrorBody::name()))),
        );
    }
}
