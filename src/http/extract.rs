//! Request extractors shared by the routers: the client address, cookies, and the
//! session (with its CSRF check on every state-changing method).

use std::net::{IpAddr, SocketAddr};

use ipnet::{IpNet, Ipv6Net};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use cookie::{Cookie, SameSite};

use super::AppState;
use super::error::ApiError;
use crate::ids::CitizenId;
use crate::sessions::{self, Session};

/// The client, as per-address rate limits count it: its address (an IPv6 client by its
/// /64, which one subscriber holds whole), found by [`client_ip`].
pub struct ClientAddr(pub String);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| {
                limit_key(client_ip(
                    a.ip(),
                    &parts.headers,
                    &state.config.trusted_proxies,
                ))
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Ok(Self(addr))
    }
}

/// The client's address. The peer's, unless the peer is a trusted proxy
/// (`CUSTODIA_TRUSTED_PROXIES`): then the nearest address in the forwarding chain
/// (`Forwarded: for=`, else `X-Forwarded-For`, read from the right) that is not itself a
/// trusted proxy. Headers from anyone else are ignored, so a client cannot name itself;
/// an entry that is not an address ends the walk at the proxy that passed it on.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&canonical(*ip)));
    if !is_trusted(&peer) {
        return canonical(peer);
    }
    let mut client = canonical(peer);
    for hop in forwarding_chain(headers).iter().rev() {
        let Some(ip) = hop else {
            break;
        };
        client = canonical(*ip);
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

/// The one value of a header that may be sent once (`Authorization`, an agency's officer
/// and case): `Err` when it was sent more than once. Which of two values counts is not for
/// the server to guess: a record naming one officer when the request named another too, or
/// a key read past a second credential, is no answer a client can rely on.
pub(super) fn single_header(
    headers: &HeaderMap,
    name: impl header::AsHeaderName,
) -> Result<Option<&HeaderValue>, ()> {
    let mut sent = headers.get_all(name).iter();
    match (sent.next(), sent.next()) {
        (first, None) => Ok(first),
        (_, Some(_)) => Err(()),
    }
}

/// An IPv4 address that arrived mapped into IPv6 is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The addresses a request passed through, nearest last (`None` for an entry that is not
/// an address: `unknown`, an obfuscated name, garbage).
fn forwarding_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let joined = |name: header::HeaderName| {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("\u{0}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let forwarded = joined(header::FORWARDED);
    if !forwarded.is_empty() {
        return forwarded
            .split(',')
            .map(|element| {
                element.split(';').find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    key.eq_ignore_ascii_case("for").then(|| parse_node(value))?
                })
            })
            .collect();
    }
    let forwarded_for = joined(header::HeaderName::from_static("x-forwarded-for"));
    if forwarded_for.is_empty() {
        return Vec::new();
    }
    forwarded_for.split(',').map(parse_node).collect()
}

/// One node of a forwarding header: `192.0.2.60`, `"[2001:db8::1]:4711"`, `192.0.2.60:80`.
fn parse_node(raw: &str) -> Option<IpAddr> {
    let node = raw.trim().trim_matches('"');
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    node.parse::<SocketAddr>().ok().map(|s| s.ip())
}

/// What a per-address limit counts: an IPv4 address, or an IPv6 address's /64.
pub fn limit_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            Ipv6Net::new(v6, 64).map_or_else(|_| v6.to_string(), |net| net.trunc().to_string())
        }
    }
}

/// Names and attributes of Custodia's cookies. Over https they take the `__Host-` prefix
/// and `Secure`; on plain-http localhost (development) browsers refuse both, so neither
/// is used there.
pub struct Cookies {
    secure: bool,
}

/// The session cookie's base name.
pub const SESSION: &str = "custodia-session";
/// The ceremony cookie's base name.
pub const CEREMONY: &str = "custodia-ceremony";
/// The language cookie.
pub const LANG: &str = "custodia-lang";
/// The cookie binding a national eID sign-in to the browser that started it.
pub const EID_FLOW: &str = "custodia-eid";
/// The cookie holding the proof of a national eID sign-in until registration uses it.
pub const EID_PROOF: &str = "custodia-eid-proof";

impl Cookies {
    /// Cookie policy for this server.
    pub fn for_state(state: &AppState) -> Self {
        Self {
            secure: state.config.public_url.scheme() == "https",
        }
    }

    fn name(&self, base: &str) -> String {
        if self.secure {
            format!("__Host-{base}")
        } else {
            base.to_owned()
        }
    }

