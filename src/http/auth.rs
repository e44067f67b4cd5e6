//! Citizen authentication and vault routes (SPEC §4), JSON in and out.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use custodia_crypto::Passphrase;
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::AppState;
use super::error::ApiError;
use super::extract::{Authed, CEREMONY, ClientAddr, Cookies, EID_PROOF, JsonObject, SESSION};
#[allow(unused_imports)]
use super::openapi::{CitizenErrors, Problem};
use crate::citizens;
use crate::passkeys::CEREMONY_TTL_MS;
use crate::sessions::ABSOLUTE_MS;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_start))
        .routes(routes!(register_finish))
        .routes(routes!(login_start))
        .routes(routes!(login_finish))
        .routes(routes!(logout))
        .routes(routes!(logout_everywhere))
        .routes(routes!(lock))
        .routes(routes!(me))
        .routes(routes!(add_passkey_start))
        .routes(routes!(add_passkey_finish))
        .routes(routes!(remove_passkey))
        .routes(routes!(step_up_start))
        .routes(routes!(step_up_finish))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(unlock))
                .routes(routes!(recover))
                .routes(routes!(change_passphrase))
                .route_layer(axum::middleware::from_fn_with_state(
                    std::sync::Arc::new(tokio::sync::Semaphore::new(GUESSES_IN_FLIGHT)),
                    guess_in_turn,
                )),
        )
}

/// Requests that try a secret (passphrase or recovery code) being answered at once; more
/// wait their turn.
const GUESSES_IN_FLIGHT: usize = 4;

