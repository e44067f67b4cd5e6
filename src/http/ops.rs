//! Operations endpoints: liveness and readiness.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;

/// `/healthz` and `/readyz`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process is up and serving HTTP.
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers a query and the blob store accepts a synced write.
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness: database unreachable");
        ApiError::unavailable("The database is not reachable.")
    })?;
    state.blobs.check().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness: blob store unusable");
        ApiError::unavailable("The blob store is not writable.")
    })?;
    Ok(Json(
        json!({ "status": "ready", "database": "ok", "blob_store": "ok" }),
    ))
}
