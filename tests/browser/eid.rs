//! Registration and sign-in with the national eID in Chromium, against the real OpenID
//! Provider on another site (`127.0.0.1`, while Custodia is `localhost`): the flow cookie
//! must survive the provider's cross-site redirect back, the session cookie (Strict) must
//! reach the pages that follow it, and the passkey is made by the virtual authenticator.

use crate::browser::Browser;
use crate::eid_provider::{CLIENT_ID, CLIENT_SECRET, Provider};
use crate::journeys::{PASSPHRASE, national_id};
use crate::server::{Custodia, Engine, free_port};

pub async fn registration_and_sign_in(lang: &'static str, engine: Engine, seq: u32) {
    let port = free_port();
    let provider = Provider::start(&format!("http://localhost:{port}/auth/oidc/callback")).await;
    let server = Custodia::start_with(
        engine,
        port,
        &[
            ("CUSTODIA_REGISTRATION", "oidc"),
            ("CUSTODIA_OIDC_ISSUER", &provider.issuer),
            ("CUSTODIA_OIDC_CLIENT_ID", CLIENT_ID),
            ("CUSTODIA_OIDC_CLIENT_SECRET", CLIENT_SECRET),
            ("CUSTODIA_OIDC_NATIONAL_ID_CLAIM", "national_id"),
        ],
    )
    .await;
    let nid = national_id(seq);
    let b = Browser::launch(&server.origin, lang).await;
    b.add_authenticator().await;

    // Registration starts at the national eID.
    b.goto("/register").await;
    b.check_page("register-eid").await;
    b.click("#eid-start").await;
    b.wait_for("#eid-national-id").await;
    b.fill("eid-national-id", &nid).await;
    b.click("#eid-sign-in").await;

    // Back at Custodia with the number proven and fixed.
    b.wait_path("/auth/oidc/callback").await;
    b.wait_for("#eid-proven").await;
    b.check_page("register-eid-proven").await;
    let shown = b
        .js("return document.getElementById('national_id').value")
        .await;
    assert_eq!(shown, nid);
    let readonly = b
        .js("return String(document.getElementById('national_id').readOnly)")
        .await;
    assert_eq!(readonly, "true");
    b.fill("display_name", "Li Na").await;
    b.fill("passphrase", PASSPHRASE).await;
    b.click("#register-form button[type=submit]").await;
    b.wait_for("#recovery").await;
    let code = b.text("#recovery-code").await;
    assert!(code.len() >= 26, "a recovery code is shown: {code:?}");
    b.click("#recovery a.button").await;
    b.wait_path("/").await;
    b.wait_for("#lock").await;

    // Signed out, she signs in with the eID again and lands on unlock, signed in. The
    // provider still knows her from a minute ago (its own session), so it sends her
    // straight back.
    b.click("#logout").await;
    b.wait_path("/").await;
    b.goto("/login").await;
    b.check_page("login-eid").await;
    b.click("#eid-start").await;
    b.wait_path("/unlock").await;
    b.fill("passphrase", PASSPHRASE).await;
    b.click("#unlock-form button[type=submit]").await;
    b.wait_path("/").await;
    b.wait_for("#lock").await;

    // Her activity shows the sign-in by the national eID.
    b.goto("/activity").await;
    let text = b.body_text().await;
    assert!(text.contains("national eID"), "{text}");

    server.assert_no_panic();
    b.close().await;
    drop(provider);
}
