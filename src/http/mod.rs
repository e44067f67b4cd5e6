//! HTTP: routers merged in one place that owns the shared state, and the middleware
//! every request passes through (request id, tracing, time-out, body limit,
//! compression, security headers, problem+json errors).

mod activity;
mod agency;
mod audit;
mod auth;
mod compression;
mod delegations;
mod documents;
mod emergencies;
pub mod error;
mod extract;
mod files;
mod grants;
mod guardianships;
mod metrics;
pub mod openapi;
mod ops;
mod panics;
mod params;
mod requests;
mod transparency;
mod web;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode, header};
use axum::middleware;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use crate::context::Context;

/// Largest body any JSON endpoint accepts. Upload routes set their own limit.
pub const JSON_BODY_LIMIT: usize = 64 * 1024;
/// Longest a request may take before it is abandoned with 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a document upload or download may take.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30 * 60);

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Everything a handler may use: the domain [`Context`]. Cheap to clone.
#[derive(Clone)]
pub struct AppState(pub Arc<Context>);

impl std::ops::Deref for AppState {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.0
    }
}

/// The whole application: every router, with the middleware stack.
pub fn app(state: AppState) -> Router {
    // JSON and pages must answer within REQUEST_TIMEOUT; file transfers get longer, so a
    // large document on a slow link is not cut off.
    // Every JSON route goes through an OpenApiRouter, so none is served undocumented.
    let (quick_api, mut doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(ops::router())
        .merge(metrics::router())
        .merge(agency::router())
        .merge(auth::router())
        .merge(grants::router())
        .merge(requests::router())
        .merge(delegations::router())
        .merge(guardianships::router())
        .merge(emergencies::router())
        .merge(webhooks::router())
        .merge(activity::router())
        .merge(audit::router())
        .merge(transparency::public_router())
        .merge(transparency::citizen_router())
        .split_for_parts();
    // Uploads may be as large as the configured file limit plus room for the other parts.
    let upload_limit = usize::try_from(state.config.max_upload_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(1024 * 1024);
    let (transfers, transfer_doc) = OpenApiRouter::default()
        .merge(documents::router())
        .merge(agency::transfer_router())
        .split_for_parts();
    doc.merge(transfer_doc);
    metrics::install();
    let quick = quick_api
        .merge(web::router())
        .merge(openapi::router(doc))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ));
    let transfers =
        transfers
            .layer(DefaultBodyLimit::max(upload_limit))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                TRANSFER_TIMEOUT,
            ));
    let routes = Router::new()
        .merge(quick)
        .merge(transfers)
        .layer(middleware::from_fn(metrics::track))
        .fallback(|| async { error::ApiError::not_found() })
        .with_state(state);
    harden(routes)
}

/// The separate metrics listener's application (`CUSTODIA_METRICS_LISTEN`): `/metrics`
/// only, with the same middleware.
pub fn metrics_app(state: AppState) -> Router {
    metrics::install();
    harden(metrics::dedicated_router(state))
}

/// The middleware every request passes through, around any routes: body limit,
/// compression, panic containment, problem+json errors, security headers, request ids and
/// tracing.
fn harden(routes: Router) -> Router {
    routes
        // Listed innermost first: the last layer sees the request first.
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(compression::layer())
        .layer(middleware::map_response(panics::guard_body))
        .layer(CatchPanicLayer::custom(error::panic_to_problem))
        .layer(middleware::from_fn(error::normalise_errors))
        .layer(middleware::map_response(security_headers))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let id = req
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(middleware::map_request(drop_unusable_request_id))
}

/// The longest client-chosen request id kept (a UUID is 36).
const MAX_REQUEST_ID: usize = 64;

/// Whether a client's `X-Request-Id` may be kept: 1–64 printable ASCII characters without
/// spaces (a UUID, a trace id). It ends up in logs and in every audit event of the request.
fn usable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty() && bytes.len() <= MAX_REQUEST_ID && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// Removes an `X-Request-Id` that is not [usable](usable_request_id) (or is sent twice),
/// so a fresh UUID replaces it.
async fn drop_unusable_request_id(mut req: axum::extract::Request) -> axum::extract::Request {
    let headers = req.headers_mut();
    let values: Vec<_> = headers.get_all(&REQUEST_ID).iter().collect();
    if values.len() > 1 || values.first().is_some_and(|v| !usable_request_id(v)) {
        headers.remove(&REQUEST_ID);
    }
    req
}

/// The headers every response carries unless its handler set its own.
const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
    (
        header::CONTENT_SECURITY_POLICY,
        web::CONTENT_SECURITY_POLICY,
    ),
];

/// Adds [`SECURITY_HEADERS`] where absent, with room made once for them and the request id
/// (one step instead of a layer and a growing header table each).
async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    headers.reserve(SECURITY_HEADERS.len() + 1);
    for (name, value) in SECURITY_HEADERS {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode, header};
    use axum::routing::get;
    use futures_util::StreamExt as _;
    use tower::ServiceExt as _;

    use super::*;

    async fn breaks() -> &'static str {
        panic!("a handler that breaks")
    }

    fn broken() -> Router {
        harden(
            Router::new()
                .route("/handler", get(breaks))
                .route(
                    "/body",
                    get(|| async {
                        let parts = futures_util::stream::iter([Ok::<_, std::io::Error>(
                            bytes::Bytes::from_static(b"first"),
                        )])
                        .chain(futures_util::stream::poll_fn(
                            |_| -> std::task::Poll<Option<Result<bytes::Bytes, std::io::Error>>> {
                                panic!("a body that breaks")
                            },
                        ));
                        Body::from_stream(parts)
                    }),
                )
                .route("/ok", get(|| async { "fine" })),
        )
    }

    /// Every response gets each security header once; a handler's own value (the agency
    /// file route's sandboxing policy) is kept, not replaced or doubled.
    #[tokio::test]
    async fn security_headers_are_added_once_and_a_handlers_own_value_is_kept() {
        const OWN: &str = "default-src 'none'; sandbox";
        let app = harden(Router::new().route("/ok", get(|| async { "fine" })).route(
            "/own",
            get(|| async { ([(header::CONTENT_SECURITY_POLICY, OWN)], "file") }),
        ));
        for path in ["/ok", "/own", "/nowhere", "/handler"] {
            let app = if path == "/handler" {
                broken()
            } else {
                app.clone()
            };
            let r = app
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            for (name, value) in SECURITY_HEADERS {
                let values: Vec<_> = r.headers().get_all(&name).iter().collect();
                let expected = if path == "/own" && name == header::CONTENT_SECURITY_POLICY {
                    OWN
                } else {
                    value
                };
                assert_eq!(values, [expected], "{name} on {path}");
            }
        }
    }

    #[tokio::test]
    async fn a_handler_panic_is_a_problem_and_the_next_request_is_served() {
        let app = broken();
        let r = app
            .clone()
            .oneshot(Request::get("/handler").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.headers()[header::CONTENT_TYPE], error::PROBLEM_JSON);
        let body = to_bytes(r.into_body(), 4096).await.unwrap();
        assert!(
            !String::from_utf8_lossy(&body).contains("breaks"),
            "the panic text stays inside"
        );
        let r = app
            .oneshot(Request::get("/ok").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_body_panic_ends_the_body_with_an_error() {
        let r = broken()
            .oneshot(
                Request::get("/body")
                    .header(header::ACCEPT_ENCODING, "gzip")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(to_bytes(r.into_body(), 4096).await.is_err());
    }
}
