//! The citizen web pages: server-rendered templates from `web/templates/`, text from the
//! message catalogs in `web/i18n/`, one script and one stylesheet from `web/static/`.
//! Everything is embedded in the binary, so `custodia serve` needs no files beside it.
//!
//! By audience: [`citizen`] pages, the auditors' [`console`], their [`charts`], and the
//! [`i18n`] message catalogs and label helpers both use.

mod charts;
mod citizen;
mod console;
mod eid;
mod i18n;

use charts::{activity_chart, audit_chart};
use citizen::{
    activity_page, delegations_page, document_form, document_page, documents_page, grants_page,
    index, login, register, requests_page, settings, unlock,
};
use console::{audit_console, audit_enrol, audit_login};
use eid::{eid_callback, eid_start};
use i18n::{Lang, LangQuery, choose_lang};

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::Router;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use minijinja::{Environment, context};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::extract::{Cookies, LANG, MaybeAuthed, read_cookie};
use crate::citizens;
use crate::clock::from_ms;
use crate::sessions::Session;

/// The Content-Security-Policy of every response: no inline script or style, nothing
/// from elsewhere, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; frame-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in [
        (
            "layout.html",
            include_str!("../../../web/templates/layout.html"),
        ),
        (
            "index.html",
            include_str!("../../../web/templates/index.html"),
        ),
        (
            "register.html",
            include_str!("../../../web/templates/register.html"),
        ),
        (
            "login.html",
            include_str!("../../../web/templates/login.html"),
        ),
        ("eid.html", include_str!("../../../web/templates/eid.html")),
        (
            "unlock.html",
            include_str!("../../../web/templates/unlock.html"),
        ),
        (
            "settings.html",
            include_str!("../../../web/templates/settings.html"),
        ),
        (
            "documents.html",
            include_str!("../../../web/templates/documents.html"),
        ),
        (
            "grants.html",
            include_str!("../../../web/templates/grants.html"),
        ),
        (
            "requests.html",
            include_str!("../../../web/templates/requests.html"),
        ),
        (
            "document.html",
            include_str!("../../../web/templates/document.html"),
        ),
        (
            "document_form.html",
            include_str!("../../../web/templates/document_form.html"),
        ),
        (
            "activity.html",
            include_str!("../../../web/templates/activity.html"),
        ),
        (
            "delegations.html",
            include_str!("../../../web/templates/delegations.html"),
        ),
        (
            "audit.html",
            include_str!("../../../web/templates/audit.html"),
        ),
        (
            "audit_login.html",
            include_str!("../../../web/templates/audit_login.html"),
        ),
        (
            "audit_enrol.html",
            include_str!("../../../web/templates/audit_enrol.html"),
        ),
    ] {
        // The templates are compiled into the binary and checked by the tests that render
        // every page; a broken one is a build defect, reported on first render.
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "template does not compile");
        }
    }
    env
});

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/register", get(register))
        .route("/login", get(login))
        .route("/auth/oidc/start", get(eid_start))
        .route("/auth/oidc/callback", get(eid_callback))
        .route("/unlock", get(unlock))
        .route("/settings", get(settings))
        .route("/documents", get(documents_page))
        .route("/grants", get(grants_page))
        .route("/requests", get(requests_page))
        .route("/activity", get(activity_page))
        .route("/delegations", get(delegations_page))
        .route("/activity/chart.svg", get(activity_chart))
        .route("/audit", get(audit_console))
        .route("/audit/login", get(audit_login))
        .route("/audit/enrol", get(audit_enrol))
        .route("/audit/chart/{kind}", get(audit_chart))
        .route("/documents/new", get(document_form))
        .route("/documents/{id}", get(document_page))
        .route("/static/app.js", get(script))
        .route("/static/style.css", get(stylesheet))
}

pub(super) struct Page {
    lang: Lang,
    set_lang: bool,
    signed_in: bool,
    auditor: bool,
    csrf: Option<String>,
    /// The first path segment (`/documents/…` → `/documents`), to mark the current section
    /// in the navigation.
    section: String,
    /// While the pages act for someone (the acting-for switch): her name as the delegate
    /// sees it, or an empty text when it cannot be read (the delegate's vault is locked).
    acting_for: Option<String>,
}

