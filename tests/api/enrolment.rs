//! Registration needs proof of identity: a one-time enrolment code bound to the national
//! ID (SPEC §4, `custodia citizen enrol`), and the same code is the way back for a citizen
//! who lost every passkey.

use custodia::agencies::{self, Level, NewAgency};
use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

use crate::citizen_kit::{Citizen, PASSPHRASE, enrolment_code};
use crate::helpers::{Backend, TestEnv, assert_problem, both_backends, national_id, spawn_app};

both_backends!(
    a_stranger_who_knows_the_national_id_cannot_register_it,
    a_code_works_once_for_its_own_id_within_fourteen_days,
    two_finishes_racing_on_one_code_make_one_account,
    a_citizen_who_lost_every_passkey_re_enrols_with_a_new_code,
    only_enrolling_agencies_issue_codes_and_each_issue_is_recorded,
    open_registration_needs_no_code,
);

fn start_body(nid: &str, code: Option<&str>) -> Value {
    json!({ "national_id": nid, "display_name": "Stranger", "enrolment_code": code })
}

async fn start(app: &crate::helpers::TestApp, body: Value) -> reqwest::Response {
    app.new_client()
        .post(app.url("/auth/register/start"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Knowing a national ID is no longer enough to hold its account: without the code its
/// owner was handed, registration is refused, and the owner's later registration works.
async fn a_stranger_who_knows_the_national_id_cannot_register_it(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let victim = national_id(300);
    let refused = assert_problem(start(&app, start_body(&victim, None)).await, 422).await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .starts_with("enrolment_code: is required"),
        "{refused}"
    );
    // A made-up code, or the attacker's own code for another ID, is refused alike.
    let made_up = "0000-0000-0000-0000-0000-0000-0000";
    assert_problem(start(&app, start_body(&victim, Some(made_up))).await, 422).await;
    let own = enrolment_code(&app, &national_id(301)).await;
    let wrong_id = assert_problem(start(&app, start_body(&victim, Some(&own))).await, 422).await;
    assert!(
        wrong_id["detail"]
            .as_str()
            .unwrap()
            .contains("not valid for this national ID"),
        "{wrong_id}"
    );
    // The owner, with her code, registers; her account is hers.
    let owner = Citizen::register(&app, &victim, "Owner").await;
    assert_eq!(owner.me().await.status(), 200);
    app.stop().await;
}

async fn a_code_works_once_for_its_own_id_within_fourteen_days(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    // Used once: a second registration start with it is refused (the ID has an account,
    // and the code is spent).
    let c = Citizen::register(&app, &national_id(310), "Once").await;
    let used = c.enrolment_code.clone().unwrap();
    assert_problem(
        start(&app, start_body(&national_id(310), Some(&used))).await,
        422,
    )
    .await;

    // A newer code supersedes an older one.
    let older = enrolment_code(&app, &national_id(311)).await;
    let newer = enrolment_code(&app, &national_id(311)).await;
    assert_problem(
        start(&app, start_body(&national_id(311), Some(&older))).await,
        422,
    )
    .await;
    // Typed as people type: lower case, spaces for dashes.
    let typed = newer.to_lowercase().replace('-', " ");
    assert_eq!(
        start(&app, start_body(&national_id(311), Some(&typed)))
            .await
            .status(),
        200
    );

    // Fourteen days and it is gone; a code started on the last day still needs to be live
    // when the registration finishes.
    let late = enrolment_code(&app, &national_id(312)).await;
    app.clock.advance(time::Duration::days(14));
    assert_problem(
        start(&app, start_body(&national_id(312), Some(&late))).await,
        422,
    )
    .await;
    app.stop().await;
}

/// One code, two ceremonies, both finished at once: exactly one account.
async fn two_finishes_racing_on_one_code_make_one_account(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let nid = national_id(320);
    let code = enrolment_code(&app, &nid).await;
    let mut first = Citizen {
        national_id: nid.clone(),
        enrolment_code: Some(code.clone()),
        ..Citizen::register(&app, &national_id(321), "Racer").await
    };
    first.http = app.new_client();
    let mut second = first.in_another_browser(&app, SoftPasskey::new(true));
    second.enrolment_code = Some(code);
    let a = first.registration_credential().await;
    let b = second.registration_credential().await;
    let body = |credential: Value| json!({ "credential": credential, "passphrase": PASSPHRASE });
    let (ra, rb) = tokio::join!(
        first.post("/auth/register/finish", body(a)),
        second.post("/auth/register/finish", body(b)),
    );
    let mut statuses = [ra.status().as_u16(), rb.status().as_u16()];
    statuses.sort_unstable();
    assert!(
        statuses == [200, 409] || statuses == [200, 422],
        "one account, one refusal: {statuses:?}"
    );
    app.stop().await;
}

/// Every passkey lost (or stolen): a new code enrols a new passkey, removes every old one
/// and ends every session; the vault opens with the passphrase as before.
async fn a_citizen_who_lost_every_passkey_re_enrols_with_a_new_code(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let nid = national_id(330);
    let c = Citizen::register(&app, &nid, "Lost Keys").await;
    let doc = c.licence("找回公司", None).await;
    let first_browser = c.http.clone();
    // Whoever holds the old passkey (and signs in with it in a browser of their own).
    let mut thief = Citizen {
        http: app.new_client(),
        ..c
    };
    thief.login().await;
    assert_eq!(thief.me().await.status(), 200);

    // No code: refused, without saying whether the ID has an account.
    let mut back = thief.in_another_browser(&app, SoftPasskey::new(true));
    back.enrolment_code = None;
    let exists = back
        .post(
            "/auth/register/start",
            json!({ "national_id": nid, "display_name": "Lost Keys" }),
        )
        .await;
    assert_problem(exists, 422).await;

    back.enrolment_code = Some(enrolment_code(&app, &nid).await);
    let credential = back.registration_credential().await;
    let done = back
        .post(
            "/auth/register/finish",
            json!({ "credential": credential, "passphrase": PASSPHRASE }),
        )
        .await;
    assert_eq!(done.status(), 200);
    let done: Value = done.json().await.unwrap();
    assert_eq!(
        done["citizen_id"],
        thief.citizen_id.as_str(),
        "the same account"
    );
    assert_eq!(done["unlocked"], true);
    assert!(
        done["recovery_code"].is_null(),
        "the recovery code is unchanged"
    );
    back.csrf = done["csrf_token"].as_str().unwrap().to_owned();

    // Old sessions are over, the old passkey is gone, the documents are still there.
    assert_eq!(thief.me().await.status(), 401);
    let first = first_browser.get(app.url("/me")).send().await.unwrap();
    assert_eq!(first.status(), 401);
    let me: Value = back.me().await.json().await.unwrap();
    let passkeys = me["passkeys"].as_array().unwrap();
    assert_eq!(passkeys.len(), 1, "{me:#}");
    assert_eq!(passkeys[0]["label"], "Passkey (re-enrolled)");
    let opened = back.get(&format!("/me/documents/{doc}")).await;
    assert_eq!(opened.status(), 200);
    let options = thief
        .post("/auth/login/start", json!({ "national_id": nid }))
        .await;
    let options: webauthn_rs::prelude::RequestChallengeResponse = options.json().await.unwrap();
    assert!(
        thief
            .authenticator
            .do_authentication(crate::citizen_kit::origin(), options)
            .is_err(),
        "the old passkey is no longer asked for"
    );

    // The citizen sees it in her trail.
    let trail: Value = back.get("/me/activity").await.json().await.unwrap();
    let actions: Vec<&str> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"citizen.reenrol"), "{actions:?}");

    // A wrong passphrase still enrols the passkey, and leaves the vault shut.
    let mut again = thief.in_another_browser(&app, SoftPasskey::new(true));
    again.enrolment_code = Some(enrolment_code(&app, &nid).await);
    let credential = again.registration_credential().await;
    let done: Value = again
        .post(
            "/auth/register/finish",
            json!({ "credential": credential, "passphrase": "not the passphrase at all" }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["unlocked"], false, "{done}");
    assert_eq!(
        back.me().await.status(),
        401,
        "the previous session ended too"
    );
    app.stop().await;
}

async fn only_enrolling_agencies_issue_codes_and_each_issue_is_recorded(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let create = |name: &'static str, enroller: bool| {
        let state = app.state.clone();
        async move {
            agencies::create(
                &state,
                &NewAgency {
                    name,
                    level: Level::Municipal,
                    issuer: false,
                    issuer_key: None,
                    issuer_types: &[],
                    enroller,
                    guardianship_authority: false,
                    emergency: false,
                },
            )
            .await
            .unwrap()
        }
    };
    let hall = create("政务服务中心", true).await;
    let regulator = create("市场监管局", false).await;
    let issue = |key: String, body: Value| {
        let url = app.url("/api/v1/enrolment-codes");
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let nid = national_id(340);
    let refused = issue(regulator.api_key.to_string(), json!({ "national_id": nid })).await;
    assert_problem(refused, 403).await;
    assert_problem(
        issue(hall.api_key.to_string(), json!({ "national_id": "12345" })).await,
        422,
    )
    .await;
    assert_problem(
        issue(
            hall.api_key.to_string(),
            json!({ "national_id": nid, "extra": 1 }),
        )
        .await,
        422,
    )
    .await;
    let issued = issue(hall.api_key.to_string(), json!({ "national_id": nid })).await;
    assert_eq!(issued.status(), 201);
    let issued: Value = issued.json().await.unwrap();
    let code = issued["enrolment_code"].as_str().unwrap().to_owned();
    assert!(issued["expires_at"].as_str().is_some());
    let c = Citizen::register_at(&app.base, &nid, "Hall Visitor", &code).await;
    assert_eq!(c.me().await.status(), 200);

    // The trail names who issued each code.
    let events = app
        .state
        .store
        .audit_events_after(0, 1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "citizen.enrol")
        .collect::<Vec<_>>();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor_kind, "agency");
    assert_eq!(
        events[0].actor_id.as_deref(),
        Some(hall.id.to_string().as_str())
    );
    app.stop().await;
}

async fn open_registration_needs_no_code(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    env.vars
        .insert("CUSTODIA_REGISTRATION".into(), "open".into());
    let app = env.start().await.unwrap();
    assert_eq!(
        start(&app, start_body(&national_id(350), None))
            .await
            .status(),
        200
    );
    app.stop().await;
}
