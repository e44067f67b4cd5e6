//! Guardianships declared by authorities (SPEC §6: `/api/v1/guardianships`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::agency::Agency;
use super::error::ApiError;
use super::extract::JsonObject;
#[allow(unused_imports)]
use super::openapi::{AgencyErrors, Problem};
use crate::delegations::guardianship::{self, Declaration, GuardianshipView};
use crate::ids::GuardianshipId;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(declare))
        .routes(routes!(get, withdraw))
}

#[utoipa::path(
    post,
    path = "/api/v1/guardianships",
    tag = "agency",
    summary = "Declare a guardian for a ward (guardianship authorities); a minor's ends at her 18th birthday",
    request_body = Declaration,
    security(("agency_key" = [])),
    responses((status = 201, description = "Declared: the guardian acts for the ward at once; keys reach her at the ward's next unlock", body = GuardianshipView, links(("Guardianship" = (operation_id = "get", parameters(("id" = "$response.body#/id")), description = "The guardianship")), ("Withdraw" = (operation_id = "withdraw", parameters(("id" = "$response.body#/id")), description = "Withdraw it"))), example = json!({"id":"7a8b0000-0000-4000-8000-000000000008","status":"active","expires_at":"2031-05-01T00:00:00Z","ends_at_majority":true,"account_held":false,"ended_at":null})), AgencyErrors)
)]
async fn declare(
    State(state): State<AppState>,
    Agency(agency): Agency,
    JsonObject(req): JsonObject<Declaration>,
) -> Result<(StatusCode, Json<GuardianshipView>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(guardianship::declare(&state, &agency, &req).await?),
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/guardianships/{id}",
    tag = "agency",
    summary = "One guardianship this authority declared",
    params(("id" = Uuid, Path, description = "The id")),
    security(("agency_key" = [])),
    responses((status = 200, description = "The guardianship", body = GuardianshipView, example = json!({"id":"7a8b0000-0000-4000-8000-000000000008","status":"active","expires_at":"2031-05-01T00:00:00Z","ends_at_majority":true,"account_held":false,"ended_at":null})), AgencyErrors)
)]
async fn get(
    State(state): State<AppState>,
    Agency(agency): Agency,
    Path(id): Path<GuardianshipId>,
) -> Result<Json<GuardianshipView>, ApiError> {
    Ok(Json(guardianship::get(&state, &agency, id).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/guardianships/{id}",
    tag = "agency",
    summary = "Withdraw a guardianship this authority declared: it ends at once and its keys are destroyed",
    params(("id" = Uuid, Path, description = "The id")),
    security(("agency_key" = [])),
    responses((status = 200, description = "The guardianship, ended", body = GuardianshipView, example = json!({"id":"7a8b0000-0000-4000-8000-000000000008","status":"ended","expires_at":"2031-05-01T00:00:00Z","ends_at_majority":true,"account_held":false,"ended_at":"2026-12-05T09:00:00Z"})), AgencyErrors)
)]
async fn withdraw(
    State(state): State<AppState>,
    Agency(agency): Agency,
    Path(id): Path<GuardianshipId>,
) -> Result<Json<GuardianshipView>, ApiError> {
    Ok(Json(guardianship::withdraw(&state, &agency, id).await?))
}