    /// `Set-Cookie` for `base=value`, HttpOnly, SameSite=Strict, Path=/, living `max_age_s`
    /// (0 deletes it).
    pub fn set(&self, base: &str, value: &str, max_age_s: i64) -> HeaderValue {
        self.build(self.name(base), value, max_age_s, SameSite::Strict)
    }

    /// As [`Cookies::set`] but SameSite=Lax: for the one cookie that must come back on a
    /// top-level navigation from another site (the eID provider's redirect back). It
    /// names a one-time flow and grants nothing by itself.
    pub fn set_lax(&self, base: &str, value: &str, max_age_s: i64) -> HeaderValue {
        self.build(self.name(base), value, max_age_s, SameSite::Lax)
    }

    /// `Set-Cookie` for a preference that is no secret (the UI language): the same name on
    /// every origin, readable by the server only, SameSite=Strict.
    pub fn set_preference(&self, name: &str, value: &str, max_age_s: i64) -> HeaderValue {
        self.build(name.to_owned(), value, max_age_s, SameSite::Strict)
    }

    fn build(&self, name: String, value: &str, max_age_s: i64, same_site: SameSite) -> HeaderValue {
        let cookie = Cookie::build((name, value.to_owned()))
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(same_site)
            .max_age(cookie::time::Duration::seconds(max_age_s))
            .build();
        // Cookie values here are base64url or fixed words, always valid header text.
        HeaderValue::from_str(&cookie.to_string()).unwrap_or(HeaderValue::from_static(""))
    }

    /// The value of cookie `base` in the request, if present.
    pub fn get<'a>(&self, headers: &'a HeaderMap, base: &str) -> Option<&'a str> {
        read_cookie(headers, &self.name(base))
    }
}

/// Reads one cookie by exact name.
pub fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A signed-in session acting for herself. For any method other than GET/HEAD the
/// `X-CSRF-Token` header must match, so no state-changing handler can forget the check.
/// A request that acts for someone else (`X-Acting-For`, or the page's acting-for
/// choice) is refused here: only the routes that take [`MayAct`] serve a delegate, so
/// account settings, passkeys, the passphrase, recovery and delegations never do.
pub struct Authed(pub Session);

/// The header naming the principal a delegate acts for (SPEC §6).
pub const ACTING_FOR: &str = "x-acting-for";
/// The cookie keeping the pages' acting-for choice (a citizen id: no secret; the
/// delegation is checked on every request as for the header).
pub const ACTING_FOR_COOKIE: &str = "custodia-acting-for";

/// Where a request names the principal it acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ActingSource {
    /// `X-Acting-For` (API clients): a delegation that is not live is refused.
    Header,
    /// The pages' choice (cookie): a delegation that ended meanwhile is simply no longer
    /// acted under, and the pages show the citizen's own vault again.
    Cookie,
}

/// The principal a request acts for: the header, else (for pages) the cookie.
fn acting_for(
    parts: &Parts,
    cookies: &Cookies,
) -> Result<Option<(CitizenId, ActingSource)>, ApiError> {
    let (raw, source) = match parts.headers.get(ACTING_FOR) {
        Some(v) => (Some(v.to_str().unwrap_or_default()), ActingSource::Header),
        None => (
            cookies.get(&parts.headers, ACTING_FOR_COOKIE),
            ActingSource::Cookie,
        ),
    };
    // A header that is there must name someone; the pages' cookie may be blank.
    if source == ActingSource::Header && raw.is_some_and(|r| r.trim().is_empty()) {
        return Err(crate::error::invalid(
            "X-Acting-For",
            "must be the citizen id of your principal",
        )
        .into());
    }
    match raw.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(raw) => match raw.parse::<CitizenId>() {
            Ok(id) => Ok(Some((id, source))),
            Err(_) if source == ActingSource::Cookie => Ok(None),
            Err(_) => Err(crate::error::invalid(
                "X-Acting-For",
                "must be the citizen id of your principal",
            )
            .into()),
        },
    }
}

