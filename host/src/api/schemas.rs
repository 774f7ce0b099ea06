//! Types that exist only to describe the API in `/openapi.json`: the error shape, the
//! forms of `expected_version`, the path parameters of each route family, and bodies
//! a handler does not build from a type of its own. Nothing here is constructed; the
//! handlers' own request and view types (`views.rs`, the handler files) describe
//! themselves.
#![allow(dead_code)]

use serde::Serialize;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{KnownFormat, RefOr, SchemaFormat};
use utoipa::{IntoParams, PartialSchema, ToSchema};

/// Every error, on every route: `{"error": {"code", "message", "request_id", ...details}}`.
#[derive(ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// One error. `code` is machine-readable and stable (each response lists the codes it
/// can carry); `message` is for a person; `request_id` names the request in the
/// server's log. Some codes carry details beside them (`current_version`,
/// `domain_code`, `reason`, `append`, `line`…).
pub struct ErrorDetail;

impl PartialSchema for ErrorDetail {
    fn schema() -> RefOr<Schema> {
        let text = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description))
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "One error: `code` (snake_case, stable), `message` (for a person), \
                 `request_id` (the request in the server's log), and the details some \
                 codes carry beside them.",
            ))
            .property(
                "code",
                text("Machine-readable, snake_case: what went wrong.").pattern(Some("^[a-z_]+$")),
            )
            .required("code")
            .property("message", text("For a person."))
            .required("message")
            .property(
                "request_id",
                text("The request's id, also in the `x-request-id` header and on every server log line of it."),
            )
            .required("request_id")
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(true)))
            .into()
    }
}

impl ToSchema for ErrorDetail {}

/// What the writer expects of the stream: `"any"` (the default; also `null` or absent),
/// `"no_stream"` (the append creates it), `"stream_exists"`, or the version the stream
/// must be at (0 for an empty stream). When it does not hold: 409
/// `wrong_expected_version` with `current_version`.
pub struct ExpectedVersionSchema;

impl PartialSchema for ExpectedVersionSchema {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["any", "no_stream", "stream_exists"])),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .minimum(Some(0)),
            )
            .description(Some(
                "`\"any\"` (the default), `\"no_stream\"`, `\"stream_exists\"`, or the \
                 version the stream must be at (0: empty).",
            ))
            .into()
    }
}

impl ToSchema for ExpectedVersionSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "ExpectedVersion".into()
    }
}

/// A WebAssembly component's bytes.
pub struct WasmComponent;

impl PartialSchema for WasmComponent {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .content_media_type("application/wasm")
            .description(Some("A WebAssembly component (binary)."))
            .into()
    }
}

impl ToSchema for WasmComponent {}

/// `/admin/tenants/{tenant}` and every `/t/{tenant}/…` route.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TenantParams {
    /// The tenant's id, `[a-z0-9][a-z0-9-]{0,62}`. A tenant token reaches its own
    /// tenant only (another's is 403); the operator token reaches every tenant.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    tenant: String,
}

/// `/t/{tenant}/plugins/{name}…`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PluginParams {
    /// The tenant's id.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    tenant: String,
    /// The plugin's name, `[a-z0-9][a-z0-9-]{0,62}`.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    name: String,
}

/// `/t/{tenant}/plugins/{name}/versions/{version}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PluginVersionParams {
    /// The tenant's id.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    tenant: String,
    /// The plugin's name.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    name: String,
    /// The version number (from 1); not a number is 400 `bad_request`.
    #[param(minimum = 1)]
    version: u64,
}

/// `/t/{tenant}/aggregates/{name}/{id}…`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AggregateParams {
    /// The tenant's id.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    tenant: String,
    /// The aggregate plugin's name.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    name: String,
    /// The aggregate's id: printable ASCII without `/`; its stream id
    /// (`{category}-{id}`, the category being the name with `-` written `_`) is at most
    /// 200 bytes.
    #[param(pattern = "^[!-.0-~]{1,199}$")]
    id: String,
}

/// `/t/{tenant}/streams/{stream}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct StreamParams {
    /// The tenant's id.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    tenant: String,
    /// The stream id: 1 to 200 printable ASCII characters other than `/`.
    #[param(pattern = "^[!-.0-~]{1,200}$")]
    stream: String,
}

/// `/t/{tenant}/projections/{name}…`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProjectionParams {
    /// The tenant's id.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    tenant: String,
    /// The projection plugin's name.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    name: String,
}

/// `/t/{tenant}/projections/{name}/docs/{key}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DocumentParams {
    /// The tenant's id.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    tenant: String,
    /// The projection plugin's name.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    name: String,
    /// The document's key, as the projection wrote it.
    key: String,
}

/// `/t/{tenant}/projections/{name}/builds/{build}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct BuildParams {
    /// The tenant's id.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    tenant: String,
    /// The projection plugin's name.
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    name: String,
    /// The build's id (`build` in the projection's `versions`).
    #[param(minimum = 1)]
    build: u64,
}

/// Which build to serve: a plugin version (its newest build), a build, or both; at
/// least one. (Written by hand: `min_properties` on the derive comes out as
/// `maxProperties` in utoipa 5.)
pub struct PromoteRequest;

impl PartialSchema for PromoteRequest {
    fn schema() -> RefOr<Schema> {
        let id = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(1))
                .description(Some(description))
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "Which build to serve: a plugin `version` (its newest build), a `build`, or \
                 both; at least one.",
            ))
            .property("version", id("The plugin version whose build to promote."))
            .property(
                "build",
                id("The build to promote (when a version has several)."),
            )
            // No other field, and at least one: `version`, `build` or both.
            .min_properties(Some(1))
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
            .into()
    }
}

impl ToSchema for PromoteRequest {}

/// The projection after a promote.
#[derive(Serialize, ToSchema)]
pub struct Promoted {
    name: String,
    /// The plugin version now serving reads.
    active_version: u64,
    /// The build now serving reads.
    active_build: u64,
}

/// A rebuild started: a new build of the active plugin version, promoted when caught up.
#[derive(Serialize, ToSchema)]
pub struct Rebuilding {
    name: String,
    /// The plugin version being built again.
    version: u64,
    /// The new build's id.
    build: u64,
    status: Building,
}

/// Always `building`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Building {
    Building,
}

/// A build and its documents deleted.
#[derive(Serialize, ToSchema)]
pub struct DeletedBuild {
    name: String,
    build: u64,
    /// Always `true`.
    deleted: bool,
}
