//! Account changes need the person, not only the cookie: a passkey confirmed in this
//! session within five minutes (step-up), and each change is in the citizen's trail.
//! Passphrase change and recovery rotate the vault key and end every other session.

use custodia::on_engine;
use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::RequestChallengeResponse;

use crate::citizen_kit::{Citizen, PASSPHRASE, origin};
use crate::helpers::{Backend, TestApp, assert_problem, both_backends, national_id, spawn_app};

both_backends!(
    a_stolen_cookie_alone_changes_nothing_and_every_change_is_recorded,
    a_confirmation_counts_only_in_its_own_session_and_only_once,
    a_new_passphrase_rotates_the_vault_key_and_ends_other_sessions,
);

/// The same citizen signed in in another browser, with the same passkey.
async fn another_session(app: &TestApp, c: &mut Citizen) -> Citizen {
    let mut other = c.in_another_browser(app, SoftPasskey::new(true));
    std::mem::swap(&mut other.authenticator, &mut c.authenticator);
    other.login().await;
    std::mem::swap(&mut other.authenticator, &mut c.authenticator);
    other
}

async fn refused_for_step_up(response: reqwest::Response) {
    let body = assert_problem(response, 403).await;
    assert_eq!(body["type"], "/problems/step-up-required", "{body}");
}

async fn actions(c: &Citizen) -> Vec<String> {
    let trail: Value = c.get("/me/activity?limit=100").await.json().await.unwrap();
    trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str().map(str::to_owned))
        .collect()
}

async fn a_stolen_cookie_alone_changes_nothing_and_every_change_is_recorded(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let mut c = Citizen::register(&app, &national_id(400), "Step Up").await;
    let doc = c.licence("确认公司", None).await;
    let me: Value = c.me().await.json().await.unwrap();
    let first_passkey = me["passkeys"][0]["id"].as_str().unwrap().to_owned();

    // Six minutes after sign-in, the cookie (a thief's copy, say) is all there is.
    app.clock.advance(time::Duration::minutes(6));
    refused_for_step_up(c.post("/me/passkeys/start", json!({})).await).await;
    refused_for_step_up(c.delete(&format!("/me/passkeys/{first_passkey}")).await).await;
    refused_for_step_up(
        c.post(
            "/me/passphrase",
            json!({ "current_passphrase": PASSPHRASE, "new_passphrase": "amber lantern canyon forty" }),
        )
        .await,
    )
    .await;
    refused_for_step_up(c.delete(&format!("/me/documents/{doc}")).await).await;
    refused_for_step_up(c.post("/auth/logout-everywhere", json!({})).await).await;
    // Nothing changed.
    assert_eq!(c.get(&format!("/me/documents/{doc}")).await.status(), 200);
    let me: Value = c.me().await.json().await.unwrap();
    assert_eq!(me["passkeys"].as_array().unwrap().len(), 1);
    assert_eq!(c.unlock(PASSPHRASE).await.status(), 200);

    // The person confirms with the passkey; the changes go through and are recorded.
    let confirmed = c.step_up().await;
    assert_eq!(confirmed.status(), 200);
    let body: Value = confirmed.json().await.unwrap();
    assert!(body["confirmed_until"].as_str().is_some(), "{body}");
    let mut second = SoftPasskey::new(true);
    let start = c.post("/me/passkeys/start", json!({})).await;
    assert_eq!(start.status(), 200);
    let options: webauthn_rs::prelude::CreationChallengeResponse = start.json().await.unwrap();
    let credential = second.do_registration(origin(), options).unwrap();
    let added = c
        .post(
            "/me/passkeys/finish",
            json!({ "credential": credential, "label": "Phone" }),
        )
        .await;
    assert_eq!(added.status(), 200);
    assert_eq!(
        c.delete(&format!("/me/passkeys/{first_passkey}"))
            .await
            .status(),
        204
    );
    c.authenticator = second;
    assert_eq!(
        c.delete(&format!("/me/documents/{doc}")).await.status(),
        204
    );
    let changed = c
        .post(
            "/me/passphrase",
            json!({ "current_passphrase": PASSPHRASE, "new_passphrase": "amber lantern canyon forty" }),
        )
        .await;
    assert_eq!(changed.status(), 200);

    // Five minutes later the confirmation has run out again; the new passkey renews it.
    app.clock.advance(time::Duration::minutes(6));
    refused_for_step_up(c.post("/auth/logout-everywhere", json!({})).await).await;
    assert_eq!(c.step_up().await.status(), 200);
    let seen = actions(&c).await;
    for action in [
        "citizen.step-up",
        "passkey.add",
        "passkey.remove",
        "document.delete",
        "passphrase.change",
    ] {
        assert!(seen.iter().any(|a| a == action), "{action} in {seen:?}");
    }
    let out = c.post("/auth/logout-everywhere", json!({})).await;
    assert_eq!(out.status(), 200);
    assert_eq!(c.me().await.status(), 401);
    app.stop().await;
}

