//! The OpenAPI 3.1 document, generated from the handlers' annotations
//! (`GET /api/v1/openapi.json`), and a rendered reference page (`GET /api/v1/docs`).
//!
//! Every JSON route is registered through [`utoipa_axum::router::OpenApiRouter`], so a
//! route cannot be served without appearing in the document.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// An RFC 9457 problem: every error Custodia answers has this shape, as
/// `application/problem+json`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "/problems/forbidden",
    "title": "Forbidden",
    "status": 403,
    "detail": "This grant is revoked; nothing can be read under it."
}))]
pub struct Problem {
    /// A relative URI naming the kind of problem (`/problems/<slug>`).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened in this case, in words a person can act on.
    pub detail: String,
}

/// Errors any citizen route may answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum CitizenErrors {
    /// A path id or query value is malformed, or the body is not JSON.
    #[response(status = 400, content_type = "application/problem+json", example = json!({"type": "/problems/bad-request", "title": "Bad request", "status": 400, "detail": "The request is malformed."}))]
    BadRequest(Problem),
    /// The body is larger than this route takes.
    #[response(status = 413, content_type = "application/problem+json", example = json!({"type": "/problems/too-large", "title": "Payload too large", "status": 413, "detail": "The request body is larger than this endpoint accepts."}))]
    TooLarge(Problem),
    /// The body is not of the type this route takes (`application/json`).
    #[response(status = 415, content_type = "application/problem+json", example = json!({"type": "/problems/unsupported-media-type", "title": "Unsupported media type", "status": 415, "detail": "The request body has a content type this endpoint does not accept."}))]
    UnsupportedMedia(Problem),
    /// The request is malformed or a field is invalid (the field is named).
    #[response(status = 422, content_type = "application/problem+json", example = json!({"type": "/problems/invalid", "title": "Invalid field", "status": 422, "detail": "duration_days: must be from 1 to 365"}))]
    Invalid(Problem),
    /// No session, or it ended.
    #[response(status = 401, content_type = "application/problem+json", example = json!({"type": "/problems/unauthorized", "title": "Unauthorized", "status": 401, "detail": "Please sign in."}))]
    Unauthenticated(Problem),
    /// The `X-CSRF-Token` header is missing or wrong, or a policy refused.
    #[response(status = 403, content_type = "application/problem+json", example = json!({"type": "/problems/forbidden", "title": "Forbidden", "status": 403, "detail": "Policy: Medical record is never shared."}))]
    Forbidden(Problem),
    /// Nothing by that id that the caller may see.
    #[response(status = 404, content_type = "application/problem+json", example = json!({"type": "/problems/not-found", "title": "Not found", "status": 404, "detail": "There is nothing at this address."}))]
    NotFound(Problem),
    /// It conflicts with what exists: decided already, reviewed already, a name taken.
    #[response(status = 409, content_type = "application/problem+json", example = json!({"type": "/problems/conflict", "title": "Conflict", "status": 409, "detail": "This request was decided already."}))]
    Conflict(Problem),
    /// Too many attempts (sign-in, unlock, recovery, registration); `Retry-After` says when.
    #[response(status = 429, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait")), example = json!({"type": "/problems/rate-limited", "title": "Too many attempts", "status": 429, "detail": "Too many attempts. Try again in 60 seconds."}))]
    RateLimited(Problem),
    /// The audit record or the store could not be written or reached; nothing was done.
    #[response(status = 503, content_type = "application/problem+json", example = json!({"type": "/problems/unavailable", "title": "Service unavailable", "status": 503, "detail": "The service cannot answer right now; nothing was changed."}))]
    Unavailable(Problem),
    /// The vault is locked; unlock it first.
    #[response(status = 423, content_type = "application/problem+json", example = json!({"type": "/problems/vault-locked", "title": "Vault locked", "status": 423, "detail": "Your vault is locked. Unlock it with your passphrase first."}))]
    Locked(Problem),
}

