//! The citizen web pages: server-rendered templates from `web/templates/`, text from the
//! message catalogs in `web/i18n/`, one script and one stylesheet from `web/static/`.
//! Everything is embedded in the binary, so `custodia serve` needs no files beside it.

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
            include_str!("../../web/templates/layout.html"),
        ),
        ("index.html", include_str!("../../web/templates/index.html")),
        (
            "register.html",
            include_str!("../../web/templates/register.html"),
        ),
        ("login.html", include_str!("../../web/templates/login.html")),
        (
            "unlock.html",
            include_str!("../../web/templates/unlock.html"),
        ),
        (
            "settings.html",
            include_str!("../../web/templates/settings.html"),
        ),
        (
            "documents.html",
            include_str!("../../web/templates/documents.html"),
        ),
        (
            "grants.html",
            include_str!("../../web/templates/grants.html"),
        ),
        (
            "requests.html",
            include_str!("../../web/templates/requests.html"),
        ),
        (
            "document.html",
            include_str!("../../web/templates/document.html"),
        ),
        (
            "document_form.html",
            include_str!("../../web/templates/document_form.html"),
        ),
        (
            "activity.html",
            include_str!("../../web/templates/activity.html"),
        ),
        ("audit.html", include_str!("../../web/templates/audit.html")),
        (
            "audit_login.html",
            include_str!("../../web/templates/audit_login.html"),
        ),
        (
            "audit_enrol.html",
            include_str!("../../web/templates/audit_enrol.html"),
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

type Catalog = BTreeMap<String, String>;

static CATALOGS: LazyLock<[(Lang, Catalog); 2]> = LazyLock::new(|| {
    let parse = |text: &str| serde_json::from_str::<Catalog>(text).unwrap_or_default();
    [
        (Lang::En, parse(include_str!("../../web/i18n/en.json"))),
        (Lang::ZhCn, parse(include_str!("../../web/i18n/zh-CN.json"))),
    ]
});

/// A UI language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Simplified Chinese.
    ZhCn,
}

impl Lang {
    fn tag(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::ZhCn => "zh-CN",
        }
    }

    fn parse(tag: &str) -> Option<Self> {
        let tag = tag.trim().to_ascii_lowercase();
        if tag.starts_with("zh") {
            Some(Self::ZhCn)
        } else if tag.starts_with("en") {
            Some(Self::En)
        } else {
            None
        }
    }

    fn other(self) -> Self {
        match self {
            Self::En => Self::ZhCn,
            Self::ZhCn => Self::En,
        }
    }

    fn catalog(self) -> &'static Catalog {
        let catalogs: &'static [(Lang, Catalog); 2] = &CATALOGS;
        catalogs
            .iter()
            .find(|(l, _)| *l == self)
            .map(|(_, c)| c)
            .unwrap_or(&catalogs[0].1)
    }
}

#[derive(Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

/// The language of this request: `?lang=`, then the language cookie, then
/// `Accept-Language` (first supported tag), then English.
fn choose_lang(query: &LangQuery, headers: &HeaderMap) -> (Lang, bool) {
    if let Some(l) = query.lang.as_deref().and_then(Lang::parse) {
        return (l, true);
    }
    if let Some(l) = read_cookie(headers, LANG).and_then(Lang::parse) {
        return (l, false);
    }
    let accepted = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let lang = accepted
        .split(',')
        .filter_map(|part| Lang::parse(part.split(';').next().unwrap_or("")))
        .next()
        .unwrap_or(Lang::En);
    (lang, false)
}

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/register", get(register))
        .route("/login", get(login))
        .route("/unlock", get(unlock))
        .route("/settings", get(settings))
        .route("/documents", get(documents_page))
        .route("/grants", get(grants_page))
        .route("/requests", get(requests_page))
        .route("/activity", get(activity_page))
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

struct Page {
    lang: Lang,
    set_lang: bool,
    signed_in: bool,
    auditor: bool,
    csrf: Option<String>,
    /// The first path segment (`/documents/…` → `/documents`), to mark the current section
    /// in the navigation.
    section: String,
}

