//! The one error shape, `{"error": {"code", "message", "field"?}}`, and the extractors that use it
//! instead of axum's plain-text rejections.
//!
//! The status tells what kind of mistake it was:
//! - 400: the URL is wrong — a path id that is not a UUID, a bad query parameter.
//! - 401: no API key, or an unknown one. 403: the admin key on a tenant-only endpoint.
//! - 404: no such route, or no such request *for this tenant* (another tenant's id is 404 too).
//! - 405: the route exists but not with this method.
//! - 409: the change is not legal in the request's current status.
//! - 413: the body is larger than the limit. 415: the body is not `application/json`.
//! - 422: the body is wrong in any way — not JSON, wrong types, unknown or missing fields, values
//!   that fail validation, an idempotency key reused with another body.
//! - 503: a backend is unavailable; the request may be retried as it is.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use herald_core::service::ServiceError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use uuid::Uuid;

/// What went wrong, for programs. Serialised in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 422: the body is not JSON (or could not be read).
    MalformedJson,
    /// 422: a body field (or the `Idempotency-Key` header) is missing, unknown, of the wrong
    /// type or has an invalid value.
    InvalidField,
    /// 400: a query parameter is unknown or has a wrong value.
    InvalidQuery,
    /// 400: a path parameter is malformed.
    InvalidPath,
    /// 401: no API key, or an unknown one.
    Unauthorized,
    /// 403: the admin key on a tenant-only endpoint.
    Forbidden,
    /// 404: no such route, request, or (for `/metrics`) metrics are off.
    NotFound,
    /// 405: the route exists, not with this method.
    MethodNotAllowed,
    /// 409: the change is not legal in the request's current status.
    Conflict,
    /// 422: the `Idempotency-Key` was used before with another body.
    IdempotencyKeyReused,
    /// 413: the body is too large.
    PayloadTooLarge,
    /// 415: the body is not JSON by its content type.
    UnsupportedMediaType,
    /// 503: a backend is unavailable.
    Unavailable,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::MalformedJson,
        ErrorCode::InvalidField,
        ErrorCode::InvalidQuery,
        ErrorCode::InvalidPath,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Unavailable,
    ];

    /// The wire name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// An error answer. Build one with the constructors; the response is JSON with the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For people: says what is wrong, naming the field.
    pub message: String,
    /// The offending field when there is one: a body path (`recipient`, `items[3].channel`),
    /// a query parameter (`limit`), a path parameter (`id`) or a header (`Idempotency-Key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    /// 422: the body (or a header that belongs with it) has a wrong value in `field`.
    pub fn invalid_field(field: impl Into<String>, message: impl std::fmt::Display) -> ApiError {
        let field = field.into();
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidField,
            format!("{field}: {message}"),
        )
        .with_field(field)
    }

    /// 400: the query parameter `field` is wrong.
    pub fn invalid_query(field: impl Into<String>, message: impl std::fmt::Display) -> ApiError {
        let field = field.into();
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidQuery,
            format!("{field}: {message}"),
        )
        .with_field(field)
    }

    pub fn not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "message request not found",
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    /// 503. The cause goes to the log, not to the client: backend errors can name hosts.
    pub fn unavailable(cause: &str) -> ApiError {
        tracing::warn!(error = %cause, "backend unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "a backend is unavailable; retry later",
        )
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound => ApiError::not_found(),
            ServiceError::Invalid { field, message } => ApiError::invalid_field(field, message),
            ServiceError::Conflict(m) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, m)
            }
            e @ ServiceError::IdempotencyMismatch { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::IdempotencyKeyReused,
                e.to_string(),
            )
            .with_field("Idempotency-Key"),
            ServiceError::Unavailable(m) => ApiError::unavailable(&m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                field: self.field,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        match self.status {
            // RFC 6750: a 401 tells the client which scheme to use.
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"herald\""),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// Fallback for unknown routes: 404 in the JSON shape.
pub async fn route_not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!("no route {method} {}", uri.path()),
    )
}

/// Fallback for a known route with another method: 405 in the JSON shape (axum adds `Allow`).
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        format!("{} does not allow {method}", uri.path()),
    )
}

// --- extractors ------------------------------------------------------------------------------

/// A JSON body, parsed into `T`. Checks, in order: the content type (415), the size (413),
/// the JSON syntax (422 `malformed_json`) and then the shape of `T` (422 `invalid_field`, naming
/// the field).
pub struct JsonBody<T>(pub T);

/// Like [`JsonBody`], and also the SHA-256 of the body's canonical JSON (object keys sorted, no
/// insignificant whitespace), so two bodies that mean the same hash the same.
pub struct HashedJson<T> {
    pub value: T,
    pub sha256_hex: String,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let value = read_json(req, state).await?;
        Ok(JsonBody(deserialize_object(value, "")?))
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for HashedJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let value = read_json(req, state).await?;
        let sha256_hex = hex_sha256(&canonical_json(&value));
        Ok(HashedJson {
            value: deserialize_object(value, "")?,
            sha256_hex,
        })
    }
}