/// Errors any agency route may answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum AgencyErrors {
    /// A header or field is malformed (`X-Officer-Id`, `X-Case-Id` on reads).
    #[response(status = 400, content_type = "application/problem+json", example = json!({"type": "/problems/missing-header", "title": "Missing header", "status": 400, "detail": "The x-officer-id header is required on every read."}))]
    BadRequest(Problem),
    /// No API key, or a revoked, rotated, forged or disabled agency's key.
    #[response(status = 401, content_type = "application/problem+json", example = json!({"type": "/problems/unauthorized", "title": "Unauthorized", "status": 401, "detail": "The API key is not valid."}))]
    Unauthenticated(Problem),
    /// The grant ended (revoked, expired, exhausted), the tier is too low, a field is not
    /// granted, or the policy refused.
    #[response(status = 403, content_type = "application/problem+json", example = json!({"type": "/problems/forbidden", "title": "Forbidden", "status": 403, "detail": "This grant is revoked; nothing can be read under it."}))]
    Forbidden(Problem),
    /// No such grant for this agency, or a document it does not cover (whether or not it
    /// exists).
    #[response(status = 404, content_type = "application/problem+json", example = json!({"type": "/problems/not-found", "title": "Not found", "status": 404, "detail": "There is nothing at this address."}))]
    NotFound(Problem),
    /// The body is larger than this route takes.
    #[response(status = 413, content_type = "application/problem+json", example = json!({"type": "/problems/too-large", "title": "Payload too large", "status": 413, "detail": "The request body is larger than this endpoint accepts."}))]
    TooLarge(Problem),
    /// The body is not of the type this route takes (`application/json`).
    #[response(status = 415, content_type = "application/problem+json", example = json!({"type": "/problems/unsupported-media-type", "title": "Unsupported media type", "status": 415, "detail": "The request body has a content type this endpoint does not accept."}))]
    UnsupportedMedia(Problem),
    /// A field is invalid (named).
    #[response(status = 422, content_type = "application/problem+json", example = json!({"type": "/problems/invalid", "title": "Invalid field", "status": 422, "detail": "purpose_code: 'x' is not a purpose in the catalog"}))]
    Invalid(Problem),
    /// It conflicts with what exists (an `Idempotency-Key` reused for another body, an
    /// acknowledgement given already).
    #[response(status = 409, content_type = "application/problem+json", example = json!({"type": "/problems/conflict", "title": "Conflict", "status": 409, "detail": "This Idempotency-Key was used for another request."}))]
    Conflict(Problem),
    /// Over a limit (requests, emergency uses, deliveries); `Retry-After` says when.
    #[response(status = 429, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait")), example = json!({"type": "/problems/rate-limited", "title": "Too many attempts", "status": 429, "detail": "Too many attempts. Try again in 60 seconds."}))]
    RateLimited(Problem),
    /// The audit record could not be written, so nothing was done or sent.
    #[response(status = 503, content_type = "application/problem+json", example = json!({"type": "/problems/audit-unavailable", "title": "Audit trail unavailable", "status": 503, "detail": "The audit record could not be written, so nothing was done and nothing was sent. Try again shortly."}))]
    AuditUnavailable(Problem),
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "agency_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("cus_…")
                    .description(Some("The agency's API key from `custodia agency create`."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "citizen_session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                super::extract::SESSION,
                "Set by register/login finish (`__Host-custodia-session` over HTTPS). State-changing requests also send `X-CSRF-Token`.",
            ))),
        );
        components.add_security_scheme(
            "auditor_session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                super::extract::SESSION,
                "The same cookie, set by an auditor's login finish (`/audit/auth/login/finish`); a citizen's session is refused on these routes. State-changing requests also send `X-CSRF-Token`.",
            ))),
        );
    }
}

/// The document's fixed parts; paths come from the routers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Custodia",
        description = "A citizen data vault with consent. Agencies ask citizens for time-limited, tiered grants and read what they cover; every read is recorded in a tamper-evident trail before a byte leaves. Errors are RFC 9457 problem+json.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&Security),
    components(schemas(Problem)),
    tags(
        (name = "agency", description = "The agency API: access requests, grants, tiered reads, issuer deposits."),
        (name = "citizen", description = "The citizen's JSON API, used by the web UI's script."),
        (name = "auth", description = "Citizen passkey ceremonies and the vault."),
        (name = "audit", description = "Auditors: enrolment, search, verification, export, reasoned reveal."),
        (name = "public", description = "The catalog and the published signing key."),
        (name = "operations", description = "Health, readiness and the API description.")
    )
)]
pub struct ApiDoc;

/// Serves the generated document and its rendered reference page.
pub fn router(doc: utoipa::openapi::OpenApi) -> Router<super::AppState> {
    let doc = Arc::new(doc);
    Router::new()
        .route("/api/v1/openapi.json", axum::routing::get(json))
        .route("/api/v1/docs", axum::routing::get(page))
        .with_state(doc)
}

async fn json(State(doc): State<Arc<utoipa::openapi::OpenApi>>) -> Response {
    Json(doc.as_ref()).into_response()
}

async fn page(State(doc): State<Arc<utoipa::openapi::OpenApi>>) -> Html<String> {
    Html(render(&doc))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A plain, script-free reference page: every operation with its summary, parameters and
/// responses.
fn render(doc: &utoipa::openapi::OpenApi) -> String {
    let mut out = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Custodia API reference</title><link rel=\"stylesheet\" href=\"/static/style.css\"></head><body><main class=\"content\"><h1>Custodia API reference</h1><p>Machine-readable: <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a> (OpenAPI 3.1). Errors are <code>application/problem+json</code> (RFC 9457).</p>",
    );
    for (path, item) in &doc.paths.paths {
        let ops = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("DELETE", &item.delete),
        ];
        for (method, op) in ops {
            let Some(op) = op else { continue };
            out.push_str(&format!(
                "<section class=\"card\"><h2><code>{method} {}</code></h2>",
                escape(path)
            ));
            if let Some(s) = &op.summary {
                out.push_str(&format!("<p><strong>{}</strong></p>", escape(s)));
            }
            if let Some(d) = &op.description {
                out.push_str(&format!("<p>{}</p>", escape(d)));
            }
            if let Some(params) = &op.parameters
                && !params.is_empty()
            {
                out.push_str("<h3>Parameters</h3><ul>");
                for p in params {
                    let utoipa::openapi::RefOr::T(p) = p else {
                        continue;
                    };
                    out.push_str(&format!(
                        "<li><code>{}</code> ({}){}</li>",
                        escape(&p.name),
                        serde_json::to_value(&p.parameter_in)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        p.description
                            .as_deref()
                            .map(|d| format!(" — {}", escape(d)))
                            .unwrap_or_default()
                    ));
                }
                out.push_str("</ul>");
            }
            out.push_str("<h3>Responses</h3><ul>");
            for (status, response) in &op.responses.responses {
                let description = match response {
                    utoipa::openapi::RefOr::T(r) => r.description.clone(),
                    utoipa::openapi::RefOr::Ref(r) => r.ref_location.clone(),
                };
                out.push_str(&format!(
                    "<li><code>{}</code> {}</li>",
                    escape(status),
                    escape(&description)
                ));
            }
            out.push_str("</ul></section>");
        }
    }
    out.push_str("</main></body></html>");
    out
}