fn render(
    state: &AppState,
    page: &Page,
    name: &str,
    extra: minijinja::Value,
) -> Result<Response, ApiError> {
    let template = TEMPLATES.get_template(name).map_err(ApiError::internal)?;
    let ctx = context! {
        lang => page.lang.tag(),
        other_lang => page.lang.other().tag(),
        t => page.lang.catalog(),
        signed_in => page.signed_in,
        auditor => page.auditor,
        csrf => page.csrf,
        section => page.section,
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

fn section_of(path: &str) -> String {
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
        let MaybeAuthed(session) = MaybeAuthed::from_request_parts(parts, state).await?;
        let (lang, set_lang) = choose_lang(&query, &parts.headers);
        let page = Page {
            lang,
            set_lang,
            signed_in: session.as_ref().is_some_and(|s| s.citizen().is_ok()),
            auditor: session.as_ref().is_some_and(|s| s.citizen().is_err()),
            csrf: session.as_ref().map(Session::csrf_token),
            section: section_of(parts.uri.path()),
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

async fn index(
    State(state): State<AppState>,
    Visit(page, session): Visit,
) -> Result<Response, ApiError> {
    let Some(s) = session.as_ref().filter(|s| s.citizen().is_ok()) else {
        return render(&state, &page, "index.html", context! {});
    };
    let profile = citizens::profile(&state, s).await?;
    let unseen_reads = crate::activity::unseen_reads(&state, s).await?;
    // At a glance: what is stored, what waits for an answer, what is shared now.
    let documents = crate::documents::count(&state, s).await?;
    let pending = crate::requests::list(&state, s)
        .await?
        .iter()
        .filter(|r| r.status == "pending")
        .count();
    let active = crate::grants::list(&state, s)
        .await?
        .iter()
        .filter(|g| g.status == "active")
        .count();
    render(
        &state,
        &page,
        "index.html",
        context! {
            unlocked => profile.unlocked, display_name => profile.display_name, unseen_reads,
            documents, pending, active,
        },
    )
}

async fn register(
    State(state): State<AppState>,
    Visit(page, _): Visit,
) -> Result<Response, ApiError> {
    render(&state, &page, "register.html", context! {})
}

async fn login(State(state): State<AppState>, Visit(page, _): Visit) -> Result<Response, ApiError> {
    render(&state, &page, "login.html", context! {})
}

async fn unlock(
    State(state): State<AppState>,
    SignedIn(page, _): SignedIn,
) -> Result<Response, ApiError> {
    render(&state, &page, "unlock.html", context! {})
}

fn date(ms: i64) -> String {
    let t = from_ms(ms);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

async fn settings(
    State(state): State<AppState>,
    SignedIn(page, session): SignedIn,
) -> Result<Response, ApiError> {
    let profile = citizens::profile(&state, &session).await?;
    let passkeys: Vec<_> = profile
        .passkeys
        .iter()
        .map(|p| {
            context! {
                id => p.id.to_string(),
                label => p.label,
                created => date(p.created_at),
                last_used => p.last_used_at.map(date),
            }
        })
        .collect();
    render(&state, &page, "settings.html", context! { passkeys })
}

fn type_name(lang: Lang, t: &crate::catalog::DocumentType) -> String {
    names_in(lang, &t.names)
}

fn names_in(lang: Lang, names: &crate::catalog::Names) -> String {
    match lang {
        Lang::En => names.en.clone(),
        Lang::ZhCn => names.zh_cn.clone(),
    }
}

/// A field's label in the page's language (`field_<name>` in `web/i18n`); a field without
/// one reads `business_scope` → `Business scope`.
fn field_label(lang: Lang, name: &str) -> String {
    if let Some(label) = lang.catalog().get(&format!("field_{name}")) {
        return label.clone();
    }
    let spaced = name.replace('_', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => spaced,
    }
}

/// Field names as a readable list of labels.
fn labels(lang: Lang, fields: &[String]) -> String {
    let labels: Vec<String> = fields.iter().map(|f| field_label(lang, f)).collect();
    labels.join(list_separator(lang))
}

/// How a list is joined in running text: `, ` in English, `、` in Chinese.
fn list_separator(lang: Lang) -> &'static str {
    lang.catalog()
        .get("list_separator")
        .map_or(", ", String::as_str)
}

async fn documents_page(
    State(state): State<AppState>,
    SignedIn(page, session): SignedIn,
) -> Result<Response, ApiError> {
    let docs = crate::documents::list(&state, &session).await?;
    let mut groups: Vec<minijinja::Value> = Vec::new();
    for t in state.catalog.document_types() {
        let mine: Vec<_> = docs
            .iter()
            .filter(|d| d.doc_type == t.id)
            .map(|d| {
                context! {
                    id => d.id.to_string(),
                    version => d.version,
                    updated => date(d.updated_at),
                    issued => d.issuer_agency_id.is_some(),
                    issuer => d.issuer_name.clone(),
                }
            })
            .collect();
        if !mine.is_empty() {
            groups.push(context! { type_id => t.id, type_name => type_name(page.lang, t), documents => mine });
        }
    }
    let types: Vec<_> = state
        .catalog
        .document_types()
        .iter()
        .map(|t| context! { id => t.id, name => type_name(page.lang, t) })
        .collect();
    render(&state, &page, "documents.html", context! { groups, types })
}

#[derive(Deserialize)]
struct FormQuery {
    #[serde(rename = "type")]
    doc_type: String,
    replace: Option<uuid::Uuid>,
}

async fn document_form(
    State(state): State<AppState>,
    Query(form): Query<FormQuery>,
    Unlocked(page, session): Unlocked,
) -> Result<Response, ApiError> {
    let t = state
        .catalog
        .document_type(&form.doc_type)
        .ok_or_else(ApiError::not_found)?;
    let current = match form.replace {
        Some(id) => {
            crate::documents::get(&state, &session, id, None)
                .await?
                .fields
        }
        None => Default::default(),
    };
    let fields: Vec<_> = t
        .fields
        .iter()
        .map(|f| {
            context! {
                name => f.name,
                label => field_label(page.lang, &f.name),
                kind => serde_json::to_value(f.kind).ok().and_then(|v| v.as_str().map(str::to_owned)),
                required => f.required,
                values => f.values,
                example => f.example,
                value => current.get(&f.name).cloned().unwrap_or_default(),
            }
        })
        .collect();
    let hint = page
        .lang
        .catalog()
        .get("file_hint")
        .cloned()
        .unwrap_or_default()
        .replace(
            "{limit}",
            &(state.config.max_upload_bytes / (1024 * 1024)).to_string(),
        );
    render(
        &state,
        &page,
        "document_form.html",
        context! {
            type_id => t.id,
            type_name => type_name(page.lang, t),
            fields,
            has_file => t.has_file,
            file_hint => hint,
            replace => form.replace.map(|id| id.to_string()),
        },
    )
}

#[derive(Deserialize)]
struct VersionQuery {
    version: Option<i32>,
}

async fn document_page(
    State(state): State<AppState>,
    Query(vq): Query<VersionQuery>,
    axum::extract::Path(id): axum::extract::Path<uuid::Uuid>,
    Unlocked(page, session): Unlocked,
) -> Result<Response, ApiError> {
    let view = crate::documents::get(&state, &session, id, vq.version).await?;
    let t = state.catalog.document_type(&view.doc_type);
    let fields: Vec<_> = match t {
        Some(t) => t
            .fields
            .iter()
            .filter_map(|f| {
                view.fields
                    .get(&f.name)
                    .map(|v| context! { label => field_label(page.lang, &f.name), value => v })
            })
            .collect(),
        None => view
            .fields
            .iter()
            .map(|(k, v)| context! { label => field_label(page.lang, k), value => v })
            .collect(),
    };
    let file = view.file.as_ref().map(|f| {
        context! { name => f.name, image => f.media_type.is_image(), size_kib => f.size.div_ceil(1024) }
    });
    let versions: Vec<_> = view
        .versions
        .iter()
        .map(|v| context! { version => v.version })
        .collect();
    render(
        &state,
        &page,
        "document.html",
        context! {
            id => id.to_string(),
            type_id => view.doc_type,
            type_name => t.map(|t| type_name(page.lang, t)).unwrap_or_else(|| view.doc_type.clone()),
            version => view.version,
            versions,
            fields,
            file,
            issued => view.issuer_agency_id.is_some(),
            issuer => view.issuer.as_ref().map(|i| context! {
                name => i.name.clone(),
                issued_at => i.issued_at.clone(),
                expires_at => i.expires_at.clone(),
                valid => i.signature_valid,
            }),
        },
    )
}

async fn grants_page(
    State(state): State<AppState>,
    SignedIn(page, session): SignedIn,
) -> Result<Response, ApiError> {
    let t = page.lang.catalog();
    let text = |key: String| t.get(&key).cloned().unwrap_or(key);
    let mut grants = Vec::new();
    for g in crate::grants::list(&state, &session).await? {
        let agency = state
            .store
            .agency(g.agency_id)
            .await
            .map(|a| a.name)
            .unwrap_or_default();
        let type_names: Vec<String> = g
            .document_types
            .iter()
            .map(|id| {
                state
                    .catalog
                    .document_type(id)
                    .map(|d| type_name(page.lang, d))
                    .unwrap_or_else(|| id.clone())
            })
            .collect();
        let mut scope = type_names.join(list_separator(page.lang));
        if !g.document_ids.is_empty() {
            if !scope.is_empty() {
                scope.push_str(" + ");
            }
            scope.push_str(&format!(
                "{} × {}",
                g.document_ids.len(),
                text("nav_documents".into())
            ));
        }
        let tier = g.tier.as_str();
        grants.push(context! {
            id => g.id.to_string(),
            agency,
            status => g.status,
            status_text => text(format!("status_{}", g.status)),
            scope,
            tier_text => text(format!("tier_{tier}")),
            fields => labels(page.lang, &g.fields),
            purpose => g.purpose,
            reads => g.reads,
            max_reads => g.max_reads,
            until => g.expires_at.get(..10).unwrap_or_default().to_owned(),
        });
    }
    let unlocked = session.is_unlocked();
    let agencies: Vec<_> = crate::agencies::directory(&state)
        .await?
        .into_iter()
        .map(|a| context! { id => a.id.to_string(), name => a.name, level => text(format!("level_{}", a.level)) })
        .collect();
    let types: Vec<_> = state
        .catalog
        .document_types()
        .iter()
        .filter(|t| t.sharing_class != crate::catalog::SharingClass::None)
        .map(|t| {
            let fields: Vec<_> = t
                .fields
                .iter()
                .map(|f| context! { name => f.name, label => field_label(page.lang, &f.name) })
                .collect();
            context! { id => t.id, name => type_name(page.lang, t), fields }
        })
        .collect();
    render(
        &state,
        &page,
        "grants.html",
        context! { grants, unlocked, agencies, types },
    )
}

async fn requests_page(
    State(state): State<AppState>,
    SignedIn(page, session): SignedIn,
) -> Result<Response, ApiError> {
    let t = page.lang.catalog();
    let text = |key: String| t.get(&key).cloned().unwrap_or(key);
    let name_of = |id: &str| {
        state
            .catalog
            .document_type(id)
            .map(|d| type_name(page.lang, d))
            .unwrap_or_else(|| id.to_owned())
    };
    let unlocked = session.is_unlocked();
    let mut requests = Vec::new();
    for r in crate::requests::list(&state, &session).await? {
        let preview = if r.status == "pending" && unlocked {
            crate::requests::preview(&state, &session, r.id)
                .await?
                .into_iter()
                .map(|p| {
                    let fields: Vec<_> = p
                        .fields
                        .iter()
                        .map(|(k, v)| context! { label => field_label(page.lang, k), value => v })
                        .collect();
                    context! {
                        type_name => name_of(&p.doc_type),
                        version => p.version,
                        fields,
                        file => p.file.map(|f| f.name),
                        digest => p.content_sha256,
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let asked = r.tier.as_str();
        let tiers: Vec<_> = [
            crate::catalog::Tier::Verify,
            crate::catalog::Tier::Fields,
            crate::catalog::Tier::Full,
        ]
        .into_iter()
        .filter(|x| *x <= r.tier)
        .map(|x| context! { value => x.as_str(), text => text(format!("tier_{}", x.as_str())) })
        .collect();
        // The fields the citizen may share: those asked for, or, when the request asks
        // for everything, every field of the asked types.
        let shareable: Vec<String> = if r.tier == crate::catalog::Tier::Full {
            r.document_types
                .iter()
                .filter_map(|t| state.catalog.document_type(t))
                .flat_map(|t| t.fields.iter().map(|f| f.name.clone()))
                .collect()
        } else {
            r.fields.clone()
        };
        let field_choices: Vec<_> = shareable
            .iter()
            .map(|f| context! { name => f, label => field_label(page.lang, f) })
            .collect();
        requests.push(context! {
            id => r.id.to_string(),
            field_choices,
            agency => r.agency_name,
            level => text(format!("level_{}", r.agency_level)),
            status => r.status,
            status_text => text(format!("status_{}", r.status)),
            types => r.document_types.iter().map(|t| name_of(t)).collect::<Vec<_>>().join(list_separator(page.lang)),
            tier => asked,
            tier_text => text(format!("tier_{asked}")),
            tiers,
            fields => labels(page.lang, &r.fields),
            purpose => r.purpose,
            legal_basis => r.legal_basis,
            officer => r.officer_id,
            case => r.case_id,
            duration => r.duration_days,
            retention => r.retention_days,
            preview,
        });
    }
    render(
        &state,
        &page,
        "requests.html",
        context! { requests, unlocked },
    )
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
        include_str!("../../web/static/app.js"),
    )
}

async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../web/static/style.css"),
    )
}

#[derive(Deserialize)]
struct ActivityQuery {
    #[serde(default)]
    action: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    agency: String,
    cursor: Option<i64>,
    #[serde(default, rename = "lang")]
    _lang: Option<String>,
}

async fn activity_page(
    State(state): State<AppState>,
    SignedIn(page, session): SignedIn,
    Query(q): Query<ActivityQuery>,
) -> Result<Response, ApiError> {
    use crate::activity;
    let t = page.lang.catalog();
    let text = |key: String| t.get(&key).cloned().unwrap_or(key);
    let filter = activity::TrailFilter {
        action: Some(q.action.clone()).filter(|a| !a.is_empty()),
        outcome: Some(q.outcome.clone())
            .filter(|o| ["ok", "refused", "failed"].contains(&o.as_str())),
        agency: q.agency.parse().ok(),
        before_seq: q.cursor,
        ..activity::TrailFilter::default()
    };
    let (events, next) = activity::list(&state, &session, &filter, 50).await?;
    let events: Vec<_> = events
        .into_iter()
        .map(|e| {
            context! {
                action_text => text(format!("action_{}", e.action)),
                outcome => e.outcome.clone(),
                outcome_text => text(format!("outcome_{}", e.outcome)),
                at => e.at.clone(),
                when => e.at.get(..16).unwrap_or_default().replace('T', " "),
                agency => e.agency.as_ref().map(|a| a.name.clone()),
                level => e.agency.as_ref().map(|a| text(format!("level_{}", a.level))),
                officer => e.officer_id,
                case => e.case_id,
                tier => e.tier.map(|tier| text(format!("tier_{tier}"))),
                fields => labels(page.lang, &e.fields),
                // Decisions record the purpose code; show it by its name.
                purpose => e.purpose.map(|p| match state.catalog.purpose(&p) {
                    Some(known) => names_in(page.lang, &known.names),
                    None => p,
                }),
                documents => e.objects.join(", "),
                grant => e.grant_id.map(|g| g.to_string()),
                detail => e.detail,
            }
        })
        .collect();
    let (labels, series) = activity::reads_per_day(&state, &session, 30).await?;
    let mut chart_rows = Vec::new();
    for (agency, counts) in &series {
        for (day, count) in labels.iter().zip(counts) {
            if *count > 0 {
                chart_rows.push(context! { day => day, agency => agency, count => count });
            }
        }
    }
    let agencies: Vec<_> = crate::agencies::directory(&state)
        .await?
        .into_iter()
        .map(|a| context! { id => a.id.to_string(), name => a.name })
        .collect();
    activity::mark_seen(&state, &session).await?;
    render(
        &state,
        &page,
        "activity.html",
        context! {
            events, next, chart_rows, agencies,
            filter_action => q.action, filter_outcome => q.outcome, filter_agency => q.agency,
        },
    )
}

async fn activity_chart(
    State(state): State<AppState>,
    SignedIn(page, session): SignedIn,
) -> Result<Response, ApiError> {
    let (labels, series) = crate::activity::reads_per_day(&state, &session, 30).await?;
    let series: Vec<(String, Vec<u32>)> = series.into_iter().collect();
    let title = page
        .lang
        .catalog()
        .get("activity_chart_title")
        .cloned()
        .unwrap_or_default();
    Ok(super::activity::chart_svg(&labels, &series, &title))
}

async fn audit_login(
    State(state): State<AppState>,
    Visit(page, _): Visit,
) -> Result<Response, ApiError> {
    render(&state, &page, "audit_login.html", context! {})
}

#[derive(Deserialize)]
struct VerifyQuery {
    verify: Option<u8>,
}

#[derive(Deserialize)]
struct EnrolQuery {
    #[serde(default)]
    token: String,
}

async fn audit_enrol(
    State(state): State<AppState>,
    Visit(page, _): Visit,
    Query(q): Query<EnrolQuery>,
) -> Result<Response, ApiError> {
    let name = crate::auditors::invite_name(&state, &q.token).await.ok();
    render(
        &state,
        &page,
        "audit_enrol.html",
        context! { token => q.token, name },
    )
}

async fn audit_console(
    State(state): State<AppState>,
    AuditorIn(page, session): AuditorIn,
    Query(q): Query<super::audit::EventsQuery>,
    verify_q: Query<VerifyQuery>,
) -> Result<Response, ApiError> {
    let query = q.query()?;
    let rows = crate::auditors::search(&state, &session, &query, 100).await?;
    let events = crate::auditors::shown(&rows);
    let week_ago = state.clock.now_ms() - 7 * 86_400_000;
    let recent = state
        .store
        .audit_search(
            &crate::store::audit::AuditFilter {
                since_ms: Some(week_ago),
                ..Default::default()
            },
            20_000,
        )
        .await?;
    let flags = crate::auditors::flags(&recent);
    // A full verification reads the whole trail, so it runs when asked (`?verify=1`);
    // otherwise the page shows the head and the last signed checkpoint.
    let t = page.lang.catalog();
    let say = |key: &str, values: &[(&str, String)]| {
        let mut text = t.get(key).cloned().unwrap_or_else(|| key.to_owned());
        for (name, value) in values {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        text
    };
    let checkpoint = |seq: Option<i64>| match seq {
        Some(seq) => say("audit_checkpoint_at", &[("seq", seq.to_string())]),
        None => say("audit_checkpoint_none", &[]),
    };
    let (verified, intact, chain_text) = if verify_q.verify == Some(1) {
        match crate::audit::verify(&state.store, |_, _| {}).await? {
            Ok(s) => (
                true,
                true,
                say(
                    "audit_chain_verified_text",
                    &[
                        ("events", s.events.to_string()),
                        ("head", s.head_hash.get(..16).unwrap_or_default().to_owned()),
                        ("checkpoint", checkpoint(s.last_checkpoint)),
                    ],
                ),
            ),
            Err(f) => (true, false, f.to_string()),
        }
    } else {
        let (head, hash) = state.store.audit_head().await?;
        let last = state.store.last_checkpoint().await?;
        let hash = custodia_crypto::digest::hex(&hash);
        (
            false,
            true,
            say(
                "audit_chain_head_text",
                &[
                    ("seq", head.to_string()),
                    ("head", hash.get(..16).unwrap_or_default().to_owned()),
                    ("checkpoint", checkpoint(last.map(|c| c.seq))),
                ],
            ),
        )
    };
    let agencies: Vec<_> = crate::agencies::directory(&state)
        .await?
        .into_iter()
        .map(|a| context! { id => a.id.to_string(), name => a.name })
        .collect();
    render(
        &state,
        &page,
        "audit.html",
        context! {
            events, flags, verified, intact, chain_text, agencies,
            q => context! {
                citizen => q.citizen, agency => q.agency, officer => q.officer,
                action => q.action, outcome => q.outcome, since => q.since, until => q.until,
            },
        },
    )
}

/// Reads (`reads.svg`) or refusals (`refusals.svg`) per day by agency, last 30 days.
async fn audit_chart(
    State(state): State<AppState>,
    AuditorIn(page, _session): AuditorIn,
    axum::extract::Path(kind): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let refusals = match kind.as_str() {
        "reads.svg" => false,
        "refusals.svg" => true,
        _ => return Err(ApiError::not_found()),
    };
    let filter = crate::store::audit::AuditFilter {
        outcome: Some(if refusals { "refused" } else { "ok" }.into()),
        ..Default::default()
    };
    let (labels, series) = crate::activity::agency_volume(&state, filter, 30, !refusals).await?;
    let key = if refusals {
        "audit_chart_refusals"
    } else {
        "audit_chart_reads"
    };
    let title = page.lang.catalog().get(key).cloned().unwrap_or_default();
    let series: Vec<(String, Vec<u32>)> = series.into_iter().collect();
    Ok(super::activity::chart_svg(&labels, &series, &title))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_have_every_text_and_every_field_label() {
        let en: Vec<&String> = Lang::En.catalog().keys().collect();
        let zh: Vec<&String> = Lang::ZhCn.catalog().keys().collect();
        assert_eq!(en, zh, "en.json and zh-CN.json hold the same keys");
        let Ok(catalog) = crate::catalog::Catalog::load(None) else {
            panic!("the built-in catalog loads");
        };
        for t in catalog.document_types() {
            for f in &t.fields {
                let key = format!("field_{}", f.name);
                for lang in [Lang::En, Lang::ZhCn] {
                    assert!(
                        lang.catalog().contains_key(&key),
                        "{} has no label for {}",
                        lang.tag(),
                        f.name
                    );
                }
            }
        }
    }
}