/// Acts for the principal the request names, if any (see [`MayAct`]).
pub async fn apply_acting(
    parts: &Parts,
    state: &AppState,
    session: &mut Session,
) -> Result<(), ApiError> {
    match acting_for(parts, &Cookies::for_state(state))? {
        None => Ok(()),
        Some((principal, ActingSource::Header)) => {
            Ok(crate::delegations::act_for(state, session, principal).await?)
        }
        Some((principal, ActingSource::Cookie)) => {
            match crate::delegations::act_for(state, session, principal).await {
                Ok(()) | Err(crate::error::Error::Forbidden(_)) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    }
}

async fn signed_in(parts: &Parts, state: &AppState) -> Result<Session, ApiError> {
    let cookies = Cookies::for_state(state);
    let session = sessions::authenticate(state, cookies.get(&parts.headers, SESSION)).await?;
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        let token = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok());
        session.check_csrf(token)?;
    }
    Ok(session)
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let session = signed_in(parts, state).await?;
        // The header refuses; the pages' cookie only matters where acting is possible.
        if let Some((principal, ActingSource::Header)) =
            acting_for(parts, &Cookies::for_state(state))?
            && session.own_citizen().ok() != Some(principal)
        {
            return Err(crate::error::Error::Forbidden(
                "Only the account holder can do this, not someone acting for her.".into(),
            )
            .into());
        }
        Ok(Self(session))
    }
}

/// A signed-in session that may act for someone else: with `X-Acting-For` (or the pages'
/// acting-for choice) it acts for that principal under a live delegation, found in the
/// database on this request; what the delegate may do is checked by the domain.
pub struct MayAct(pub Session);

impl FromRequestParts<AppState> for MayAct {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let mut session = signed_in(parts, state).await?;
        apply_acting(parts, state, &mut session).await?;
        Ok(Self(session))
    }
}

/// A session if there is a live one (pages that render either way).
pub struct MaybeAuthed(pub Option<Session>);

impl FromRequestParts<AppState> for MaybeAuthed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let cookies = Cookies::for_state(state);
        match cookies.get(&parts.headers, SESSION) {
            None => Ok(Self(None)),
            Some(value) => Ok(Self(sessions::authenticate(state, Some(value)).await.ok())),
        }
    }
}

/// A JSON request body that must be a JSON object, deserialized into `T`. Unlike
/// `axum::Json`, an array is refused even where every field of `T` is optional (serde
/// would read `[]` as an empty struct, so a stray `[]` could approve a request).
/// Content type, size limit and syntax are checked as `axum::Json` checks them; every
/// refusal becomes a problem document.
pub struct JsonObject<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for JsonObject<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = axum::response::Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = json_content_type(req.headers());
        let bytes = <axum::body::Bytes as axum::extract::FromRequest<S>>::from_request(req, state)
            .await
            .map_err(axum::response::IntoResponse::into_response)?;
        parse_object(is_json, &bytes)
    }
}

/// An optional JSON object body: `None` only when the body is empty; anything else is
/// parsed as strictly as a required one (a wrong content type or a malformed body is
/// refused, never read as "no body").
impl<S, T> axum::extract::OptionalFromRequest<S> for JsonObject<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = axum::response::Response;

    async fn from_request(
        req: axum::extract::Request,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let is_json = json_content_type(req.headers());
        let bytes = <axum::body::Bytes as axum::extract::FromRequest<S>>::from_request(req, state)
            .await
            .map_err(axum::response::IntoResponse::into_response)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        parse_object(is_json, &bytes).map(Some)
    }
}

fn json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let essence = v.split(';').next().unwrap_or_default().trim();
            let essence = essence.to_ascii_lowercase();
            essence == "application/json"
                || (essence.starts_with("application/") && essence.ends_with("+json"))
        })
}

// axum's rejections are responses; boxing one only to unbox it at once buys nothing.
#[allow(clippy::result_large_err)]
fn parse_object<T: serde::de::DeserializeOwned>(
    is_json: bool,
    bytes: &[u8],
) -> Result<JsonObject<T>, axum::response::Response> {
    use axum::response::IntoResponse as _;
    if !is_json {
        return Err(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "Send the body as JSON with Content-Type: application/json.",
        )
        .into_response());
    }
    if bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b != b'{')
    {
        return Err(
            ApiError::from(crate::error::invalid("body", "must be a JSON object")).into_response(),
        );
    }
    match axum::Json::<T>::from_bytes(bytes) {
        Ok(axum::Json(v)) => Ok(JsonObject(v)),
        // JSON does not tell `30` from `30.0`, and the OpenAPI document's `integer` (JSON
        // Schema) admits both; serde refuses the second for an integer field. So a body that
        // failed is read once more with every integral number written as an integer; if
        // that does not help, the first refusal stands.
        Err(refused) => serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|mut value| integral_numbers_as_integers(&mut value).then_some(value))
            .and_then(|value| serde_json::from_value::<T>(value).ok())
            .map(JsonObject)
            .ok_or_else(|| refused.into_response()),
    }
}

