//! The agency API (SPEC §4): `Authorization: Bearer <key>`; `X-Officer-Id` and
//! `X-Case-Id` on every read. JSON in and out, problem+json errors, cursor pagination.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Multipart, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::extract::{JsonObject, single_header};
#[allow(unused_imports)]
use super::openapi::{AgencyErrors, Problem};
use crate::documents::deposit::{Accepted, Deposit};
use crate::error::{Error, invalid};
use crate::grants::GrantView;
use crate::grants::reads::{self, Caller, Covered, Disclosure, ReadRequest};
use crate::ids::{AccessRequestId, DocumentId, GrantId};
use crate::requests::{self, AgencyView, NewRequest};
use crate::store::agencies::AgencyRow;

/// The answer to a new access request (the same whether or not the citizen is registered).
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct RequestCreated {
    /// The request's id.
    id: AccessRequestId,
    /// `pending`.
    status: String,
}

/// A page of the agency's grants.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct GrantPage {
    /// Newest first.
    grants: Vec<GrantView>,
    /// Pass as `cursor` for the next page; null at the end.
    next_cursor: Option<String>,
}

/// The documents a grant covers.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct CoveredDocuments {
    /// Each covered document (no contents).
    documents: Vec<Covered>,
}

/// Quick JSON routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_request))
        .routes(routes!(request_status))
        .routes(routes!(list_grants))
        .routes(routes!(grant))
        .routes(routes!(grant_documents))
        .routes(routes!(read))
        .routes(routes!(public_key))
        .routes(routes!(enrolment_code))
}

/// Routes that move files (a transfer group: see `http::app` for its limits).
pub fn transfer_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(read_file))
        .routes(routes!(deposit))
}

/// `401` with the Bearer challenge.
fn challenge(detail: &str) -> Response {
    let mut r = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Unauthorized",
        detail,
    )
    .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"custodia\""),
    );
    r
}

/// The key of `Authorization: Bearer <key>`; without one (none sent, or more than one
/// `Authorization` header), what the challenge says.
fn bearer(parts: &Parts) -> Result<&str, &'static str> {
    single_header(&parts.headers, header::AUTHORIZATION)
        .map_err(|()| "Send one 'Authorization' header, not several.")?
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or("Send the agency API key as 'Authorization: Bearer <key>'.")
}

/// An error of the agency API: a refused key is the Bearer challenge.
fn agency_error(e: Error) -> Response {
    match e {
        Error::Unauthenticated(detail) => challenge(&detail),
        e => ApiError::from(e).into_response(),
    }
}

/// The agency an API key belongs to.
pub struct Agency(pub AgencyRow);

impl FromRequestParts<AppState> for Agency {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let key = bearer(parts).map_err(challenge)?;
        crate::agencies::authenticate(state, key)
            .await
            .map(Self)
            .map_err(agency_error)
    }
}

/// The API key as presented, not yet checked: the reads admit it in the one statement that
/// loads what they read ([`reads::read`]), so the hot path makes a single round trip.
pub struct BearerKey(String);

impl FromRequestParts<AppState> for BearerKey {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Response> {
        bearer(parts).map(|k| Self(k.to_owned())).map_err(challenge)
    }
}

/// What a read extracted besides its key, refused in the order every agency route refuses:
/// the key first (looked up on its own only here, when something else is already wrong),
/// then the officer headers, then the path and query.
async fn read_parts<T>(
    state: &AppState,
    key: &str,
    officer: Result<Officer, ApiError>,
    rest: Result<T, Response>,
) -> Result<(Officer, T), Response> {
    match (officer, rest) {
        (Ok(officer), Ok(rest)) => Ok((officer, rest)),
        (officer, rest) => {
            crate::agencies::authenticate(state, key)
                .await
                .map_err(agency_error)?;
            let officer = officer.map_err(IntoResponse::into_response)?;
            Ok((officer, rest?))
        }
    }
}

/// `X-Officer-Id` and `X-Case-Id`: who reads, for which case.
pub struct Officer {
    officer: String,
    case: String,
    request_id: Option<String>,
}

fn header_value(headers: &HeaderMap, name: &'static str) -> Result<String, ApiError> {
    let value = single_header(headers, name)
        .map_err(|()| ApiError::bad_request(format!("Send one {name} header, not several.")))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing-header",
                "Missing header",
                format!("The {name} header is required on every read."),
            )
        })?
        .to_str()
        .map_err(|_| ApiError::bad_request(format!("{name} must be printable ASCII")))?
        .trim();
    if value.is_empty() || value.len() > 100 || value.chars().any(|c| c.is_control()) {
        return Err(ApiError::bad_request(format!(
            "{name} must be 1 to 100 printable characters"
        )));
    }
    Ok(value.to_owned())
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

