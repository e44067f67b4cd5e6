//! The citizen's documents (SPEC §4: `/me/documents`) and the public catalog.

use axum::Json;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::extract::{Authed, MayAct};
use super::files;
#[allow(unused_imports)]
use super::openapi::{CitizenErrors, Problem};
use crate::documents::{self, Draft, Stored};
use crate::error::{Error, invalid};
use crate::ids::DocumentId;

/// The routes of this module (a transfer group: see `http::app` for its limits).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(catalog))
        .routes(routes!(list, create))
        .routes(routes!(view, replace, remove))
        .routes(routes!(file))
        .routes(routes!(accept))
}

#[utoipa::path(
    get,
    path = "/api/v1/catalog",
    tag = "public",
    summary = "Document types and purposes",
    responses((status = 200, description = "{document_types, purposes}", body = Object, example = json!({"document_types":[{"id":"business_license","names":{"zh-CN":"营业执照","en":"Business licence"},"fields":[{"name":"company_name","type":"text","required":true,"example":"北京示例科技有限公司"}],"has_file":true,"sharing_class":"unconditional","sensitivity":"low"}],"purposes":[{"code":"business_registration","names":{"zh-CN":"企业登记","en":"Business registration"},"document_types":["business_license"],"max_tier":"fields"}]})))
)]
async fn catalog(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.catalog.to_json())
}

#[utoipa::path(
    get,
    operation_id = "list_documents",
    path = "/me/documents",
    tag = "citizen",
    summary = "The citizen's documents (metadata)",
    params(("X-Acting-For" = Option<Uuid>, Header, nullable = false, description = "A delegate acting for her principal: the principal's citizen id (a live delegation whose scope covers the call)")),
    security(("citizen_session" = [])),
    responses((status = 200, description = "{documents: [...]}", body = Object, example = json!({"documents":[{"id":"5a3e0c1e-0000-4000-8000-000000000002","type":"business_license","version":1,"issuer_agency_id":null,"issuer_name":null,"created_at":1795831200000i64,"updated_at":1795831200000i64,"status":"accepted"}]})), CitizenErrors)
)]
async fn list(
    State(state): State<AppState>,
    MayAct(session): MayAct,
) -> Result<Json<serde_json::Value>, ApiError> {
    let items = documents::list(&state, &session).await?;
    Ok(Json(serde_json::json!({ "documents": items })))
}

#[utoipa::path(
    post,
    operation_id = "upload_document",
    path = "/me/documents",
    tag = "citizen",
    summary = "Store a document (multipart: type, fields, optional file)",
    request_body(content = UploadParts, content_type = "multipart/form-data", description = "Parts: type, fields (JSON object), file (optional)"),
    params(("X-Acting-For" = Option<Uuid>, Header, nullable = false, description = "A delegate acting for her principal: the principal's citizen id (a live delegation whose scope covers the call)")),
    security(("citizen_session" = [])),
    responses((status = 201, description = "Stored", body = Stored, links(("ViewDocument" = (operation_id = "view", parameters(("id" = "$response.body#/id")), description = "The stored document")), ("DocumentFile" = (operation_id = "file", parameters(("id" = "$response.body#/id")), description = "Its file")), ("ReplaceDocument" = (operation_id = "replace", parameters(("id" = "$response.body#/id")), description = "A new version")), ("DeleteDocument" = (operation_id = "delete_document", parameters(("id" = "$response.body#/id")), description = "Delete it"))), example = json!({"id":"5a3e0c1e-0000-4000-8000-000000000002","version":1,"type":"business_license"})), CitizenErrors, (status = 413, description = "Too large", body = Problem, content_type = "application/problem+json"), (status = 415, description = "Not PDF, PNG or JPEG", body = Problem, content_type = "application/problem+json"))
)]
async fn create(
    State(state): State<AppState>,
    MayAct(session): MayAct,
    multipart: Multipart,
) -> Result<(StatusCode, Json<Stored>), ApiError> {
    // A locked vault is refused before a byte of the body is read.
    let draft = Draft::create(&state, &session).await?;
    Ok((
        StatusCode::CREATED,
        Json(receive(&state, draft, multipart).await?),
    ))
}

