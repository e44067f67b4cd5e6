//! The citizen's grants (SPEC §4: `/me/grants`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::extract::Authed;
use crate::grants::{self, GrantRequest, GrantView, Receipt};

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/me/grants", get(list).post(create))
        .route("/me/agencies", get(agencies))
        .route("/me/grants/{id}/revoke", post(revoke))
        .route("/me/grants/{id}/receipt", get(receipt))
}

async fn list(
    State(state): State<AppState>,
    Authed(session): Authed,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        serde_json::json!({ "grants": grants::list(&state, &session).await? }),
    ))
}

async fn agencies(
    State(state): State<AppState>,
    Authed(session): Authed,
) -> Result<Json<serde_json::Value>, ApiError> {
    session.citizen()?;
    Ok(Json(
        serde_json::json!({ "agencies": crate::agencies::directory(&state).await? }),
    ))
}

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

async fn revoke(
    State(state): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<Uuid>,
) -> Result<Json<GrantView>, ApiError> {
    Ok(Json(grants::revoke(&state, &session, id).await?))
}

async fn receipt(
    State(state): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<Uuid>,
) -> Result<Json<Receipt>, ApiError> {
    Ok(Json(grants::receipt(&state, &session, id).await?))
}