impl FromRequestParts<AppState> for Officer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        Ok(Self {
            officer: header_value(&parts.headers, "x-officer-id")?,
            case: header_value(&parts.headers, "x-case-id")?,
            request_id: request_id(&parts.headers),
        })
    }
}

impl Officer {
    /// Who breaks the glass, for an emergency access.
    pub(super) fn emergency(&self) -> crate::emergencies::Officer<'_> {
        crate::emergencies::Officer {
            officer: &self.officer,
            case: &self.case,
            request_id: self.request_id.as_deref(),
        }
    }

    fn request<'a>(&'a self, api_key: &'a str) -> ReadRequest<'a> {
        ReadRequest {
            api_key,
            officer: &self.officer,
            case: &self.case,
            request_id: self.request_id.as_deref(),
        }
    }

    fn caller<'a>(&'a self, agency: &'a AgencyRow) -> Caller<'a> {
        Caller {
            agency,
            officer: &self.officer,
            case: &self.case,
            request_id: self.request_id.as_deref(),
        }
    }
}

fn optional_header(headers: &HeaderMap, name: &'static str) -> Result<Option<String>, ApiError> {
    if headers.contains_key(name) {
        header_value(headers, name).map(Some)
    } else {
        Ok(None)
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/access-requests",
    tag = "agency",
    summary = "Ask a citizen (by national ID) for documents",
    request_body = NewRequest,
    security(("agency_key" = [])),
    responses((status = 201, description = "{id, status}; the same answer whether or not the citizen is registered", body = RequestCreated, links(("RequestStatus" = (operation_id = "request_status", parameters(("id" = "$response.body#/id")), description = "Poll the request until the citizen decides"))), example = json!({"id":"0b7e…","status":"pending"})), AgencyErrors)
)]
async fn create_request(
    State(state): State<AppState>,
    Agency(agency): Agency,
    headers: HeaderMap,
    JsonObject(body): JsonObject<NewRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let officer = optional_header(&headers, "x-officer-id")?;
    let case = optional_header(&headers, "x-case-id")?;
    let retry = idempotency_key(&headers)?.map(|key| requests::Retry {
        key,
        fingerprint: fingerprint(&[
            serde_json::to_string(&body).unwrap_or_default().as_bytes(),
            officer.as_deref().unwrap_or_default().as_bytes(),
            case.as_deref().unwrap_or_default().as_bytes(),
        ]),
    });
    match requests::create_once(
        &state,
        &agency,
        &body,
        officer.as_deref(),
        case.as_deref(),
        retry.as_ref(),
    )
    .await?
    {
        requests::Answer::Created(id) => Ok((
            StatusCode::CREATED,
            Json(serde_json::json!({ "id": id, "status": "pending" })),
        )),
        requests::Answer::Replayed { status, body } => Ok((
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            Json(body),
        )),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/access-requests/{id}",
    tag = "agency",
    summary = "A request's status and, once approved, its grant",
    params(("id" = Uuid, Path, description = "The id")),
    security(("agency_key" = [])),
    responses((status = 200, description = "Status", body = AgencyView, links(("Grant" = (operation_id = "grant", parameters(("id" = "$response.body#/grant_id")), description = "The grant, once the citizen approved")), ("GrantDocuments" = (operation_id = "grant_documents", parameters(("id" = "$response.body#/grant_id")), description = "The documents the grant covers"))), example = json!({"id":"0b7e0000-0000-4000-8000-000000000004","status":"approved","grant_id":"9d2150c4-0000-4000-8000-000000000001"})), AgencyErrors)
)]
async fn request_status(
    State(state): State<AppState>,
    Agency(agency): Agency,
    Path(id): Path<AccessRequestId>,
) -> Result<Json<AgencyView>, ApiError> {
    Ok(Json(requests::agency_status(&state, &agency, id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    cursor: Option<String>,
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/grants",
    tag = "agency",
    summary = "The agency's grants, newest first",
    params(("cursor" = Option<String>, Query, description = "next_cursor of the previous page (base64url)", max_length = 200, pattern = r"^[A-Za-z0-9_-]*$"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "1 to 200, default 50")),
    security(("agency_key" = [])),
    responses((status = 200, description = "{grants, next_cursor}", body = GrantPage, example = json!({"grants":[{"id":"9d2150c4-0000-4000-8000-000000000001","agency_id":"3f0c7b2a-0000-4000-8000-000000000003","document_ids":[],"document_types":["business_license"],"tier":"fields","fields":["company_name"],"purpose":"企业设立登记","purpose_code":"business_registration","legal_basis":null,"valid_from":"2026-11-28T09:00:00Z","expires_at":"2026-12-05T09:00:00Z","max_reads":null,"reads":1,"retention_days":90,"status":"active","request_id":null,"emergency":false,"end_acknowledged_at":null,"retention_due_at":null,"deleted_at":null,"deletion_overdue":false}],"next_cursor":null})), AgencyErrors)
)]
async fn list_grants(
    State(state): State<AppState>,
    Agency(agency): Agency,
    Query(page): Query<Page>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = page.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(invalid("limit", "must be from 1 to 200").into());
    }
    // An empty cursor is no cursor: the first page.
    let after = page
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(reads::decode_cursor)
        .transpose()?;
    let (grants, next) = reads::list(&state, &agency, after, limit).await?;
    Ok(Json(serde_json::json!({
        "grants": grants,
        "next_cursor": next.map(|(at, id)| reads::encode_cursor(at, id)),
    })))
}

#[utoipa::path(
    get,
    path = "/api/v1/grants/{id}",
    tag = "agency",
    summary = "One grant: scope, tier, status, reads, expiry",
    params(("id" = Uuid, Path, description = "The grant id")),
    security(("agency_key" = [])),
    responses((status = 200, description = "The grant", body = GrantView, example = json!({"id":"9d2150c4-0000-4000-8000-000000000001","agency_id":"3f0c7b2a-0000-4000-8000-000000000003","document_ids":[],"document_types":["business_license"],"tier":"fields","fields":["company_name"],"purpose":"企业设立登记","purpose_code":"business_registration","legal_basis":null,"valid_from":"2026-11-28T09:00:00Z","expires_at":"2026-12-05T09:00:00Z","max_reads":null,"reads":1,"retention_days":90,"status":"active","request_id":null,"emergency":false,"end_acknowledged_at":null,"retention_due_at":null,"deleted_at":null,"deletion_overdue":false})), AgencyErrors)
)]
async fn grant(
    State(state): State<AppState>,
    Agency(agency): Agency,
    Path(id): Path<GrantId>,
) -> Result<Json<GrantView>, ApiError> {
    Ok(Json(reads::get(&state, &agency, id).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/grants/{id}/documents",
    tag = "agency",
    summary = "The documents a live grant covers",
    params(("id" = Uuid, Path, description = "The grant id"), ("X-Officer-Id" = String, Header, description = "The official reading (recorded, shown to the citizen) (1 to 100 visible ASCII characters or spaces)", min_length = 1, max_length = 100, pattern = r"^[ -~]*[!-~][ -~]*$"), ("X-Case-Id" = String, Header, description = "The agency's case number (recorded, shown to the citizen) (1 to 100 visible ASCII characters or spaces)", min_length = 1, max_length = 100, pattern = r"^[ -~]*[!-~][ -~]*$")),
    security(("agency_key" = [])),
    responses((status = 200, description = "{documents: [...]}", body = CoveredDocuments, example = json!({"documents":[{"id":"5a3e0c1e-0000-4000-8000-000000000002","type":"business_license","version":1,"issuer_agency_id":null}]})), AgencyErrors)
)]
async fn grant_documents(
    State(state): State<AppState>,
    Agency(agency): Agency,
    officer: Officer,
    Path(id): Path<GrantId>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let docs: Vec<Covered> = reads::documents(&state, &officer.caller(&agency), id).await?;
    Ok(Json(serde_json::json!({ "documents": docs })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadQuery {
    /// Comma-separated field names, to read fewer than the grant allows.
    fields: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/grants/{id}/documents/{doc_id}",
    tag = "agency",
    summary = "Read a document at the grant's tier (recorded before it is sent)",
    params(("id" = Uuid, Path, description = "The grant id"), ("doc_id" = Uuid, Path, description = "The document id"), ("X-Officer-Id" = String, Header, description = "The official reading (recorded, shown to the citizen) (1 to 100 visible ASCII characters or spaces)", min_length = 1, max_length = 100, pattern = r"^[ -~]*[!-~][ -~]*$"), ("X-Case-Id" = String, Header, description = "The agency's case number (recorded, shown to the citizen) (1 to 100 visible ASCII characters or spaces)", min_length = 1, max_length = 100, pattern = r"^[ -~]*[!-~][ -~]*$"), ("fields" = Option<String>, Query, description = "Comma-separated fields, fewer than granted (up to 100 entries of up to 64 of a-z, 0-9 and _)", pattern = r"^ *[a-z0-9_]{0,64} *(, *[a-z0-9_]{0,64} *){0,99}$")),
    security(("agency_key" = [])),
    responses((status = 200, description = "verify: attestation; fields: granted fields; full: every field", body = Disclosure, example = json!({"document_id":"5a3e0c1e-0000-4000-8000-000000000002","type":"business_license","version":1,"tier":"fields","issuer":null,"issued_at":null,"expires_at":null,"issuer_signature":"none","content_sha256":"9f86d0…","fields":{"company_name":"北京示例科技有限公司"}})), AgencyErrors)
)]
async fn read(
    State(state): State<AppState>,
    BearerKey(key): BearerKey,
    officer: Result<Officer, ApiError>,
    path: Result<Path<(GrantId, DocumentId)>, PathRejection>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<Disclosure>, Response> {
    let rest = match (path, query) {
        (Ok(Path(ids)), Ok(Query(q))) => Ok((ids, q)),
        (Err(e), _) => Err(e.into_response()),
        (_, Err(e)) => Err(e.into_response()),
    };
    let (officer, ((id, doc_id), q)) = read_parts(&state, &key, officer, rest).await?;
    let only: Option<Vec<String>> = q.fields.as_deref().map(|f| {
        f.split(',')
            .map(|s| s.trim_matches(' ').to_owned())
            .collect()
    });
    // Field names are catalog identifiers; anything else is refused here, before it can
    // reach the trail or be echoed back. The rule is the document's pattern for `fields`:
    // up to 100 comma-separated entries, each up to 64 of a-z, 0-9 and _ (spaces around an
    // entry allowed, empty entries ignored).
    if let Some(names) = &only
        && (names.len() > 100
            || names.iter().any(|n| {
                n.len() > 64
                    || !n
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            }))
    {
        return Err(agency_error(crate::error::invalid(
            "fields",
            "must be up to 100 comma-separated catalog field names (a-z, 0-9 and _)",
        )));
    }
    let only = only.map(|names| {
        names
            .into_iter()
            .filter(|n| !n.is_empty())
            .collect::<Vec<_>>()
    });
    reads::read(&state, &officer.request(&key), id, doc_id, only.as_deref())
        .await
        .map(Json)
        .map_err(agency_error)
}

#[utoipa::path(
    get,
    path = "/api/v1/grants/{id}/documents/{doc_id}/file",
    tag = "agency",
    summary = "The file, decrypted (full tier; recorded before the first byte)",
    params(("id" = Uuid, Path, description = "The grant id"), ("doc_id" = Uuid, Path, description = "The document id"), ("X-Officer-Id" = String, Header, description = "The official reading (recorded, shown to the citizen) (1 to 100 visible ASCII characters or spaces)", min_length = 1, max_length = 100, pattern = r"^[ -~]*[!-~][ -~]*$"), ("X-Case-Id" = String, Header, description = "The agency's case number (recorded, shown to the citizen) (1 to 100 visible ASCII characters or spaces)", min_length = 1, max_length = 100, pattern = r"^[ -~]*[!-~][ -~]*$")),
    security(("agency_key" = [])),
    responses((status = 200, description = "The bytes, with Content-Length, Accept-Ranges, ETag and Repr-Digest", content_type = "application/octet-stream"), (status = 206, description = "The requested range (Content-Range); recorded with the range", content_type = "application/octet-stream"), (status = 304, description = "If-None-Match names the current ETag (recorded)"), (status = 416, description = "No requested range lies within the file", body = Problem, content_type = "application/problem+json"), AgencyErrors)
)]
async fn read_file(
    State(state): State<AppState>,
    BearerKey(key): BearerKey,
    officer: Result<Officer, ApiError>,
    path: Result<Path<(GrantId, DocumentId)>, PathRejection>,
    method: Method,
    request_headers: HeaderMap,
) -> Result<Response, Response> {
    let rest = path.map_err(IntoResponse::into_response);
    let (officer, Path((id, doc_id))) = read_parts(&state, &key, officer, rest).await?;
    let decide = super::files::decide(&method, &request_headers);
    let opened = reads::read_file(&state, &officer.request(&key), id, doc_id, decide)
        .await
        .map_err(agency_error)?;
    let mut response = super::files::respond(opened, "attachment");
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    Ok(response)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EnrolmentRequest {
    /// The national ID number of the citizen the officer has identified in person.
    national_id: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct EnrolmentIssued {
    /// The one-time code, to hand to the citizen only.
    enrolment_code: String,
    expires_at: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/enrolment-codes",
    tag = "agency",
    summary = "Issue a one-time enrolment code for a citizen identified in person (enrolling agencies)",
    request_body = EnrolmentRequest,
    security(("agency_key" = [])),
    responses((status = 201, description = "The code, valid 14 days; any earlier code for the ID stops working", body = EnrolmentIssued, example = json!({"enrolment_code":"8Q2M-…","expires_at":"2026-12-16T09:00:00Z"})), AgencyErrors)
)]
async fn enrolment_code(
    State(state): State<AppState>,
    Agency(agency): Agency,
    headers: HeaderMap,
    JsonObject(body): JsonObject<EnrolmentRequest>,
) -> Result<(StatusCode, Json<EnrolmentIssued>), ApiError> {
    if !agency.is_enroller {
        return Err(Error::Forbidden(
            "This agency does not issue enrolment codes; it must be created with --enroller."
                .into(),
        )
        .into());
    }
    // A code is a one-time secret kept only as its fingerprint, so no answer holding it is
    // kept either: a retry under the same key is told so, and a new request (new key)
    // issues a code that supersedes the first — one live code either way.
    let retry = idempotency_key(&headers)?.map(|key| crate::agencies::Retry {
        key,
        fingerprint: fingerprint(&[body.national_id.trim().as_bytes()]),
    });
    if let Some(r) = &retry
        && crate::agencies::replay(&state, agency.id, r)
            .await?
            .is_some()
    {
        return Err(Error::Conflict(
            "A code was already issued under this Idempotency-Key, and codes are never kept. Ask again with a new key: the new code replaces the first.".into(),
        )
        .into());
    }
    let issued = crate::citizens::enrol(
        &state,
        &body.national_id,
        crate::citizens::Enroller::Agency(agency.id),
    )
    .await?;
    if let Some(r) = &retry {
        let tx = state.store.begin().await?;
        let now = state.clock.now_ms();
        let marker = serde_json::json!({ "issued": true });
        // A racing retry under the same key issued a code too; the later one supersedes.
        crate::agencies::keep_answer(&state, tx, agency.id, r, 201, &marker, now).await?;
    }
    Ok((
        StatusCode::CREATED,
        Json(EnrolmentIssued {
            enrolment_code: issued.code.to_string(),
            expires_at: crate::clock::rfc3339(issued.expires_at_ms),
        }),
    ))
}

/// Longest accepted `document` part.
const DOCUMENT_PART: usize = 64 * 1024;

#[utoipa::path(
    post,
    path = "/api/v1/issued-documents",
    tag = "agency",
    summary = "Deposit a signed document for a citizen (issuers)",
    request_body(content = Object, description = "JSON {national_id, type, fields, issued_at, expires_at?, file_sha256?, signature}, or multipart with parts document and file", content_type = "application/json"),
    security(("agency_key" = [])),
    responses((status = 202, description = "{id, status: accepted}", body = Accepted, example = json!({"id":"e4410000-0000-4000-8000-000000000008","status":"accepted"})), AgencyErrors)
)]
async fn deposit(
    State(state): State<AppState>,
    Agency(agency): Agency,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let rid = request_id(&headers);
    let key = idempotency_key(&headers)?;
    if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let accepted =
            deposit_multipart(&state, &agency, multipart, rid.as_deref(), key.as_deref()).await?;
        return Ok((StatusCode::ACCEPTED, Json(accepted)));
    }
    if !content_type.starts_with("application/json") {
        return Err(Error::UnsupportedMedia(
            "Send the deposit as application/json or multipart/form-data.".into(),
        )
        .into());
    }
    let bytes = axum::body::to_bytes(request.into_body(), DOCUMENT_PART)
        .await
        .map_err(|_| Error::TooLarge("The document is larger than 64 KiB.".into()))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| invalid("document", format!("is not JSON ({e})")))?;
    let d = Deposit::begin(&state, &agency, value, rid.as_deref(), key.as_deref()).await?;
    Ok((StatusCode::ACCEPTED, Json(d.commit(&state).await?)))
}