/// Rewrites every number with no fractional part (`30.0`, `3e1`) as an integer, within the
/// range where a double holds every integer exactly; says whether it changed any.
fn integral_numbers_as_integers(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    /// 2^53: beyond it a double no longer stands for one integer.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match value {
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() <= EXACT => {
                // Exact by the range check above: the cast cannot truncate or saturate.
                #[allow(clippy::cast_possible_truncation)]
                let whole = f as i64;
                *value = Value::from(whole);
                true
            }
            _ => false,
        },
        Value::Array(items) => items.iter_mut().fold(false, |changed, v| {
            integral_numbers_as_integers(v) | changed
        }),
        Value::Object(map) => map.values_mut().fold(false, |changed, v| {
            integral_numbers_as_integers(v) | changed
        }),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod integral_numbers {
    use super::*;
    use axum::http::StatusCode;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Body {
        minutes: u32,
        limits: Vec<i64>,
        ratio: Option<f64>,
    }

    fn parse(text: &str) -> Result<Body, StatusCode> {
        parse_object::<Body>(true, text.as_bytes())
            .map(|JsonObject(b)| b)
            .map_err(|r| r.status())
    }

    #[test]
    fn an_integer_written_with_a_point_is_the_integer() {
        let b = parse(r#"{"minutes": 30.0, "limits": [1e2, -0.0, 7], "ratio": 0.5}"#).unwrap();
        assert_eq!(
            (b.minutes, b.limits, b.ratio),
            (30, vec![100, 0, 7], Some(0.5))
        );
        // A float field keeps taking integers and fractions alike.
        assert_eq!(
            parse(r#"{"minutes": 1, "limits": [], "ratio": 2}"#)
                .unwrap()
                .ratio,
            Some(2.0)
        );
    }

    #[test]
    fn a_fraction_or_a_wrong_body_is_still_refused() {
        assert_eq!(
            parse(r#"{"minutes": 30.5, "limits": []}"#).unwrap_err(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            parse(r#"{"minutes": -1.0, "limits": []}"#).unwrap_err(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            parse(r#"{"minutes": 1e300, "limits": []}"#).unwrap_err(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            parse(r#"{"minutes": 1.0, "limits": [], "extra": 1.0}"#).unwrap_err(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            parse(r#"{"minutes" 1.0}"#).unwrap_err(),
            StatusCode::BAD_REQUEST
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod client_addresses {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarding_headers_count_only_from_a_trusted_proxy() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let claim = headers(&[("x-forwarded-for", "198.51.100.7")]);
        // From a client directly: its own claim is ignored.
        assert_eq!(
            client_ip(ip("203.0.113.9"), &claim, &trusted),
            ip("203.0.113.9")
        );
        // Through the proxy: the address it names.
        assert_eq!(
            client_ip(ip("10.1.2.3"), &claim, &trusted),
            ip("198.51.100.7")
        );
        // No proxies configured: never.
        assert_eq!(client_ip(ip("10.1.2.3"), &claim, &[]), ip("10.1.2.3"));
    }

    #[test]
    fn the_chain_is_read_from_the_right_past_trusted_proxies_only() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // The client forged a first entry; the proxies appended the real one and their own.
        let chain = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7, 10.0.0.2")]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &chain, &trusted),
            ip("198.51.100.7")
        );
        // Two header lines are one list.
        let split = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &split, &trusted),
            ip("198.51.100.7")
        );
        // Garbage ends the walk at the proxy that passed it on.
        let garbage = headers(&[("x-forwarded-for", "198.51.100.7, not-an-address")]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &garbage, &trusted),
            ip("10.0.0.1")
        );
        // RFC 7239, with a quoted IPv6 node and a port; it is preferred when present.
        let forwarded = headers(&[
            (
                "forwarded",
                "for=192.0.2.60;proto=http, for=\"[2001:db8::1]:4711\"",
            ),
            ("x-forwarded-for", "1.1.1.1"),
        ]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &forwarded, &trusted),
            ip("2001:db8::1")
        );
        // An IPv4 peer mapped into IPv6 is the IPv4 peer.
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &chain, &trusted),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        assert_eq!(limit_key(ip("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(
            limit_key(ip("2001:db8:1:2:ffff::9")),
            limit_key(ip("2001:db8:1:2::1"))
        );
        assert_ne!(
            limit_key(ip("2001:db8:1:3::1")),
            limit_key(ip("2001:db8:1:2::1"))
        );
        assert_eq!(limit_key(ip("192.0.2.1")), "192.0.2.1");
    }
}