#[utoipa::path(
    put,
    path = "/me/documents/{id}",
    tag = "citizen",
    summary = "Store a new version",
    params(("id" = Uuid, Path, description = "The id"), ("X-Acting-For" = Option<Uuid>, Header, nullable = false, description = "A delegate acting for her principal: the principal's citizen id (a live delegation whose scope covers the call)")),
    request_body(content = UploadParts, content_type = "multipart/form-data", description = "Parts: type, fields (JSON object), file (optional)"),
    security(("citizen_session" = [])),
    responses((status = 200, description = "Stored", body = Stored, example = json!({"id":"5a3e0c1e-0000-4000-8000-000000000002","version":2,"type":"business_license"})), CitizenErrors)
)]
async fn replace(
    State(state): State<AppState>,
    MayAct(session): MayAct,
    Path(id): Path<DocumentId>,
    multipart: Multipart,
) -> Result<Json<Stored>, ApiError> {
    let draft = Draft::replace(&state, &session, id).await?;
    Ok(Json(receive(&state, draft, multipart).await?))
}

/// The parts of an upload, for the document: [`read_parts`] reads them one by one as they
/// stream in (the file is encrypted as it arrives), so this is never deserialized whole.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct UploadParts {
    /// A catalog document type.
    r#type: String,
    /// The fields, as a JSON object.
    #[schema(value_type = Object)]
    fields: serde_json::Map<String, serde_json::Value>,
    /// The file (optional).
    #[schema(value_type = Option<String>, format = Binary)]
    file: Option<Vec<u8>>,
}

/// Longest accepted `type` or `fields` part.
const SMALL_PART: usize = 64 * 1024;

async fn receive(
    state: &AppState,
    mut draft: Draft,
    mut multipart: Multipart,
) -> Result<Stored, ApiError> {
    let parts = read_parts(state, &mut draft, &mut multipart).await;
    match parts {
        Ok((doc_type, fields)) => Ok(draft.commit(state, &doc_type, &fields).await?),
        Err(e) => {
            draft.abandon(state).await;
            Err(e)
        }
    }
}

async fn read_parts(
    state: &AppState,
    draft: &mut Draft,
    multipart: &mut Multipart,
) -> Result<(String, serde_json::Value), ApiError> {
    let mut doc_type = None;
    let mut fields = None;
    while let Some(mut part) = multipart.next_field().await.map_err(multipart_error)? {
        let name = part.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "type" | "fields" => {
                let mut text = Vec::new();
                while let Some(chunk) = part.chunk().await.map_err(multipart_error)? {
                    text.extend_from_slice(&chunk);
                    if text.len() > SMALL_PART {
                        return Err(
                            Error::TooLarge(format!("The '{name}' part is too large.")).into()
                        );
                    }
                }
                let text = String::from_utf8(text)
                    .map_err(|_| invalid("multipart", format!("'{name}' must be UTF-8 text")))?;
                if name == "type" {
                    doc_type = Some(text.trim().to_owned());
                } else {
                    let value: serde_json::Value = serde_json::from_str(&text)
                        .map_err(|e| invalid("fields", format!("must be a JSON object ({e})")))?;
                    fields = Some(value);
                }
            }
            "file" => {
                let filename = part.file_name().unwrap_or("document").to_owned();
                draft.begin_file(state, &filename).await?;
                while let Some(chunk) = part.chunk().await.map_err(multipart_error)? {
                    draft.push_file(&chunk).await?;
                }
            }
            other => {
                return Err(invalid(
                    "multipart",
                    format!("unknown part '{other}'; expected type, fields and file"),
                )
                .into());
            }
        }
    }
    let doc_type = doc_type.ok_or_else(|| invalid("type", "the 'type' part is required"))?;
    let fields = fields.ok_or_else(|| invalid("fields", "the 'fields' part is required"))?;
    Ok((doc_type, fields))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        Error::TooLarge("The upload is larger than the limit.".into()).into()
    } else {
        ApiError::new(status, "bad-multipart", "Malformed upload", e.body_text())
    }
}

#[derive(Deserialize)]
struct VersionQuery {
    version: Option<i32>,
    #[serde(default)]
    download: Option<u8>,
}

