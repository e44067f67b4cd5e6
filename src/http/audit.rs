//! The auditor's API (SPEC §4): enrolment from an invite and sign-in with a passkey, then
//! `GET /api/v1/audit/events`, `/verify`, `/export` and the reasoned reveal — all with an
//! auditor's session (and `X-CSRF-Token` on POST). Citizens and agencies are refused.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::AppState;
use super::auth::with_cookies;
use super::error::ApiError;
use super::extract::{Authed, CEREMONY, ClientAddr, Cookies, JsonObject, SESSION};
#[allow(unused_imports)]
use super::openapi::{CitizenErrors, Problem};
use crate::auditors::{self, Query as AuditQuery};
use crate::error::invalid;
use crate::passkeys::CEREMONY_TTL_MS;
use crate::sessions::ABSOLUTE_MS;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enrol_start))
        .routes(routes!(enrol_finish))
        .routes(routes!(login_start))
        .routes(routes!(login_finish))
        .routes(routes!(events))
        .routes(routes!(verify))
        .routes(routes!(export))
        .routes(routes!(confirm_identity))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EnrolStart {
    /// The token from the enrolment link.
    token: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EnrolFinish {
    #[schema(schema_with = super::params::registration_credential)]
    credential: RegisterPublicKeyCredential,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AuditorLoginStart {
    /// The auditor's name, as invited.
    #[schema(schema_with = crate::error::name_text)]
    name: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AuditorLoginFinish {
    #[schema(schema_with = super::params::assertion_credential)]
    credential: PublicKeyCredential,
}

#[utoipa::path(post, path = "/audit/auth/enrol/start", tag = "audit",
    summary = "Start enrolling a passkey from a one-time invite",
    request_body = EnrolStart,
    responses((status = 200, description = "WebAuthn creation options", body = Object, example = json!({"publicKey":{"challenge":"base64url…"}})), CitizenErrors))]
async fn enrol_start(
    State(state): State<AppState>,
    JsonObject(body): JsonObject<EnrolStart>,
) -> Result<Response, ApiError> {
    let (options, ceremony) = auditors::enrol_start(&state, &body.token).await?;
    let cookies = Cookies::for_state(&state);
    Ok(with_cookies(
        serde_json::to_value(options).map_err(ApiError::internal)?,
        &[cookies.set(CEREMONY, &ceremony, CEREMONY_TTL_MS / 1000)],
    ))
}

#[utoipa::path(post, path = "/audit/auth/enrol/finish", tag = "audit",
    summary = "Finish enrolment: the invite is used, a session opens",
    request_body = EnrolFinish,
    responses((status = 200, description = "{auditor_id, csrf_token}", body = Object, example = json!({"auditor_id":"8b000000-0000-4000-8000-000000000007","csrf_token":"base64url…"})), CitizenErrors))]
async fn enrol_finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonObject(body): JsonObject<EnrolFinish>,
) -> Result<Response, ApiError> {
    let cookies = Cookies::for_state(&state);
    let (id, session) =
        auditors::enrol_finish(&state, cookies.get(&headers, CEREMONY), &body.credential).await?;
    Ok(with_cookies(
        json!({ "auditor_id": id, "csrf_token": session.csrf_token }),
        &[
            cookies.set(CEREMONY, "", 0),
            cookies.set(SESSION, &session.cookie, ABSOLUTE_MS / 1000),
        ],
    ))
}

#[utoipa::path(post, operation_id = "audit_login_start", path = "/audit/auth/login/start", tag = "audit",
    summary = "Start an auditor's sign-in",
    request_body = AuditorLoginStart,
    responses((status = 200, description = "WebAuthn request options", body = Object, example = json!({"publicKey":{"challenge":"base64url…"}})), CitizenErrors))]
async fn login_start(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    JsonObject(body): JsonObject<AuditorLoginStart>,
) -> Result<Response, ApiError> {
    let (options, ceremony) = auditors::login_start(&state, &body.name, &client).await?;
    let cookies = Cookies::for_state(&state);
    Ok(with_cookies(
        serde_json::to_value(options).map_err(ApiError::internal)?,
        &[cookies.set(CEREMONY, &ceremony, CEREMONY_TTL_MS / 1000)],
    ))
}

#[utoipa::path(post, operation_id = "audit_login_finish", path = "/audit/auth/login/finish", tag = "audit",
    summary = "Finish an auditor's sign-in",
    request_body = AuditorLoginFinish,
    responses((status = 200, description = "{auditor_id, csrf_token}", body = Object, example = json!({"auditor_id":"8b000000-0000-4000-8000-000000000007","csrf_token":"base64url…"})), CitizenErrors))]
async fn login_finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonObject(body): JsonObject<AuditorLoginFinish>,
) -> Result<Response, ApiError> {
    let cookies = Cookies::for_state(&state);
    let (id, session) =
        auditors::login_finish(&state, cookies.get(&headers, CEREMONY), &body.credential).await?;
    Ok(with_cookies(
        json!({ "auditor_id": id, "csrf_token": session.csrf_token }),
        &[
            cookies.set(CEREMONY, "", 0),
            cookies.set(SESSION, &session.cookie, ABSOLUTE_MS / 1000),
        ],
    ))
}

/// Search parameters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// A citizen's pseudonym.
    pub citizen: Option<String>,
    /// An agency's id.
    pub agency: Option<String>,
    /// An officer's id.
    pub officer: Option<String>,
    /// An action (`document.read`…).
    pub action: Option<String>,
    /// `ok`, `refused` or `failed`.
    #[param(pattern = "^(ok|refused|failed)?$")]
    pub outcome: Option<String>,
    /// From (RFC 3339).
    #[param(schema_with = super::params::time_or_empty)]
    pub since: Option<String>,
    /// Until (RFC 3339, exclusive).
    #[param(schema_with = super::params::time_or_empty)]
    pub until: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(minimum = 1)]
    pub cursor: Option<i64>,
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

