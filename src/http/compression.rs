//! Which responses are compressed: decided here, by media type, for every route.
//!
//! Text-like answers (JSON, problem+json, HTML, CSV, JSON lines, CSS, JavaScript, SVG,
//! plain text) are compressed as the client asks (`gzip`, `br`, `zstd`). Everything else —
//! documents (PDF, PNG, JPEG, which do not shrink), ciphertext, ranges (`206`), and answers
//! without a body — goes out as it is, so no CPU is spent on bytes that cannot shrink and a
//! file keeps its `Content-Length` and `Accept-Ranges`.

use axum::http::{Extensions, HeaderMap, StatusCode, Version, header};
use tower_http::compression::predicate::SizeAbove;
use tower_http::compression::{CompressionLayer, Predicate};

/// Smallest body worth compressing.
const MIN_BYTES: u16 = 256;

/// Media types (without parameters) that are compressed.
const COMPRESSIBLE: &[&str] = &[
    "application/json",
    "application/problem+json",
    "application/x-ndjson",
    "application/jsonl",
    "application/javascript",
    "text/html",
    "text/csv",
    "text/css",
    "text/javascript",
    "text/plain",
    "image/svg+xml",
];

/// Whether a response of this status and headers is compressed (when large enough).
pub fn compressible(status: StatusCode, headers: &HeaderMap) -> bool {
    if status == StatusCode::PARTIAL_CONTENT || headers.contains_key(header::CONTENT_RANGE) {
        return false;
    }
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .is_some_and(|essence| COMPRESSIBLE.iter().any(|c| c.eq_ignore_ascii_case(essence)))
}

fn by_type(status: StatusCode, _: Version, headers: &HeaderMap, _: &Extensions) -> bool {
    compressible(status, headers)
}

/// The compression layer for the whole application.
pub fn layer() -> CompressionLayer<impl Predicate> {
    CompressionLayer::new().compress_when(SizeAbove::new(MIN_BYTES).and(by_type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn typed(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn text_is_compressed_files_are_not() {
        for t in [
            "application/json",
            "application/problem+json",
            "text/html; charset=utf-8",
            "text/csv; charset=utf-8",
            "application/x-ndjson",
        ] {
            assert!(compressible(StatusCode::OK, &typed(t)), "{t}");
        }
        for t in [
            "application/pdf",
            "image/png",
            "image/jpeg",
            "application/octet-stream",
        ] {
            assert!(!compressible(StatusCode::OK, &typed(t)), "{t}");
        }
        assert!(!compressible(StatusCode::OK, &HeaderMap::new()));
        assert!(!compressible(
            StatusCode::PARTIAL_CONTENT,
            &typed("application/json")
        ));
    }
}