fn cookie_pair(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .expect("the cookie is set")
        .to_owned()
}

/// A session signed in with `c`'s passkey on a client without a cookie jar: its cookie
/// and CSRF token, as a thief holding a copy of them would send them.
async fn raw_session(c: &mut Citizen) -> (String, String) {
    let http = reqwest::Client::new();
    let start = http
        .post(format!("{}/auth/login/start", c.base))
        .json(&json!({ "national_id": c.national_id }))
        .send()
        .await
        .unwrap();
    let ceremony = cookie_pair(&start, "custodia-ceremony");
    let options: RequestChallengeResponse = start.json().await.unwrap();
    let credential = c
        .authenticator
        .do_authentication(origin(), options)
        .unwrap();
    let finish = http
        .post(format!("{}/auth/login/finish", c.base))
        .header("cookie", ceremony)
        .json(&json!({ "credential": credential }))
        .send()
        .await
        .unwrap();
    assert_eq!(finish.status(), 200);
    let session = cookie_pair(&finish, "custodia-session");
    let body: Value = finish.json().await.unwrap();
    (session, body["csrf_token"].as_str().unwrap().to_owned())
}

async fn a_confirmation_counts_only_in_its_own_session_and_only_once(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let mut c = Citizen::register(&app, &national_id(410), "Own Session").await;
    // A second session of the same citizen: the thief's browser with a copied cookie.
    let (thief_cookie, thief_csrf) = raw_session(&mut c).await;
    let as_thief = |path: &str, cookies: String| {
        reqwest::Client::new()
            .post(app.url(path))
            .header("x-csrf-token", &thief_csrf)
            .header("cookie", cookies)
    };
    app.clock.advance(time::Duration::minutes(6));

    // The citizen's session starts a step-up; the thief finishes it in theirs: refused,
    // and the thief's session stays unconfirmed.
    let start = c.post("/me/step-up/start", json!({})).await;
    let ceremony = cookie_pair(&start, "custodia-ceremony");
    let options: RequestChallengeResponse = start.json().await.unwrap();
    let credential = c
        .authenticator
        .do_authentication(origin(), options)
        .unwrap();
    let crossed = as_thief("/me/step-up/finish", format!("{ceremony}; {thief_cookie}"))
        .json(&json!({ "credential": credential }))
        .send()
        .await
        .unwrap();
    assert_problem(crossed, 401).await;
    let end_all = || async {
        as_thief("/auth/logout-everywhere", thief_cookie.clone())
            .json(&json!({}))
            .send()
            .await
            .unwrap()
    };
    refused_for_step_up(end_all().await).await;

    // A finished step-up cannot be finished again.
    let start = c.post("/me/step-up/start", json!({})).await;
    let options: RequestChallengeResponse = start.json().await.unwrap();
    let credential = c
        .authenticator
        .do_authentication(origin(), options)
        .unwrap();
    let body = json!({ "credential": credential });
    assert_eq!(
        c.post("/me/step-up/finish", body.clone()).await.status(),
        200
    );
    assert_problem(c.post("/me/step-up/finish", body).await, 401).await;
    // The citizen's session is confirmed; the thief's still is not.
    refused_for_step_up(end_all().await).await;
    app.stop().await;
}

/// The vault key as the database holds it, opened the way only the citizen can.
async fn vault_key_from(
    app: &TestApp,
    citizen: &str,
    passphrase: &str,
) -> Option<custodia_crypto::VaultKey> {
    let id: uuid::Uuid = citizen.parse().unwrap();
    let mut tx = app.state.store.begin().await.unwrap();
    let (kdf, wrap): (String, Vec<u8>) = on_engine!(&mut tx, conn => {
        sqlx::query_as("SELECT passphrase_kdf, vault_key_passphrase FROM citizens WHERE id = $1")
            .bind(id)
            .fetch_one(&mut **conn)
            .await
            .unwrap()
    });
    drop(tx);
    let kdf: custodia_crypto::kdf::PassphraseKdf = serde_json::from_str(&kdf).unwrap();
    let kek = kdf
        .derive(&custodia_crypto::Passphrase::new(passphrase.into()))
        .unwrap();
    let aad = custodia_crypto::Aad::new("vault-key")
        .with("citizen", id.as_bytes())
        .with("by", "passphrase");
    custodia_crypto::wrap::unwrap_key(&kek, &wrap, &aad).ok()
}

