//! The citizen's grants (SPEC §4: `/me/grants`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::extract::Authed;
#[allow(unused_imports)]
use super::openapi::{CitizenErrors, Problem};
use crate::grants::{self, GrantRequest, GrantView, Receipt};

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(agencies))
        .routes(routes!(revoke))
        .routes(routes!(receipt))
}

#[utoipa::path(
    get,
    path = "/me/grants",
    tag = "citizen",
    summary = "The citizen's grants with status, reads and time left",
    security(("citizen_session" = [])),
    responses((status = 200, description = "{grants: [...]}", body = Object), CitizenErrors)
)]
async fn list(
    State(state): State<AppState>,
    Authed(session): Authed,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        serde_json::json!({ "grants": grants::list(&state, &session).await? }),
    ))
}

#[utoipa::path(
    get,
    path = "/me/agencies",
    tag = "citizen",
    summary = "Agencies a citizen may grant to",
    security(("citizen_session" = [])),
    responses((status = 200, description = "{agencies: [...]}", body = Object), CitizenErrors)
)]
async fn agencies(
    State(state): State<AppState>,
    Authed(session): Authed,
) -> Result<Json<serde_json::Value>, ApiError> {
    session.citizen()?;
    Ok(Json(
        serde_json::json!({ "agencies": crate::agencies::directory(&state).await? }),
    ))
}

#[utoipa::path(
    post,
    path = "/me/grants",
    tag = "citizen",
    summary = "Give an agency a grant (needs the unlocked vault)",
    request_body = GrantRequest,
    security(("citizen_session" = [])),
    responses((status = 201, description = "The grant", body = GrantView), CitizenErrors)
)]
async fn create(
    State(state): State<AppState>,
    Authed(session): Authed,
    Json(body): Json<GrantRequest>,
) -> Result<(StatusCode, Json<GrantView>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(grants::create(&state, &session, &body).await?),
    ))
}

#[utoipa::path(
    post,
    path = "/me/grants/{id}/revoke",
    tag = "citizen",
    summary = "Revoke a grant at once (keys destroyed)",
    params(("id" = Uuid, Path, description = "The id")),
    security(("citizen_session" = [])),
    responses((status = 200, description = "The grant", body = GrantView), CitizenErrors, (status = 409, description = "Already ended", body = Problem, content_type = "application/problem+json"))
)]
async fn revoke(
    State(state): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<Uuid>,
) -> Result<Json<GrantView>, ApiError> {
    Ok(Json(grants::revoke(&state, &session, id).await?))
}

#[utoipa::path(
    get,
    path = "/me/grants/{id}/receipt",
    tag = "citizen",
    summary = "The signed consent receipt",
    params(("id" = Uuid, Path, description = "The id")),
    security(("citizen_session" = [])),
    responses((status = 200, description = "Receipt", body = Receipt), CitizenErrors)
)]
async fn receipt(
    State(state): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<Uuid>,
) -> Result<Json<Receipt>, ApiError> {
    Ok(Json(grants::receipt(&state, &session, id).await?))
}