#[utoipa::path(
    get,
    path = "/me/documents/{id}",
    tag = "citizen",
    summary = "Open a document (latest or ?version=)",
    params(("id" = Uuid, Path, description = "The id"), ("version" = Option<i32>, Query, description = "A version number"), ("X-Acting-For" = Option<Uuid>, Header, nullable = false, description = "A delegate acting for her principal: the principal's citizen id (a live delegation whose scope covers the call)")),
    security(("citizen_session" = [])),
    responses((status = 200, description = "The document", body = documents::View, example = json!({"id":"5a3e0c1e-0000-4000-8000-000000000002","type":"business_license","version":1,"current_version":1,"versions":[{"version":1,"created_at":1795831200000i64}],"fields":{"company_name":"北京示例科技有限公司"},"file":{"name":"营业执照.pdf","media_type":"application/pdf","size":70000,"sha256":"9f86d0…"},"content_sha256":"3e23e8…","issuer_agency_id":null,"issuer":null,"status":"accepted"})), CitizenErrors)
)]
async fn view(
    State(state): State<AppState>,
    MayAct(session): MayAct,
    Path(id): Path<DocumentId>,
    Query(q): Query<VersionQuery>,
) -> Result<Json<documents::View>, ApiError> {
    Ok(Json(documents::get(&state, &session, id, q.version).await?))
}

#[utoipa::path(
    delete,
    operation_id = "delete_document",
    path = "/me/documents/{id}",
    tag = "citizen",
    summary = "Delete a document (keys destroyed)",
    params(("id" = Uuid, Path, description = "The id")),
    security(("citizen_session" = [])),
    responses((status = 204, description = "Deleted"), CitizenErrors)
)]
async fn remove(
    State(state): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<DocumentId>,
) -> Result<StatusCode, ApiError> {
    documents::delete(&state, &session, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    operation_id = "accept_document",
    path = "/me/documents/{id}/accept",
    tag = "citizen",
    summary = "Accept a deposit received from an issuer (only then does it join grants)",
    params(("id" = Uuid, Path, description = "The id")),
    security(("citizen_session" = [])),
    responses((status = 200, description = "The document, now accepted (accepting again changes nothing)", body = documents::Summary, example = json!({"id":"5a3e0c1e-0000-4000-8000-000000000002","type":"tax_clearance","version":1,"issuer_agency_id":"5a3e0c1e-0000-4000-8000-000000000009","issuer_name":"国家税务总局北京市税务局","created_at":1795831200000i64,"updated_at":1795831200000i64,"status":"accepted"})), CitizenErrors)
)]
async fn accept(
    State(state): State<AppState>,
    Authed(session): Authed,
    Path(id): Path<DocumentId>,
) -> Result<Json<documents::Summary>, ApiError> {
    Ok(Json(documents::accept(&state, &session, id).await?))
}

#[utoipa::path(
    get,
    path = "/me/documents/{id}/file",
    tag = "citizen",
    summary = "Download the file, decrypted",
    params(("id" = Uuid, Path, description = "The id"), ("version" = Option<i32>, Query, description = "A version number"), ("download" = Option<u8>, Query, minimum = 0, maximum = 1, description = "1 for an attachment, 0 (the default) to show it"), ("X-Acting-For" = Option<Uuid>, Header, nullable = false, description = "A delegate acting for her principal: the principal's citizen id (a live delegation whose scope covers the call)")),
    security(("citizen_session" = [])),
    responses((status = 200, description = "The bytes (Accept-Ranges, ETag, Repr-Digest)", content_type = "application/octet-stream"), (status = 206, description = "The requested range (Content-Range)", content_type = "application/octet-stream"), (status = 304, description = "If-None-Match names the current ETag"), (status = 416, description = "No requested range lies within the file", body = Problem, content_type = "application/problem+json"), CitizenErrors)
)]
async fn file(
    State(state): State<AppState>,
    MayAct(session): MayAct,
    Path(id): Path<DocumentId>,
    Query(q): Query<VersionQuery>,
    method: Method,
    request_headers: HeaderMap,
) -> Result<Response, ApiError> {
    let decide = files::decide(&method, &request_headers);
    if q.download.is_some_and(|d| d > 1) {
        return Err(crate::error::invalid("download", "must be 0 or 1").into());
    }
    let opened = documents::open_file(&state, &session, id, q.version, decide).await?;
    let disposition = if q.download == Some(1) {
        "attachment"
    } else {
        "inline"
    };
    let image = opened.info.media_type.is_image();
    let mut response = files::respond(opened, disposition);
    let headers = response.headers_mut();
    // The file may be shown inside Custodia's own document page, nowhere else; images are
    // additionally sandboxed (PDF viewers refuse to run sandboxed).
    let csp = if image {
        "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'self'; sandbox"
    } else {
        "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; object-src 'self'; frame-ancestors 'self'"
    };
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    Ok(response)
}
