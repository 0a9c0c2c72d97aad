//! `/v1/message-requests`: create (single and batch), read, list, change, and the audit trail.
//!
//! Reads of one request fold its event stream ([`Service::load`]), so a client always reads its
//! own writes; the list comes from the read models and may trail the event store by the
//! projector lag.
//!
//! [`Service::load`]: herald_core::service::Service::load

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use herald_core::state::{ListQuery, Page};
use herald_domain::command::validate_idempotency_key;
use herald_domain::{Channel, CreateRequest, MessageRequest, Patch, RecordedEvent, Status};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::{RefOr, Schema};
use uuid::Uuid;

use crate::ApiState;
use crate::auth::Tenant;
use crate::error::{
    ApiError, BadPath, BadQuery, Conflict, Forbidden, HashedJson, IdPath, InvalidBody,
    InvalidCreate, JsonBody, NotFound, PayloadTooLarge, QueryParams, Unauthorized, Unavailable,
    UnsupportedMediaType, deserialize_object,
};

/// The header that makes a create idempotent.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set (to `true`) on a create answered from an earlier request with the same idempotency key.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
/// Page size when `limit` is not given, and the largest one allowed.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;

pub(crate) fn routes(batch_body_limit: usize) -> Router<ApiState> {
    Router::new()
        .route("/v1/message-requests", post(create).get(list))
        .route(
            "/v1/message-requests/batch",
            post(create_batch).layer(axum::extract::DefaultBodyLimit::max(batch_body_limit)),
        )
        .route("/v1/message-requests/{id}", get(get_one).patch(patch))
        .route("/v1/message-requests/{id}/events", get(events))
}

// --- types ------------------------------------------------------------------------------------

/// Delivery channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Channel)]
pub enum ChannelName {
    Webhook,
    Email,
    Log,
}

impl From<Channel> for ChannelName {
    fn from(c: Channel) -> Self {
        match c {
            Channel::Webhook => ChannelName::Webhook,
            Channel::Email => ChannelName::Email,
            Channel::Log => ChannelName::Log,
        }
    }
}

/// Lifecycle status (DESIGN §1): `PENDING` → `SENT`, or `FAILED` → retried → `DEAD`;
/// `CANCELLED` by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schema(as = Status)]
pub enum StatusName {
    Pending,
    Failed,
    Sent,
    Dead,
    Cancelled,
}

impl From<Status> for StatusName {
    fn from(s: Status) -> Self {
        match s {
            Status::Pending => StatusName::Pending,
            Status::Failed => StatusName::Failed,
            Status::Sent => StatusName::Sent,
            Status::Dead => StatusName::Dead,
            Status::Cancelled => StatusName::Cancelled,
        }
    }
}

/// The statuses a client may set with `PATCH`: `PENDING` resends a `SENT`, `FAILED` or `DEAD`
/// request (a fresh round of attempts), `CANCELLED` cancels a `PENDING` or `FAILED` one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PatchStatus {
    Pending,
    Cancelled,
}

/// A message request as the API shows it: the fold of its events, without the fields only the
/// retry job uses.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = MessageRequest)]
pub struct MessageRequestView {
    pub id: Uuid,
    pub tenant: String,
    pub channel: ChannelName,
    pub recipient: String,
    pub subject: Option<String>,
    /// Any JSON value for `webhook`; a string for `email` and `log`.
    #[schema(value_type = Value)]
    pub body: serde_json::Value,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub idempotency_key: Option<String>,
    pub status: StatusName,
    /// Delivery attempts in the current round (a resend or requeue starts a new round at 0).
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Stream version of the last event applied.
    pub version: u64,
}

impl From<MessageRequest> for MessageRequestView {
    fn from(r: MessageRequest) -> Self {
        MessageRequestView {
            id: r.id,
            tenant: r.tenant,
            channel: r.channel.into(),
            recipient: r.recipient,
            subject: r.subject,
            body: r.body,
            metadata: r.metadata,
            idempotency_key: r.idempotency_key,
            status: r.status.into(),
            attempts: r.attempts,
            last_error: r.last_error,
            created_at: r.created_at,
            updated_at: r.updated_at,
            version: r.version,
        }
    }
}

