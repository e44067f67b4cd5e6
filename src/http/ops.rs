//! Operations endpoints: liveness and readiness.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
#[allow(unused_imports)]
use super::openapi::{CitizenErrors, Problem};

/// How long a successful blob-store probe answers `/readyz` for.
const BLOB_PROBE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(10);

/// `/healthz` and `/readyz`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// The process is up and serving HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "The process is up",
    responses((status = 200, description = "Up", body = Object, content_type = "application/json", example = json!({"status":"ok"})))
)]
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers a query and the blob store accepts a synced write.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "The database and blob store are reachable",
    responses((status = 200, description = "Ready", body = Object, example = json!({"status":"ready","database":"ok","blob_store":"ok","master_keys":["3f9a0c2e71d84b65"]})), (status = 503, description = "Not ready", body = Problem, content_type = "application/problem+json"))
)]
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness: database unreachable");
        ApiError::unavailable("The database is not reachable.")
    })?;
    state
        .blobs
        .check_recent(BLOB_PROBE_MAX_AGE)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "readiness: blob store unusable");
            ApiError::unavailable("The blob store is not writable.")
        })?;
    // Which master keys this node holds (fingerprints, never the keys): during a rotation
    // across nodes the operator waits until every node lists the next one.
    let keys = &state.keys;
    let master_keys: Vec<&str> = std::iter::once(keys.master_key_id.as_str())
        .chain(keys.next_master_key_id.as_deref())
        .collect();
    Ok(Json(
        json!({ "status": "ready", "database": "ok", "blob_store": "ok", "master_keys": master_keys }),
    ))
}
