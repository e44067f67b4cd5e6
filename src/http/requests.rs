//! The citizen's inbox of access requests (SPEC §4: `/me/requests`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::extract::{JsonObject, MayAct};
#[allow(unused_imports)]
use super::openapi::{CitizenErrors, Problem};
use crate::grants::GrantView;
use crate::ids::AccessRequestId;
use crate::requests::{self, Narrowing, PreviewItem};

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(preview))
        .routes(routes!(approve))
        .routes(routes!(deny))
}

#[utoipa::path(
    get,
    operation_id = "list_requests",
    path = "/me/requests",
    tag = "citizen",
    summary = "Access requests addressed to the citizen",
    params(("X-Acting-For" = Option<Uuid>, Header, nullable = false, description = "A delegate acting for her principal: the principal's citizen id (a live delegation whose scope covers the call)")),
    security(("citizen_session" = [])),
    responses((status = 200, description = "{requests: [...]}", body = Object, example = json!({"requests":[{"id":"0b7e0000-0000-4000-8000-000000000004","agency_id":"3f0c7b2a-0000-4000-8000-000000000003","agency_name":"北京市市场监督管理局","agency_level":"provincial","document_types":["business_license"],"tier":"fields","fields":["company_name"],"purpose_code":"business_registration","purpose":"企业设立登记","legal_basis":null,"officer_id":"officer-7","case_id":"C-1","duration_days":30,"retention_days":90,"status":"pending","grant_id":null}]})), CitizenErrors)
)]
async fn list(
    State(state): State<AppState>,
    MayAct(session): MayAct,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        serde_json::json!({ "requests": requests::list(&state, &session).await? }),
    ))
}

#[utoipa::path(
    get,
    path = "/me/requests/{id}/preview",
    tag = "citizen",
    summary = "Exactly what the agency would receive",
    params(("id" = Uuid, Path, description = "The id"), ("X-Acting-For" = Option<Uuid>, Header, nullable = false, description = "A delegate acting for her principal: the principal's citizen id (a live delegation whose scope covers the call)")),
    security(("citizen_session" = [])),
    responses((status = 200, description = "Preview", body = Vec<PreviewItem>, example = json!([{"document_id":"5a3e0c1e-0000-4000-8000-000000000002","type":"business_license","version":1,"content_sha256":"9f86d0…","fields":{"company_name":"北京示例科技有限公司"},"file":null}])), CitizenErrors)
)]
async fn preview(
    State(state): State<AppState>,
    MayAct(session): MayAct,
    Path(id): Path<AccessRequestId>,
) -> Result<Json<Vec<PreviewItem>>, ApiError> {
    Ok(Json(requests::preview(&state, &session, id).await?))
}

#[utoipa::path(
    post,
    path = "/me/requests/{id}/approve",
    tag = "citizen",
    summary = "Approve, possibly narrowed; creates the grant",
    params(("id" = Uuid, Path, description = "The id"), ("X-Acting-For" = Option<Uuid>, Header, nullable = false, description = "A delegate acting for her principal: the principal's citizen id (a live delegation whose scope covers the call)")),
    request_body = Narrowing,
    security(("citizen_session" = [])),
    responses((status = 201, description = "The grant", body = GrantView, links(("Receipt" = (operation_id = "receipt", parameters(("id" = "$response.body#/id")), description = "The signed consent receipt")), ("Revoke" = (operation_id = "revoke", parameters(("id" = "$response.body#/id")), description = "Revoke the grant"))), example = json!({"id":"9d2150c4-0000-4000-8000-000000000001","agency_id":"3f0c7b2a-0000-4000-8000-000000000003","document_ids":[],"document_types":["business_license"],"tier":"fields","fields":["company_name"],"purpose":"企业设立登记","purpose_code":"business_registration","legal_basis":null,"valid_from":"2026-11-28T09:00:00Z","expires_at":"2026-12-05T09:00:00Z","max_reads":null,"reads":1,"retention_days":90,"status":"active","request_id":null,"emergency":false,"end_acknowledged_at":null,"retention_due_at":null,"deleted_at":null,"deletion_overdue":false})), CitizenErrors)
)]
async fn approve(
    State(state): State<AppState>,
    MayAct(session): MayAct,
    Path(id): Path<AccessRequestId>,
    body: Option<JsonObject<Narrowing>>,
) -> Result<(StatusCode, Json<GrantView>), ApiError> {
    let narrowing = body.map(|JsonObject(n)| n).unwrap_or_default();
    Ok((
        StatusCode::CREATED,
        Json(requests::approve(&state, &session, id, &narrowing).await?),
    ))
}

#[utoipa::path(
    post,
    path = "/me/requests/{id}/deny",
    tag = "citizen",
    summary = "Deny a request",
    params(("id" = Uuid, Path, description = "The id"), ("X-Acting-For" = Option<Uuid>, Header, nullable = false, description = "A delegate acting for her principal: the principal's citizen id (a live delegation whose scope covers the call)")),
    security(("citizen_session" = [])),
    responses((status = 204, description = "Denied"), CitizenErrors)
)]
async fn deny(
    State(state): State<AppState>,
    MayAct(session): MayAct,
    Path(id): Path<AccessRequestId>,
) -> Result<StatusCode, ApiError> {
    requests::deny(&state, &session, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
