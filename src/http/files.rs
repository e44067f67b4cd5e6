//! File responses as a good file server gives them (RFC 9110): `Accept-Ranges`, single
//! byte ranges (`206`, `416`), `If-Range`, `If-None-Match` (`304`) and `HEAD`, for the
//! citizen's downloads and the agencies' reads alike.
//!
//! Decisions written down:
//! * The entity tag is the quoted SHA-256 of the file's plaintext: strong, and the same on
//!   every node.
//! * One range per request. Several ranges that touch or follow each other are served as
//!   the one range they make up; any other multi-range request gets the whole file (`200`),
//!   as RFC 9110 §14.2 lets a server ignore `Range`. No `multipart/byteranges`.
//! * A `Range` that does not parse is ignored (whole file). A range wholly past the end is
//!   `416` with `Content-Range: bytes */SIZE`.
//! * `If-Range` honours a strong entity tag only; a date (Custodia sends no
//!   `Last-Modified`) or another tag gets the whole file, so a download resumed against an
//!   older version never splices two versions together.
//! * `If-None-Match` wins over `Range` (RFC 9110 §13.2.2): a current copy gets `304`.
//! * Files are never compressed (PDF, PNG and JPEG do not shrink; see `http::compression`).

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::error::ApiError;
use crate::documents::{Delivery, FileInfo, FileStream, Part};

/// The entity tag of a file: its quoted SHA-256.
pub fn etag(info: &FileInfo) -> String {
    format!("\"{}\"", info.sha256)
}

/// The part of a file this request asks for, from its method and headers.
pub fn decide(method: &Method, headers: &HeaderMap) -> impl Fn(&FileInfo) -> Delivery {
    let head = method == Method::HEAD;
    let text = |name: header::HeaderName| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let if_none_match = headers
        .contains_key(header::IF_NONE_MATCH)
        .then(|| text(header::IF_NONE_MATCH));
    let if_range = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Range applies to GET alone (RFC 9110 §14.2).
    let range = (method == Method::GET)
        .then(|| headers.get(header::RANGE).and_then(|v| v.to_str().ok()))
        .flatten()
        .map(str::to_owned);
    move |info: &FileInfo| {
        let tag = etag(info);
        let part = if if_none_match
            .as_deref()
            .is_some_and(|list| none_match_hits(list, &tag))
        {
            Part::NotModified
        } else {
            match range.as_deref() {
                Some(range) if if_range.as_deref().is_none_or(|v| v == tag) => {
                    range_part(range, info.size)
                }
                _ => Part::Whole,
            }
        };
        Delivery { part, head }
    }
}

/// Whether an `If-None-Match` list names this tag (weak comparison, RFC 9110 §13.1.2).
fn none_match_hits(list: &str, tag: &str) -> bool {
    list.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == tag
    })
}

/// The part a `Range` value selects from a file of `size` bytes.
fn range_part(value: &str, size: u64) -> Part {
    use http_range_header::RangeUnsatisfiableError;
    let Ok(parsed) = http_range_header::parse_range_header(value) else {
        return Part::Whole;
    };
    let mut ranges = match parsed.validate(size) {
        Ok(ranges) => ranges,
        Err(RangeUnsatisfiableError::Unsatisfiable) => return Part::Unsatisfiable,
        Err(_) => return Part::Whole,
    };
    ranges.sort_by_key(|r| *r.start());
    let mut iter = ranges.into_iter();
    let Some(first) = iter.next() else {
        return Part::Whole;
    };
    let (start, mut end) = (*first.start(), *first.end());
    for r in iter {
        if *r.start() > end + 1 {
            return Part::Whole;
        }
        end = end.max(*r.end());
    }
    // A range covering the whole file is still answered 206: a client probing with
    // `bytes=0-` learns that ranges work.
    Part::Range {
        first: start,
        last: end,
    }
}

/// The response for an opened file: its type, a safe disposition, entity tag, RFC 9530
/// `Repr-Digest`, and the status, length and range its delivery calls for.
pub fn respond(opened: FileStream, disposition: &str) -> Response {
    let FileStream {
        info,
        delivery,
        body,
        ..
    } = opened;
    let size = info.size;
    let mut response = match delivery.part {
        Part::Unsatisfiable => {
            let mut r = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range-not-satisfiable",
                "Range not satisfiable",
                format!("The file is {size} bytes long; no requested range lies within it."),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r.headers_mut()
                .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            return r;
        }
        Part::NotModified => {
            let mut r = StatusCode::NOT_MODIFIED.into_response();
            set_validators(r.headers_mut(), &info);
            return r;
        }
        Part::Whole => {
            let mut r = body_of(body).into_response();
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            r
        }
        Part::Range { first, last } => {
            let mut r = (StatusCode::PARTIAL_CONTENT, body_of(body)).into_response();
            let headers = r.headers_mut();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(last - first + 1));
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{last}/{size}")) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            r
        }
    };
    let headers = response.headers_mut();
    // Room for what follows and what the middleware adds, made once.
    headers.reserve(16);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(info.media_type.mime()),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(value) = HeaderValue::from_str(&content_disposition(disposition, &info.name)) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    set_validators(headers, &info);
    if let Some(raw) = custodia_crypto::digest::hex_decode(&info.sha256) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        if let Ok(value) = HeaderValue::from_str(&format!("sha-256=:{b64}:")) {
            headers.insert("repr-digest", value);
        }
    }
    response
}

fn body_of(body: Option<crate::documents::files::Body>) -> Body {
    body.map_or_else(Body::empty, Body::from_stream)
}

