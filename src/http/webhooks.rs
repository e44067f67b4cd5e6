//! Agencies hear back (SPEC §6): their webhook endpoints and deliveries
//! (`/api/v1/webhooks…`), and their acknowledgements of a grant's end and of deletion
//! (`/api/v1/grants/{id}/revocation-ack`, `…/retention-ack`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::agency::Agency;
use super::error::ApiError;
use super::extract::JsonObject;
#[allow(unused_imports)]
use super::openapi::{AgencyErrors, Problem};
use crate::grants::acks::{self, Acks, RetentionAck};
use crate::ids::GrantId;
use crate::webhooks::{self, DeliveryView, NewWebhook, WebhookView};

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add, list))
        .routes(routes!(remove))
        .routes(routes!(deliveries))
        .routes(routes!(replay))
        .routes(routes!(revocation_ack))
        .routes(routes!(retention_ack))
}

const DELIVERY_EXAMPLE: &str = r#"{"id":"6c1f0000-0000-4000-8000-00000000000a","webhook_id":"5b0e0000-0000-4000-8000-00000000000b","event_type":"grant.revoked","status":"dead","attempts":8,"last_status":503,"last_error":null,"created_at":"2026-12-05T09:00:00Z","next_attempt_at":null,"delivered_at":null,"event":{"id":"6c1f0000-0000-4000-8000-00000000000a","type":"grant.revoked","created_at":"2026-12-05T09:00:00Z","data":{"grant_id":"9d2150c4-0000-4000-8000-000000000001","status":"revoked"}}}"#;

#[utoipa::path(
    post,
    operation_id = "add_webhook",
    path = "/api/v1/webhooks",
    tag = "agency",
    summary = "Add an endpoint for signed events (request.decided, grant.revoked, grant.expired, grant.exhausted, retention.due): https:// at a public address",
    request_body = NewWebhook,
    security(("agency_key" = [])),
    responses(
        (status = 201, description = "Added", body = WebhookView, links(("RemoveWebhook" = (operation_id = "remove_webhook", parameters(("id" = "$response.body#/id")), description = "Remove the endpoint"))), example = json!({"id":"5b0e0000-0000-4000-8000-00000000000b","url":"https://hooks.agency.example/custodia","created_at":"2026-12-05T09:00:00Z"})),
        (status = 409, description = "Five endpoints already", content_type = "application/problem+json", body = Problem),
        AgencyErrors
    )
)]
async fn add(
    State(state): State<AppState>,
    Agency(agency): Agency,
    JsonObject(body): JsonObject<NewWebhook>,
) -> Result<(StatusCode, Json<WebhookView>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(webhooks::add(&state, &agency, &body, webhooks::AddedBy::Agency).await?),
    ))
}

#[utoipa::path(
    get,
    operation_id = "list_webhooks",
    path = "/api/v1/webhooks",
    tag = "agency",
    summary = "The agency's endpoints",
    security(("agency_key" = [])),
    responses((status = 200, description = "{webhooks: [...]}", body = Object, example = json!({"webhooks":[{"id":"5b0e0000-0000-4000-8000-00000000000b","url":"https://hooks.agency.example/custodia","created_at":"2026-12-05T09:00:00Z"}]})), AgencyErrors)
)]
async fn list(
    State(state): State<AppState>,
    Agency(agency): Agency,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        serde_json::json!({ "webhooks": webhooks::list(&state, &agency).await? }),
    ))
}

#[utoipa::path(
    delete,
    operation_id = "remove_webhook",
    path = "/api/v1/webhooks/{id}",
    tag = "agency",
    summary = "Remove an endpoint; what was still pending for it is dead",
    params(("id" = Uuid, Path, description = "The endpoint")),
    security(("agency_key" = [])),
    responses((status = 204, description = "Removed"), AgencyErrors)
)]
async fn remove(
    State(state): State<AppState>,
    Agency(agency): Agency,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    webhooks::remove(&state, &agency, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which deliveries.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// `pending`, `delivered` or `dead` (the dead letters); all when absent.
    #[param(pattern = "^(pending|delivered|dead)$")]
    pub status: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/webhooks/deliveries",
    tag = "agency",
    summary = "The agency's deliveries, newest first (?status=dead: the dead letters)",
    params(DeliveriesQuery),
    security(("agency_key" = [])),
    responses((status = 200, description = "{deliveries: [...]}", body = Object, example = json!({"deliveries":[serde_json::from_str::<serde_json::Value>(DELIVERY_EXAMPLE).unwrap_or_default()]})), AgencyErrors)
)]
async fn deliveries(
    State(state): State<AppState>,
    Agency(agency): Agency,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(serde_json::json!({
        "deliveries": webhooks::deliveries(&state, &agency, q.status.as_deref()).await?
    })))
}

#[utoipa::path(
    post,
    path = "/api/v1/webhooks/deliveries/{id}/replay",
    tag = "agency",
    summary = "Send a delivery again, from the first try",
    params(("id" = Uuid, Path, description = "The delivery")),
    security(("agency_key" = [])),
    responses(
        (status = 202, description = "Queued again", body = DeliveryView, example = json!(serde_json::from_str::<serde_json::Value>(DELIVERY_EXAMPLE).unwrap_or_default())),
        (status = 409, description = "Its endpoint was removed", content_type = "application/problem+json", body = Problem),
        AgencyErrors
    )
)]
async fn replay(
    State(state): State<AppState>,
    Agency(agency): Agency,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<DeliveryView>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(webhooks::replay(&state, &agency, id).await?),
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/grants/{id}/revocation-ack",
    tag = "agency",
    summary = "Acknowledge that the agency stopped using a grant that ended (revoked, expired or exhausted)",
    params(("id" = Uuid, Path, description = "The grant")),
    security(("agency_key" = [])),
    responses(
        (status = 200, description = "Acknowledged (again: unchanged)", body = Acks, example = json!({"grant_id":"9d2150c4-0000-4000-8000-000000000001","revocation_acknowledged_at":"2026-12-05T09:01:00Z","retention_due_at":"2027-01-04T09:00:00Z","deleted_at":null})),
        (status = 409, description = "The grant is still active", content_type = "application/problem+json", body = Problem),
        AgencyErrors
    )
)]
async fn revocation_ack(
    State(state): State<AppState>,
    Agency(agency): Agency,
    Path(id): Path<GrantId>,
) -> Result<Json<Acks>, ApiError> {
    Ok(Json(acks::acknowledge_end(&state, &agency, id).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/grants/{id}/retention-ack",
    tag = "agency",
    summary = "Confirm that every copy of what was read under an ended grant was deleted (once)",
    params(("id" = Uuid, Path, description = "The grant")),
    request_body = RetentionAck,
    security(("agency_key" = [])),
    responses(
        (status = 200, description = "Confirmed", body = Acks, example = json!({"grant_id":"9d2150c4-0000-4000-8000-000000000001","revocation_acknowledged_at":"2026-12-05T09:01:00Z","retention_due_at":"2027-01-04T09:00:00Z","deleted_at":"2027-01-03T17:00:00Z"})),
        (status = 409, description = "Still active, or already confirmed", content_type = "application/problem+json", body = Problem),
        AgencyErrors
    )
)]
async fn retention_ack(
    State(state): State<AppState>,
    Agency(agency): Agency,
    Path(id): Path<GrantId>,
    JsonObject(body): JsonObject<RetentionAck>,
) -> Result<Json<Acks>, ApiError> {
    Ok(Json(
        acks::confirm_deletion(&state, &agency, id, &body).await?,
    ))
}