/// A new message request. Its OpenAPI schema is written by hand ([`new_request_schema`]): the
/// rules depend on the channel, which a derived schema cannot say.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMessageRequest {
    pub channel: String,
    pub recipient: String,
    #[serde(default)]
    pub subject: Option<String>,
    pub body: serde_json::Value,
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

impl utoipa::PartialSchema for NewMessageRequest {
    fn schema() -> RefOr<Schema> {
        new_request_schema(true)
    }
}

impl ToSchema for NewMessageRequest {}

/// An item of a batch: a [`NewMessageRequest`] without `idempotency_key` (batches are not
/// idempotent). Only its schema exists; items are parsed as [`NewMessageRequest`].
pub struct BatchItem;

impl utoipa::PartialSchema for BatchItem {
    fn schema() -> RefOr<Schema> {
        new_request_schema(false)
    }
}

impl ToSchema for BatchItem {}

/// One variant per channel, so that a request valid by the schema is one the API accepts: a
/// `webhook` recipient is an absolute http(s) URL and its body any JSON value; an `email`
/// recipient is an e-mail address; `email` and `log` bodies are strings. (Lengths are checked
/// in UTF-8 bytes; the schema counts characters, which is the same for ASCII.)
fn new_request_schema(with_key: bool) -> RefOr<Schema> {
    use utoipa::openapi::schema::{
        AdditionalProperties, ObjectBuilder, OneOfBuilder, SchemaFormat, SchemaType, Type,
    };
    let string = || ObjectBuilder::new().schema_type(Type::String);
    let nullable = |t: Type| SchemaType::from_iter([t, Type::Null]);
    let variant = |channel: &str, recipient: ObjectBuilder, body: ObjectBuilder| {
        let mut o = ObjectBuilder::new()
            .schema_type(Type::Object)
            .title(Some(channel))
            .property("channel", string().enum_values(Some([channel])))
            .required("channel")
            .property(
                "recipient",
                recipient.min_length(Some(1)).max_length(Some(2048)),
            )
            .required("recipient")
            .property(
                "subject",
                ObjectBuilder::new()
                    .schema_type(nullable(Type::String))
                    .description(Some("One line, at most 998 bytes (an e-mail subject)."))
                    .max_length(Some(998))
                    .pattern(Some(r"^[^\r\n]*$")),
            )
            .property("body", body)
            .required("body")
            .property(
                "metadata",
                ObjectBuilder::new()
                    .schema_type(nullable(Type::Object))
                    .description(Some("Any JSON object, kept with the request.")),
            )
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)));
        if with_key {
            o = o.property(
                "idempotency_key",
                ObjectBuilder::new()
                    .schema_type(nullable(Type::String))
                    .description(Some(
                        "Like the `Idempotency-Key` header (which wins when both are given).",
                    ))
                    .min_length(Some(1))
                    .max_length(Some(255))
                    .pattern(Some(r"^[^\u0000-\u001f\u007f-\u009f]+$")),
            );
        }
        o
    };
    let text_body = || string().description(Some("The message text."));
    OneOfBuilder::new()
        .description(Some(if with_key {
            "A new message request; the fields allowed depend on `channel`."
        } else {
            "A batch item: like a new message request, without `idempotency_key`."
        }))
        .item(variant(
            "webhook",
            string()
                .format(Some(SchemaFormat::Custom("uri".into())))
                .pattern(Some("^[Hh][Tt][Tt][Pp][Ss]?://"))
                .description(Some("An absolute http(s) URL.")),
            ObjectBuilder::new()
                .schema_type(SchemaType::AnyValue)
                .description(Some("Any JSON value, sent as the webhook's JSON body.")),
        ))
        .item(variant(
            "email",
            string()
                .format(Some(SchemaFormat::Custom("email".into())))
                .description(Some("An e-mail address.")),
            text_body(),
        ))
        .item(variant(
            "log",
            string()
                .pattern(Some(r"\S"))
                .description(Some("Any label (not only white space).")),
            text_body(),
        ))
        .into()
}

impl From<NewMessageRequest> for CreateRequest {
    fn from(r: NewMessageRequest) -> Self {
        CreateRequest {
            channel: r.channel,
            recipient: r.recipient,
            subject: r.subject,
            body: r.body,
            metadata: r.metadata.map(serde_json::Value::Object),
            idempotency_key: r.idempotency_key,
        }
    }
}

