//! Acting for someone else (SPEC §6: `/me/delegations`). Only the account holder manages
//! delegations: these routes take [`Authed`], which refuses anyone acting for someone.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::extract::{ACTING_FOR_COOKIE, Authed, Cookies, JsonObject};
#[allow(unused_imports)]
use super::openapi::{CitizenErrors, Problem};
use crate::delegations::{self, Appointment, DelegationView};
use crate::ids::{CitizenId, DelegationId};

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, appoint))
        .routes(routes!(accept))
        .routes(routes!(end))
        .routes(routes!(switch))
}

#[utoipa::path(
    get,
    operation_id = "list_delegations",
    path = "/me/delegations",
    tag = "citizen",
    summary = "Delegations the citizen gave (as principal) or holds (as delegate)",
    security(("citizen_session" = [])),
    responses((status = 200, description = "{delegations: [...]}", body = Object, example = json!({"delegations":[{"id":"6d1f0000-0000-4000-8000-000000000005","role":"principal","status":"active","principal":{"citizen_id":"1c2d0000-0000-4000-8000-000000000006","display_name":null},"delegate":{"citizen_id":"2e3f0000-0000-4000-8000-000000000007","display_name":"李娜"},"document_types":["business_license"],"actions":["view","answer_requests"],"created_at":"2026-12-01T09:00:00Z","accepted_at":"2026-12-01T10:00:00Z","expires_at":"2027-03-01T09:00:00Z","ended_at":null,"ended_by":null,"guardianship_id":null,"keyed":true,"handover_code":null}]})), CitizenErrors)
)]
async fn list(
    State(state): State<AppState>,
    Authed(session): Authed,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        serde_json::json!({ "delegations": delegations::list(&state, &session).await? }),
    ))
}

#[utoipa::path(
    post,
    path = "/me/delegations",
    tag = "citizen",
    summary = "Appoint a registered citizen to act for you within a scope (she accepts before it takes effect)",
    request_body = Appointment,
    security(("citizen_session" = [])),
    responses((status = 201, description = "The delegation, pending", body = DelegationView, links(("EndDelegation" = (operation_id = "end", parameters(("id" = "$response.body#/id")), description = "End the delegation (either side)"))), example = json!({"id":"6d1f0000-0000-4000-8000-000000000005","role":"principal","status":"pending","principal":{"citizen_id":"1c2d0000-0000-4000-8000-000000000006","display_name":null},"delegate":{"citizen_id":"2e3f0000-0000-4000-8000-000000000007","display_name":null},"document_types":["business_license"],"actions":["view","answer_requests"],"created_at":"2026-12-01T09:00:00Z","accepted_at":null,"expires_at":"2027-03-01T09:00:00Z","ended_at":null,"ended_by":null,"guardianship_id":null,"keyed":true,"handover_code":null})), CitizenErrors)
)]
async fn appoint(
    State(state): State<AppState>,
    Authed(session): Authed,
    JsonObject(req): JsonObject<Appointment>,
) -> Result<(StatusCode, Json<DelegationView>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(delegations::appoint(&state, &session, &req).await?),
    ))
}

#[utoipa::path(
    post,
    operation_id = "accept_delegation",
    path = "/me/delegations/{id}/accept",
    tag = "citizen",
    summary = "The delegate accepts (needs her unlocked vault)",
    params(("id" = Uuid, Path, description = "The id")),
    security(("citizen_session" = [])),
    responses((status = 200, description = "The delegation, active", body = DelegationView, example = json!({"id":"6d1f0000-0000-4000-8000-000000000005","role":"delegate","status":"active","principal":{"citizen_id":"1c2d0000-0000-4000-8000-000000000006","display_name":"王芳"},"delegate":{"citizen_id":"2e3f0000-0000-4000-8000-000000000007","display_name":null},"document_types":["business_license"],"actions":["view","answer_requests"],"created_at":"2026-12-01T09:00:00Z","accepted_at":"2026-12-01T10:00:00Z","expires_at":"2027-03-01T09:00:00Z","ended_at":null,"ended_by":null,"guardianship_id":null,"keyed":true,"handover_code":null})), CitizenErrors)
)]
async fn accept(
    State(state): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<DelegationId>,
) -> Result<Json<DelegationView>, ApiError> {
    Ok(Json(delegations::accept(&state, &session, id).await?))
}

#[utoipa::path(
    post,
    path = "/me/delegations/{id}/end",
    tag = "citizen",
    summary = "Either side ends it at once; its keys are destroyed",
    params(("id" = Uuid, Path, description = "The id")),
    security(("citizen_session" = [])),
    responses((status = 200, description = "The delegation, ended", body = DelegationView, example = json!({"id":"6d1f0000-0000-4000-8000-000000000005","role":"principal","status":"ended","principal":{"citizen_id":"1c2d0000-0000-4000-8000-000000000006","display_name":null},"delegate":{"citizen_id":"2e3f0000-0000-4000-8000-000000000007","display_name":"李娜"},"document_types":["business_license"],"actions":["view","answer_requests"],"created_at":"2026-12-01T09:00:00Z","accepted_at":"2026-12-01T10:00:00Z","expires_at":"2027-03-01T09:00:00Z","ended_at":"2026-12-05T09:00:00Z","ended_by":"principal","guardianship_id":null,"keyed":false,"handover_code":null})), CitizenErrors)
)]
async fn end(
    State(state): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<DelegationId>,
) -> Result<Json<DelegationView>, ApiError> {
    Ok(Json(delegations::end(&state, &session, id).await?))
}

/// `POST /me/acting-for`: whom the pages act for.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Switch {
    /// The principal's citizen id, or null to act for yourself again.
    principal: Option<CitizenId>,
}

#[utoipa::path(
    post,
    path = "/me/acting-for",
    tag = "citizen",
    summary = "The web pages' acting-for switch: act for a principal (under a live delegation) or for yourself again; API clients send X-Acting-For instead",
    request_body = Switch,
    security(("citizen_session" = [])),
    responses((status = 200, description = "{acting_for}; the choice is kept in a cookie and checked on every request", body = Object, example = json!({"acting_for":"1c2d0000-0000-4000-8000-000000000006"})), CitizenErrors)
)]
async fn switch(
    State(state): State<AppState>,
    Authed(session): Authed,
    JsonObject(req): JsonObject<Switch>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    let cookies = Cookies::for_state(&state);
    let cookie = match req.principal {
        Some(principal) => {
            delegations::check_live(&state, &session, principal).await?;
            cookies.set(ACTING_FOR_COOKIE, &principal.to_string(), 12 * 3600)
        }
        None => cookies.set(ACTING_FOR_COOKIE, "", 0),
    };
    let mut response = Json(serde_json::json!({ "acting_for": req.principal })).into_response();
    response
        .headers_mut()
        .append(axum::http::header::SET_COOKIE, cookie);
    Ok(response)
}
