//! The log's public face — the newest signed checkpoint and consistency proofs, for anyone
//! (agencies, witnesses, auditors, citizens' browsers) — and a citizen's inclusion proofs.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::extract::Authed;
#[allow(unused_imports)]
use super::openapi::{CitizenErrors, Problem};
use crate::transparency::{self, Bundle, CheckpointView, Consistency, InclusionProof};

/// Public routes (no credentials: checkpoints and proofs reveal no personal data).
pub fn public_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(checkpoint))
        .routes(routes!(consistency))
}

/// Citizen routes.
pub fn citizen_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(proof))
        .routes(routes!(proofs))
}

#[utoipa::path(
    get,
    path = "/api/v1/audit/checkpoint",
    tag = "public",
    summary = "The newest signed checkpoint of the audit log (C2SP tlog-checkpoint note)",
    responses(
        (status = 200, description = "The checkpoint", body = CheckpointView, example = json!({"origin":"custodia.gov.example/audit","size":1042,"root_hash":"2b1V…=","time":"2026-12-02T09:00:00Z","key_id":"a1b2c3d4e5f60718","verifier_key":"custodia.gov.example/audit+8a3f0c21+AR…","note":"custodia.gov.example/audit\n1042\n2b1V…=\ntime 1796202000000\n\n— custodia.gov.example/audit ijw…\n"})),
        (status = 404, description = "No checkpoint signed yet", body = Problem, content_type = "application/problem+json")
    )
)]
async fn checkpoint(State(state): State<AppState>) -> Result<Json<CheckpointView>, ApiError> {
    Ok(Json(transparency::latest(&state).await?))
}

/// Sizes of a consistency proof.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Sizes {
    /// The older tree size (at least 1).
    pub from: u64,
    /// The newer tree size (at most the log's size).
    pub to: u64,
}

#[utoipa::path(
    get,
    path = "/api/v1/audit/consistency",
    tag = "public",
    summary = "Proof that the log at `to` events extends the log at `from` (RFC 9162)",
    params(Sizes),
    responses(
        (status = 200, description = "The proof", body = Consistency, example = json!({"from":1000,"to":1042,"proof":["q2Zx…=","0Jk3…="]})),
        (status = 400, description = "Sizes missing or not numbers", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Sizes out of range", body = Problem, content_type = "application/problem+json")
    )
)]
async fn consistency(
    State(state): State<AppState>,
    Query(sizes): Query<Sizes>,
) -> Result<Json<Consistency>, ApiError> {
    Ok(Json(
        transparency::consistency(&state, sizes.from, sizes.to).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/me/activity/{seq}/proof",
    tag = "citizen",
    summary = "Proof that one of the citizen's events is in the signed log",
    params(("seq" = i64, Path, description = "The event's sequence number")),
    security(("citizen_session" = [])),
    responses(
        (status = 200, description = "The event, its inclusion proof and the checkpoint", body = InclusionProof, example = json!({"seq":42,"leaf_index":41,"event":"{\"action\":\"document.read\",…}","leaf_hash":"yY0…=","proof":["q2Zx…=","0Jk3…="],"checkpoint":{"origin":"custodia.gov.example/audit","size":1042,"root_hash":"2b1V…=","time":"2026-12-02T09:00:00Z","key_id":"a1b2c3d4e5f60718","verifier_key":"custodia.gov.example/audit+8a3f0c21+AR…","note":"custodia.gov.example/audit\n1042\n2b1V…=\ntime 1796202000000\n\n— custodia.gov.example/audit ijw…\n"}})),
        (status = 409, description = "Not in a signed checkpoint yet", body = Problem, content_type = "application/problem+json"),
        CitizenErrors
    )
)]
async fn proof(
    State(state): State<AppState>,
    Authed(session): Authed,
    Path(seq): Path<i64>,
) -> Result<Json<InclusionProof>, ApiError> {
    Ok(Json(
        transparency::citizen_proof(&state, &session, seq).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/me/activity/proofs",
    tag = "citizen",
    summary = "Every proof the citizen can take away: her events in the newest checkpoint (for `custodia audit verify-proof`)",
    security(("citizen_session" = [])),
    responses(
        (status = 200, description = "The bundle", body = Bundle, example = json!({"format":"custodia-proofs/1","checkpoint":{"origin":"custodia.gov.example/audit","size":1042,"root_hash":"2b1V…=","time":"2026-12-02T09:00:00Z","key_id":"a1b2c3d4e5f60718","verifier_key":null,"note":"…"},"events":[{"seq":42,"leaf_index":41,"event":"{…}","proof":["q2Zx…="]}]})),
        CitizenErrors
    )
)]
async fn proofs(
    State(state): State<AppState>,
    Authed(session): Authed,
) -> Result<([(axum::http::HeaderName, &'static str); 1], Json<Bundle>), ApiError> {
    let bundle = transparency::citizen_bundle(&state, &session).await?;
    Ok((
        [(
            axum::http::header::CONTENT_DISPOSITION,
            "attachment; filename=\"custodia-proofs.json\"",
        )],
        Json(bundle),
    ))
}
