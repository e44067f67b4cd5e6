//! Request extractors shared by the routers: the client address, cookies, and the
//! session (with its CSRF check on every state-changing method).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use cookie::{Cookie, SameSite};

use super::AppState;
use super::error::ApiError;
use crate::sessions::{self, Session};

/// The peer address, for per-address rate limits.
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip().to_string())
            .unwrap_or_else(|| "unknown".to_owned());
        Ok(Self(addr))
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
        self.build(self.name(base), value, max_age_s)
    }

    /// `Set-Cookie` for a preference that is no secret (the UI language): the same name on
    /// every origin, readable by the server only, SameSite=Strict.
    pub fn set_preference(&self, name: &str, value: &str, max_age_s: i64) -> HeaderValue {
        self.build(name.to_owned(), value, max_age_s)
    }

    fn build(&self, name: String, value: &str, max_age_s: i64) -> HeaderValue {
        let cookie = Cookie::build((name, value.to_owned()))
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Strict)
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

/// A signed-in session. For any method other than GET/HEAD the `X-CSRF-Token` header
/// must match, so no state-changing handler can forget the check.
pub struct Authed(pub Session);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let cookies = Cookies::for_state(state);
        let session = sessions::authenticate(state, cookies.get(&parts.headers, SESSION)).await?;
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let token = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok());
            session.check_csrf(token)?;
        }
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
