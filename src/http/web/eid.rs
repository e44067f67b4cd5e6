//! Sign-in and registration with the national eID (`CUSTODIA_REGISTRATION=oidc`): the
//! two browser routes of the OpenID Connect flow.
//!
//! `GET /auth/oidc/start?intent=signin|reenrol` sends the browser to the provider with a
//! flow cookie (SameSite=Lax, since the provider's redirect back is a cross-site
//! navigation; HttpOnly, ten minutes at most). `GET /auth/oidc/callback` takes that flow,
//! verifies the answer, and shows where it leads: signed in (a page that continues to
//! `/unlock`: a redirect from a cross-site navigation would not carry the SameSite=Strict
//! session cookie), or the registration form for the proven national ID.

use super::*;
use crate::citizens::eid::{self as eid_flow, Intent, PROOF_MS, Proven};
use crate::eid::Callback;
use crate::http::extract::{ClientAddr, EID_FLOW, EID_PROOF, SESSION};
use crate::passkeys::CEREMONY_TTL_MS;

#[derive(Deserialize)]
pub(super) struct StartQuery {
    intent: Option<Intent>,
}

fn with_cookies(mut response: Response, cookies: &[HeaderValue]) -> Response {
    for c in cookies {
        response.headers_mut().append(header::SET_COOKIE, c.clone());
    }
    response
}

/// The page that says an eID step did not work, with the way to start again.
fn failed(state: &AppState, page: &Page, error: crate::error::Error) -> Result<Response, ApiError> {
    let problem = ApiError::from(error);
    let status = problem.status();
    let mut response = render(
        state,
        page,
        "eid.html",
        context! { failed => true, detail => problem.detail() },
    )?;
    *response.status_mut() = status;
    Ok(response)
}

pub(super) async fn eid_start(
    State(state): State<AppState>,
    Visit(page, _): Visit,
    ClientAddr(client): ClientAddr,
    Query(query): Query<StartQuery>,
) -> Result<Response, ApiError> {
    let intent = query.intent.unwrap_or(Intent::Signin);
    match eid_flow::start(&state, intent, &client).await {
        Ok((url, token)) => {
            let cookies = Cookies::for_state(&state);
            Ok(with_cookies(
                Redirect::to(url.as_str()).into_response(),
                &[cookies.set_lax(EID_FLOW, &token, CEREMONY_TTL_MS / 1000)],
            ))
        }
        Err(e) => failed(&state, &page, e),
    }
}

pub(super) async fn eid_callback(
    State(state): State<AppState>,
    Visit(page, _): Visit,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Result<Response, ApiError> {
    let cookies = Cookies::for_state(&state);
    // The flow cookie is spent whatever happens next.
    let spent = cookies.set_lax(EID_FLOW, "", 0);
    let outcome = eid_flow::finish(&state, cookies.get(&headers, EID_FLOW), &callback).await;
    let response = match outcome {
        Err(e) => failed(&state, &page, e)?,
        Ok(Proven::SignedIn { session, .. }) => with_cookies(
            render(
                &state,
                &page,
                "eid.html",
                context! { signed_in_eid => true },
            )?,
            &[cookies.set(
                SESSION,
                &session.cookie,
                crate::sessions::ABSOLUTE_MS / 1000,
            )],
        ),
        Ok(Proven::Enrol {
            national_id,
            code,
            has_account,
        }) => with_cookies(
            render(
                &state,
                &page,
                "register.html",
                context! {
                    eid => true,
                    eid_national_id => national_id.expose(),
                    reenrol => has_account,
                    enrolment_required => false,
                },
            )?,
            &[cookies.set(EID_PROOF, &code, PROOF_MS / 1000)],
        ),
    };
    Ok(with_cookies(response, &[spent]))
}