fn set_validators(headers: &mut HeaderMap, info: &FileInfo) {
    if let Ok(etag) = HeaderValue::from_str(&etag(info)) {
        headers.insert(header::ETAG, etag);
    }
}

/// `Content-Disposition` with an ASCII fallback name and the UTF-8 name (RFC 6266 / 8187).
pub fn content_disposition(kind: &str, name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::documents::MediaType;

    fn info(size: u64) -> FileInfo {
        FileInfo {
            name: "a.pdf".into(),
            media_type: MediaType::Pdf,
            size,
            sha256: "ab".repeat(32),
        }
    }

    fn part(headers: &[(&str, &str)], method: Method, size: u64) -> Delivery {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        decide(&method, &map)(&info(size))
    }

    fn range(first: u64, last: u64) -> Part {
        Part::Range { first, last }
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        let get = |h: &[(&str, &str)]| part(h, Method::GET, 1000).part;
        assert_eq!(get(&[]), Part::Whole);
        assert_eq!(get(&[("range", "bytes=0-99")]), range(0, 99));
        assert_eq!(get(&[("range", "bytes=500-")]), range(500, 999));
        assert_eq!(get(&[("range", "bytes=-10")]), range(990, 999));
        assert_eq!(get(&[("range", "bytes=990-5000")]), range(990, 999));
        assert_eq!(get(&[("range", "bytes=0-")]), range(0, 999));
        assert_eq!(get(&[("range", "bytes=-5000")]), range(0, 999));
        assert_eq!(get(&[("range", "bytes=1000-")]), Part::Unsatisfiable);
        assert_eq!(get(&[("range", "bytes=2000-3000")]), Part::Unsatisfiable);
        // Malformed or another unit: ignored.
        assert_eq!(get(&[("range", "bytes=abc")]), Part::Whole);
        // Hostile values: a zero suffix selects nothing; absurd numbers and floods of
        // ranges are ignored rather than served piecemeal.
        assert_eq!(get(&[("range", "bytes=-0")]), Part::Unsatisfiable);
        assert_eq!(
            get(&[("range", "bytes=999999999999999999999999999999999-")]),
            Part::Whole
        );
        let flood = (0..200)
            .map(|i| format!("{}-{}", i * 2, i * 2))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(get(&[("range", &format!("bytes={flood}"))]), Part::Whole);
        assert_eq!(get(&[("range", "items=0-1")]), Part::Whole);
        // Adjacent ranges join; scattered ones get the whole file.
        assert_eq!(get(&[("range", "bytes=10-19,20-29")]), range(10, 29));
        assert_eq!(get(&[("range", "bytes=0-9,500-509")]), Part::Whole);
        // HEAD ignores Range.
        assert_eq!(
            part(&[("range", "bytes=0-9")], Method::HEAD, 1000).part,
            Part::Whole
        );
    }

    #[test]
    fn validators_decide_before_ranges() {
        let tag = format!("\"{}\"", "ab".repeat(32));
        let get = |h: &[(&str, &str)]| part(h, Method::GET, 1000).part;
        assert_eq!(get(&[("if-none-match", &tag)]), Part::NotModified);
        assert_eq!(
            get(&[("if-none-match", &format!("\"x\", W/{tag}"))]),
            Part::NotModified
        );
        assert_eq!(get(&[("if-none-match", "*")]), Part::NotModified);
        assert_eq!(get(&[("if-none-match", "\"old\"")]), Part::Whole);
        assert_eq!(
            get(&[("if-none-match", &tag), ("range", "bytes=0-9")]),
            Part::NotModified
        );
        assert_eq!(
            get(&[("if-range", &tag), ("range", "bytes=0-9")]),
            range(0, 9)
        );
        assert_eq!(
            get(&[("if-range", "\"old\""), ("range", "bytes=0-9")]),
            Part::Whole
        );
        assert_eq!(
            get(&[
                ("if-range", "Wed, 21 Oct 2015 07:28:00 GMT"),
                ("range", "bytes=0-9")
            ]),
            Part::Whole
        );
    }

    #[test]
    fn an_empty_file_has_no_satisfiable_start_range() {
        assert_eq!(
            part(&[("range", "bytes=0-")], Method::GET, 0).part,
            Part::Unsatisfiable
        );
        assert_eq!(
            part(&[("range", "bytes=-5")], Method::GET, 0).part,
            Part::Whole
        );
    }

    #[test]
    fn disposition_is_safe_and_keeps_unicode() {
        assert_eq!(
            content_disposition("inline", "营业执照 v2.pdf"),
            "inline; filename=\"____ v2.pdf\"; filename*=UTF-8''%E8%90%A5%E4%B8%9A%E6%89%A7%E7%85%A7%20v2.pdf"
        );
        assert_eq!(
            content_disposition("attachment", "a\"b.pdf"),
            "attachment; filename=\"a_b.pdf\"; filename*=UTF-8''a%22b.pdf"
        );
    }
}

/// Property tests: any `Range` header a client sends is answered with the whole file, an
/// unsatisfiable range, or one range inside the file — never a panic.
#[cfg(test)]
mod range_properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_range_header_is_inside_the_file_or_refused(
            value in "(bytes=)?[0-9, \\-]{0,30}|\\PC{0,30}",
            size in 0u64..100_000,
        ) {
            if let Part::Range { first, last } = range_part(&value, size) {
                prop_assert!(first <= last && last < size);
            }
        }
    }
}