impl EventsQuery {
    /// The domain query.
    pub fn query(&self) -> Result<AuditQuery, ApiError> {
        let some = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        if self.cursor.is_some_and(|c| c < 1) {
            return Err(invalid("cursor", "must be a next_cursor this search returned").into());
        }
        Ok(AuditQuery {
            citizen: some(&self.citizen),
            agency: some(&self.agency),
            officer: some(&self.officer),
            action: some(&self.action),
            outcome: super::params::outcome(self.outcome.as_deref())?,
            since_ms: super::params::time("since", self.since.as_deref())?,
            until_ms: super::params::time("until", self.until.as_deref())?,
            before_seq: self.cursor,
        })
    }
}

#[utoipa::path(get, path = "/api/v1/audit/events", tag = "audit",
    summary = "Search the trail (auditors; the query itself is recorded)",
    params(EventsQuery),
    security(("auditor_session" = [])),
    responses((status = 200, description = "{events, next_cursor}", body = Object, example = json!({"events":[{"seq":42,"at":"2026-11-28T09:10:00Z","actor_kind":"agency","actor_id":"3f0c7b2a-0000-4000-8000-000000000003","officer_id":"officer-7","case_id":"C-1","citizen":"p-3fa85f6457174562","action":"document.read","object_ids":"[\"5a3e…\"]","grant_id":"9d2150c4-0000-4000-8000-000000000001","purpose":"企业设立登记","tier":"fields","fields":"[\"company_name\"]","outcome":"ok","bytes_sent":412,"request_id":"…","detail":null,"prev_hash":"…","hash":"…"}],"next_cursor":null})), CitizenErrors))]
async fn events(
    State(state): State<AppState>,
    Authed(session): Authed,
    Query(q): Query<EventsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(invalid("limit", "must be from 1 to 500").into());
    }
    let rows = auditors::search(&state, &session, &q.query()?, limit).await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.seq))
        .flatten();
    Ok(Json(
        json!({ "events": auditors::shown(&rows), "next_cursor": next }),
    ))
}

#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    summary = "Verify the whole chain and its signed checkpoints (auditors)",
    security(("auditor_session" = [])),
    responses((status = 200, description = "{intact, summary | fault}", body = Object, example = json!({"intact":true,"summary":{"events":18,"head_seq":18,"head_hash":"aa2d64…","last_checkpoint":18}})), CitizenErrors))]
async fn verify(
    State(state): State<AppState>,
    Authed(session): Authed,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        match auditors::verify_chain(&state, &session).await? {
            Ok(summary) => json!({ "intact": true, "summary": summary }),
            Err(fault) => json!({ "intact": false, "fault": fault }),
        },
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    /// From (RFC 3339).
    #[param(schema_with = super::params::time_or_empty)]
    since: Option<String>,
    /// Until (RFC 3339, exclusive).
    #[param(schema_with = super::params::time_or_empty)]
    until: Option<String>,
    /// `csv` or `jsonl` (default).
    #[param(pattern = "^(csv|jsonl)$")]
    format: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/audit/export", tag = "audit",
    summary = "Export the trail as CSV or JSON lines (auditors; recorded)",
    params(ExportQuery),
    security(("auditor_session" = [])),
    responses((status = 200, description = "CSV (`format=csv`) or JSON lines", content((String = "text/csv"), (String = "application/x-ndjson"))), CitizenErrors))]
async fn export(
    State(state): State<AppState>,
    Authed(session): Authed,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let format = crate::audit::Format::parse(q.format.as_deref().unwrap_or("jsonl"))?;
    let bytes = auditors::export(
        &state,
        &session,
        super::params::time("since", q.since.as_deref())?,
        super::params::time("until", q.until.as_deref())?,
        format,
    )
    .await?;
    let (mime, ext) = match format {
        crate::audit::Format::Csv => ("text/csv; charset=utf-8", "csv"),
        crate::audit::Format::Jsonl => ("application/x-ndjson", "jsonl"),
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"custodia-audit.{ext}\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ConfirmIdentity {
    /// The citizen's pseudonym.
    pseudonym: String,
    /// The national ID the case names (the candidate to confirm or refute).
    #[schema(pattern = "^[0-9]{17}[0-9Xx]$", min_length = 18, max_length = 18)]
    national_id: String,
    /// The written case reason (recorded with the question and its answer).
    #[schema(schema_with = crate::error::reason_text)]
    reason: String,
}

#[utoipa::path(post, path = "/api/v1/audit/confirm-identity", tag = "audit",
    summary = "Confirm or refute that a national ID is the one behind a pseudonym, for a written case reason (recorded). Revealing an unknown ID needs the oversight office's key: `custodia audit reveal`",
    request_body = ConfirmIdentity,
    security(("auditor_session" = [])),
    responses((status = 200, description = "{matches}", body = Object, example = json!({"matches":true})), CitizenErrors))]
async fn confirm_identity(
    State(state): State<AppState>,
    Authed(session): Authed,
    JsonObject(body): JsonObject<ConfirmIdentity>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let matches = auditors::confirm_identity(
        &state,
        &session,
        &body.pseudonym,
        &body.national_id,
        &body.reason,
    )
    .await?;
    Ok(Json(json!({ "matches": matches })))
}
