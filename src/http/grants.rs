//! The citizen's grants (SPEC §4: `/me/grants`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::extract::{Authed, JsonObject, MayAct};
#[allow(unused_imports)]
use super::openapi::{CitizenErrors, Problem};
use crate::grants::{self, GrantRequest, GrantView, Receipt};
use crate::ids::GrantId;

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
    operation_id = "list_my_grants",
    path = "/me/grants",
    tag = "citizen",
    summary = "The citizen's grants with status, reads and time left",
    params(("X-Acting-For" = Option<Uuid>, Header, nullable = false, description = "A delegate acting for her principal: the principal's citizen id (a live delegation whose scope covers the call)")),
    security(("citizen_session" = [])),
    responses((status = 200, description = "{grants: [...]}", body = Object, example = json!({"grants":[{"id":"9d2150c4-0000-4000-8000-000000000001","agency_id":"3f0c7b2a-0000-4000-8000-000000000003","document_ids":[],"document_types":["business_license"],"tier":"fields","fields":["company_name"],"purpose":"企业设立登记","purpose_code":"business_registration","legal_basis":null,"valid_from":"2026-11-28T09:00:00Z","expires_at":"2026-12-05T09:00:00Z","max_reads":null,"reads":1,"retention_days":90,"status":"active","request_id":null,"emergency":false,"end_acknowledged_at":null,"retention_due_at":null,"deleted_at":null,"deletion_overdue":false}]})), CitizenErrors)
)]
async fn list(
    State(state): State<AppState>,
    MayAct(session): MayAct,
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
    responses((status = 200, description = "{agencies: [...]}", body = Object, example = json!({"agencies":[{"id":"3f0c7b2a-0000-4000-8000-000000000003","name":"北京市市场监督管理局","level":"provincial"}]})), CitizenErrors)
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
    operation_id = "create_grant",
    path = "/me/grants",
    tag = "citizen",
    summary = "Give an agency a grant (needs the unlocked vault)",
    request_body = GrantRequest,
    params(("X-Acting-For" = Option<Uuid>, Header, nullable = false, description = "A delegate acting for her principal: the principal's citizen id (a live delegation whose scope covers the call)")),
    security(("citizen_session" = [])),
    responses((status = 201, description = "The grant", body = GrantView, links(("Receipt" = (operation_id = "receipt", parameters(("id" = "$response.body#/id")), description = "The signed consent receipt")), ("Revoke" = (operation_id = "revoke", parameters(("id" = "$response.body#/id")), description = "Revoke the grant"))), example = json!({"id":"9d2150c4-0000-4000-8000-000000000001","agency_id":"3f0c7b2a-0000-4000-8000-000000000003","document_ids":[],"document_types":["business_license"],"tier":"fields","fields":["company_name"],"purpose":"企业设立登记","purpose_code":"business_registration","legal_basis":null,"valid_from":"2026-11-28T09:00:00Z","expires_at":"2026-12-05T09:00:00Z","max_reads":null,"reads":1,"retention_days":90,"status":"active","request_id":null,"emergency":false,"end_acknowledged_at":null,"retention_due_at":null,"deleted_at":null,"deletion_overdue":false})), CitizenErrors)
)]
async fn create(
    State(state): State<AppState>,
    MayAct(session): MayAct,
    JsonObject(body): JsonObject<GrantRequest>,
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
    params(("id" = Uuid, Path, description = "The id"), ("X-Acting-For" = Option<Uuid>, Header, nullable = false, description = "A delegate acting for her principal: the principal's citizen id (a live delegation whose scope covers the call)")),
    security(("citizen_session" = [])),
    responses((status = 200, description = "The grant", body = GrantView, example = json!({"id":"9d2150c4-0000-4000-8000-000000000001","agency_id":"3f0c7b2a-0000-4000-8000-000000000003","document_ids":[],"document_types":["business_license"],"tier":"fields","fields":["company_name"],"purpose":"企业设立登记","purpose_code":"business_registration","legal_basis":null,"valid_from":"2026-11-28T09:00:00Z","expires_at":"2026-12-05T09:00:00Z","max_reads":null,"reads":1,"retention_days":90,"status":"revoked","request_id":null,"emergency":false,"end_acknowledged_at":null,"retention_due_at":null,"deleted_at":null,"deletion_overdue":false})), CitizenErrors, (status = 409, description = "Already ended", body = Problem, content_type = "application/problem+json"))
)]
async fn revoke(
    State(state): State<AppState>,
    MayAct(session): MayAct,
    Path(id): Path<GrantId>,
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
    responses((status = 200, description = "Receipt", body = Receipt, example = json!({"receipt":{"receipt_version":1,"grant_id":"9d2150c4-0000-4000-8000-000000000001","citizen":"p-3fa85f6457174562","tier":"fields"},"signature":"base64url…","public_key":"base64url…","key_id":"a1b2c3d4e5f60718","context":"consent-receipt"})), CitizenErrors)
)]
async fn receipt(
    State(state): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<GrantId>,
) -> Result<Json<Receipt>, ApiError> {
    Ok(Json(grants::receipt(&state, &session, id).await?))
}
