//! Registration and sign-in with a national eID over OpenID Connect
//! (`CUSTODIA_REGISTRATION=oidc`), against a real OpenID Provider: the `oidc-provider`
//! package on Node (`tests/oidc/provider.mjs`), started by each test. The provider can be
//! told to hand out one bad ID token (forged, expired, for another audience or issuer, or
//! an earlier one replayed) to see Custodia refuse it.

use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::CreationChallengeResponse;

use crate::citizen_kit::{Citizen, PASSPHRASE, origin};
use crate::eid_provider::{CLIENT_ID, CLIENT_SECRET, Provider};
use crate::helpers::{
    Backend, TEST_ORIGIN, TestApp, TestEnv, assert_problem, both_backends, national_id,
};

both_backends!(
    a_citizen_registers_and_signs_in_with_the_national_eid,
    forged_expired_misaddressed_and_replayed_id_tokens_are_refused,
    a_citizen_who_lost_every_passkey_re_enrols_with_the_national_eid,
);

async fn spawn_with_eid(backend: Backend, provider: &Provider) -> (TestEnv, TestApp) {
    let mut env = TestEnv::new(backend).await;
    for (k, v) in [
        ("CUSTODIA_REGISTRATION", "oidc"),
        ("CUSTODIA_OIDC_ISSUER", provider.issuer.as_str()),
        ("CUSTODIA_OIDC_CLIENT_ID", CLIENT_ID),
        ("CUSTODIA_OIDC_CLIENT_SECRET", CLIENT_SECRET),
        ("CUSTODIA_OIDC_NATIONAL_ID_CLAIM", "national_id"),
    ] {
        env.vars.insert(k.to_owned(), v.to_owned());
    }
    let app = env.start().await.expect("server starts");
    (env, app)
}

/// A browser: a cookie jar, redirects followed by hand so the test sees each hop.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(r: &reqwest::Response) -> url::Url {
    let raw = r.headers()["location"].to_str().unwrap();
    r.url().join(raw).unwrap()
}

/// The public origin is a proxy in front of the test server: a redirect to it goes to
/// the server's real address.
fn to_server(app: &TestApp, url: &url::Url) -> String {
    url.as_str().replacen(TEST_ORIGIN, &app.base, 1)
}

/// Goes through the provider's sign-in as `nid` and returns the callback address it sends
/// the browser back to (not yet visited).
async fn through_provider(app: &TestApp, b: &reqwest::Client, intent: &str, nid: &str) -> String {
    let start = b
        .get(app.url(&format!("/auth/oidc/start?intent={intent}")))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 303, "start redirects to the provider");
    let set_cookie = start.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.starts_with("custodia-eid="), "{set_cookie}");
    assert!(
        set_cookie.contains("SameSite=Lax") && set_cookie.contains("HttpOnly"),
        "{set_cookie}"
    );
    let authorize = location(&start);
    let query: std::collections::HashMap<_, _> = authorize.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256", "PKCE");
    assert_eq!(query["response_type"], "code");
    assert!(query.contains_key("nonce") && query.contains_key("state"));

    let to_login = b.get(authorize).send().await.unwrap();
    assert_eq!(to_login.status(), 303);
    let login_page = location(&to_login);
    let page = b.get(login_page.clone()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let resume = b
        .post(format!("{login_page}/login"))
        .form(&[("national_id", nid)])
        .send()
        .await
        .unwrap();
    assert_eq!(resume.status(), 303);
    let back = b.get(location(&resume)).send().await.unwrap();
    assert_eq!(back.status(), 303, "the provider sends the browser back");
    let callback = location(&back);
    assert!(
        callback
            .as_str()
            .starts_with(&format!("{TEST_ORIGIN}/auth/oidc/callback?code=")),
        "{callback}"
    );
    to_server(app, &callback)
}

async fn visit(b: &reqwest::Client, url: &str) -> (u16, String, Vec<String>) {
    let r = b.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let cookies = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    (status, r.text().await.unwrap(), cookies)
}

