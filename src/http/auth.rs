//! Citizen authentication and vault routes (SPEC §4), JSON in and out.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use custodia_crypto::Passphrase;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::AppState;
use super::error::ApiError;
use super::extract::{Authed, CEREMONY, ClientAddr, Cookies, SESSION};
use crate::citizens;
use crate::passkeys::CEREMONY_TTL_MS;
use crate::sessions::ABSOLUTE_MS;

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/register/start", post(register_start))
        .route("/auth/register/finish", post(register_finish))
        .route("/auth/login/start", post(login_start))
        .route("/auth/login/finish", post(login_finish))
        .route("/auth/logout", post(logout))
        .route("/auth/logout-everywhere", post(logout_everywhere))
        .route("/vault/unlock", post(unlock))
        .route("/vault/lock", post(lock))
        .route("/vault/recover", post(recover))
        .route("/me", get(me))
        .route("/me/passphrase", post(change_passphrase))
        .route("/me/passkeys/start", post(add_passkey_start))
        .route("/me/passkeys/finish", post(add_passkey_finish))
        .route("/me/passkeys/{id}", delete(remove_passkey))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterStart {
    national_id: String,
    display_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterFinish {
    credential: RegisterPublicKeyCredential,
    passphrase: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginStart {
    national_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginFinish {
    credential: PublicKeyCredential,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Unlock {
    passphrase: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Recover {
    recovery_code: String,
    new_passphrase: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangePassphrase {
    current_passphrase: String,
    new_passphrase: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddPasskeyFinish {
    credential: RegisterPublicKeyCredential,
    label: Option<String>,
}

fn with_cookies(body: serde_json::Value, cookies: &[axum::http::HeaderValue]) -> Response {
    let mut response = Json(body).into_response();
    for c in cookies {
        response.headers_mut().append(header::SET_COOKIE, c.clone());
    }
    response
}

fn ceremony_ttl_s() -> i64 {
    CEREMONY_TTL_MS / 1000
}

async fn register_start(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Json(body): Json<RegisterStart>,
) -> Result<Response, ApiError> {
    let (options, token) =
        citizens::register_start(&state, &body.national_id, &body.display_name, &client).await?;
    let cookies = Cookies::for_state(&state);
    Ok(with_cookies(
        serde_json::to_value(options).map_err(ApiError::internal)?,
        &[cookies.set(CEREMONY, &token, ceremony_ttl_s())],
    ))
}

async fn register_finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<RegisterFinish>,
) -> Result<Response, ApiError> {
    let cookies = Cookies::for_state(&state);
    let passphrase = Passphrase::new(body.passphrase);
    let done = citizens::register_finish(
        &state,
        cookies.get(&headers, CEREMONY),
        &body.credential,
        &passphrase,
    )
    .await?;
    Ok(with_cookies(
        json!({
            "citizen_id": done.citizen_id,
            "csrf_token": done.session.csrf_token,
            "recovery_code": done.recovery_code,
        }),
        &[
            cookies.set(CEREMONY, "", 0),
            cookies.set(SESSION, &done.session.cookie, ABSOLUTE_MS / 1000),
        ],
    ))
}

async fn login_start(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Json(body): Json<LoginStart>,
) -> Result<Response, ApiError> {
    let (options, token) = citizens::login_start(&state, &body.national_id, &client).await?;
    let cookies = Cookies::for_state(&state);
    Ok(with_cookies(
        serde_json::to_value(options).map_err(ApiError::internal)?,
        &[cookies.set(CEREMONY, &token, ceremony_ttl_s())],
    ))
}

async fn login_finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<LoginFinish>,
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

async fn logout_everywhere(
    State(state): State<AppState>,
    Authed(session): Authed,
) -> Result<Response, ApiError> {
    let citizen = session.citizen()?;
    let ended = state.store.delete_citizen_sessions(citizen).await?;
    let cookies = Cookies::for_state(&state);
    Ok(with_cookies(
        json!({ "sessions_ended": ended }),
        &[cookies.set(SESSION, "", 0)],
    ))
}

async fn unlock(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Authed(mut session): Authed,
    Json(body): Json<Unlock>,
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

async fn lock(
    State(state): State<AppState>,
    Authed(mut session): Authed,
) -> Result<Json<serde_json::Value>, ApiError> {
    session.lock(&state).await?;
    Ok(Json(json!({ "unlocked": false })))
}

async fn recover(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Authed(mut session): Authed,
    Json(body): Json<Recover>,
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

async fn me(
    State(state): State<AppState>,
    Authed(session): Authed,
) -> Result<Json<citizens::Profile>, ApiError> {
    Ok(Json(citizens::profile(&state, &session).await?))
}

async fn change_passphrase(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Authed(session): Authed,
    Json(body): Json<ChangePassphrase>,
) -> Result<StatusCode, ApiError> {
    citizens::change_passphrase(
        &state,
        &session,
        &Passphrase::new(body.current_passphrase),
        &Passphrase::new(body.new_passphrase),
        &client,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

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

async fn add_passkey_finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    Authed(session): Authed,
    Json(body): Json<AddPasskeyFinish>,
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

async fn remove_passkey(
    State(state): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    citizens::remove_passkey(&state, &session, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