use axum::extract::FromRequest as _;

async fn deposit_multipart(
    state: &AppState,
    agency: &AgencyRow,
    mut multipart: Multipart,
    rid: Option<&str>,
    key: Option<&str>,
) -> Result<Accepted, ApiError> {
    let mut deposit: Option<Deposit> = None;
    let result: Result<(), ApiError> = async {
        while let Some(mut part) = multipart
            .next_field()
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?
        {
            let name = part.name().unwrap_or_default().to_owned();
            match (name.as_str(), deposit.as_mut()) {
                ("document", None) => {
                    let mut text = Vec::new();
                    while let Some(chunk) = part
                        .chunk()
                        .await
                        .map_err(|e| ApiError::bad_request(e.body_text()))?
                    {
                        text.extend_from_slice(&chunk);
                        if text.len() > DOCUMENT_PART {
                            return Err(Error::TooLarge(
                                "The 'document' part is larger than 64 KiB.".into(),
                            )
                            .into());
                        }
                    }
                    let value: serde_json::Value = serde_json::from_slice(&text)
                        .map_err(|e| invalid("document", format!("is not JSON ({e})")))?;
                    deposit = Some(Deposit::begin(state, agency, value, rid, key).await?);
                }
                ("file", Some(d)) => {
                    let filename = part.file_name().unwrap_or("document").to_owned();
                    d.begin_file(state, &filename).await?;
                    while let Some(chunk) = part
                        .chunk()
                        .await
                        .map_err(|e| ApiError::bad_request(e.body_text()))?
                    {
                        d.push_file(&chunk).await?;
                    }
                }
                ("file", None) => {
                    return Err(invalid("multipart", "the 'document' part must come first").into());
                }
                (other, _) => {
                    return Err(invalid(
                        "multipart",
                        format!("unexpected part '{other}'; expected document, then file"),
                    )
                    .into());
                }
            }
        }
        Ok(())
    }
    .await;
    match (result, deposit) {
        (Ok(()), Some(d)) => Ok(d.commit(state).await?),
        (Ok(()), None) => Err(invalid("document", "the 'document' part is required").into()),
        (Err(e), Some(d)) => {
            d.abandon(state).await;
            Err(e)
        }
        (Err(e), None) => Err(e),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/audit/public-key",
    tag = "public",
    summary = "The service's Ed25519 signing key (checkpoints, receipts)",
    responses((status = 200, description = "The key", body = Object, example = json!({"algorithm":"Ed25519","key_id":"a1b2c3d4e5f60718","public_key":"base64url…","keys":[{"key_id":"a1b2c3d4e5f60718","public_key":"base64url…"}]})))
)]
async fn public_key(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let public = state.keys.signing.verifying_key().to_bytes();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    // Every key ever used, so checkpoints and receipts signed before a rotation verify.
    let all: Vec<serde_json::Value> = state
        .store
        .signing_keys()
        .await?
        .into_iter()
        .map(|(id, key)| serde_json::json!({ "key_id": id, "public_key": b64.encode(key) }))
        .collect();
    Ok(Json(serde_json::json!({
        "keys": all,
        "algorithm": "Ed25519",
        "key_id": state.keys.signing_key_id,
        "public_key": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public),
        "contexts": {
            "audit_checkpoint": custodia_crypto::sign::CONTEXT_AUDIT_CHECKPOINT,
            "consent_receipt": custodia_crypto::sign::CONTEXT_CONSENT_RECEIPT,
        },
        "framing": "custodia-sig/1 \\0 context \\0 message",
    })))
}

/// The `Idempotency-Key` header, if sent: 1–255 printable ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text.is_empty() || text.len() > 255 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            "Idempotency-Key must be 1 to 255 printable characters without spaces (a UUID is best).",
        ));
    }
    Ok(Some(text.to_owned()))
}

/// SHA-256 over length-prefixed parts: what a request asked, for comparing a retry.
fn fingerprint(parts: &[&[u8]]) -> Vec<u8> {
    let mut all = Vec::new();
    for p in parts {
        all.extend_from_slice(&(p.len() as u64).to_be_bytes());
        all.extend_from_slice(p);
    }
    custodia_crypto::digest::sha256(&all).to_vec()
}