/// How long a request that tries a secret waits for its turn before `503`.
const GUESS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Lets at most [`GUESSES_IN_FLIGHT`] requests that try a secret into the server at once
/// (the turns are this router's semaphore); the others wait, costing nothing, until one is
/// answered. A flood of guesses then occupies a few tasks and database connections, not
/// all of them, and every other request (reads, listings, health) keeps its place; the
/// flood's own answers come no faster than those few can give them. Rate limits and the
/// derivation limiter still apply inside.
async fn guess_in_turn(
    State(turns): State<std::sync::Arc<tokio::sync::Semaphore>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(GUESS_WAIT, turns.acquire()).await {
        Ok(Ok(_turn)) => next.run(request).await,
        _ => ApiError::from(crate::error::Error::Busy).into_response(),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RegisterStart {
    /// Her national ID number (18 characters, the check digit valid).
    #[schema(pattern = "^[0-9]{17}[0-9Xx]$", min_length = 18, max_length = 18)]
    national_id: String,
    display_name: String,
    /// The one-time code issued for this national ID (required unless registration is
    /// `open`; with `oidc`, a national eID sign-in in this browser stands in for it);
    /// with a code, an ID that already has an account re-enrols a passkey.
    enrolment_code: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RegisterFinish {
    #[schema(schema_with = super::params::registration_credential)]
    credential: RegisterPublicKeyCredential,
    /// The new vault passphrase; on a re-enrolment, the current one (the vault opens if it
    /// is right, and the session stays locked if it is absent or wrong).
    passphrase: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginStart {
    /// Her national ID number (18 characters, the check digit valid).
    #[schema(pattern = "^[0-9]{17}[0-9Xx]$", min_length = 18, max_length = 18)]
    national_id: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginFinish {
    #[schema(schema_with = super::params::assertion_credential)]
    credential: PublicKeyCredential,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Unlock {
    passphrase: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Recover {
    recovery_code: String,
    new_passphrase: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ChangePassphrase {
    current_passphrase: String,
    new_passphrase: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AddPasskeyFinish {
    #[schema(schema_with = super::params::registration_credential)]
    credential: RegisterPublicKeyCredential,
    label: Option<String>,
}

/// A JSON response that also sets `cookies`.
pub(super) fn with_cookies(
    body: serde_json::Value,
    cookies: &[axum::http::HeaderValue],
) -> Response {
    let mut response = Json(body).into_response();
    for c in cookies {
        response.headers_mut().append(header::SET_COOKIE, c.clone());
    }
    response
}

fn ceremony_ttl_s() -> i64 {
    CEREMONY_TTL_MS / 1000
}

#[utoipa::path(
    post,
    path = "/auth/register/start",
    tag = "auth",
    summary = "Start registering with a passkey",
    request_body = RegisterStart,
    responses((status = 200, description = "WebAuthn creation options: {publicKey: …}", body = Object, example = json!({"publicKey":{"rp":{"id":"localhost","name":"Custodia"},"challenge":"base64url…","user":{"id":"base64url…","name":"张伟","displayName":"张伟"}}})), CitizenErrors)
)]
async fn register_start(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    JsonObject(body): JsonObject<RegisterStart>,
) -> Result<Response, ApiError> {
    let cookies = Cookies::for_state(&state);
    // A typed code first; else the proof a national eID sign-in left in this browser.
    let typed = body
        .enrolment_code
        .as_deref()
        .filter(|c| !c.trim().is_empty());
    let (options, token) = citizens::register_start(
        &state,
        &body.national_id,
        &body.display_name,
        typed.or(cookies.get(&headers, EID_PROOF)),
        &client,
    )
    .await?;
    Ok(with_cookies(
        serde_json::to_value(options).map_err(ApiError::internal)?,
        &[cookies.set(CEREMONY, &token, ceremony_ttl_s())],
    ))
}

#[utoipa::path(
    post,
    path = "/auth/register/finish",
    tag = "auth",
    summary = "Finish registration: account created, vault unlocked, recovery code returned once (a re-enrolment: passkeys replaced, no recovery code)",
    request_body = RegisterFinish,
    responses((status = 200, description = "{citizen_id, csrf_token, recovery_code, unlocked}", body = Object, example = json!({"citizen_id":"6f1c…","csrf_token":"…","recovery_code":"ABCD-…","unlocked":true})), CitizenErrors)
)]
async fn register_finish(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    JsonObject(body): JsonObject<RegisterFinish>,
) -> Result<Response, ApiError> {
    let cookies = Cookies::for_state(&state);
    let passphrase = body.passphrase.map(Passphrase::new);
    let done = citizens::register_finish(
        &state,
        cookies.get(&headers, CEREMONY),
        &body.credential,
        passphrase.as_ref(),
        &client,
    )
    .await?;
    Ok(with_cookies(
        json!({
            "citizen_id": done.citizen_id,
            "csrf_token": done.session.csrf_token,
            "recovery_code": done.recovery_code,
            "unlocked": done.unlocked,
        }),
        &[
            cookies.set(CEREMONY, "", 0),
            cookies.set(EID_PROOF, "", 0),
            cookies.set(SESSION, &done.session.cookie, ABSOLUTE_MS / 1000),
        ],
    ))
}

#[utoipa::path(
    post,
    path = "/auth/login/start",
    tag = "auth",
    summary = "Start signing in with a passkey",
    request_body = LoginStart,
    responses((status = 200, description = "WebAuthn request options", body = Object, example = json!({"publicKey":{"challenge":"base64url…","allowCredentials":[{"type":"public-key","id":"base64url…"}],"userVerification":"required"}})), CitizenErrors)
)]
async fn login_start(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    JsonObject(body): JsonObject<LoginStart>,
) -> Result<Response, ApiError> {
    let (options, token) = citizens::login_start(&state, &body.national_id, &client).await?;
    let cookies = Cookies::for_state(&state);
    Ok(with_cookies(
        serde_json::to_value(options).map_err(ApiError::internal)?,
        &[cookies.set(CEREMONY, &token, ceremony_ttl_s())],
    ))
}

#[utoipa::path(
    post,
    path = "/auth/login/finish",
    tag = "auth",
    summary = "Finish signing in",
    request_body = LoginFinish,
    responses((status = 200, description = "{citizen_id, csrf_token}", body = Object, example = json!({"citizen_id":"6f1c0000-0000-4000-8000-000000000005","csrf_token":"base64url…"})), CitizenErrors)
)]
async fn login_finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonObject(body): JsonObject<LoginFinish>,
) -> Result<Response, ApiError> {
    let cookies = Cookies::for_state(&state);
    let (citizen_id, session) =
        citizens::login_finish(&state, cookies.get(&headers, CEREMONY), &body.credential).await?;
    Ok(with_cookies(
        json!({ "citizen_id": citizen_id, "csrf_token": session.csrf_token }),
        &[
            cookies.set(CEREMONY, "", 0),
            cookies.set(SESSION, &session.cookie, ABSOLUTE_MS / 1000),
        ],
    ))
}