async fn data_key_wraps(app: &TestApp) -> Vec<(uuid::Uuid, i32, Vec<u8>)> {
    let mut tx = app.state.store.begin().await.unwrap();
    on_engine!(&mut tx, conn => {
        sqlx::query_as::<_, (uuid::Uuid, i32, Vec<u8>)>(
            "SELECT document_id, version, data_key_wrap FROM document_versions WHERE data_key_wrap IS NOT NULL",
        )
        .fetch_all(&mut **conn)
        .await
        .unwrap()
    })
}

fn opens(
    key: &custodia_crypto::VaultKey,
    wraps: &[(uuid::Uuid, i32, Vec<u8>)],
    owner: &str,
) -> usize {
    let owner: uuid::Uuid = owner.parse().unwrap();
    wraps
        .iter()
        .filter(|(doc, version, wrapped)| {
            let aad = custodia_crypto::Aad::new("data-key")
                .with("document", doc.as_bytes())
                .with("version", version.to_be_bytes())
                .with("owner", owner.as_bytes());
            custodia_crypto::wrap::unwrap_key::<custodia_crypto::DataKey>(key, wrapped, &aad)
                .is_ok()
        })
        .count()
}

async fn a_new_passphrase_rotates_the_vault_key_and_ends_other_sessions(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let c = Citizen::register(&app, &national_id(420), "Rotate").await;
    let old_doc = c.licence("旧公司", None).await;
    let old_key = vault_key_from(&app, &c.citizen_id, PASSPHRASE)
        .await
        .unwrap();
    assert_eq!(
        opens(&old_key, &data_key_wraps(&app).await, &c.citizen_id),
        1
    );
    let old_recovery = c.recovery_code.clone();
    let mut c = c;
    // A second session of the citizen, signed in and unlocked.
    let other = another_session(&app, &mut c).await;
    assert_eq!(other.unlock(PASSPHRASE).await.status(), 200);

    let new_passphrase = "copper meadow lantern ninety";
    let changed = c
        .post(
            "/me/passphrase",
            json!({ "current_passphrase": PASSPHRASE, "new_passphrase": new_passphrase }),
        )
        .await;
    assert_eq!(changed.status(), 200);
    let new_recovery = changed.json::<Value>().await.unwrap()["recovery_code"]
        .as_str()
        .unwrap()
        .to_owned();

    // Every other session is over; this one stays unlocked and reads what it had.
    assert_eq!(other.me().await.status(), 401);
    let me: Value = c.me().await.json().await.unwrap();
    assert_eq!(me["unlocked"], true);
    assert_eq!(
        c.get(&format!("/me/documents/{old_doc}")).await.status(),
        200
    );
    let new_doc = c.licence("新公司", None).await;
    assert_eq!(
        c.get(&format!("/me/documents/{new_doc}")).await.status(),
        200
    );

    // The old passphrase with the old database opens the old key, and that key opens
    // nothing in today's database: every wrap is under the new key.
    let wraps = data_key_wraps(&app).await;
    assert_eq!(opens(&old_key, &wraps, &c.citizen_id), 0);
    assert!(
        vault_key_from(&app, &c.citizen_id, PASSPHRASE)
            .await
            .is_none()
    );
    let new_key = vault_key_from(&app, &c.citizen_id, new_passphrase)
        .await
        .unwrap();
    assert_eq!(opens(&new_key, &wraps, &c.citizen_id), 2);

    // The old recovery code no longer works; the new one does, and ends other sessions too.
    let second = another_session(&app, &mut c).await;
    let wrong = second
        .post(
            "/vault/recover",
            json!({ "recovery_code": old_recovery, "new_passphrase": "silver orchard ferry twelve" }),
        )
        .await;
    assert_problem(wrong, 403).await;
    let recovered = second
        .post(
            "/vault/recover",
            json!({ "recovery_code": new_recovery, "new_passphrase": "silver orchard ferry twelve" }),
        )
        .await;
    assert_eq!(recovered.status(), 200);
    assert_eq!(
        c.me().await.status(),
        401,
        "recovery ended the first session"
    );
    assert_eq!(
        second
            .get(&format!("/me/documents/{new_doc}"))
            .await
            .status(),
        200
    );
    assert!(actions(&second).await.iter().any(|a| a == "vault.recover"));
    app.stop().await;
}
