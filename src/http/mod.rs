//! HTTP: routers merged in one place that owns the shared state, and the middleware
//! every request passes through (request id, tracing, time-out, body limit,
//! compression, security headers, problem+json errors).

pub mod error;
mod ops;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode, header};
use axum::middleware;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::clock::Clock;
use crate::config::Config;
use crate::keyring::Keyring;
use crate::store::Store;
use crate::store::blob::BlobStore;

/// Largest body any JSON endpoint accepts. Upload routes set their own limit.
pub const JSON_BODY_LIMIT: usize = 64 * 1024;
/// Longest a request may take before it is abandoned with 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Everything a handler may use. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The shared parts behind [`AppState`].
pub struct Shared {
    /// The configuration the server started with.
    pub config: Config,
    /// The database.
    pub store: Store,
    /// Encrypted file bodies.
    pub blobs: BlobStore,
    /// Service keys and the signing key.
    pub keys: Keyring,
    /// The time source.
    pub clock: Arc<dyn Clock>,
}

impl AppState {
    /// Bundles the shared parts.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The whole application: every router, with the middleware stack.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(ops::router())
        .fallback(|| async { error::ApiError::not_found() })
        .with_state(state)
        // Listed innermost first: the last layer sees the request first.
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(CatchPanicLayer::custom(error::panic_to_problem))
        .layer(middleware::from_fn(error::normalise_errors))
        .layer(security_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(security_header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(security_header(header::REFERRER_POLICY, "no-referrer"))
        .layer(security_header(header::CACHE_CONTROL, "no-store"))
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
}

fn security_header(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}