/// Up to 10,000 requests, written by background `createMessageRequests` jobs. Validated as a
/// whole: one invalid item refuses the batch (`field` says `items[i].<field>`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    // Kept as objects here and deserialized one by one, so that an error names its item.
    #[schema(value_type = Vec<BatchItem>, min_items = 1, max_items = 10000)]
    pub items: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// The ids assigned to a batch, in input order. The requests exist once their job has run
/// (usually within a second); until then a `GET` answers 404.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchAccepted {
    pub ids: Vec<Uuid>,
}

/// A change to a request. Fields may be edited while it is `PENDING` or `FAILED`, or together
/// with a resend of a `FAILED` or `DEAD` one; `status` resends or cancels. An empty patch (or one
/// that changes nothing) answers the request as it is.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchRequest {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 2048, pattern = r"\S")]
    pub recipient: Option<String>,
    #[serde(default)]
    #[schema(max_length = 998, pattern = r"^[^\r\n]*$")]
    pub subject: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub body: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    #[schema(value_type = Option<PatchStatus>)]
    pub status: Option<String>,
    /// Recorded on the `MessageRequestUpdated` event.
    #[serde(default)]
    #[schema(max_length = 998, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub reason: Option<String>,
}

impl From<PatchRequest> for Patch {
    fn from(p: PatchRequest) -> Self {
        Patch {
            recipient: p.recipient,
            subject: p.subject,
            body: p.body,
            metadata: p.metadata.map(serde_json::Value::Object),
            status: p.status,
            reason: p.reason,
        }
    }
}

/// One page of requests, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageRequestPage {
    pub items: Vec<MessageRequestView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The audit trail: every event of the request, in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct History {
    pub events: Vec<EventView>,
}

/// An event as the event store recorded it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = Event)]
pub struct EventView {
    /// Global position in the event store.
    pub position: u64,
    /// The stream: the message request id.
    pub stream_id: String,
    /// Version within the stream, from 1.
    pub version: u64,
    pub event_id: Uuid,
    /// `MessageRequestCreated`, `MessageRequestUpdated`, `MessageRequestFailed`,
    /// `MessageRequestSent` or `MessageRequestDeadLettered`.
    pub event_type: String,
    pub tenant: String,
    pub timestamp: DateTime<Utc>,
    /// The event's payload (DESIGN §1).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub metadata: EventMetadataView,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = EventMetadata)]
pub struct EventMetadataView {
    pub correlation_id: Option<String>,
    /// The event or job that caused this event.
    pub causation_id: Option<String>,
}

impl From<RecordedEvent> for EventView {
    fn from(e: RecordedEvent) -> Self {
        EventView {
            position: e.position,
            stream_id: e.stream_id,
            version: e.version,
            event_id: e.event_id,
            event_type: e.event_type,
            tenant: e.tenant,
            timestamp: e.timestamp,
            data: e.data,
            metadata: EventMetadataView {
                correlation_id: e.metadata.correlation_id,
                causation_id: e.metadata.causation_id,
            },
        }
    }
}

/// Query of `GET /v1/message-requests`. Values are taken as text and checked here, so each
/// mistake is named (`limit: must be 1 to 1000`) rather than reported by the parser.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `limit` and `cursor`, checked.
pub(crate) struct PageParams {
    pub limit: usize,
    pub before: Option<Uuid>,
}

impl PageParams {
    pub(crate) fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<PageParams, ApiError> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::invalid_query(
                        "limit",
                        format!("must be an integer from 1 to {MAX_LIMIT}, got {s:?}"),
                    ));
                }
            },
        };
        let before = cursor.map(decode_cursor).transpose()?;
        Ok(PageParams { limit, before })
    }
}

/// A cursor is the id the next page starts below, base64url-encoded: opaque to clients, so the
/// paging scheme can change without breaking them.
pub(crate) fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_cursor(s: &str) -> Result<Uuid, ApiError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| Uuid::from_slice(&b).ok())
        .ok_or_else(|| {
            ApiError::invalid_query("cursor", "is not a cursor this API returned (next_cursor)")
        })
}

pub(crate) fn page_view(page: Page) -> MessageRequestPage {
    MessageRequestPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next.map(encode_cursor),
    }
}

// --- handlers ---------------------------------------------------------------------------------