#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    summary = "Sign out of this session",
    security(("citizen_session" = [])),
    responses((status = 204, description = "Signed out"), CitizenErrors)
)]
async fn logout(
    State(state): State<AppState>,
    Authed(session): Authed,
) -> Result<Response, ApiError> {
    session.end(&state).await?;
    let cookies = Cookies::for_state(&state);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, cookies.set(SESSION, "", 0));
    Ok(response)
}

#[utoipa::path(
    post,
    path = "/auth/logout-everywhere",
    tag = "auth",
    summary = "Sign out of every session (needs a passkey confirmed in the last 5 minutes)",
    security(("citizen_session" = [])),
    responses((status = 200, description = "{sessions_ended}", body = Object, example = json!({"sessions_ended":2})), CitizenErrors)
)]
async fn logout_everywhere(
    State(state): State<AppState>,
    Authed(session): Authed,
) -> Result<Response, ApiError> {
    let ended = citizens::end_all_sessions(&state, &session).await?;
    let cookies = Cookies::for_state(&state);
    Ok(with_cookies(
        json!({ "sessions_ended": ended }),
        &[cookies.set(SESSION, "", 0)],
    ))
}

#[utoipa::path(
    post,
    path = "/vault/unlock",
    tag = "auth",
    summary = "Unlock the vault with the passphrase",
    request_body = Unlock,
    security(("citizen_session" = [])),
    responses((status = 200, description = "{unlocked: true}", body = Object, example = json!({"unlocked":true})), CitizenErrors, (status = 429, description = "Too many attempts", body = Problem, content_type = "application/problem+json"))
)]
async fn unlock(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Authed(mut session): Authed,
    JsonObject(body): JsonObject<Unlock>,
) -> Result<Json<serde_json::Value>, ApiError> {
    citizens::unlock(
        &state,
        &mut session,
        &Passphrase::new(body.passphrase),
        &client,
    )
    .await?;
    Ok(Json(json!({ "unlocked": true })))
}

#[utoipa::path(
    post,
    path = "/vault/lock",
    tag = "auth",
    summary = "Lock the vault again",
    security(("citizen_session" = [])),
    responses((status = 200, description = "{unlocked: false}", body = Object, example = json!({"unlocked":false})), CitizenErrors)
)]
async fn lock(
    State(state): State<AppState>,
    Authed(mut session): Authed,
) -> Result<Json<serde_json::Value>, ApiError> {
    session.lock(&state).await?;
    Ok(Json(json!({ "unlocked": false })))
}

#[utoipa::path(
    post,
    path = "/vault/recover",
    tag = "auth",
    summary = "Set a new passphrase with the recovery code",
    request_body = Recover,
    security(("citizen_session" = [])),
    responses((status = 200, description = "{recovery_code}: a fresh code, shown once", body = Object, example = json!({"recovery_code":"ABCD-EFGH-…"})), CitizenErrors)
)]
async fn recover(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Authed(mut session): Authed,
    JsonObject(body): JsonObject<Recover>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let code = citizens::recover(
        &state,
        &mut session,
        &body.recovery_code,
        &Passphrase::new(body.new_passphrase),
        &client,
    )
    .await?;
    Ok(Json(json!({ "unlocked": true, "recovery_code": code })))
}

#[utoipa::path(
    get,
    path = "/me",
    tag = "citizen",
    summary = "The signed-in citizen's profile",
    security(("citizen_session" = [])),
    responses((status = 200, description = "Profile", body = Object, example = json!({"citizen_id":"6f1c0000-0000-4000-8000-000000000005","display_name":"张伟","unlocked":true})), CitizenErrors)
)]
async fn me(
    State(state): State<AppState>,
    Authed(session): Authed,
) -> Result<Json<citizens::Profile>, ApiError> {
    Ok(Json(citizens::profile(&state, &session).await?))
}

#[utoipa::path(
    post,
    path = "/me/passphrase",
    tag = "citizen",
    summary = "Change the vault passphrase (needs a passkey confirmed in the last 5 minutes): the vault key is rotated, other sessions end, a new recovery code is returned once",
    request_body = ChangePassphrase,
    security(("citizen_session" = [])),
    responses((status = 200, description = "{recovery_code}: the new code, shown once; the old one no longer works", body = Object, example = json!({"recovery_code":"ABCD-EFGH-…"})), CitizenErrors)
)]
async fn change_passphrase(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Authed(mut session): Authed,
    JsonObject(body): JsonObject<ChangePassphrase>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let code = citizens::change_passphrase(
        &state,
        &mut session,
        &Passphrase::new(body.current_passphrase),
        &Passphrase::new(body.new_passphrase),
        &client,
    )
    .await?;
    Ok(Json(json!({ "recovery_code": code })))
}

