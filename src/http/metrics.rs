//! `GET /metrics` in the Prometheus text format, through the `metrics` facade.
//!
//! Labels never carry personal data or ids: routes are the matched templates
//! (`/api/v1/grants/{id}`), never concrete paths. What is measured: requests and their
//! latency by route, method and status; reads by tier and outcome; refusals by reason;
//! audit append latency and batch size; live grants and pending requests (counted from the
//! database at scrape time, so every node reports the same).

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::AppState;
use super::error::ApiError;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder once (several servers in one test process share it).
pub fn install() {
    HANDLE.get_or_init(|| match PrometheusBuilder::new().install_recorder() {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            None
        }
    });
}

/// Counts and times every request by its route template.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("custodia_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("custodia_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The route of this module.
pub fn router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(render))
}

/// Whether `headers` carry one `Authorization: Bearer <token>` (compared in constant
/// time); a second `Authorization` header is refused, whatever the first says.
fn bearer_is(headers: &HeaderMap, token: &str) -> bool {
    super::extract::single_header(headers, header::AUTHORIZATION)
        .ok()
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| custodia_crypto::ct_eq(given.trim().as_bytes(), token.as_bytes()))
}

fn unauthorised() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Not signed in",
        "/metrics needs `Authorization: Bearer <CUSTODIA_METRICS_TOKEN>`.",
    )
}

/// `GET /metrics` on the main listener: only with `CUSTODIA_METRICS_TOKEN` (and no
/// separate metrics address), and then only with that bearer token.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    summary = "Prometheus metrics (no personal data in labels); bearer CUSTODIA_METRICS_TOKEN",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain"),
        (status = 401, description = "No or wrong bearer token", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not served on this address (no token set, or a separate CUSTODIA_METRICS_LISTEN)", body = super::openapi::Problem, content_type = "application/problem+json")))]
pub async fn render(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(token) = state.config.metrics_token.as_deref() else {
        return Err(ApiError::not_found());
    };
    if state.config.metrics_listen.is_some() {
        return Err(ApiError::not_found());
    }
    if !bearer_is(&headers, token) {
        return Err(unauthorised());
    }
    scrape(&state).await
}

/// `GET /metrics` on `CUSTODIA_METRICS_LISTEN`: that address is the door; the token, when
/// set, is asked for too.
pub async fn render_dedicated(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = state.config.metrics_token.as_deref()
        && !bearer_is(&headers, token)
    {
        return Err(unauthorised());
    }
    scrape(&state).await
}

/// The router of the separate metrics listener: `/metrics` and nothing else.
pub fn dedicated_router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(render_dedicated))
        .fallback(|| async { ApiError::not_found() })
        .with_state(state)
}

async fn scrape(state: &AppState) -> Result<Response, ApiError> {
    let now = state.clock.now_ms();
    let (grants, requests) = state.store.live_counts(now).await?;
    metrics::gauge!("custodia_live_grants").set(grants as f64);
    metrics::gauge!("custodia_pending_requests").set(requests as f64);
    let text = HANDLE
        .get()
        .and_then(Option::as_ref)
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}
