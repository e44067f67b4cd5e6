//! Break-glass (SPEC §6): the citizen's choice (`/me/emergency`), an emergency agency's
//! access (`POST /api/v1/emergency-access`) and the auditors' review queue
//! (`/api/v1/audit/emergencies`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::agency::{Agency, Officer};
use super::error::ApiError;
use super::extract::{Authed, JsonObject};
#[allow(unused_imports)]
use super::openapi::{AgencyErrors, CitizenErrors, Problem};
use crate::emergencies::{
    self, Availability, AvailabilityView, BreakGlass, EmergencyUse, Queue, Review,
};
use crate::grants::GrantView;
use crate::ids::GrantId;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(availability, set_availability))
        .routes(routes!(break_glass))
        .routes(routes!(queue))
        .routes(routes!(review))
}

#[utoipa::path(
    get,
    path = "/me/emergency",
    tag = "citizen",
    summary = "The types emergency agencies may read without asking, and every emergency access disclosed to the citizen",
    security(("citizen_session" = [])),
    responses((status = 200, description = "The choice and the disclosed accesses", body = AvailabilityView, example = json!({"document_types":["resident_id"],"ended_grants":0,"accesses":[]})), CitizenErrors)
)]
async fn availability(
    State(state): State<AppState>,
    Authed(session): Authed,
) -> Result<Json<AvailabilityView>, ApiError> {
    Ok(Json(emergencies::availability(&state, &session).await?))
}

#[utoipa::path(
    put,
    path = "/me/emergency",
    tag = "citizen",
    summary = "Choose the emergency-available types (adding needs the unlocked vault and a passkey confirmed in the last 5 minutes; withdrawing ends every live emergency grant on them at once)",
    request_body = Availability,
    security(("citizen_session" = [])),
    responses((status = 200, description = "The choice as now stored", body = AvailabilityView, example = json!({"document_types":["resident_id"],"ended_grants":0,"accesses":[]})), CitizenErrors)
)]
async fn set_availability(
    State(state): State<AppState>,
    Authed(session): Authed,
    JsonObject(body): JsonObject<Availability>,
) -> Result<Json<AvailabilityView>, ApiError> {
    Ok(Json(emergencies::set_types(&state, &session, &body).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/emergency-access",
    tag = "agency",
    summary = "Break the glass (agencies registered for emergencies): a time-boxed grant over what the person made emergency-available, recorded, reviewed by an auditor and disclosed to her",
    request_body = BreakGlass,
    params(
        ("X-Officer-Id" = String, Header, description = "The official breaking the glass (1 to 100 visible ASCII characters or spaces)", min_length = 1, max_length = 100, pattern = r"^[ -~]*[!-~][ -~]*$"),
        ("X-Case-Id" = String, Header, description = "The case (the same as `case` in the body) (1 to 100 visible ASCII characters or spaces)", min_length = 1, max_length = 100, pattern = r"^[ -~]*[!-~][ -~]*$"),
    ),
    security(("agency_key" = [])),
    responses(
        (status = 201, description = "The emergency grant: read it as any grant", body = GrantView, links(("Grant" = (operation_id = "grant", parameters(("id" = "$response.body#/id")), description = "The emergency grant, as any grant")), ("GrantDocuments" = (operation_id = "grant_documents", parameters(("id" = "$response.body#/id")), description = "The documents it covers"))), example = json!({"id":"9d2150c4-0000-4000-8000-000000000009","agency_id":"3f0c7b2a-0000-4000-8000-000000000003","document_ids":[],"document_types":["resident_id"],"tier":"full","fields":[],"purpose":"Unconscious patient admitted; identity needed for treatment","purpose_code":null,"legal_basis":"Emergency medical treatment regulation, art. 12","valid_from":"2026-12-05T09:00:00Z","expires_at":"2026-12-05T10:00:00Z","max_reads":null,"reads":0,"retention_days":30,"status":"active","request_id":null,"emergency":true,"end_acknowledged_at":null,"retention_due_at":null,"deleted_at":null,"deletion_overdue":false})),
        (status = 429, description = "The agency's hourly limit, or its one emergency grant per person per hour, is used up", content_type = "application/problem+json", body = Problem),
        AgencyErrors
    )
)]
async fn break_glass(
    State(state): State<AppState>,
    Agency(agency): Agency,
    officer: Officer,
    JsonObject(body): JsonObject<BreakGlass>,
) -> Result<(StatusCode, Json<GrantView>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(emergencies::break_glass(&state, &agency, &body, officer.emergency()).await?),
    ))
}

/// Which uses to list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct QueueQuery {
    /// `true`: every use, reviewed or not (default: the unreviewed only).
    pub all: Option<bool>,
}

#[utoipa::path(
    get,
    path = "/api/v1/audit/emergencies",
    tag = "audit",
    summary = "The emergency review queue and each agency's record (auditors; recorded)",
    params(QueueQuery),
    security(("auditor_session" = [])),
    responses((status = 200, description = "Uses, newest first, and per agency", body = Queue, example = json!({"accesses":[],"agencies":[]})), CitizenErrors)
)]
async fn queue(
    State(state): State<AppState>,
    Authed(session): Authed,
    Query(q): Query<QueueQuery>,
) -> Result<Json<Queue>, ApiError> {
    Ok(Json(
        emergencies::queue(&state, &session, q.all.unwrap_or(false)).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/audit/emergencies/{grant_id}/review",
    tag = "audit",
    summary = "Judge one emergency access justified or unjustified, with a note (auditors; once; recorded)",
    params(("grant_id" = Uuid, Path, description = "The emergency grant")),
    request_body = Review,
    security(("auditor_session" = [])),
    responses((status = 200, description = "The use, reviewed", body = EmergencyUse, example = json!({"grant_id":"9d2150c4-0000-4000-8000-000000000009","agency_id":"3f0c7b2a-0000-4000-8000-000000000003","agency_name":"省急救中心","citizen":"p-3fa85f6457174562","officer_id":"dr-li","case_id":"ER-2026-1205-7","justification":"Unconscious patient admitted; identity needed for treatment","legal_basis":"Emergency medical treatment regulation, art. 12","document_types":["resident_id"],"tier":"fields","reads":1,"status":"expired","created_at":"2026-12-05T09:00:00Z","expires_at":"2026-12-05T10:00:00Z","disclose_at":"2026-12-05T09:00:00Z","verdict":"justified","review_note":"Patient unconscious on arrival; record confirms.","reviewed_at":"2026-12-06T08:00:00Z","overdue":false})), (status = 409, description = "Already reviewed", content_type = "application/problem+json", body = Problem), CitizenErrors)
)]
async fn review(
    State(state): State<AppState>,
    Authed(session): Authed,
    Path(grant): Path<GrantId>,
    JsonObject(body): JsonObject<Review>,
) -> Result<Json<EmergencyUse>, ApiError> {
    Ok(Json(
        emergencies::review(&state, &session, grant, &body).await?,
    ))
}