async fn read_json<S: Send + Sync>(req: Request, state: &S) -> Result<serde_json::Value, ApiError> {
    if !is_json(req.headers().get(header::CONTENT_TYPE)) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "the request body must be JSON: send Content-Type: application/json",
        ));
    }
    let bytes = Bytes::from_request(req, state)
        .await
        .map_err(body_rejection)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::MalformedJson,
            format!("the request body is not valid JSON: {e}"),
        )
    })
}

/// `application/json` or any `application/*+json`, with any parameters (`charset=utf-8`).
fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", sub)) => sub == "json" || sub.ends_with("+json"),
        _ => false,
    }
}

fn body_rejection(r: BytesRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            "the request body is larger than this endpoint accepts",
        )
    } else {
        // The client went away or sent a broken chunked body: nothing was read, nothing written.
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::MalformedJson,
            format!("the request body could not be read: {}", r.body_text()),
        )
    }
}

/// Deserializes `T` from a JSON object found at `at` in the body (`""` for the body itself,
/// `items[3]` for a batch item), naming the offending field on error.
///
/// Every Herald body is an object. The check matters: serde's derived structs also accept a
/// JSON array of their fields in order, which no client means and the schema does not allow.
pub(crate) fn deserialize_object<T: DeserializeOwned>(
    value: serde_json::Value,
    at: &str,
) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(if at.is_empty() {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InvalidField,
                "request body: must be a JSON object",
            )
        } else {
            ApiError::invalid_field(at, "must be a JSON object")
        });
    }
    deserialize(value).map_err(|mut e| {
        if !at.is_empty() {
            let field = match e.field.take() {
                Some(f) => format!("{at}.{f}"),
                None => at.to_owned(),
            };
            let detail = e
                .message
                .split_once(": ")
                .map_or(e.message.as_str(), |(_, d)| d);
            e.message = format!("{field}: {detail}");
            e.field = Some(field);
        }
        e
    })
}

fn deserialize<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut field = e.path().to_string();
        let message = e.inner().to_string();
        // serde reports a missing field at its parent's path, naming it only in the message
        // (`missing field `recipient``); put it in the path where clients look for it. (An
        // unknown field is already in the path.)
        if let Some(name) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            field = if field == "." {
                name.to_owned()
            } else {
                format!("{field}.{name}")
            };
        }
        if field == "." {
            // The body as a whole has the wrong shape (an array instead of an object...).
            return ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InvalidField,
                format!("request body: {message}"),
            );
        }
        ApiError::invalid_field(field, message)
    })
}

/// The JSON text of `v` with every object's keys sorted, whatever map type serde_json was built
/// with (`preserve_order` keeps insertion order; this does not depend on it).
pub fn canonical_json(v: &serde_json::Value) -> String {
    fn sorted(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let by_key: BTreeMap<&String, &serde_json::Value> = m.iter().collect();
                serde_json::Value::Object(
                    by_key
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

fn hex_sha256(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The `{id}` of a route: a hyphenated UUID (`format: uuid`), else 400 `invalid_path`.
pub struct IdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let bad = |detail: String| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidPath,
                format!("id: {detail}"),
            )
            .with_field("id")
        };
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|r| bad(r.body_text()))?;
        // Only the canonical hyphenated form: one resource, one URL.
        match Uuid::try_parse(&raw) {
            Ok(id) if raw.len() == 36 => Ok(IdPath(id)),
            _ => Err(bad(format!(
                "{raw:?} is not a UUID (expected the hyphenated form, e.g. 0190c4f2-7b1e-7c3a-9d2e-5f6a7b8c9d0e)"
            ))),
        }
    }
}

/// Query parameters parsed into `T`, 400 `invalid_query` when they do not fit.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|r: QueryRejection| {
                let text = r.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidQuery,
                    format!("query string: {detail}"),
                )
            })
    }
}

// --- OpenAPI descriptions of the error responses ---------------------------------------------

/// Declares a type whose `IntoResponses` documents one error status with the [`ErrorBody`]
/// shape, so each `#[utoipa::path]` lists exactly the errors its handler can return.
macro_rules! error_doc {
    ($(#[$doc:meta])* $name:ident, $status:literal, $description:literal) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
                error_response($status, $description)
            }
        }
    };
}

fn error_response(
    status: u16,
    description: &str,
) -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    if status == 401 {
        response = response.header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .description(Some("`Bearer realm=\"herald\"`"))
                .build(),
        );
    }
    BTreeMap::from([(status.to_string(), RefOr::T(response.build()))])
}