#[utoipa::path(
    post,
    path = "/me/step-up/start",
    tag = "citizen",
    summary = "Start confirming an account change with a passkey",
    security(("citizen_session" = [])),
    responses((status = 200, description = "WebAuthn request options for the citizen's passkeys", body = Object, example = json!({"publicKey":{"challenge":"base64url…","userVerification":"required"}})), CitizenErrors)
)]
async fn step_up_start(
    State(state): State<AppState>,
    Authed(session): Authed,
) -> Result<Response, ApiError> {
    let (options, token) = citizens::step_up_start(&state, &session).await?;
    let cookies = Cookies::for_state(&state);
    Ok(with_cookies(
        serde_json::to_value(options).map_err(ApiError::internal)?,
        &[cookies.set(CEREMONY, &token, ceremony_ttl_s())],
    ))
}

#[utoipa::path(
    post,
    path = "/me/step-up/finish",
    tag = "citizen",
    summary = "Finish the confirmation: account changes are allowed in this session for 5 minutes",
    request_body = LoginFinish,
    security(("citizen_session" = [])),
    responses((status = 200, description = "{confirmed_until}", body = Object, example = json!({"confirmed_until":"2026-12-02T10:05:00Z"})), CitizenErrors)
)]
async fn step_up_finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    Authed(mut session): Authed,
    JsonObject(body): JsonObject<LoginFinish>,
) -> Result<Response, ApiError> {
    let cookies = Cookies::for_state(&state);
    let until = citizens::step_up_finish(
        &state,
        &mut session,
        cookies.get(&headers, CEREMONY),
        &body.credential,
    )
    .await?;
    Ok(with_cookies(
        json!({ "confirmed_until": crate::clock::rfc3339(until) }),
        &[cookies.set(CEREMONY, "", 0)],
    ))
}

#[utoipa::path(
    post,
    path = "/me/passkeys/start",
    tag = "citizen",
    summary = "Start adding a passkey",
    security(("citizen_session" = [])),
    responses((status = 200, description = "WebAuthn creation options", body = Object, example = json!({"publicKey":{"challenge":"base64url…"}})), CitizenErrors)
)]
async fn add_passkey_start(
    State(state): State<AppState>,
    Authed(session): Authed,
) -> Result<Response, ApiError> {
    let (options, token) = citizens::add_passkey_start(&state, &session).await?;
    let cookies = Cookies::for_state(&state);
    Ok(with_cookies(
        serde_json::to_value(options).map_err(ApiError::internal)?,
        &[cookies.set(CEREMONY, &token, ceremony_ttl_s())],
    ))
}

#[utoipa::path(
    post,
    path = "/me/passkeys/finish",
    tag = "citizen",
    summary = "Finish adding a passkey",
    request_body = AddPasskeyFinish,
    security(("citizen_session" = [])),
    responses((status = 200, description = "The passkey", body = Object, example = json!({"id":"7a000000-0000-4000-8000-000000000006","label":"Passkey 2"})), CitizenErrors)
)]
async fn add_passkey_finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    Authed(session): Authed,
    JsonObject(body): JsonObject<AddPasskeyFinish>,
) -> Result<Response, ApiError> {
    let cookies = Cookies::for_state(&state);
    let id = citizens::add_passkey_finish(
        &state,
        &session,
        cookies.get(&headers, CEREMONY),
        &body.credential,
        body.label.as_deref(),
    )
    .await?;
    Ok(with_cookies(
        json!({ "id": id }),
        &[cookies.set(CEREMONY, "", 0)],
    ))
}

#[utoipa::path(
    delete,
    path = "/me/passkeys/{id}",
    tag = "citizen",
    summary = "Remove a passkey (the last one stays)",
    params(("id" = Uuid, Path, description = "The id")),
    security(("citizen_session" = [])),
    responses((status = 204, description = "Removed"), CitizenErrors)
)]
async fn remove_passkey(
    State(state): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    citizens::remove_passkey(&state, &session, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
