//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` attributes and the
//! types' `ToSchema` derives, so it cannot drift from the code: every status a handler can
//! return is listed on its operation (see [`crate::error`] for the error responses), and the
//! integration tests check that every route of [`crate::router`] is in it.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::ApiState;
use crate::{dead_letters, error, health, message_requests, queue};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "Event-sourced message dispatch. Authenticate with `Authorization: Bearer <API key>`; the key decides the tenant. Errors are `{\"error\": {\"code\", \"message\", \"field\"?}}`: 400 for a bad path or query, 422 for any problem with a body.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        message_requests::create,
        message_requests::create_batch,
        message_requests::list,
        message_requests::get_one,
        message_requests::patch,
        message_requests::events,
        dead_letters::list,
        dead_letters::requeue,
        queue::info,
        health::live,
        health::ready,
        health::metrics,
        openapi_json,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail, error::ErrorCode)),
    modifiers(&BearerAuth),
    tags(
        (name = "message-requests", description = "Create, read, change and audit message requests"),
        (name = "dead-letters", description = "Requests Herald gave up on, and their requeue"),
        (name = "queue", description = "Job queue statistics"),
        (name = "health", description = "Probes, metrics and this document"),
    ),
)]
struct ApiDoc;

/// The `bearer` security scheme the authenticated operations name.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as JSON, built once: it never changes while the process runs.
fn openapi_text() -> Arc<str> {
    static TEXT: OnceLock<Arc<str>> = OnceLock::new();
    TEXT.get_or_init(|| {
        // Serialising a document of plain maps and strings cannot fail; an empty object would
        // only mean no documentation, never a failed request.
        openapi()
            .to_json()
            .unwrap_or_else(|_| "{}".to_owned())
            .into()
    })
    .clone()
}

pub(crate) fn routes() -> Router<ApiState> {
    Router::new().route("/openapi.json", get(openapi_json))
}

/// This OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "health",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)),
)]
pub(crate) async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi_text().to_string(),
    )
}