fn sets(cookies: &[String], name: &str) -> bool {
    cookies
        .iter()
        .any(|c| c.starts_with(&format!("{name}=")) && !c.contains("Max-Age=0"))
}

/// Registers through the browser `b` that holds an eID proof: the registration form's
/// calls, with no enrolment code typed.
async fn register_with_proof(
    app: &TestApp,
    b: &reqwest::Client,
    nid: &str,
    authenticator: &mut SoftPasskey,
    passphrase: &str,
) -> reqwest::Response {
    let start = b
        .post(app.url("/auth/register/start"))
        .json(&json!({ "national_id": nid, "display_name": "Li Na" }))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 200, "register/start with the eID proof");
    let options: CreationChallengeResponse = start.json().await.unwrap();
    let credential = authenticator.do_registration(origin(), options).unwrap();
    b.post(app.url("/auth/register/finish"))
        .json(&json!({ "credential": credential, "passphrase": passphrase }))
        .send()
        .await
        .unwrap()
}

/// Signs in with `authenticator` in a fresh browser (the passkey works as well as the eID).
async fn signed_in_with_passkey(
    app: &TestApp,
    nid: &str,
    citizen_id: &str,
    authenticator: SoftPasskey,
) {
    let mut c = Citizen {
        http: app.new_client(),
        base: app.base.clone(),
        authenticator,
        national_id: nid.to_owned(),
        display_name: "Li Na".into(),
        passphrase: PASSPHRASE.into(),
        csrf: String::new(),
        citizen_id: citizen_id.to_owned(),
        recovery_code: String::new(),
        enrolment_code: None,
    };
    c.login().await;
}

fn csrf_of(page: &str) -> String {
    let marker = "name=\"csrf-token\" content=\"";
    let at = page.find(marker).expect("csrf meta") + marker.len();
    page[at..].split('"').next().unwrap().to_owned()
}