/// The sections whose pages act for the principal while the switch is on: what a delegate
/// may do. Everything else (home, settings, the trail, delegations) is the citizen's own.
const ACTING_SECTIONS: [&str; 3] = ["/documents", "/requests", "/grants"];

pub(super) fn render(
    state: &AppState,
    page: &Page,
    name: &str,
    extra: minijinja::Value,
) -> Result<Response, ApiError> {
    let template = TEMPLATES.get_template(name).map_err(ApiError::internal)?;
    let ctx = context! {
        lang => page.lang.tag(),
        other_lang => page.lang.other().tag(),
        t => page.lang.messages(),
        signed_in => page.signed_in,
        auditor => page.auditor,
        csrf => page.csrf,
        section => page.section,
        acting_for => page.acting_for,
        ..extra
    };
    let html = template.render(ctx).map_err(ApiError::internal)?;
    let mut response = Html(html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_LANGUAGE,
        HeaderValue::from_static(page.lang.tag()),
    );
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Accept-Language, Cookie"),
    );
    if page.set_lang {
        let cookies = Cookies::for_state(state);
        headers.append(
            header::SET_COOKIE,
            cookies.set_preference(LANG, page.lang.tag(), 365 * 24 * 3600),
        );
    }
    Ok(response)
}

pub(super) fn section_of(path: &str) -> String {
    let first = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    format!("/{first}")
}

/// A page request: its language and the visitor's session, if any.
pub struct Visit(Page, Option<Session>);

/// A page request from a signed-in visitor; others are sent to `/login`.
pub struct SignedIn(Page, Session);

/// A page request from a visitor whose vault is unlocked; others are sent to `/login` or
/// `/unlock`.
pub struct Unlocked(Page, Session);

impl FromRequestParts<AppState> for Visit {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Query(query) = Query::<LangQuery>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let MaybeAuthed(mut session) = MaybeAuthed::from_request_parts(parts, state).await?;
        let (lang, set_lang) = choose_lang(&query, &parts.headers);
        let section = section_of(parts.uri.path());
        let mut acting_for = None;
        if let Some(s) = session.as_mut().filter(|s| s.citizen().is_ok()) {
            // The switch holds on every page (the banner), and acts where a delegate may.
            let mut probe = s.clone();
            super::extract::apply_acting(parts, state, &mut probe).await?;
            if probe.acting().is_some() {
                acting_for = Some(
                    crate::delegations::principal_name(state, &probe)
                        .await?
                        .unwrap_or_default(),
                );
                if ACTING_SECTIONS.contains(&section.as_str()) {
                    *s = probe;
                }
            }
        }
        let page = Page {
            lang,
            set_lang,
            signed_in: session.as_ref().is_some_and(|s| s.citizen().is_ok()),
            auditor: session.as_ref().is_some_and(|s| s.citizen().is_err()),
            csrf: session.as_ref().map(Session::csrf_token),
            section,
            acting_for,
        };
        Ok(Self(page, session))
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match Visit::from_request_parts(parts, state).await {
            Err(e) => Err(e.into_response()),
            Ok(Visit(_, Some(session))) if session.citizen().is_err() => {
                Err(Redirect::to("/audit").into_response())
            }
            Ok(Visit(page, Some(session))) => Ok(Self(page, session)),
            Ok(Visit(_, None)) => Err(Redirect::to("/login").into_response()),
        }
    }
}

/// A page request from a signed-in auditor; others are sent to `/audit/login`.
pub struct AuditorIn(Page, Session);

impl FromRequestParts<AppState> for AuditorIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match Visit::from_request_parts(parts, state).await {
            Err(e) => Err(e.into_response()),
            Ok(Visit(page, Some(session))) if page.auditor => Ok(Self(page, session)),
            Ok(_) => Err(Redirect::to("/audit/login").into_response()),
        }
    }
}

impl FromRequestParts<AppState> for Unlocked {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let SignedIn(page, session) = SignedIn::from_request_parts(parts, state).await?;
        if session.is_unlocked() {
            Ok(Self(page, session))
        } else {
            Err(Redirect::to("/unlock").into_response())
        }
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../../web/static/app.js"),
    )
}

async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../../web/static/style.css"),
    )
}
