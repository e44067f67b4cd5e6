//! One error type for every HTTP answer that is not a success, rendered as RFC 9457
//! `application/problem+json` with `type`, `title`, `status` and `detail`.
//!
//! Internal causes are logged (with the request's span, hence its id) and never sent to
//! the client. Responses produced outside the handlers (unknown route, wrong method,
//! body too large, time-out, panic, extractor rejections) are rewritten into the same
//! shape by [`normalise_errors`], so no error ever leaves in another format (SPEC G8).

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

/// The media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
    retry_after: Option<u64>,
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
}

impl ApiError {
    /// A problem with an explicit status, type slug (`/problems/<slug>`), title and detail.
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            slug,
            title,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    /// 404: nothing here (also for things the caller may not know exist).
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            "There is nothing at this address.",
        )
    }

    /// 503: a dependency is down; nothing was done.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        )
    }

    /// 500: logs `cause` and answers without it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "Something went wrong on our side. Nothing was changed; please try again.",
        )
    }

    /// Adds a `Retry-After` header (seconds).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The human-readable explanation.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => Self::not_found(),
            StoreError::Conflict(_) => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                "Conflict",
                "This conflicts with something that already exists.",
            ),
            StoreError::Other(e) => Self::internal(format!("{e:#}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        problem_response(
            self.status,
            self.slug,
            self.title,
            &self.detail,
            self.retry_after,
        )
    }
}

fn problem_response(
    status: StatusCode,
    slug: &str,
    title: &str,
    detail: &str,
    retry_after: Option<u64>,
) -> Response {
    let body = ProblemBody {
        kind: format!("/problems/{slug}"),
        title,
        status: status.as_u16(),
        detail,
    };
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = (status, json).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if let Some(seconds) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Rewrites any error response that is not already problem+json into one, keeping the
/// status and short plain-text explanations (axum's rejections say which field is wrong).
/// A page rendered for a browser (HTML, such as a failed national eID sign-in) stays as
/// it is.
pub async fn normalise_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with(PROBLEM_JSON) || content_type.starts_with("text/html") {
        return response;
    }
    let plain = content_type.starts_with("text/plain");
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let allow = response.headers().get(header::ALLOW).cloned();
    let text = if plain && status != StatusCode::INTERNAL_SERVER_ERROR {
        to_bytes(response.into_body(), 4096)
            .await
            .ok()
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
            .unwrap_or_default()
    } else {
        drop(response.into_body());
        String::new()
    };
    let (slug, title, default_detail) = describe(status);
    let detail = if text.trim().is_empty() {
        default_detail
    } else {
        text.trim()
    };
    let mut out = problem_response(status, slug, title, detail, retry_after);
    if let Some(allow) = allow {
        out.headers_mut().insert(header::ALLOW, allow);
    }
    out
}

fn describe(status: StatusCode) -> (&'static str, &'static str, &'static str) {
    match status {
        StatusCode::BAD_REQUEST => ("bad-request", "Bad request", "The request is malformed."),
        StatusCode::UNAUTHORIZED => (
            "unauthorized",
            "Unauthorized",
            "Authentication is required.",
        ),
        StatusCode::FORBIDDEN => ("forbidden", "Forbidden", "This is not allowed."),
        StatusCode::NOT_FOUND => (
            "not-found",
            "Not found",
            "There is nothing at this address.",
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method-not-allowed",
            "Method not allowed",
            "This address does not accept that method.",
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "timeout",
            "Request timed out",
            "The request took too long and was abandoned; nothing was changed.",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "too-large",
            "Payload too large",
            "The request body is larger than this endpoint accepts.",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported-media-type",
            "Unsupported media type",
            "The request body has a content type this endpoint does not accept.",
        ),
        StatusCode::UNPROCESSABLE_ENTITY => (
            "invalid",
            "Unprocessable content",
            "The request body does not have the expected shape.",
        ),
        StatusCode::TOO_MANY_REQUESTS => (
            "rate-limited",
            "Too many requests",
            "Too many attempts; wait before trying again.",
        ),
        StatusCode::SERVICE_UNAVAILABLE => (
            "unavailable",
            "Service unavailable",
            "The service cannot answer right now; nothing was changed.",
        ),
        s if s.is_server_error() => (
            "internal",
            "Internal error",
            "Something went wrong on our side. Nothing was changed; please try again.",
        ),
        _ => ("error", "Error", "The request could not be served."),
    }
}

/// Turns a panic inside a handler into a logged 500 problem (the panic text is not sent).
pub fn panic_to_problem(panic: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let message = panic_message(panic.as_ref());
    ApiError::internal(format!("handler panicked: {message}")).into_response()
}

/// The text a panic carried, if it carried text.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

impl From<crate::error::Error> for ApiError {
    fn from(err: crate::error::Error) -> Self {
        use crate::error::Error as E;
        match err {
            E::Invalid { field, message } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "Invalid input",
                format!("{field}: {message}"),
            ),
            E::NotFound => Self::not_found(),
            E::Conflict(detail) => Self::new(StatusCode::CONFLICT, "conflict", "Conflict", detail),
            E::Unauthenticated(detail) => Self::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Not signed in",
                detail,
            ),
            E::Forbidden(detail) => {
                Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
            }
            E::WrongSecret => Self::new(
                StatusCode::FORBIDDEN,
                "wrong-secret",
                "Wrong passphrase or recovery code",
                "The passphrase or recovery code is not correct. Check it and try again.",
            ),
            E::StepUpRequired => Self::new(
                StatusCode::FORBIDDEN,
                "step-up-required",
                "Confirm with your passkey",
                "This changes your account: confirm with your passkey first \
                 (POST /me/step-up/start, then /me/step-up/finish); a confirmation counts for 5 minutes.",
            ),
            E::Locked => Self::new(
                StatusCode::LOCKED,
                "vault-locked",
                "Vault locked",
                "Your vault is locked. Unlock it with your passphrase first.",
            ),
            E::RateLimited { retry_after_s } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many attempts",
                format!("Too many attempts. Try again in {retry_after_s} seconds."),
            )
            .retry_after(retry_after_s),
            E::TooLarge(detail) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Payload too large",
                detail,
            ),
            E::UnsupportedMedia(detail) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-file",
                "Unsupported file type",
                detail,
            ),
            E::Busy => Self::unavailable("The server is busy; please try again in a few seconds.")
                .retry_after(5),
            E::Upstream(detail) => Self::new(
                StatusCode::BAD_GATEWAY,
                "upstream-unavailable",
                "Outside service unavailable",
                detail,
            )
            .retry_after(30),
            E::AuditUnavailable => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit-unavailable",
                "Audit trail unavailable",
                "The audit record could not be written, so nothing was done and nothing was sent. Try again shortly.",
            )
            .retry_after(5),
            E::Store(e) => e.into(),
            E::Internal(e) => Self::internal(format!("{e:#}")),
        }
    }
}