/// Create a message request.
///
/// With an `Idempotency-Key`, repeating the call with the same body answers 200 with the request
/// the first call created (bodies are compared as JSON, so whitespace and key order do not
/// matter); the same key with another body is refused with 422. Keys are kept durably with the
/// request, per tenant.
#[utoipa::path(
    post,
    path = "/v1/message-requests",
    tag = "message-requests",
    operation_id = "createMessageRequest",
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255,
            pattern = r"^[\u0020-\u007e]+$",
            description = "Makes the create safe to retry: 1 to 255 printable ASCII characters, unique per tenant."),
    ),
    request_body(content = NewMessageRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; delivery starts in the background", body = MessageRequestView,
            headers(("Location" = String, description = "The request's URL"))),
        (status = 200, description = "An idempotent replay: the request created earlier with this key and body (`Idempotent-Replayed: true`)", body = MessageRequestView),
        Unauthorized, Forbidden, PayloadTooLarge, UnsupportedMediaType, InvalidCreate, Unavailable,
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn create(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    body: HashedJson<NewMessageRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let created = state
        .service
        .create(&tenant, body.value.into(), key, body.sha256_hex, None)
        .await?;
    let id = created.request.id;
    let view = MessageRequestView::from(created.request);
    let mut response = if created.created {
        tracing::info!(%id, "message request created");
        (StatusCode::CREATED, Json(view)).into_response()
    } else {
        tracing::info!(%id, "idempotent replay");
        let mut r = (StatusCode::OK, Json(view)).into_response();
        r.headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        r
    };
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/message-requests/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The `Idempotency-Key` header, checked like the body field.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::invalid_field(
            "Idempotency-Key",
            "must be 1 to 255 printable ASCII characters",
        )
    };
    let key = v.to_str().map_err(|_| bad())?;
    validate_idempotency_key(key).map_err(|_| bad())?;
    Ok(Some(key.to_owned()))
}

/// Create up to 10,000 message requests at once.
///
/// The batch is validated as a whole, then written by background jobs; the answer (202) comes
/// at once with the ids assigned, in input order. `Idempotency-Key` is not supported here (422).
/// The body limit is 64 times the single-request limit (16 MiB by default).
#[utoipa::path(
    post,
    path = "/v1/message-requests/batch",
    tag = "message-requests",
    operation_id = "createMessageRequestBatch",
    request_body(content = BatchRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted; the requests are written in the background", body = BatchAccepted),
        Unauthorized, Forbidden, PayloadTooLarge, UnsupportedMediaType, InvalidBody, Unavailable,
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn create_batch(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    JsonBody(batch): JsonBody<BatchRequest>,
) -> Result<(StatusCode, Json<BatchAccepted>), ApiError> {
    // Batches are not idempotent (the jobs assign new ids); refusing the header is safer than a
    // client retrying a batch it believes is protected.
    if headers.contains_key(IDEMPOTENCY_KEY) {
        return Err(ApiError::invalid_field(
            "Idempotency-Key",
            "is not supported on batches; send single requests to make them idempotent",
        ));
    }
    let items = batch
        .items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            deserialize_object::<NewMessageRequest>(
                serde_json::Value::Object(item),
                &format!("items[{i}]"),
            )
            .map(CreateRequest::from)
        })
        .collect::<Result<Vec<CreateRequest>, ApiError>>()?;
    let ids = state.service.create_batch(&tenant, items).await?;
    tracing::info!(count = ids.len(), "batch accepted");
    Ok((StatusCode::ACCEPTED, Json(BatchAccepted { ids })))
}