error_doc!(
    /// 400 `invalid_path`: the id in the path is not a UUID.
    BadPath,
    400,
    "`invalid_path`: the id in the path is not a UUID"
);
error_doc!(
    /// 400 `invalid_query`: a query parameter is unknown or has a wrong value.
    BadQuery,
    400,
    "`invalid_query`: a query parameter is unknown or has a wrong value"
);
error_doc!(
    /// 401 `unauthorized`.
    Unauthorized,
    401,
    "`unauthorized`: no API key, or an unknown one"
);
error_doc!(
    /// 403 `forbidden`: the admin key cannot act as a tenant.
    Forbidden,
    403,
    "`forbidden`: this endpoint needs a tenant API key; the admin key only reads the queue and manages dead letters"
);
error_doc!(
    /// 404 `not_found` for a request id.
    NotFound,
    404,
    "`not_found`: no such message request for this tenant"
);
error_doc!(
    /// 409 `conflict`.
    Conflict,
    409,
    "`conflict`: the change is not legal in the request's current status, or the request changed concurrently"
);
error_doc!(
    /// 413 `payload_too_large`.
    PayloadTooLarge,
    413,
    "`payload_too_large`: the body is larger than this endpoint accepts"
);
error_doc!(
    /// 415 `unsupported_media_type`.
    UnsupportedMediaType,
    415,
    "`unsupported_media_type`: the body must be sent as `application/json`"
);
error_doc!(
    /// 422 for a body that cannot be used.
    InvalidBody,
    422,
    "`malformed_json`: the body is not JSON; `invalid_field`: a field is missing, unknown, of the wrong type or has an invalid value (`field` names it)"
);
error_doc!(
    /// 422 on create: also an idempotency key reused with another body.
    InvalidCreate,
    422,
    "`malformed_json`: the body is not JSON; `invalid_field`: a field is missing, unknown, of the wrong type or has an invalid value (`field` names it); `idempotency_key_reused`: the `Idempotency-Key` was used before with a different body"
);
error_doc!(
    /// 503 `unavailable`.
    Unavailable,
    503,
    "`unavailable`: a backend is unavailable; retry later"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_ignores_key_order_and_whitespace() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [1, 2], "x": null}}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a":{"x":null,"y":[1,2]},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&b), r#"{"a":{"x":null,"y":[1,2]},"b":1}"#);
    }

    #[test]
    fn error_codes_serialise_as_their_names() {
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }

    #[test]
    fn service_errors_map_to_statuses() {
        let check = |e: ServiceError, status: StatusCode, code: &str| {
            let api = ApiError::from(e);
            assert_eq!(api.status, status, "{api:?}");
            assert_eq!(api.code, code, "{api:?}");
        };
        check(ServiceError::NotFound, StatusCode::NOT_FOUND, "not_found");
        check(
            ServiceError::Invalid {
                field: "recipient".into(),
                message: "must not be empty".into(),
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        );
        check(
            ServiceError::Conflict("CANCELLED".into()),
            StatusCode::CONFLICT,
            "conflict",
        );
        check(
            ServiceError::IdempotencyMismatch { key: "k".into() },
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
        );
        check(
            ServiceError::Unavailable("redis://secret-host:6379 refused".into()),
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
        );
        // A backend's message never reaches the client.
        let api = ApiError::from(ServiceError::Unavailable("secret-host".into()));
        assert!(!api.message.contains("secret-host"));
        let response = api.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let response = ApiError::unauthorized("no").into_response();
        assert!(
            response.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }

    #[test]
    fn json_content_types() {
        let check = |ct: &str, ok: bool| {
            assert_eq!(
                is_json(Some(&HeaderValue::from_str(ct).unwrap())),
                ok,
                "{ct}"
            );
        };
        check("application/json", true);
        check("application/json; charset=utf-8", true);
        check("Application/JSON", true);
        check("application/merge-patch+json", true);
        check("text/plain", false);
        check("application/jsonx", false);
        check("multipart/form-data", false);
        assert!(!is_json(None));
    }

    #[test]
    fn field_paths_name_missing_and_unknown_fields() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Item {
            recipient: String,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Batch {
            items: Vec<Item>,
        }
        let check = |json: serde_json::Value, field: Option<&str>| {
            let e = deserialize_object::<Batch>(json, "").unwrap_err();
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(e.code, "invalid_field");
            assert_eq!(e.field.as_deref(), field, "{e:?}");
        };
        check(
            serde_json::json!({"items": [{}]}),
            Some("items[0].recipient"),
        );
        check(
            serde_json::json!({"items": [{"recipient": "a"}, {"recipient": 1}]}),
            Some("items[1].recipient"),
        );
        check(
            serde_json::json!({"items": [{"recipient": "a", "x": 1}]}),
            Some("items[0].x"),
        );
        check(serde_json::json!({}), Some("items"));
        check(serde_json::json!([]), None);
        // Not the positional form serde would otherwise accept for a struct.
        let e = deserialize_object::<Item>(serde_json::json!(["r"]), "").unwrap_err();
        assert_eq!(e.code, "invalid_field");
        assert_eq!(e.field, None);
        let e = deserialize_object::<Item>(serde_json::json!(["r"]), "items[2]").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("items[2]"));
        let e = deserialize_object::<Item>(serde_json::json!({"recipient": 1}), "items[2]")
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("items[2].recipient"));
        assert!(
            e.message.starts_with("items[2].recipient: invalid type"),
            "{}",
            e.message
        );
    }
}