async fn a_citizen_registers_and_signs_in_with_the_national_eid(backend: Backend) {
    let provider = Provider::start(&format!("{TEST_ORIGIN}/auth/oidc/callback")).await;
    let (_env, app) = spawn_with_eid(backend, &provider).await;
    let nid = national_id(900);

    // Without an eID proof (or a code), registration is refused.
    let bare = app
        .new_client()
        .post(app.url("/auth/register/start"))
        .json(&json!({ "national_id": nid, "display_name": "Li Na" }))
        .send()
        .await
        .unwrap();
    assert_problem(bare, 422).await;

    // The eID proves the number; the form shows it, fixed, and the proof rides in a cookie.
    let b = browser();
    let callback = through_provider(&app, &b, "signin", &nid).await;
    let (status, page, cookies) = visit(&b, &callback).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"eid-proven\""), "{page}");
    assert!(page.contains(&format!("value=\"{nid}\"")) && page.contains("readonly"));
    assert!(sets(&cookies, "custodia-eid-proof"), "{cookies:?}");
    assert!(
        !page.contains("custodia-eid-proof"),
        "the proof is not in the page"
    );

    // The proof is for that number only.
    let other = b
        .post(app.url("/auth/register/start"))
        .json(&json!({ "national_id": national_id(901), "display_name": "Mallory" }))
        .send()
        .await
        .unwrap();
    assert_problem(other, 422).await;

    let mut passkey = SoftPasskey::new(true);
    let done = register_with_proof(&app, &b, &nid, &mut passkey, PASSPHRASE).await;
    assert_eq!(done.status(), 200);
    let body: Value = done.json().await.unwrap();
    let citizen_id = body["citizen_id"].as_str().unwrap().to_owned();
    assert!(body["recovery_code"].is_string());
    assert_eq!(body["unlocked"], true);

    // The proof was used up: a second account start with it is refused.
    let again = b
        .post(app.url("/auth/register/start"))
        .json(&json!({ "national_id": nid, "display_name": "Li Na" }))
        .send()
        .await
        .unwrap();
    assert!(again.status().is_client_error());

    // Another day, another browser: the eID signs her in, locked; the passphrase opens it.
    let b2 = browser();
    let callback = through_provider(&app, &b2, "signin", &nid).await;
    let (status, page, cookies) = visit(&b2, &callback).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"eid-signed-in\""), "{page}");
    assert!(sets(&cookies, "custodia-session"), "{cookies:?}");
    let me: Value = b2
        .get(app.url("/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["citizen_id"], citizen_id.as_str());
    assert_eq!(me["unlocked"], false);
    let unlock_page = b2.get(app.url("/unlock")).send().await.unwrap();
    assert_eq!(unlock_page.status(), 200);
    let csrf = csrf_of(&unlock_page.text().await.unwrap());
    let unlocked = b2
        .post(app.url("/vault/unlock"))
        .header("x-csrf-token", &csrf)
        .json(&json!({ "passphrase": PASSPHRASE }))
        .send()
        .await
        .unwrap();
    assert_eq!(unlocked.status(), 200);

    // Her trail shows the sign-in by the national eID.
    let activity: Value = b2
        .get(app.url("/me/activity"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let by_eid = activity["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "login" && e["detail"] == "with the national eID");
    assert!(by_eid, "{activity}");

    // The passkey still signs her in as well.
    signed_in_with_passkey(&app, &nid, &citizen_id, passkey).await;
    app.stop().await;
}

async fn forged_expired_misaddressed_and_replayed_id_tokens_are_refused(backend: Backend) {
    let provider = Provider::start(&format!("{TEST_ORIGIN}/auth/oidc/callback")).await;
    let (_env, app) = spawn_with_eid(backend, &provider).await;
    let nid = national_id(910);

    // The control: a token the test provider signs again, unchanged, is accepted — so
    // each refusal below is for what that token changes.
    provider.tamper(&nid, "resigned").await;
    let b = browser();
    let callback = through_provider(&app, &b, "signin", &nid).await;
    let (status, page, cookies) = visit(&b, &callback).await;
    assert_eq!(status, 200, "{page}");
    assert!(sets(&cookies, "custodia-eid-proof"));

    for mode in ["forged", "expired", "audience", "issuer"] {
        provider.tamper(&nid, mode).await;
        let b = browser();
        let callback = through_provider(&app, &b, "signin", &nid).await;
        let (status, page, cookies) = visit(&b, &callback).await;
        assert_eq!(status, 401, "{mode}: {page}");
        assert!(page.contains("id=\"eid-failed\""), "{mode}: {page}");
        assert!(!sets(&cookies, "custodia-eid-proof"), "{mode}: {cookies:?}");
        assert!(!sets(&cookies, "custodia-session"), "{mode}: {cookies:?}");
    }

    // A genuine sign-in, then its ID token handed out again for a new sign-in: the nonce
    // belongs to the first flow.
    let b = browser();
    let first = through_provider(&app, &b, "signin", &nid).await;
    let (status, _, _) = visit(&b, &first).await;
    assert_eq!(status, 200);
    provider.tamper(&nid, "replay").await;
    let b = browser();
    let callback = through_provider(&app, &b, "signin", &nid).await;
    let (status, page, cookies) = visit(&b, &callback).await;
    assert_eq!(status, 401, "replayed ID token: {page}");
    assert!(!sets(&cookies, "custodia-eid-proof"));

    // A callback replayed, in the same browser or carried to another one, finds no flow.
    let b = browser();
    let callback = through_provider(&app, &b, "signin", &nid).await;
    let stolen = browser();
    let (status, _, cookies) = visit(&stolen, &callback).await;
    assert_eq!(status, 401, "a callback without its browser's flow cookie");
    assert!(!sets(&cookies, "custodia-eid-proof"));
    let (status, _, _) = visit(&b, &callback).await;
    assert_eq!(status, 200, "its own browser still finishes it");
    let (status, _, cookies) = visit(&b, &callback).await;
    assert_eq!(status, 401, "but only once");
    assert!(!sets(&cookies, "custodia-eid-proof"));

    // A state that does not match the flow is refused (and spends the flow).
    let b = browser();
    let callback = through_provider(&app, &b, "signin", &nid).await;
    let mut forged = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == "state" {
                (k, "not-the-state".into())
            } else {
                (k, v)
            }
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let (status, _, _) = visit(&b, forged.as_str()).await;
    assert_eq!(status, 401);
    let (status, _, _) = visit(&b, &callback).await;
    assert_eq!(status, 401, "the flow was spent by the bad callback");

    // The provider's refusal (the citizen cancelled) is shown as such.
    let b = browser();
    let start = b.get(app.url("/auth/oidc/start")).send().await.unwrap();
    assert_eq!(start.status(), 303);
    let state = location(&start)
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let (status, page, _) = visit(
        &b,
        &app.url(&format!(
            "/auth/oidc/callback?error=access_denied&state={state}"
        )),
    )
    .await;
    assert_eq!(status, 401, "{page}");

    // Nothing of all this made an account.
    let index = custodia::citizens::national_id_index(
        &app.state,
        &custodia::citizens::NationalId::parse(&nid).unwrap(),
    );
    let account = app.state.store.citizen_by_index(&index).await.unwrap();
    assert!(account.is_none());

    app.stop().await;

    // A provider that cannot be reached fails closed, with a clear page.
    let mut env = TestEnv::new(backend).await;
    for (k, v) in [
        ("CUSTODIA_REGISTRATION", "oidc"),
        ("CUSTODIA_OIDC_ISSUER", "http://127.0.0.1:1"),
        ("CUSTODIA_OIDC_CLIENT_ID", CLIENT_ID),
    ] {
        env.vars.insert(k.to_owned(), v.to_owned());
    }
    let app = env
        .start()
        .await
        .expect("starts without reaching the provider");
    let (status, page, cookies) = visit(&browser(), &app.url("/auth/oidc/start")).await;
    assert_eq!(status, 502, "{page}");
    assert!(page.contains("id=\"eid-failed\""), "{page}");
    assert!(!sets(&cookies, "custodia-eid"), "{cookies:?}");
    app.stop().await;
}

async fn a_citizen_who_lost_every_passkey_re_enrols_with_the_national_eid(backend: Backend) {
    let provider = Provider::start(&format!("{TEST_ORIGIN}/auth/oidc/callback")).await;
    let (_env, app) = spawn_with_eid(backend, &provider).await;
    let nid = national_id(920);
    let b = browser();
    let callback = through_provider(&app, &b, "signin", &nid).await;
    visit(&b, &callback).await;
    let mut lost = SoftPasskey::new(true);
    let done = register_with_proof(&app, &b, &nid, &mut lost, PASSPHRASE).await;
    assert_eq!(done.status(), 200);
    let citizen_id = done.json::<Value>().await.unwrap()["citizen_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Every passkey lost: the eID proves her again, and the form says what re-enrolling does.
    let b2 = browser();
    let callback = through_provider(&app, &b2, "reenrol", &nid).await;
    let (status, page, cookies) = visit(&b2, &callback).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"eid-proven\""));
    assert!(
        page.contains("current-password"),
        "asks for the current passphrase"
    );
    assert!(sets(&cookies, "custodia-eid-proof"));
    let mut fresh = SoftPasskey::new(true);
    let done = register_with_proof(&app, &b2, &nid, &mut fresh, PASSPHRASE).await;
    assert_eq!(done.status(), 200);
    let body: Value = done.json().await.unwrap();
    assert_eq!(body["citizen_id"], citizen_id.as_str(), "the same account");
    assert!(body["recovery_code"].is_null());
    assert_eq!(body["unlocked"], true);

    // The old browser's session ended; the lost passkey no longer signs in.
    assert_eq!(b.get(app.url("/me")).send().await.unwrap().status(), 401);
    let start = app
        .new_client()
        .post(app.url("/auth/login/start"))
        .json(&json!({ "national_id": nid }))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 200);
    let options: webauthn_rs::prelude::RequestChallengeResponse = start.json().await.unwrap();
    assert!(
        lost.do_authentication(origin(), options).is_err(),
        "the lost passkey is no longer one of hers"
    );
    signed_in_with_passkey(&app, &nid, &citizen_id, fresh).await;
    app.stop().await;
}
