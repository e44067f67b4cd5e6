//! The citizen's inbox of access requests (SPEC §4: `/me/requests`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::extract::Authed;
use crate::grants::GrantView;
use crate::requests::{self, Narrowing, PreviewItem};

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/me/requests", get(list))
        .route("/me/requests/{id}/preview", get(preview))
        .route("/me/requests/{id}/approve", post(approve))
        .route("/me/requests/{id}/deny", post(deny))
}

async fn list(
    State(state): State<AppState>,
    Authed(session): Authed,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        serde_json::json!({ "requests": requests::list(&state, &session).await? }),
    ))
}

async fn preview(
    State(state): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<Uuid>,
) -> Result<Json<Vec<PreviewItem>>, ApiError> {
    Ok(Json(requests::preview(&state, &session, id).await?))
}

async fn approve(
    State(state): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<Uuid>,
    body: Option<Json<Narrowing>>,
) -> Result<(StatusCode, Json<GrantView>), ApiError> {
    let narrowing = body.map(|Json(n)| n).unwrap_or_default();
    Ok((
        StatusCode::CREATED,
        Json(requests::approve(&state, &session, id, &narrowing).await?),
    ))
}

async fn deny(
    State(state): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    requests::deny(&state, &session, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