/// Read one message request (its current state, folded from its events).
#[utoipa::path(
    get,
    path = "/v1/message-requests/{id}",
    tag = "message-requests",
    operation_id = "getMessageRequest",
    params(("id" = Uuid, Path, description = "The request id")),
    responses(
        (status = 200, description = "The request", body = MessageRequestView),
        BadPath, Unauthorized, Forbidden, NotFound, Unavailable,
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn get_one(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    IdPath(id): IdPath,
) -> Result<Json<MessageRequestView>, ApiError> {
    Ok(Json(state.service.load(&tenant, id).await?.into()))
}

/// List the tenant's message requests, newest first.
#[utoipa::path(
    get,
    path = "/v1/message-requests",
    tag = "message-requests",
    operation_id = "listMessageRequests",
    params(
        ("status" = Option<StatusName>, Query, description = "Only requests in this status"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, 1 to 1000 (default 50)"),
        ("cursor" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]{21}[AQgw]$", description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page", body = MessageRequestPage),
        BadQuery, Unauthorized, Forbidden, Unavailable,
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    QueryParams(q): QueryParams<ListParams>,
) -> Result<Json<MessageRequestPage>, ApiError> {
    let status = q
        .status
        .as_deref()
        .map(|s| {
            Status::parse(s).ok_or_else(|| {
                ApiError::invalid_query(
                    "status",
                    format!("unknown status {s:?}; use PENDING, FAILED, SENT, DEAD or CANCELLED"),
                )
            })
        })
        .transpose()?;
    let page = PageParams::parse(q.limit.as_deref(), q.cursor.as_deref())?;
    let result = state
        .service
        .list(ListQuery {
            tenant: Some(tenant),
            status,
            limit: page.limit,
            before: page.before,
        })
        .await?;
    Ok(Json(page_view(result)))
}

/// Change a message request: edit fields, resend (`status: PENDING`) or cancel
/// (`status: CANCELLED`).
#[utoipa::path(
    patch,
    path = "/v1/message-requests/{id}",
    tag = "message-requests",
    operation_id = "patchMessageRequest",
    params(("id" = Uuid, Path, description = "The request id")),
    request_body(content = PatchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The request after the change", body = MessageRequestView),
        BadPath, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge, UnsupportedMediaType,
        InvalidBody, Unavailable,
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn patch(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<PatchRequest>,
) -> Result<Json<MessageRequestView>, ApiError> {
    let request = state.service.patch(&tenant, id, body.into()).await?;
    tracing::info!(%id, status = %request.status, "message request patched");
    Ok(Json(request.into()))
}

/// The request's audit trail: every event, in order.
#[utoipa::path(
    get,
    path = "/v1/message-requests/{id}/events",
    tag = "message-requests",
    operation_id = "getMessageRequestEvents",
    params(("id" = Uuid, Path, description = "The request id")),
    responses(
        (status = 200, description = "The events", body = History),
        BadPath, Unauthorized, Forbidden, NotFound, Unavailable,
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn events(
    State(state): State<ApiState>,
    Tenant(tenant): Tenant,
    IdPath(id): IdPath,
) -> Result<Json<History>, ApiError> {
    let events = state.service.history(&tenant, id).await?;
    Ok(Json(History {
        events: events.into_iter().map(Into::into).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_match_their_pattern() {
        for id in [Uuid::nil(), Uuid::max(), Uuid::now_v7()] {
            let c = encode_cursor(id);
            assert_eq!(c.len(), 22);
            let last = c.chars().last().unwrap();
            assert!("AQgw".contains(last), "{c}");
            assert!(
                c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            );
            assert_eq!(decode_cursor(&c).unwrap(), id);
        }
        // The pattern the OpenAPI document gives for `cursor`: 22 base64url characters
        // encoding 16 bytes (so the last one carries 2 bits: A, Q, g or w).
        for bad in [
            "",
            "abc",
            "AAAAAAAAAAAAAAAAAAAAAB",
            "AAAAAAAAAAAAAAAAAAAAAAAA",
            "!!!",
        ] {
            assert_eq!(
                decode_cursor(bad).unwrap_err().field.as_deref(),
                Some("cursor")
            );
        }
    }

    #[test]
    fn limits() {
        let check = |limit: Option<&str>, ok: Option<usize>| {
            let r = PageParams::parse(limit, None);
            assert_eq!(r.as_ref().ok().map(|p| p.limit), ok, "{limit:?}");
            if ok.is_none() {
                let e = r.err().unwrap();
                assert_eq!(
                    (e.status, e.field.as_deref()),
                    (StatusCode::BAD_REQUEST, Some("limit"))
                );
            }
        };
        check(None, Some(50));
        check(Some("1"), Some(1));
        check(Some("1000"), Some(1000));
        check(Some("0"), None);
        check(Some("1001"), None);
        check(Some("-1"), None);
        check(Some("abc"), None);
        check(Some(""), None);
        check(Some("99999999999999999999999"), None);
    }
}
